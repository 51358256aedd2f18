//! What can go wrong with an inference request, and the OpenRouter-shaped error answers the
//! mock sends for it (error envelope, `error.metadata.error_type`, `Retry-After`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A fault chosen for one attempt (by a directive or by the probabilistic knobs).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// An HTTP error status with the matching envelope.
    Status(u16),
    /// 402 in-flight budget (a rate signal, with `Retry-After`).
    Inflight402,
    /// 429 of a spent daily `:free` quota, shaped like OpenRouter's (FACTS §7.3).
    FreeDaily429,
    /// Connection closed with no response.
    Drop,
    /// 502 with an HTML page body.
    Html502,
    /// 200 whose body is only `{"error":…}`.
    Err200,
    /// 200 with `choices[0].error`, `finish_reason:"error"` and partial content.
    ChoiceError,
    /// 200 with an empty body.
    Empty200,
    /// 200 with body `not json`.
    Garbage200,
    /// Headers, then no body byte for an hour.
    Stall,
    /// Streams: some chunks, then an error chunk (non-streaming: same as `ChoiceError`).
    MidStreamError,
    /// Streams end early without usage/[DONE]; non-streaming bodies are cut mid-JSON.
    Truncate,
    /// Streams: some content deltas, then `[DONE]` with no finish chunk and no usage, as
    /// llama.cpp's server (llama-cpp-python) ends a stream that another request interrupts;
    /// non-streaming: as `Truncate`.
    Interrupted,
    /// 200 ok with empty content and `finish_reason:"length"`.
    LengthEmpty,
    /// 200 ok with empty content and `finish_reason:"content_filter"`.
    ContentFilter,
}

/// HTTP statuses accepted as directive faults.
const DIRECTIVE_STATUSES: &[u16] = &[
    400, 401, 402, 403, 404, 408, 413, 422, 429, 500, 502, 503, 504, 524, 529,
];

/// The 5xx statuses `--rate-5xx` picks from.
pub const RANDOM_5XX: &[u16] = &[500, 502, 503, 504, 524, 529];

impl Fault {
    /// Parse a directive fault name (`429`, `drop`, `err200`, …).
    pub fn from_name(name: &str) -> Option<Fault> {
        if let Ok(code) = name.parse::<u16>() {
            return DIRECTIVE_STATUSES
                .contains(&code)
                .then_some(Fault::Status(code));
        }
        Some(match name {
            "402-inflight" => Fault::Inflight402,
            "429-free-daily" => Fault::FreeDaily429,
            "drop" => Fault::Drop,
            "html502" => Fault::Html502,
            "err200" => Fault::Err200,
            "choice-error" => Fault::ChoiceError,
            "empty200" => Fault::Empty200,
            "garbage200" => Fault::Garbage200,
            "stall" => Fault::Stall,
            "mid-stream-error" => Fault::MidStreamError,
            "truncate" => Fault::Truncate,
            "interrupted" => Fault::Interrupted,
            "length-empty" => Fault::LengthEmpty,
            "content-filter" => Fault::ContentFilter,
            _ => return None,
        })
    }
}

/// `error.metadata.error_type` and message for an HTTP error status.
pub fn describe(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => ("invalid_request", "Invalid request"),
        401 => ("authentication", "No auth credentials found"),
        402 => (
            "payment_required",
            "Insufficient credits. Add more using https://openrouter.ai/credits",
        ),
        403 => ("permission_denied", "Request blocked by moderation"),
        404 => ("not_found", "No endpoints found for this model"),
        408 => ("timeout", "Request timed out"),
        413 => ("payload_too_large", "Payload too large"),
        422 => ("unprocessable", "Unprocessable request"),
        429 => ("rate_limit_exceeded", "Rate limit exceeded"),
        500 => ("server", "Internal Server Error"),
        502 => ("provider_unavailable", "Provider returned error"),
        503 => (
            "provider_overloaded",
            "No available provider could handle the request",
        ),
        504 => ("timeout", "Provider timed out"),
        524 => ("timeout", "Infrastructure timeout"),
        529 => ("provider_overloaded", "Provider overloaded"),
        _ => ("server", "Error"),
    }
}

/// The OpenRouter error object `{code, message, metadata:{error_type}}`.
pub fn error_object(code: u16, message: &str, error_type: &str) -> Value {
    json!({ "code": code, "message": message, "metadata": { "error_type": error_type } })
}

