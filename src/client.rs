//! The HTTP client: one `reqwest::Client` (pooled connections, HTTP/2 where offered), the
//! headers OpenRouter expects, a per-attempt timeout, and one `send` per attempt that turns
//! whatever happened on the wire into an [`Attempt`].

use std::fmt;
use std::time::{Duration, Instant};

use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::api::error::{ApiError, parse_limit_reset, parse_retry_after};
use futures::StreamExt;

use crate::api::stream::{Step, StreamState};
use crate::api::{Answer, chat, responses, sse};
use crate::endpoint::Endpoint;
use crate::job::Request;
use crate::output::record::ErrorKind;
use crate::retry::Failure;

/// The API key. Its `Debug` and `Display` never show it; it only ever leaves this type as a
/// sensitive header value.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }

    /// The key itself, for tests that check where it was read from.
    #[cfg(test)]
    pub fn expose_for_test(&self) -> &str {
        &self.0
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
    /// `None` sends no `Authorization` (public endpoints only).
    pub key: Option<ApiKey>,
    /// Per attempt, from sending to the last byte.
    pub timeout: Duration,
    pub app_url: Option<String>,
    pub app_title: Option<String>,
    /// `-H` headers (values marked sensitive: `Debug` does not show them).
    pub headers: Vec<(HeaderName, HeaderValue)>,
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
    /// The server answered (a status line came back): `false` when the connection failed or
    /// nothing was sent, so nothing can have been billed.
    pub responded: bool,
}

/// The answer to a `GET`.
#[derive(Debug, Clone)]
pub struct GetResponse {
    pub status: u16,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: serde_json::Value,
    pub retry_after: Option<Duration>,
}

impl GetResponse {
    /// The OpenRouter error envelope, when the body is one.
    pub fn error(&self) -> Option<ApiError> {
        ApiError::from_envelope(&self.body)
    }
}

/// An answer whose body is left as bytes.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub bytes: bytes::Bytes,
    pub retry_after: Option<Duration>,
}

/// A configured OpenRouter client; cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    timeout: Duration,
    /// The inference URLs, parsed once (not per request): chat, responses.
    posts: [Option<reqwest::Url>; 2],
}

/// The `User-Agent`: `orbatch/VERSION`.
pub fn user_agent() -> String {
    format!("orbatch/{}", env!("CARGO_PKG_VERSION"))
}

