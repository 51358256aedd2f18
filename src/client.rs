//! The HTTP client: one `reqwest::Client` (pooled connections, HTTP/2 where offered), the
//! headers OpenRouter expects, a per-attempt timeout, and one `send` per attempt that turns
//! whatever happened on the wire into an [`Attempt`].

use std::fmt;
use std::time::{Duration, Instant};

use reqwest::header::{self, HeaderMap, HeaderValue};

use crate::api::error::{ApiError, parse_retry_after};
use crate::api::{Answer, chat, responses};
use crate::endpoint::Endpoint;
use crate::job::Request;
use crate::retry::Failure;

/// The API key. Its `Debug` and `Display` never show it; it only ever leaves this type as a
/// sensitive header value.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }

    /// Read the key from the environment variable `var`.
    pub fn from_env(var: &str) -> Option<ApiKey> {
        std::env::var(var)
            .ok()
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .map(ApiKey)
    }

    fn header(&self) -> Option<HeaderValue> {
        let mut v = HeaderValue::from_str(&format!("Bearer {}", self.0)).ok()?;
        v.set_sensitive(true);
        Some(v)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// What the client needs to know.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// e.g. `https://openrouter.ai/api/v1` (no trailing slash needed).
    pub base_url: String,
    pub key: ApiKey,
    /// Per attempt, from sending to the last byte.
    pub timeout: Duration,
    pub app_url: Option<String>,
    pub app_title: Option<String>,
}

/// The outcome of one attempt.
#[derive(Debug)]
pub struct Attempt {
    pub result: Result<Answer, Failure>,
    /// The generation id, from the `X-Generation-Id` header or the body, even on failure.
    pub generation_id: Option<String>,
    pub latency: Duration,
    /// Time to the first content token (streams only).
    pub ttft: Option<Duration>,
}

/// A configured OpenRouter client; cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    timeout: Duration,
}

/// `orbatch/VERSION (+https://github.com/orbatch/orbatch)`.
pub fn user_agent() -> String {
    format!("orbatch/{}", env!("CARGO_PKG_VERSION"))
}

impl Client {
    pub fn new(config: &ClientConfig) -> anyhow::Result<Client> {
        let mut headers = HeaderMap::new();
        let auth = config.key.header().ok_or_else(|| {
            anyhow::anyhow!("the API key contains characters that cannot be sent in a header")
        })?;
        headers.insert(header::AUTHORIZATION, auth);
        if let Some(url) = &config.app_url {
            headers.insert("HTTP-Referer", header_value(url, "--app-url")?);
        }
        if let Some(title) = &config.app_title {
            let v = header_value(title, "--app-title")?;
            headers.insert("X-OpenRouter-Title", v.clone());
            headers.insert("X-Title", v);
        }
        let http = reqwest::Client::builder()
            .user_agent(user_agent())
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(30).min(config.timeout))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()?;
        Ok(Client {
            http,
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            timeout: config.timeout,
        })
    }

    /// The underlying HTTP client (for `GET` endpoints such as `/generation`).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `base_url` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// Send one attempt of `req`.
    pub async fn send(&self, req: &Request, stream: bool) -> Attempt {
        let start = Instant::now();
        let body = match request_body(req, stream) {
            Ok(b) => b,
            Err(e) => {
                return Attempt {
                    result: Err(Failure::Unusable {
                        kind: crate::output::record::ErrorKind::BadRequest,
                        retry: false,
                        message: format!("cannot encode the request body: {e}"),
                    }),
                    generation_id: None,
                    latency: start.elapsed(),
                    ttft: None,
                };
            }
        };
        let mut generation_id = None;
        let work = self.exchange(req.endpoint, body, &mut generation_id);
        let result = match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(Failure::Timeout),
        };
        Attempt {
            result,
            generation_id,
            latency: start.elapsed(),
            ttft: None,
        }
    }

    async fn exchange(
        &self,
        endpoint: Endpoint,
        body: Vec<u8>,
        generation_id: &mut Option<String>,
    ) -> Result<Answer, Failure> {
        let resp = self
            .http
            .post(self.url(endpoint.path()))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(transport_failure)?;
        let status = resp.status().as_u16();
        let headers = resp.headers();
        *generation_id = headers
            .get("x-generation-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let retry_after = headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, jiff::Timestamp::now()));
        let bytes = resp.bytes().await.map_err(|e| {
            if e.is_timeout() {
                Failure::Timeout
            } else {
                Failure::Connection(format!("the response body broke off: {}", error_chain(&e)))
            }
        })?;
        if !(200..300).contains(&status) {
            let error = serde_json::from_slice(&bytes)
                .ok()
                .and_then(|v| ApiError::from_envelope(&v))
                .map(Box::new);
            return Err(Failure::Http {
                status,
                error,
                retry_after,
            });
        }
        let parsed = match endpoint {
            Endpoint::Chat => chat::parse_body(&bytes),
            Endpoint::Responses => responses::parse_body(&bytes),
        };
        if generation_id.is_none() {
            *generation_id = match &parsed {
                Ok(a) => a.generation_id.clone(),
                Err(_) => body_id(&bytes),
            };
        }
        parsed
    }
}

/// The JSON body of an attempt: the request body plus `stream` when streaming.
fn request_body(req: &Request, stream: bool) -> serde_json::Result<Vec<u8>> {
    if stream {
        let mut body = req.body.clone();
        body.insert("stream".into(), true.into());
        serde_json::to_vec(&body)
    } else {
        serde_json::to_vec(&req.body)
    }
}

/// The `id` of a 200 body that did not parse as an answer (a failed but billed generation).
fn body_id(bytes: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    v.get("id")?.as_str().map(str::to_owned)
}

fn header_value(v: &str, flag: &str) -> anyhow::Result<HeaderValue> {
    HeaderValue::from_str(v)
        .map_err(|_| anyhow::anyhow!("{flag}: {v:?} cannot be sent as an HTTP header value"))
}

/// Map a reqwest send error to a failure; timeouts are told apart.
fn transport_failure(e: reqwest::Error) -> Failure {
    if e.is_timeout() {
        Failure::Timeout
    } else {
        Failure::Connection(error_chain(&e))
    }
}

/// An error and its sources on one line ("error sending request: connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let s_msg = s.to_string();
        if !msg.contains(&s_msg) {
            msg.push_str(": ");
            msg.push_str(&s_msg);
        }
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_never_shows_in_debug() {
        let key = ApiKey::new("sk-or-v1-SECRETSECRET");
        assert!(!format!("{key:?}").contains("SECRET"));
        let cfg = ClientConfig {
            base_url: "http://x".into(),
            key,
            timeout: Duration::from_secs(1),
            app_url: None,
            app_title: None,
        };
        assert!(!format!("{cfg:?}").contains("SECRET"));
        let client = Client::new(&cfg).unwrap();
        assert!(!format!("{client:?}").contains("SECRET"));
    }
}
