//! The wire record: one JSON object per line of the output file, per (id, model) (SPEC §4).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::endpoint::Endpoint;

/// `ok` or `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Error,
}

/// Why a request failed, as a stable machine-readable word (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    RateLimited,
    Transient,
    Timeout,
    Auth,
    Credits,
    BadRequest,
    ContentFilter,
    ProviderError,
    Truncated,
    InvalidResponse,
    /// The answer did not fit the job's JSON Schema, re-asks included (`--schema`).
    InvalidOutput,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Transient => "transient",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Auth => "auth",
            ErrorKind::Credits => "credits",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::ContentFilter => "content_filter",
            ErrorKind::ProviderError => "provider_error",
            ErrorKind::Truncated => "truncated",
            ErrorKind::InvalidResponse => "invalid_response",
            ErrorKind::InvalidOutput => "invalid_output",
        }
    }
}

/// Token counts and the inline cost OpenRouter reported for an attempt.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub reasoning_tokens: u64,
    pub cached_tokens: u64,
    /// USD charged (`usage.cost`); `null` when the server did not say.
    pub cost: Option<f64>,
}

/// The `error` object of a failed record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordError {
    pub kind: ErrorKind,
    /// HTTP status of the final attempt (`null` for transport failures).
    pub status: Option<u16>,
    /// OpenRouter's `error.code` (a number or a string) or `error_type`, when given.
    pub code: Option<Value>,
    pub message: String,
}

/// One line of the output file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub model: String,
    pub endpoint: Endpoint,
    pub row: u64,
    pub status: Status,
    pub output: Option<String>,
    pub finish_reason: Option<String>,
    /// The final attempt's generation id.
    pub generation_id: Option<String>,
    /// The generation id of every attempt that got one (failed attempts can cost money).
    pub generation_ids: Vec<String>,
    pub provider: Option<String>,
    /// The model that actually served the request (may be a dated variant).
    pub model_used: Option<String>,
    pub usage: Option<Usage>,
    /// The request ran on the user's own provider key (BYOK, `usage.is_byok`): `usage.cost`
    /// is then only OpenRouter's fee, and the provider billed `upstream_cost` to that key.
    #[serde(default)]
    pub is_byok: Option<bool>,
    /// What the provider charged (`usage.cost_details.upstream_inference_cost`); part of the
    /// spend only for BYOK (otherwise it is what `usage.cost` already holds).
    #[serde(default)]
    pub upstream_cost: Option<f64>,
    /// The tier that served the request (`service_tier`), as the response said.
    #[serde(default)]
    pub service_tier: Option<String>,
    pub attempts: u32,
    /// Duration of the final attempt, in milliseconds.
    pub latency_ms: Option<u64>,
    /// Time to first content token (streamed requests only).
    pub ttft_ms: Option<u64>,
    /// When the first attempt started / the last one ended (UTC, RFC 3339, milliseconds).
    pub started_at: String,
    pub finished_at: String,
    /// Hash of the request (endpoint + body); resume uses it to notice changed rows.
    pub fingerprint: String,
    pub error: Option<RecordError>,
    /// The row's other fields, with `--keep-fields`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Map<String, Value>>,
    /// With `--schema`: the answer parsed, once it fits the schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_json: Option<Value>,
    /// With `--schema`: how many of the attempts were re-asks (the answer did not fit).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reasks: u32,
    /// `--lenient-json` stripped a code fence or prose around the JSON of `output`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lenient_json: bool,
    /// Under `--max-cost`: at most this many USD were billed for the request's failed attempts
    /// (what the cap counted for them: `/generation`'s cost where it answered in time, else the
    /// attempt's reserved worst case). Absent when no failed attempt may have been billed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_cost_bound: Option<f64>,
    /// A chunked document's records: `map` for each chunk (`ID#k`), `reduce` for the
    /// document's answer; absent for every other job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    /// A reduce record's chunk ids, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<String>,
    /// `"batch"` for a record of the batch lane (`--lane batch|auto`); absent for live ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lane: Option<String>,
    /// The Batch API batch that answered (or failed) the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
    /// What each attempt before the last failed with (for the summary; not written).
    #[serde(skip)]
    pub retried: Vec<ErrorKind>,
    /// The request failed and would have been tried again, but Ctrl-C stopped the run first:
    /// interrupted, not failed (for the summary; not written — a rerun sends it again as it
    /// does every error).
    #[serde(skip)]
    pub interrupted: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The stage of a chunked document's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Map,
    Reduce,
}

/// What a record's `usage.cost` says it cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InlineCost {
    /// The server said: this many USD.
    Known(f64),
    /// A failure without a cost: what its attempts cost, if anything, only `/generation`
    /// knows (the difference between exact and inline spend is exactly that).
    Free,
    /// An answer without a cost: servers other than OpenRouter often send no `usage.cost`.
    /// Unknown is not $0.
    Unknown,
}

impl InlineCost {
    /// A sum of inline costs as it can be told: `None` (unknown) when answers without a cost
    /// were summed and none had one; else `total` (a lower bound when `uncosted > 0`).
    pub fn sum(total: f64, costed: u64, uncosted: u64) -> Option<f64> {
        (costed > 0 || uncosted == 0).then_some(total)
    }
}

impl Record {
    /// What this record cost by its own `usage`: OpenRouter's charge (`usage.cost`) plus,
    /// for BYOK, the provider's.
    pub fn inline_cost(&self) -> InlineCost {
        match self.usage.as_ref().and_then(|u| u.cost) {
            Some(c) => InlineCost::Known(c + self.byok_cost()),
            None if self.status == Status::Error => InlineCost::Free,
            None => InlineCost::Unknown,
        }
    }