impl Client {
    pub fn new(config: &ClientConfig) -> anyhow::Result<Client> {
        let mut headers = HeaderMap::new();
        if let Some(key) = &config.key {
            let auth = key.header().ok_or_else(|| {
                anyhow::anyhow!("the API key contains characters that cannot be sent in a header")
            })?;
            headers.insert(header::AUTHORIZATION, auth);
        }
        if let Some(url) = &config.app_url {
            headers.insert("HTTP-Referer", header_value(url, "--app-url")?);
        }
        if let Some(title) = &config.app_title {
            let v = header_value(title, "--app-title")?;
            headers.insert("X-OpenRouter-Title", v.clone());
            headers.insert("X-Title", v);
        }
        for (name, value) in &config.headers {
            headers.insert(name.clone(), value.clone());
        }
        let http = reqwest::Client::builder()
            .user_agent(user_agent())
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(30).min(config.timeout))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()?;
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        let parse = |e: Endpoint| reqwest::Url::parse(&format!("{base_url}{}", e.path())).ok();
        let posts = [parse(Endpoint::Chat), parse(Endpoint::Responses)];
        Ok(Client {
            http,
            base_url,
            timeout: config.timeout,
            posts,
        })
    }

    /// `GET base_url + path` (path may carry a query), within the timeout. Transport
    /// failures come back as a [`Failure`]; any HTTP status comes back as a [`GetResponse`].
    pub async fn get(&self, path: &str) -> Result<GetResponse, Failure> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// `method base_url + path` with an optional JSON body, within the timeout; as
    /// [`Client::get`], any HTTP status comes back as a [`GetResponse`].
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<GetResponse, Failure> {
        self.call_bytes(method, path, body.map(|b| b.to_string().into_bytes()))
            .await
    }

    /// As [`Client::call`], with a JSON body already serialized (the Batch API needs its
    /// keys in a fixed order).
    pub async fn call_bytes(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<GetResponse, Failure> {
        let raw = self.raw(method, path, body).await?;
        Ok(GetResponse {
            status: raw.status,
            body: serde_json::from_slice(&raw.bytes).unwrap_or(serde_json::Value::Null),
            retry_after: raw.retry_after,
        })
    }

    /// `GET` with the body as bytes, not parsed: for large answers read piece by piece (a
    /// batch's inline results).
    pub async fn get_raw(&self, path: &str) -> Result<RawResponse, Failure> {
        self.raw(reqwest::Method::GET, path, None).await
    }

    async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse, Failure> {
        let work = async {
            let mut request = self.http.request(method, self.url(path));
            if let Some(body) = body {
                request = request
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(body);
            }
            let resp = request.send().await.map_err(transport_failure)?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, jiff::Timestamp::now()));
            let bytes = resp.bytes().await.map_err(body_failure)?;
            Ok(RawResponse {
                status,
                bytes,
                retry_after,
            })
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or(Err(Failure::Timeout))
    }

    /// `base_url` + `path`, or `path` itself when it is a whole URL.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            return path.to_owned();
        }
        format!("{}{}", self.base_url, path)
    }

    /// Send one attempt of `req`. Plain requests must finish within the timeout; streams
    /// must not stay silent for longer than it (an idle timeout, so long answers that keep
    /// streaming are not cut off).
    pub async fn send(&self, req: &Request, stream: bool) -> Attempt {
        let start = Instant::now();
        let mut meta = Meta::default();
        let result = match request_body(req, stream) {
            Err(e) => Err(Failure::Unusable {
                kind: ErrorKind::BadRequest,
                retry: false,
                message: format!("cannot encode the request body: {e}"),
            }),
            Ok(body) if stream => {
                self.exchange_stream(req.endpoint, body, start, &mut meta)
                    .await
            }
            Ok(body) => {
                let work = self.exchange(req.endpoint, body, &mut meta);
                tokio::time::timeout(self.timeout, work)
                    .await
                    .unwrap_or(Err(Failure::Timeout))
            }
        };
        Attempt {
            result,
            generation_id: meta.generation_id,
            latency: start.elapsed(),
            ttft: meta.ttft,
            responded: meta.responded,
        }
    }

    /// POST the body; a non-2xx status becomes a failure with its parsed error envelope.
    async fn post(
        &self,
        endpoint: Endpoint,
        body: Vec<u8>,
        meta: &mut Meta,
    ) -> Result<reqwest::Response, Failure> {
        let slot = match endpoint {
            Endpoint::Chat => 0,
            Endpoint::Responses => 1,
        };
        // An unparsable URL is left to reqwest, which reports it as a failed attempt.
        let request = match &self.posts[slot] {
            Some(url) => self.http.post(url.clone()),
            None => self.http.post(self.url(endpoint.path())),
        };
        let resp = request
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(transport_failure)?;
        meta.responded = true;
        let status = resp.status().as_u16();
        let headers = resp.headers();
        meta.generation_id = headers
            .get("x-generation-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let retry_after = headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, jiff::Timestamp::now()));
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let limit_reset = parse_limit_reset(
            text("x-ratelimit-remaining"),
            text("x-ratelimit-reset"),
            jiff::Timestamp::now(),
        );
        let bytes = resp.bytes().await.unwrap_or_default();
        let error = serde_json::from_slice(&bytes)
            .ok()
            .and_then(|v| ApiError::from_envelope(&v))
            .map(Box::new);
        Err(Failure::Http {
            status,
            error,
            retry_after,
            limit_reset,
        })
    }

    async fn exchange(
        &self,
        endpoint: Endpoint,
        body: Vec<u8>,
        meta: &mut Meta,
    ) -> Result<Answer, Failure> {
        let resp = self.post(endpoint, body, meta).await?;
        let bytes = resp.bytes().await.map_err(body_failure)?;
        let parsed = match endpoint {
            Endpoint::Chat => chat::parse_body(&bytes),
            Endpoint::Responses => responses::parse_body(&bytes),
        };
        if meta.generation_id.is_none() {
            meta.generation_id = match &parsed {
                Ok(a) => a.generation_id.clone(),
                Err(_) => body_id(&bytes),
            };
        }
        parsed
    }

    async fn exchange_stream(
        &self,
        endpoint: Endpoint,
        body: Vec<u8>,
        start: Instant,
        meta: &mut Meta,
    ) -> Result<Answer, Failure> {
        let resp = tokio::time::timeout(self.timeout, self.post(endpoint, body, meta))
            .await
            .unwrap_or(Err(Failure::Timeout))?;
        let mut chunks = resp.bytes_stream();
        let mut parser = sse::Parser::new();
        let mut state = StreamState::new(endpoint);
        let mut events = Vec::new();
        let deadline =
            tokio::time::Instant::now() + self.timeout.saturating_mul(STREAM_TOTAL_FACTOR);
        'read: loop {
            let idle = tokio::time::Instant::now() + self.timeout;
            let next = tokio::time::timeout_at(idle.min(deadline), chunks.next()).await;
            let chunk = match next {
                Err(_) => {
                    note_stream_id(meta, &state);
                    return Err(Failure::Timeout);
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    note_stream_id(meta, &state);
                    return Err(body_failure(e));
                }
                Ok(Some(Ok(c))) => c,
            };
            events.clear();
            if let Err(e) = parser.feed(&chunk, &mut events) {
                note_stream_id(meta, &state);
                return Err(Failure::Invalid(e.to_string()));
            }
            for ev in &events {
                match state.on_event(ev) {
                    Step::FirstContent => {
                        meta.ttft.get_or_insert(start.elapsed());
                    }
                    Step::End => break 'read,
                    Step::More => {}
                }
            }
        }
        note_stream_id(meta, &state);
        state.finish()
    }
}

