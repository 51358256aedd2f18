//! OpenRouter wire formats: parsing answers and error envelopes leniently (FACTS §2, §4, §7).
//!
//! Everything here is pure: bytes or JSON in, typed answers or typed failures out.

pub mod chat;
pub mod error;
mod fast;
pub mod responses;
pub mod sse;
pub mod stream;

use crate::output::record::Usage;
use crate::retry::Failure;

/// A successful answer, whichever endpoint or transport produced it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    pub output: String,
    pub finish_reason: Option<String>,
    pub generation_id: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub usage: Option<Usage>,
    /// Who billed it: BYOK and the provider's own charge (`usage`, FACTS §2.2).
    pub billing: Billing,
    /// The tier that served it (`service_tier`; `null` when the provider did not say).
    pub service_tier: Option<String>,
}

/// What a `usage` object says beyond tokens and `cost`: whether the request ran on the user's
/// own provider key (BYOK: `cost` is then only OpenRouter's fee) and what the provider charged.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Billing {
    /// `usage.is_byok`.
    pub is_byok: Option<bool>,
    /// `usage.cost_details.upstream_inference_cost`.
    pub upstream_cost: Option<f64>,
}

impl Billing {
    /// Read from a `usage` object of either endpoint.
    pub fn from_usage(u: &serde_json::Value) -> Billing {
        Billing {
            is_byok: u.get("is_byok").and_then(serde_json::Value::as_bool),
            upstream_cost: u
                .get("cost_details")
                .and_then(|d| d.get("upstream_inference_cost"))
                .and_then(serde_json::Value::as_f64),
        }
    }
}

impl Answer {
    /// Cut at the completion limit (`max_tokens`; the Responses API's `incomplete` for
    /// `max_output_tokens` is mapped to the same `length`).
    pub fn is_cut_at_max_tokens(&self) -> bool {
        self.finish_reason.as_deref() == Some("length")
    }
}

/// Decode a 200 body as JSON: empty or non-JSON bodies are invalid responses (retried).
/// Leading whitespace (keep-alive bytes) is accepted.
pub fn parse_json(bytes: &[u8]) -> Result<serde_json::Value, Failure> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Failure::Invalid("empty response body".into()));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| Failure::Invalid(format!("response is not JSON ({e})")))
}
