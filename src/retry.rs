//! Retry decisions, in one pure function: what went wrong with an attempt → what kind of
//! error it is and whether to retry it, give up on the row, or stop the whole run (SPEC §5,
//! FACTS §7.5). Also the backoff schedule.

use std::time::Duration;

use crate::api::error::ApiError;
use crate::output::record::ErrorKind;
use crate::text::sanitize;

/// How an attempt failed, as observed on the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// A non-2xx HTTP status, with the parsed error body if there was one.
    Http {
        status: u16,
        error: Option<Box<ApiError>>,
        retry_after: Option<Duration>,
        /// Time until `X-RateLimit-Reset`, sent only when `X-RateLimit-Remaining` is 0.
        limit_reset: Option<Duration>,
    },
    /// A 200 whose body (or stream) carries an error (FACTS §7.4).
    InBody { error: Box<ApiError> },
    /// No usable response: connection refused/reset, TLS, or the body broke off.
    Connection(String),
    /// The attempt took longer than `--timeout`.
    Timeout,
    /// A stream that ended without its completion marker.
    Truncated(String),
    /// A stream that said it was over (`[DONE]`) without a finish reason: the server cut the
    /// answer short. llama.cpp's server does this to a stream when another request arrives,
    /// so it is also a sign that fewer should be in flight.
    CutShort(String),
    /// A 200 that is not a usable answer: empty, not JSON, or no choices.
    Invalid(String),
    /// A well-formed answer that is not a usable result (e.g. `content_filter`, empty text
    /// with `finish_reason: length`).
    Unusable {
        kind: ErrorKind,
        retry: bool,
        message: String,
    },
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// Try again, after at least this pause (the backoff applies when `None`).
    Retry { after: Option<Duration> },
    /// Record the error for this row and move on.
    GiveUp,
    /// Record the error and stop dispatching: the key or the account cannot go on (exit 3).
    StopRun,
    /// Record the error and send nothing more to this model in this run: its quota is spent
    /// until a reset hours away (the daily free-model limit, FACTS §7.3).
    StopModel,
}

/// The classification of a failure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    pub kind: ErrorKind,
    pub action: Action,
}

impl Verdict {
    fn retry(kind: ErrorKind, after: Option<Duration>) -> Verdict {
        Verdict {
            kind,
            action: Action::Retry { after },
        }
    }
    fn give_up(kind: ErrorKind) -> Verdict {
        Verdict {
            kind,
            action: Action::GiveUp,
        }
    }
    fn stop(kind: ErrorKind) -> Verdict {
        Verdict {
            kind,
            action: Action::StopRun,
        }
    }
}

/// What a record says when a model's daily free quota ran out.
pub const DAILY_QUOTA_MESSAGE: &str = "daily free-model quota reached; it resets at UTC midnight \
     — use a paid model or add credits";

/// A quota reset at least this far away will not clear during a run: stop using the model
/// rather than wait (a minute-window limit resets within 60 s).
const LONG_RESET: Duration = Duration::from_secs(3600);

/// A 429 saying the daily `:free` quota is spent: OpenRouter's message names
/// `free-models-per-day`; matched leniently (wording changes), or recognised by
/// `X-RateLimit-Remaining: 0` with a reset an hour or more away.
pub fn is_daily_quota(
    status: u16,
    error: Option<&ApiError>,
    limit_reset: Option<Duration>,
) -> bool {
    if status != 429 {
        return false;
    }
    if limit_reset.is_some_and(|r| r >= LONG_RESET) {
        return true;
    }
    let text = error
        .map(|e| format!("{} {}", e.message, e.limit_source.as_deref().unwrap_or("")))
        .unwrap_or_default()
        .to_ascii_lowercase();
    let daily = ["per-day", "per day", "daily", "/day"]
        .iter()
        .any(|w| text.contains(w));
    text.contains("free-models-per-day") || (text.contains("free") && daily)
}

