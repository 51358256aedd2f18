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
    /// A chunked document's records: `map` for each chunk (`ID#k`), `reduce` for the
    /// document's answer; absent for every other job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    /// A reduce record's chunk ids, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<String>,
    /// What each attempt before the last failed with (for the summary; not written).
    #[serde(skip)]
    pub retried: Vec<ErrorKind>,
    /// The request failed and would have been tried again, but Ctrl-C stopped the run first:
    /// interrupted, not failed (for the summary; not written — a rerun sends it again as it
    /// does every error).
    #[serde(skip)]
    pub interrupted: bool,
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
    /// What this record cost by its own `usage.cost`.
    pub fn inline_cost(&self) -> InlineCost {
        match self.usage.as_ref().and_then(|u| u.cost) {
            Some(c) => InlineCost::Known(c),
            None if self.status == Status::Error => InlineCost::Free,
            None => InlineCost::Unknown,
        }
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
        ] {
            assert_eq!(serde_json::to_value(k).unwrap(), Value::from(k.as_str()));
        }
    }
}