/// A JSON response with the error envelope `{"error":{…},"user_id":…}`.
pub fn envelope(status: u16, error: Value) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({ "error": error, "user_id": "user_mock" });
    (code, axum::Json(body)).into_response()
}

/// The standard error answer for `status`, with `Retry-After` when given.
pub fn status_response(status: u16, retry_after: Option<u64>) -> Response {
    let (error_type, message) = describe(status);
    let mut resp = envelope(status, error_object(status, message, error_type));
    set_retry_after(&mut resp, retry_after);
    resp
}

/// A 400 with `message` (bad body, missing field, invalid model).
pub fn bad_request(message: &str) -> Response {
    envelope(400, error_object(400, message, "invalid_request"))
}

/// A 401 (never echoes the key that was sent).
pub fn unauthorized() -> Response {
    status_response(401, None)
}

/// The 402 of an in-flight budget: transient, `limit_source` marks it, `Retry-After` set.
pub fn inflight_402(retry_after: u64) -> Response {
    let error = json!({
        "code": 402,
        "message": "Too many requests in flight for your balance; retry shortly",
        "metadata": {
            "error_type": "payment_required",
            "limit_source": "openrouter_in_flight_budget",
            "reason": "in_flight_budget_exhausted",
            "retry_after_seconds": retry_after
        }
    });
    let mut resp = envelope(402, error);
    set_retry_after(&mut resp, Some(retry_after));
    resp
}

/// The 429 OpenRouter sends once the account's `:free` requests for the UTC day are used up:
/// `X-RateLimit-*` headers (reset = next UTC midnight, epoch ms), mirrored in
/// `metadata.headers`, and a message naming `free-models-per-day`.
pub fn free_daily_429(now: jiff::Timestamp) -> Response {
    let reset = next_utc_midnight_ms(now);
    let headers = json!({
        "X-RateLimit-Limit": "50",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": reset.to_string()
    });
    let error = json!({
        "code": 429,
        "message": "Rate limit exceeded: free-models-per-day. Add 10 credits to unlock 1000 free model requests per day",
        "metadata": { "headers": headers, "provider_name": null }
    });
    let mut resp = envelope(429, error);
    let h = resp.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from_static("50"));
    h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
    h.insert("x-ratelimit-reset", HeaderValue::from(reset));
    resp
}

/// The next UTC midnight after `now`, in epoch milliseconds.
fn next_utc_midnight_ms(now: jiff::Timestamp) -> i64 {
    const DAY_MS: i64 = 86_400_000;
    (now.as_millisecond().div_euclid(DAY_MS) + 1) * DAY_MS
}

/// A 502 whose body is an HTML page (a proxy error page, not JSON).
pub fn html_502() -> Response {
    let page = "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>\
                <body><h1>502 Bad Gateway</h1><p>cloudflare</p></body></html>";
    let mut resp = (StatusCode::BAD_GATEWAY, page).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=UTF-8"),
    );
    resp
}

/// The error object of a provider failure inside a 200 (`provider_unavailable`, 502).
pub fn provider_error(provider: &str) -> Value {
    json!({
        "code": 502,
        "message": "Provider returned error",
        "metadata": { "error_type": "provider_unavailable", "provider_name": provider }
    })
}

/// Add `Retry-After: secs` when `secs` is set.
pub fn set_retry_after(resp: &mut Response, secs: Option<u64>) {
    if let Some(secs) = secs {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        assert_eq!(Fault::from_name("529"), Some(Fault::Status(529)));
        assert_eq!(Fault::from_name("200"), None);
        assert_eq!(Fault::from_name("402-inflight"), Some(Fault::Inflight402));
        assert_eq!(
            Fault::from_name("429-free-daily"),
            Some(Fault::FreeDaily429)
        );
        assert_eq!(
            Fault::from_name("content-filter"),
            Some(Fault::ContentFilter)
        );
    }

    #[test]
    fn free_daily_quota_resets_at_the_next_utc_midnight() {
        let noon =
            jiff::Timestamp::from_second(1_800_000_000 - 1_800_000_000 % 86_400 + 43_200).unwrap();
        let reset = next_utc_midnight_ms(noon);
        assert_eq!(reset - noon.as_millisecond(), 43_200_000);
        let resp = free_daily_429(noon);
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()["x-ratelimit-remaining"], "0");
        assert_eq!(
            resp.headers()["x-ratelimit-reset"],
            reset.to_string().as_str()
        );
    }
}