/// Classify a failed attempt. Pure: the same failure always gets the same verdict.
pub fn classify(failure: &Failure) -> Verdict {
    match failure {
        Failure::Http {
            status,
            error,
            retry_after,
            limit_reset,
        } => {
            if is_daily_quota(*status, error.as_deref(), *limit_reset) {
                return Verdict {
                    kind: ErrorKind::RateLimited,
                    action: Action::StopModel,
                };
            }
            classify_status(*status, error.as_deref(), *retry_after)
        }
        Failure::InBody { error } => classify_in_body(error),
        Failure::Connection(_) => Verdict::retry(ErrorKind::Transient, None),
        Failure::Timeout => Verdict::retry(ErrorKind::Timeout, None),
        Failure::Truncated(_) | Failure::CutShort(_) => Verdict::retry(ErrorKind::Truncated, None),
        // Empty or broken 200s: docs suggest retrying (cold starts, proxies cutting bodies).
        Failure::Invalid(_) => Verdict::retry(ErrorKind::InvalidResponse, None),
        Failure::Unusable { kind, retry, .. } => {
            if *retry {
                Verdict::retry(*kind, None)
            } else {
                Verdict::give_up(*kind)
            }
        }
    }
}

fn classify_status(status: u16, error: Option<&ApiError>, header: Option<Duration>) -> Verdict {
    let hint = header.or_else(|| error.and_then(|e| e.retry_after));
    // The availability block (2026-08) is the most specific signal and overrides the status:
    // a 404 "temporarily unavailable" is retryable, a 429 "model not found" is not.
    if let Some(retryable) = error.and_then(|e| e.availability_retryable) {
        let kind = kind_for_status(status, error);
        return if retryable {
            Verdict::retry(kind, hint)
        } else {
            Verdict::give_up(kind)
        };
    }
    match status {
        429 => Verdict::retry(ErrorKind::RateLimited, hint),
        408 | 504 | 524 => Verdict::retry(ErrorKind::Timeout, hint),
        500 | 502 | 503 | 529 => Verdict::retry(ErrorKind::Transient, hint),
        401 => Verdict::stop(ErrorKind::Auth),
        402 => {
            // The in-flight budget is a rate signal (too many paid requests at once for the
            // balance), not an empty account: it comes with Retry-After (FACTS §7.2).
            let in_flight = error
                .and_then(|e| e.limit_source.as_deref())
                .is_some_and(|s| s == "openrouter_in_flight_budget");
            if in_flight || header.is_some() {
                Verdict::retry(ErrorKind::RateLimited, hint)
            } else {
                Verdict::stop(ErrorKind::Credits)
            }
        }
        403 => {
            let e = error;
            if e.is_some_and(|e| e.moderation) {
                // A moderation flag concerns this prompt only; the key is fine.
                Verdict::give_up(ErrorKind::ContentFilter)
            } else if e
                .and_then(|e| e.limit_source.as_deref())
                .is_some_and(|s| s.ends_with("_budget") || s == KEY_LIMIT_SOURCE)
            {
                Verdict::stop(ErrorKind::Credits)
            } else {
                Verdict::stop(ErrorKind::Auth)
            }
        }
        400 | 404 | 413 | 422 => Verdict::give_up(kind_for_status(status, error)),
        // Other 5xx: the server's problem, likely transient.
        500..=599 => Verdict::retry(ErrorKind::Transient, hint),
        // Anything else (3xx, odd 4xx): not something a retry fixes.
        _ => Verdict::give_up(ErrorKind::BadRequest),
    }
}

/// The error kind for a status when the action is decided elsewhere.
fn kind_for_status(status: u16, error: Option<&ApiError>) -> ErrorKind {
    let content = error
        .and_then(|e| e.error_type.as_deref())
        .is_some_and(|t| matches!(t, "content_policy_violation" | "refusal"));
    match status {
        _ if content => ErrorKind::ContentFilter,
        429 => ErrorKind::RateLimited,
        408 | 504 | 524 => ErrorKind::Timeout,
        401 | 403 => ErrorKind::Auth,
        402 => ErrorKind::Credits,
        500..=599 => ErrorKind::Transient,
        _ => ErrorKind::BadRequest,
    }
}

