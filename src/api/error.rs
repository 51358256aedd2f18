//! OpenRouter's error envelope, parsed leniently: `error.code` may be a number or a string,
//! most fields are optional, and the same shape turns up inside 200 responses (FACTS §7).

use std::time::Duration;

use serde_json::Value;

/// The parts of an OpenRouter error that decide what to do about it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiError {
    /// `error.code`: usually the HTTP status as a number, sometimes a string.
    pub code: Option<Value>,
    pub message: String,
    /// `error.metadata.error_type` (or `error.error_type`, or a Responses top-level `error_type`).
    pub error_type: Option<String>,
    /// `error.metadata.limit_source` (402/429 budget signals).
    pub limit_source: Option<String>,
    /// `error.availability.retryable`, which overrides the status code when present.
    pub availability_retryable: Option<bool>,
    /// A retry hint from the body (`availability.retry_after`, `metadata.retry_after_seconds`).
    pub retry_after: Option<Duration>,
    /// The error carries moderation fields (`reasons`, `flagged_input`).
    pub moderation: bool,
}

impl ApiError {
    /// Parse the `error` object of an envelope (the value of the `error` key).
    pub fn from_error_value(err: &Value) -> ApiError {
        let obj = match err {
            Value::Object(o) => o,
            Value::String(s) => {
                return ApiError {
                    message: s.clone(),
                    ..ApiError::default()
                };
            }
            other => {
                return ApiError {
                    message: other.to_string(),
                    ..ApiError::default()
                };
            }
        };
        let metadata = obj.get("metadata").and_then(Value::as_object);
        let availability = obj.get("availability").and_then(Value::as_object);
        let meta_str = |k: &str| metadata.and_then(|m| m.get(k)).and_then(Value::as_str);
        let error_type = meta_str("error_type")
            .or_else(|| obj.get("error_type").and_then(Value::as_str))
            .map(str::to_owned);
        let retry_after = availability
            .and_then(|a| a.get("retry_after"))
            .and_then(seconds)
            .or_else(|| {
                metadata
                    .and_then(|m| m.get("retry_after_seconds"))
                    .and_then(seconds)
            })
            .or_else(|| {
                metadata
                    .and_then(|m| m.get("headers"))
                    .and_then(|h| h.get("Retry-After"))
                    .and_then(seconds)
            });
        ApiError {
            code: obj.get("code").filter(|v| !v.is_null()).cloned(),
            message: obj
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            error_type,
            limit_source: meta_str("limit_source").map(str::to_owned),
            availability_retryable: availability
                .and_then(|a| a.get("retryable"))
                .and_then(Value::as_bool),
            retry_after,
            moderation: metadata
                .map(|m| m.contains_key("reasons") || m.contains_key("flagged_input"))
                .unwrap_or(false),
        }
    }