/// A stream may run this many timeouts in all (keep-alives alone cannot hold it forever).
const STREAM_TOTAL_FACTOR: u32 = 10;

/// What an attempt learns besides its result.
#[derive(Debug, Default)]
struct Meta {
    generation_id: Option<String>,
    ttft: Option<Duration>,
    responded: bool,
}

/// A stream's generation id, when the header did not carry one.
fn note_stream_id(meta: &mut Meta, state: &StreamState) {
    if meta.generation_id.is_none() {
        meta.generation_id = state.generation_id().map(str::to_owned);
    }
}

/// A body that broke off while being read.
fn body_failure(e: reqwest::Error) -> Failure {
    if e.is_timeout() {
        Failure::Timeout
    } else {
        Failure::Connection(format!("the response body broke off: {}", error_chain(&e)))
    }
}

/// The JSON body of an attempt: the request body plus `stream` when streaming, and for a
/// streamed chat request `stream_options.include_usage` unless the row set `stream_options`
/// itself: OpenRouter sends usage anyway, but OpenAI-compatible servers (vLLM, LiteLLM,
/// llama.cpp) send it only when asked, and without it tokens and cost are unknown. Neither is
/// part of the fingerprint, so switching transport does not resend answered rows.
fn request_body(req: &Request, stream: bool) -> serde_json::Result<Vec<u8>> {
    if stream {
        let mut body = req.body.clone();
        body.insert("stream".into(), true.into());
        if req.endpoint == crate::endpoint::Endpoint::Chat && !body.contains_key("stream_options") {
            body.insert(
                "stream_options".into(),
                serde_json::json!({"include_usage": true}),
            );
        }
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
    fn streamed_chat_asks_for_usage_unless_the_row_says_otherwise() {
        let body = |req: &Request, stream| -> serde_json::Value {
            serde_json::from_slice(&request_body(req, stream).unwrap()).unwrap()
        };
        let mut req = crate::job::test_request("m", None);
        let plain = body(&req, false);
        assert!(plain.get("stream").is_none() && plain.get("stream_options").is_none());
        let streamed = body(&req, true);
        assert_eq!(streamed["stream"], true);
        assert_eq!(
            streamed["stream_options"],
            serde_json::json!({"include_usage": true})
        );
        req.body.insert(
            "stream_options".into(),
            serde_json::json!({"include_usage": false}),
        );
        assert_eq!(
            body(&req, true)["stream_options"],
            serde_json::json!({"include_usage": false})
        );
        req.endpoint = crate::endpoint::Endpoint::Responses;
        req.body.remove("stream_options");
        assert!(body(&req, true).get("stream_options").is_none());
    }

    #[test]
    fn key_never_shows_in_debug() {
        let key = ApiKey::new("sk-or-v1-SECRETSECRET");
        assert!(!format!("{key:?}").contains("SECRET"));
        let cfg = ClientConfig {
            base_url: "http://x".into(),
            key: Some(key),
            timeout: Duration::from_secs(1),
            app_url: None,
            app_title: None,
            headers: vec![(HeaderName::from_static("x-api-key"), {
                let mut v = HeaderValue::from_static("HEADERSECRET");
                v.set_sensitive(true);
                v
            })],
        };
        assert!(!format!("{cfg:?}").contains("SECRET"));
        let client = Client::new(&cfg).unwrap();
        assert!(!format!("{client:?}").contains("SECRET"));
    }
}