/// An error inside a 200: decide by the stable `error_type`, else by a numeric code.
fn classify_in_body(error: &ApiError) -> Verdict {
    // Responses errors carry OpenAI's string codes (`rate_limit_exceeded`, `invalid_prompt`)
    // where chat errors carry `error_type`: both name the same vocabulary.
    let string_code = match &error.code {
        Some(serde_json::Value::String(c)) => Some(c.as_str()),
        _ => None,
    };
    if let Some(t) = error.error_type.as_deref().or(string_code) {
        return match t {
            "rate_limit_exceeded" => Verdict::retry(ErrorKind::RateLimited, error.retry_after),
            "timeout" => Verdict::retry(ErrorKind::Timeout, error.retry_after),
            "provider_overloaded"
            | "provider_unavailable"
            | "server"
            | "server_error"
            | "unmapped" => Verdict::retry(ErrorKind::ProviderError, error.retry_after),
            "content_policy_violation" | "refusal" => Verdict::give_up(ErrorKind::ContentFilter),
            "authentication" | "permission_denied" => Verdict::stop(ErrorKind::Auth),
            "payment_required" => Verdict::stop(ErrorKind::Credits),
            _ if t.starts_with("invalid") || t.ends_with("_exceeded") || t.ends_with("_long") => {
                Verdict::give_up(ErrorKind::BadRequest)
            }
            // An unknown type: a provider failure mid-answer is most likely transient.
            _ => Verdict::retry(ErrorKind::ProviderError, error.retry_after),
        };
    }
    match error.numeric_code() {
        Some(status @ (400 | 401 | 402 | 403 | 404 | 413 | 422)) => {
            let v = classify_status(status, Some(error), None);
            Verdict { kind: v.kind, ..v }
        }
        Some(429) => Verdict::retry(ErrorKind::RateLimited, error.retry_after),
        _ => Verdict::retry(ErrorKind::ProviderError, error.retry_after),
    }
}