    /// Parse a whole body `{ "error": {…}, … }`; `None` if it has no `error` key.
    pub fn from_envelope(body: &Value) -> Option<ApiError> {
        let err = body.get("error").filter(|e| !e.is_null())?;
        let mut parsed = ApiError::from_error_value(err);
        if parsed.error_type.is_none() {
            // Responses API failures put the precise type at the top level (FACTS §4.2).
            parsed.error_type = body
                .get("error_type")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        Some(parsed)
    }

    /// `error.code` as an HTTP-like status, when it is one.
    pub fn numeric_code(&self) -> Option<u16> {
        match &self.code {
            Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        }
    }
}

/// A number of seconds given as a JSON number or numeric string.
fn seconds(v: &Value) -> Option<Duration> {
    let secs = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

/// Parse a `Retry-After` header: delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let when = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let delta = when.as_millisecond() - now.as_millisecond();
    Some(Duration::from_millis(delta.max(0) as u64))
}

/// Time until a spent rate-limit window resets: `X-RateLimit-Reset` (epoch milliseconds, as
/// OpenRouter sends it; epoch seconds or a delay in seconds are accepted too), only when
/// `X-RateLimit-Remaining` says nothing is left.
pub fn parse_limit_reset(
    remaining: Option<&str>,
    reset: Option<&str>,
    now: jiff::Timestamp,
) -> Option<Duration> {
    let remaining: f64 = remaining?.trim().parse().ok()?;
    if remaining > 0.0 {
        return None;
    }
    let reset: f64 = reset?.trim().parse().ok()?;
    let now_ms = now.as_millisecond() as f64;
    let delta_ms = if reset > 1e12 {
        reset - now_ms
    } else if reset > 1e9 {
        reset * 1000.0 - now_ms
    } else {
        reset * 1000.0
    };
    (delta_ms.is_finite()).then(|| Duration::from_millis(delta_ms.clamp(0.0, 86_400_000.0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_the_documented_envelope() {
        let body = json!({"error":{"code":429,"message":"Rate limit exceeded",
            "metadata":{"error_type":"rate_limit_exceeded","retry_after_seconds":3}},
            "user_id":"user_x"});
        let e = ApiError::from_envelope(&body).unwrap();
        assert_eq!(e.numeric_code(), Some(429));
        assert_eq!(e.error_type.as_deref(), Some("rate_limit_exceeded"));
        assert_eq!(e.retry_after, Some(Duration::from_secs(3)));
    }

    #[test]
    fn accepts_string_codes_and_missing_fields() {
        let e = ApiError::from_envelope(&json!({"error":{"code":"server_error"}})).unwrap();
        assert_eq!(e.numeric_code(), None);
        assert_eq!(e.message, "");
        let e = ApiError::from_envelope(&json!({"error":"boom"})).unwrap();
        assert_eq!(e.message, "boom");
        assert!(ApiError::from_envelope(&json!({"error":null})).is_none());
        assert!(ApiError::from_envelope(&json!({"choices":[]})).is_none());
    }

    #[test]
    fn reads_availability_budget_and_moderation_fields() {
        let e = ApiError::from_envelope(&json!({"error":{"code":503,"message":"x",
            "availability":{"code":"temporarily_unavailable","retryable":true,"retry_after":2}}}))
        .unwrap();
        assert_eq!(e.availability_retryable, Some(true));
        assert_eq!(e.retry_after, Some(Duration::from_secs(2)));
        let e = ApiError::from_envelope(&json!({"error":{"code":402,"message":"x",
            "metadata":{"limit_source":"openrouter_in_flight_budget"}}}))
        .unwrap();
        assert_eq!(
            e.limit_source.as_deref(),
            Some("openrouter_in_flight_budget")
        );
        let e = ApiError::from_envelope(&json!({"error":{"code":403,"message":"flagged",
            "metadata":{"reasons":["violence"],"flagged_input":"..."}}}))
        .unwrap();
        assert!(e.moderation);
        let e = ApiError::from_envelope(&json!({"status":"failed","error":{"code":"server_error",
            "message":"m"},"error_type":"authentication"}))
        .unwrap();
        assert_eq!(e.error_type.as_deref(), Some("authentication"));
    }

    #[test]
    fn retry_after_header_seconds_and_http_date() {
        let now: jiff::Timestamp = "2026-11-25T17:00:00Z".parse().unwrap();
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after(" 1.5 ", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Wed, 25 Nov 2026 17:00:10 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 25 Nov 2026 16:59:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn limit_reset_only_when_nothing_is_left() {
        let now = jiff::Timestamp::from_millisecond(1_800_000_000_000).unwrap();
        let in_2h = (1_800_000_000_000i64 + 7_200_000).to_string();
        assert_eq!(
            parse_limit_reset(Some("0"), Some(&in_2h), now),
            Some(Duration::from_secs(7200))
        );
        assert_eq!(parse_limit_reset(Some("3"), Some(&in_2h), now), None);
        assert_eq!(
            parse_limit_reset(Some("0"), Some("1800000060"), now),
            Some(Duration::from_secs(60)),
            "epoch seconds"
        );
        assert_eq!(
            parse_limit_reset(Some("0"), Some("30"), now),
            Some(Duration::from_secs(30)),
            "a delay"
        );
        assert_eq!(parse_limit_reset(Some("0"), Some("soon"), now), None);
        assert_eq!(parse_limit_reset(None, Some(&in_2h), now), None);
    }
}