    /// What the provider billed to the user's own key for a BYOK request (0 otherwise):
    /// spend that OpenRouter's credits do not show.
    pub fn byok_cost(&self) -> f64 {
        byok_part(self.is_byok, self.upstream_cost)
    }
}

/// The provider's charge that a BYOK request adds to OpenRouter's (`cost`): the upstream cost
/// when `is_byok`, else nothing (without BYOK the upstream cost is what `cost` already holds).
pub fn byok_part(is_byok: Option<bool>, upstream_cost: Option<f64>) -> f64 {
    match is_byok {
        Some(true) => upstream_cost.unwrap_or(0.0),
        _ => 0.0,
    }
}

/// Format a timestamp the way records carry it: `2026-11-25T17:00:00.123Z`.
pub fn timestamp(ts: jiff::Timestamp) -> String {
    // Written digit by digit: two of these per record, and `strftime` interprets its format
    // every time (a tenth of the CPU of writing a record).
    let dt = jiff::tz::Offset::UTC.to_datetime(ts);
    let Ok(year) = u32::try_from(dt.year()) else {
        return ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    };
    let mut out = String::with_capacity(24);
    push_digits(&mut out, year, 4);
    for (sep, n, width) in [
        ('-', i32::from(dt.month()), 2),
        ('-', i32::from(dt.day()), 2),
        ('T', i32::from(dt.hour()), 2),
        (':', i32::from(dt.minute()), 2),
        (':', i32::from(dt.second()), 2),
        ('.', dt.subsec_nanosecond() / 1_000_000, 3),
    ] {
        out.push(sep);
        push_digits(&mut out, n.unsigned_abs(), width);
    }
    out.push('Z');
    out
}

/// The last `width` decimal digits of `n`, zero-padded.
fn push_digits(out: &mut String, n: u32, width: u32) {
    for p in (0..width).rev() {
        let digit = (n / 10u32.pow(p) % 10) as u8;
        out.push(char::from(b'0' + digit));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_milliseconds_and_z() {
        let ts: jiff::Timestamp = "2026-11-25T17:00:00.123456Z".parse().unwrap();
        assert_eq!(timestamp(ts), "2026-11-25T17:00:00.123Z");
        let ts: jiff::Timestamp = "2026-11-25T17:00:00Z".parse().unwrap();
        assert_eq!(timestamp(ts), "2026-11-25T17:00:00.000Z");
    }

    #[test]
    fn timestamps_are_written_as_strftime_writes_them() {
        let strftime = |ts: jiff::Timestamp| ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        let mut seconds: i64 = -62_135_596_800; // 0001-01-01
        let mut nanos: i32 = 0;
        while seconds < 253_402_207_200 {
            let ts = jiff::Timestamp::new(seconds, nanos).unwrap();
            assert_eq!(timestamp(ts), strftime(ts));
            seconds += 9_876_543_211 / 7;
            nanos = (nanos + 123_456_789) % 1_000_000_000;
        }
        for ts in [
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999999999Z",
            "2026-11-25T17:00:00.9995Z",
            "2026-12-31T23:59:59.999Z",
            "9999-12-30T21:59:59.999999999Z",
            "-000001-06-01T00:00:00Z",
        ] {
            let ts: jiff::Timestamp = ts.parse().unwrap();
            assert_eq!(timestamp(ts), strftime(ts));
        }
    }

    #[test]
    fn byok_spend_adds_the_providers_charge_to_openrouters_fee() {
        let mut r: Record = serde_json::from_value(serde_json::json!({
            "id": "1", "model": "m", "endpoint": "chat", "row": 1, "status": "ok",
            "output": "x", "finish_reason": "stop", "generation_id": "g", "generation_ids": ["g"],
            "provider": null, "model_used": null,
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2,
                      "reasoning_tokens": 0, "cached_tokens": 0, "cost": 0.05},
            "is_byok": true, "upstream_cost": 1.0, "service_tier": "flex",
            "attempts": 1, "latency_ms": 1, "ttft_ms": null, "started_at": "", "finished_at": "",
            "fingerprint": "", "error": null
        }))
        .unwrap();
        assert_eq!(r.inline_cost(), InlineCost::Known(1.05));
        assert_eq!(r.byok_cost(), 1.0);
        // Not BYOK: the upstream cost is what `cost` already holds, not added again.
        r.is_byok = Some(false);
        assert_eq!(r.inline_cost(), InlineCost::Known(0.05));
        assert_eq!(r.byok_cost(), 0.0);
        // Records written before these fields existed read as "not said".
        let mut v = serde_json::to_value(&r).unwrap();
        for k in ["is_byok", "upstream_cost", "service_tier"] {
            v.as_object_mut().unwrap().remove(k);
        }
        let old: Record = serde_json::from_value(v).unwrap();
        assert_eq!(
            (old.is_byok, old.upstream_cost, old.service_tier),
            (None, None, None)
        );
    }

    #[test]
    fn error_kinds_serialize_as_spec_words() {
        for k in [
            ErrorKind::RateLimited,
            ErrorKind::Transient,
            ErrorKind::Timeout,
            ErrorKind::Auth,
            ErrorKind::Credits,
            ErrorKind::BadRequest,
            ErrorKind::ContentFilter,
            ErrorKind::ProviderError,
            ErrorKind::Truncated,
            ErrorKind::InvalidResponse,
            ErrorKind::InvalidOutput,
        ] {
            assert_eq!(serde_json::to_value(k).unwrap(), Value::from(k.as_str()));
        }
    }
}