/// Exponential backoff with full jitter: a uniform pause in `[0, min(cap, base·2^(n−1))]`
/// before retry number `n` (1-based).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The ceiling of the pause before retry `n` (1-based).
    pub fn ceiling(&self, n: u32) -> Duration {
        let factor = 1u32
            .checked_shl(n.saturating_sub(1).min(30))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The jittered pause before retry `n`, given a uniform sample in `[0, 1)`.
    pub fn pause(&self, n: u32, unit: f64) -> Duration {
        self.ceiling(n).mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// `error.metadata.limit_source` of a key whose credit limit is used up (402 or 403).
pub const KEY_LIMIT_SOURCE: &str = "openrouter_key_limit";

/// A short, safe description of a failure for logs and records.
pub fn describe(f: &Failure) -> String {
    let text = match f {
        Failure::Http { status, error, .. } => {
            let mut text = match error {
                Some(e) if !e.message.is_empty() => format!("HTTP {status}: {}", e.message),
                _ => format!("HTTP {status}"),
            };
            if error
                .as_ref()
                .and_then(|e| e.limit_source.as_deref())
                .is_some_and(|s| s == KEY_LIMIT_SOURCE)
            {
                text.push_str(" (the key's credit limit is reached)");
            }
            text
        }
        Failure::InBody { error } => {
            if error.message.is_empty() {
                "the server returned an error inside a 200 response".to_owned()
            } else {
                format!("error inside a 200 response: {}", error.message)
            }
        }
        Failure::Connection(m) => format!("connection failed: {m}"),
        Failure::Timeout => "the attempt timed out (see --timeout)".to_owned(),
        Failure::Truncated(m) => format!("the stream was cut off: {m}"),
        Failure::CutShort(m) => format!("the stream was cut short: {m}"),
        Failure::Invalid(m) => format!("invalid response: {m}"),
        Failure::Unusable { message, .. } => message.clone(),
    };
    sanitize(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn http(status: u16) -> Failure {
        Failure::Http {
            status,
            error: None,
            retry_after: None,
            limit_reset: None,
        }
    }

    fn http_body(status: u16, body: serde_json::Value) -> Failure {
        Failure::Http {
            status,
            error: ApiError::from_envelope(&body).map(Box::new),
            retry_after: None,
            limit_reset: None,
        }
    }

    fn retried(f: &Failure) -> bool {
        matches!(classify(f).action, Action::Retry { .. })
    }

    #[test]
    fn spec_retry_table() {
        // SPEC §5: retry these…
        for s in [408, 429, 500, 502, 503, 504, 524, 529] {
            assert!(retried(&http(s)), "{s} must be retried");
        }
        // …and never these.
        for s in [400, 401, 403, 404, 413, 422] {
            assert!(!retried(&http(s)), "{s} must not be retried");
        }
        assert!(retried(&Failure::Connection("reset".into())));
        assert!(retried(&Failure::Timeout));
        assert!(retried(&Failure::Truncated("no [DONE]".into())));
        assert!(retried(&Failure::Invalid("empty body".into())));
    }

    #[test]
    fn kinds_for_statuses() {
        assert_eq!(classify(&http(429)).kind, ErrorKind::RateLimited);
        assert_eq!(classify(&http(504)).kind, ErrorKind::Timeout);
        assert_eq!(classify(&http(502)).kind, ErrorKind::Transient);
        assert_eq!(classify(&http(400)).kind, ErrorKind::BadRequest);
        assert_eq!(classify(&Failure::Timeout).kind, ErrorKind::Timeout);
    }

    #[test]
    fn auth_and_credit_stop_the_run() {
        assert_eq!(classify(&http(401)), Verdict::stop(ErrorKind::Auth));
        assert_eq!(classify(&http(403)), Verdict::stop(ErrorKind::Auth));
        assert_eq!(classify(&http(402)), Verdict::stop(ErrorKind::Credits));
        let budget = http_body(
            403,
            json!({"error":{"code":403,"message":"budget","metadata":{"limit_source":"openrouter_workspace_budget"}}}),
        );
        assert_eq!(classify(&budget), Verdict::stop(ErrorKind::Credits));
    }

    #[test]
    fn in_flight_budget_402_is_a_rate_signal() {
        let f = http_body(
            402,
            json!({"error":{"code":402,"message":"x","metadata":{"limit_source":"openrouter_in_flight_budget"}}}),
        );
        assert!(retried(&f));
        assert_eq!(classify(&f).kind, ErrorKind::RateLimited);
        // A bare 402 with Retry-After is the same signal.
        let f = Failure::Http {
            status: 402,
            error: None,
            retry_after: Some(Duration::from_secs(1)),
            limit_reset: None,
        };
        assert!(retried(&f));
    }

    #[test]
    fn moderation_403_concerns_the_row_only() {
        let f = http_body(
            403,
            json!({"error":{"code":403,"message":"flagged","metadata":{"reasons":["x"],"flagged_input":"y"}}}),
        );
        assert_eq!(classify(&f), Verdict::give_up(ErrorKind::ContentFilter));
    }

    #[test]
    fn availability_overrides_status() {
        let f = http_body(
            404,
            json!({"error":{"code":404,"message":"x","availability":{"code":"temporarily_unavailable","retryable":true}}}),
        );
        assert!(retried(&f));
        let f = http_body(
            429,
            json!({"error":{"code":429,"message":"x","availability":{"code":"free_variant_ended","retryable":false}}}),
        );
        assert!(!retried(&f));
    }

    #[test]
    fn retry_after_from_header_wins_over_body() {
        let f = Failure::Http {
            status: 429,
            error: ApiError::from_envelope(
                &json!({"error":{"code":429,"message":"x","metadata":{"retry_after_seconds":9}}}),
            )
            .map(Box::new),
            retry_after: Some(Duration::from_secs(2)),
            limit_reset: None,
        };
        assert_eq!(
            classify(&f).action,
            Action::Retry {
                after: Some(Duration::from_secs(2))
            }
        );
        let f = http_body(
            429,
            json!({"error":{"code":429,"message":"x","metadata":{"retry_after_seconds":9}}}),
        );
        assert_eq!(
            classify(&f).action,
            Action::Retry {
                after: Some(Duration::from_secs(9))
            }
        );
    }

    #[test]
    fn errors_inside_a_200() {
        let e = |t: &str| Failure::InBody {
            error: Box::new(
                ApiError::from_envelope(
                    &json!({"error":{"code":502,"message":"x","metadata":{"error_type":t}}}),
                )
                .unwrap(),
            ),
        };
        for t in [
            "rate_limit_exceeded",
            "provider_overloaded",
            "provider_unavailable",
            "timeout",
            "server",
        ] {
            assert!(retried(&e(t)), "{t}");
        }
        for t in [
            "invalid_request",
            "context_length_exceeded",
            "content_policy_violation",
            "refusal",
        ] {
            assert!(!retried(&e(t)), "{t}");
        }
        assert_eq!(classify(&e("authentication")).action, Action::StopRun);
        assert_eq!(classify(&e("payment_required")).action, Action::StopRun);
        assert_eq!(classify(&e("refusal")).kind, ErrorKind::ContentFilter);
        // A string code is read like a type; an unknown one is a provider error, retried.
        let f = Failure::InBody {
            error: Box::new(
                ApiError::from_envelope(&json!({"error":{"code":"server_error"}})).unwrap(),
            ),
        };
        assert_eq!(classify(&f).kind, ErrorKind::ProviderError);
        assert!(retried(&f));
        let f = Failure::InBody {
            error: Box::new(
                ApiError::from_envelope(&json!({"error":{"code":400,"message":"bad"}})).unwrap(),
            ),
        };
        assert!(!retried(&f));
        let f = Failure::InBody {
            error: Box::new(
                ApiError::from_envelope(&json!({"error":{"code":"invalid_prompt","message":"x"}}))
                    .unwrap(),
            ),
        };
        assert_eq!(classify(&f), Verdict::give_up(ErrorKind::BadRequest));
    }

    #[test]
    fn daily_free_quota_stops_the_model_not_the_run() {
        let stop_model = Verdict {
            kind: ErrorKind::RateLimited,
            action: Action::StopModel,
        };
        // OpenRouter's wording, and variants of it.
        for msg in [
            "Rate limit exceeded: free-models-per-day. Add 10 credits to unlock 1000 free model requests per day",
            "Rate limit exceeded: FREE-MODELS-PER-DAY",
            "Daily limit for free models reached",
        ] {
            let f = http_body(429, json!({"error":{"code":429,"message":msg}}));
            assert_eq!(classify(&f), stop_model, "{msg}");
        }
        // Headers alone: nothing left and the window resets in hours.
        let f = Failure::Http {
            status: 429,
            error: None,
            retry_after: None,
            limit_reset: Some(Duration::from_secs(5 * 3600)),
        };
        assert_eq!(classify(&f), stop_model);
        // A per-minute free limit, an ordinary 429, or a daily word on another status: retried
        // or handled as before.
        let f = Failure::Http {
            status: 429,
            error: None,
            retry_after: None,
            limit_reset: Some(Duration::from_secs(40)),
        };
        assert!(retried(&f));
        let f = http_body(
            429,
            json!({"error":{"code":429,"message":"Rate limit exceeded: free-models-per-min."}}),
        );
        assert!(retried(&f));
        assert!(retried(&http(429)));
        let f = http_body(
            400,
            json!({"error":{"code":400,"message":"free-models-per-day"}}),
        );
        assert_eq!(classify(&f).action, Action::GiveUp);
    }

    #[test]
    fn backoff_grows_to_the_cap_with_full_jitter() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        assert_eq!(b.ceiling(1), Duration::from_millis(100));
        assert_eq!(b.ceiling(2), Duration::from_millis(200));
        assert_eq!(b.ceiling(4), Duration::from_millis(800));
        assert_eq!(b.ceiling(5), Duration::from_secs(1));
        assert_eq!(b.ceiling(100), Duration::from_secs(1));
        assert_eq!(b.pause(3, 0.0), Duration::ZERO);
        assert_eq!(b.pause(3, 0.5), Duration::from_millis(200));
    }
}
