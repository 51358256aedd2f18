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
