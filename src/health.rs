//! Whether the server can work at all, judged from the first failures: a run against a wrong
//! base URL, a server that is down, or `https://` to a plain-HTTP server stops with one
//! message instead of failing every row one by one (or retrying each of them six times).
//!
//! Every alarm needs that **no request has succeeded yet**: once one has, the URL and the
//! server are proven, and failures are the rows' own.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::endpoint::Endpoint;
use crate::retry::Failure;

/// Consecutive attempts that could not connect, with no success at all, after which the
/// server is taken to be down.
pub const DOWN_AFTER: u32 = 8;

/// Why the run cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alarm {
    /// The inference path is not served here (404 not about a model, or 405): the base URL
    /// or the endpoint is wrong. A configuration error (exit 2).
    NoSuchPath(String),
    /// `https://` against a server that speaks plain HTTP. A configuration error (exit 2).
    NotTls(String),
    /// Nothing answers: every attempt so far failed to connect (exit 3).
    Down(String),
}

impl Alarm {
    /// Whether this is the user's configuration (exit 2) rather than the server's state.
    pub fn is_config(&self) -> bool {
        !matches!(self, Alarm::Down(_))
    }
}

/// What the failures so far say.
#[derive(Debug, Default)]
pub struct Health {
    succeeded: AtomicBool,
    cannot_connect: AtomicU32,
}

impl Health {
    /// An attempt got an answer (any answer proves the URL).
    pub fn on_success(&self) {
        self.succeeded.store(true, Ordering::Relaxed);
    }

    /// A failed attempt of a request to `model` at `url` (the full inference URL); the alarm,
    /// if this failure shows that the run cannot work.
    pub fn on_failure(
        &self,
        failure: &Failure,
        endpoint: Endpoint,
        model: &str,
        url: &str,
    ) -> Option<Alarm> {
        if self.succeeded.load(Ordering::Relaxed) {
            return None;
        }
        let connect = matches!(failure, Failure::Connection(_));
        let streak = if connect {
            self.cannot_connect.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.cannot_connect.store(0, Ordering::Relaxed);
            0
        };
        match failure {
            Failure::Connection(msg) if speaks_plain_http(msg) => Some(Alarm::NotTls(format!(
                "{url}: the server does not speak TLS ({msg}); use http:// instead of \
                 https:// in --base-url"
            ))),
            Failure::Connection(msg) if streak >= DOWN_AFTER => Some(Alarm::Down(format!(
                "{url}: {streak} attempts in a row could not connect and none has succeeded \
                 ({msg}); is the server up and --base-url right?"
            ))),
            Failure::Http { status, error, .. }
                if *status == 405
                    || (*status == 404
                        && !about_a_model(error.as_ref().map(|e| e.message.as_str()), model)) =>
            {
                let path = endpoint.path();
                let hint = match endpoint {
                    Endpoint::Responses => {
                        "; this server may not have the Responses API: try --endpoint chat"
                    }
                    Endpoint::Chat => "",
                };
                Some(Alarm::NoSuchPath(format!(
                    "POST {url} answered HTTP {status}: this server does not serve {path}. \
                     --base-url is the API root: https://openrouter.ai/api/v1 for OpenRouter, \
                     usually ending in /v1 for OpenAI-compatible servers{hint}"
                )))
            }
            _ => None,
        }
    }
}

/// rustls' words for a plain-HTTP answer to a TLS hello.
fn speaks_plain_http(msg: &str) -> bool {
    msg.contains("InvalidContentType") || msg.contains("corrupt message")
}

/// Whether a 404's message is about the model (OpenRouter: "No endpoints found for m",
/// "m is not a valid model ID"), not about the path ("Not Found", an HTML page, nothing).
fn about_a_model(message: Option<&str>, model: &str) -> bool {
    let Some(m) = message else { return false };
    let lower = m.to_ascii_lowercase();
    lower.contains("model")
        || lower.contains("endpoint")
        || lower.contains("provider")
        || (!model.is_empty() && m.contains(model))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::error::ApiError;

    const URL: &str = "http://127.0.0.1:9/chat/completions";

    fn http(status: u16, message: Option<&str>) -> Failure {
        Failure::Http {
            status,
            error: message.map(|m| {
                Box::new(ApiError {
                    code: None,
                    message: m.to_owned(),
                    error_type: None,
                    limit_source: None,
                    availability_retryable: None,
                    retry_after: None,
                    moderation: false,
                })
            }),
            retry_after: None,
            limit_reset: None,
        }
    }

    #[test]
    fn a_404_about_the_path_is_an_alarm_and_one_about_a_model_is_not() {
        let h = Health::default();
        let on = |f: &Failure| h.on_failure(f, Endpoint::Chat, "m/x", URL);
        for path_404 in [
            http(404, None),
            http(404, Some("Not Found")),
            http(405, None),
        ] {
            assert!(
                matches!(on(&path_404), Some(Alarm::NoSuchPath(_))),
                "{path_404:?}"
            );
        }
        for model_404 in [
            http(404, Some("No endpoints found for m/x.")),
            http(404, Some("m/x is not a valid model ID")),
            http(
                404,
                Some("No allowed providers are available for the selected model."),
            ),
            http(400, None),
        ] {
            assert_eq!(on(&model_404), None, "{model_404:?}");
        }
        let responses = h.on_failure(&http(404, None), Endpoint::Responses, "m/x", URL);
        let Some(Alarm::NoSuchPath(msg)) = responses else {
            panic!("{responses:?}")
        };
        assert!(msg.contains("try --endpoint chat"), "{msg}");
    }

    #[test]
    fn the_server_is_down_after_a_streak_of_connection_failures_without_success() {
        let h = Health::default();
        let refused = Failure::Connection("connection refused".into());
        for _ in 1..DOWN_AFTER {
            assert_eq!(h.on_failure(&refused, Endpoint::Chat, "m", URL), None);
        }
        assert!(matches!(
            h.on_failure(&refused, Endpoint::Chat, "m", URL),
            Some(Alarm::Down(_))
        ));
        // Another kind of failure breaks the streak.
        let h = Health::default();
        for _ in 1..DOWN_AFTER {
            h.on_failure(&refused, Endpoint::Chat, "m", URL);
        }
        assert_eq!(
            h.on_failure(&http(500, None), Endpoint::Chat, "m", URL),
            None
        );
        assert_eq!(h.on_failure(&refused, Endpoint::Chat, "m", URL), None);
    }

    #[test]
    fn after_one_success_nothing_is_an_alarm() {
        let h = Health::default();
        h.on_success();
        assert_eq!(
            h.on_failure(&http(404, None), Endpoint::Chat, "m", URL),
            None
        );
        let refused = Failure::Connection("connection refused".into());
        for _ in 0..DOWN_AFTER * 2 {
            assert_eq!(h.on_failure(&refused, Endpoint::Chat, "m", URL), None);
        }
    }

    #[test]
    fn https_to_plain_http_is_a_configuration_error() {
        let h = Health::default();
        let tls = Failure::Connection(
            "error sending request: received corrupt message of type InvalidContentType".into(),
        );
        let alarm = h.on_failure(&tls, Endpoint::Chat, "m", URL);
        assert!(
            matches!(&alarm, Some(a @ Alarm::NotTls(_)) if a.is_config()),
            "{alarm:?}"
        );
    }
}
