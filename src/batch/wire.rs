//! The Batch API's shapes (BATCH.md §2–§3): the submit body with its keys in the order the
//! server's stream parser needs, the batch object read leniently, and result lines decoded
//! through the live lane's response decoders.

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::api::Answer;
use crate::api::error::ApiError;
use crate::endpoint::Endpoint;
use crate::job::Request;
use crate::output::record::{ErrorKind, RecordError};
use crate::retry::{Failure, classify, describe};

/// The batch `endpoint` of a request's endpoint.
pub fn endpoint_path(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Chat => "/v1/chat/completions",
        Endpoint::Responses => "/v1/responses",
    }
}

/// A request's `custom_id`: deterministic from its row and (id, model), at most 64 characters
/// of `[A-Za-z0-9_-]`.
pub fn custom_id(req: &Request) -> String {
    format!(
        "r{}-{:016x}",
        req.row,
        crate::hash::key64(&req.id, &req.model)
    )
}

/// A submit body being built: `endpoint`, `model` and `completion_window` first, `requests`
/// last (a body with `requests` before them is refused, BATCH.md §2).
pub struct Body {
    head: Vec<u8>,
    lines: Vec<u8>,
    count: usize,
}

/// A request body without `model` (each line inherits the batch's) and without `stream`.
struct Line<'a>(&'a Map<String, Value>);

impl serde::Serialize for Line<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        for (k, v) in self.0 {
            if k != "model" && k != "stream" {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

impl Body {
    pub fn new(endpoint: Endpoint, model: &str) -> Body {
        let mut head = Vec::with_capacity(128);
        head.extend_from_slice(b"{\"endpoint\":");
        push_json(&mut head, endpoint_path(endpoint));
        head.extend_from_slice(b",\"model\":");
        push_json(&mut head, model);
        head.extend_from_slice(b",\"completion_window\":\"24h\",\"requests\":[");
        Body {
            head,
            lines: Vec::new(),
            count: 0,
        }
    }

    /// The bytes one more line would add.
    pub fn line_bytes(custom_id: &str, body: &Map<String, Value>) -> Vec<u8> {
        let mut line = Vec::with_capacity(256);
        line.extend_from_slice(b"{\"custom_id\":");
        push_json(&mut line, custom_id);
        line.extend_from_slice(b",\"body\":");
        // A map of strings to JSON values always serializes.
        let _ = serde_json::to_writer(&mut line, &Line(body));
        line.push(b'}');
        line
    }

    pub fn push(&mut self, line: &[u8]) {
        if self.count > 0 {
            self.lines.push(b',');
        }
        self.lines.extend_from_slice(line);
        self.count += 1;
    }

    pub fn len(&self) -> usize {
        self.head.len() + self.lines.len() + 2
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn finish(self) -> Vec<u8> {
        let mut out = self.head;
        out.extend_from_slice(&self.lines);
        out.extend_from_slice(b"]}");
        out
    }
}

fn push_json(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

/// A batch object, read leniently (unknown statuses and fields are kept going).
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub id: String,
    pub model: String,
    pub status: String,
    pub created_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
    /// The inline result lines, when the object has them: each kept as its bytes and
    /// parsed when it is read, so a batch of 5,000 answers is never one JSON tree.
    pub results: Option<Vec<Box<RawValue>>>,
    pub error: Option<String>,
    /// What OpenRouter charged for the whole batch (`usage.cost`), once done.
    pub cost: Option<f64>,
}

/// The fields of a batch object read from its bytes, the result lines left unparsed.
#[derive(serde::Deserialize)]
struct Head {
    #[serde(default)]
    id: Value,
    #[serde(default)]
    model: Value,
    #[serde(default)]
    status: Value,
    #[serde(default)]
    created_at: Value,
    #[serde(default)]
    expires_at: Value,
    #[serde(default)]
    request_counts: Value,
    #[serde(default)]
    error: Value,
    #[serde(default)]
    usage: Value,
    #[serde(default)]
    results: Option<Vec<Box<RawValue>>>,
}

/// A page of `GET …/{id}/results`.
#[derive(serde::Deserialize)]
pub struct Page {
    #[serde(default)]
    pub data: Vec<Box<RawValue>>,
    #[serde(default)]
    pub has_more: bool,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

impl Batch {
    /// A batch object from the bytes of a `GET …/batches/{id}`.
    pub fn from_bytes(bytes: &[u8]) -> Option<Batch> {
        let head: Head = serde_json::from_slice(bytes).ok()?;
        let v = serde_json::json!({
            "id": head.id, "model": head.model, "status": head.status,
            "created_at": head.created_at, "expires_at": head.expires_at,
            "request_counts": head.request_counts, "error": head.error, "usage": head.usage,
        });
        let mut batch = Batch::from_json(&v)?;
        batch.results = head.results;
        Some(batch)
    }

    pub fn from_json(v: &Value) -> Option<Batch> {
        let id = v.get("id")?.as_str()?.to_owned();
        let counts = v.get("request_counts");
        let count = |k: &str| {
            counts
                .and_then(|c| c.get(k))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        Some(Batch {
            id,
            model: str_of(v, "model").unwrap_or_default(),
            status: str_of(v, "status").unwrap_or_default(),
            created_at: v.get("created_at").and_then(Value::as_i64),
            expires_at: v.get("expires_at").and_then(Value::as_i64),
            total: count("total"),
            completed: count("completed"),
            failed: count("failed"),
            results: v.get("results").and_then(Value::as_array).map(|lines| {
                lines
                    .iter()
                    .filter_map(|l| serde_json::value::to_raw_value(l).ok())
                    .collect()
            }),
            error: v
                .get("error")
                .and_then(|e| e.get("message").and_then(Value::as_str).or(e.as_str()))
                .map(crate::text::sanitize),
            cost: v
                .get("usage")
                .and_then(|u| u.get("cost"))
                .and_then(Value::as_f64),
        })
    }

    /// Done, one way or another: `completed`, `failed`, `expired`, `cancelled`.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.status.as_str(),
            "completed" | "failed" | "expired" | "cancelled"
        )
    }
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// One result line: its `custom_id`, and the answer or the error record it makes.
pub fn decode_line(
    endpoint: Endpoint,
    line: &Value,
) -> (Option<String>, Result<Answer, RecordError>) {
    let custom_id = str_of(line, "custom_id");
    if let Some(err) = line.get("error").filter(|e| !e.is_null()) {
        let error = ApiError::from_error_value(err);
        let error_type = err
            .get("type")
            .or(err.get("error_type"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = match error_type {
            t if t.contains("rate_limit") => ErrorKind::RateLimited,
            t if t.contains("invalid_request") => ErrorKind::BadRequest,
            t if t.contains("content") || t.contains("moderation") => ErrorKind::ContentFilter,
            t if t.contains("timeout") => ErrorKind::Timeout,
            _ => ErrorKind::ProviderError,
        };
        let code = error
            .error_type
            .clone()
            .map(Value::String)
            .or_else(|| (!error_type.is_empty()).then(|| Value::from(error_type)));
        let message = crate::text::sanitize(&error.message);
        return (
            custom_id,
            Err(RecordError {
                kind,
                status: None,
                code,
                message: if message.is_empty() {
                    "the batch line failed".to_owned()
                } else {
                    message
                },
            }),
        );
    }
    let Some(response) = line.get("response").filter(|r| r.is_object()) else {
        return (
            custom_id,
            Err(RecordError {
                kind: ErrorKind::InvalidResponse,
                status: None,
                code: None,
                message: "the batch result line has neither a response nor an error".into(),
            }),
        );
    };
    let status = response
        .get("status_code")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or(200);
    let body = response.get("body").cloned().unwrap_or(Value::Null);
    let decoded = if status >= 400 {
        Err(Failure::Http {
            status,
            error: ApiError::from_envelope(&body).map(Box::new),
            retry_after: None,
            limit_reset: None,
        })
    } else {
        match endpoint {
            Endpoint::Chat => crate::api::chat::parse_value(&body),
            Endpoint::Responses => crate::api::responses::parse_value(&body),
        }
    };
    (
        custom_id,
        decoded.map_err(|f| {
            let (status, code) = match &f {
                Failure::Http { status, error, .. } => (
                    Some(*status),
                    error
                        .as_ref()
                        .and_then(|e| e.error_type.clone().map(Value::String).or(e.code.clone())),
                ),
                Failure::InBody { error } => (Some(200), error.code.clone()),
                _ => (None, None),
            };
            RecordError {
                kind: classify(&f).kind,
                status,
                code,
                message: describe(&f),
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The server stream-parses the body: every scalar field before `requests`.
    #[test]
    fn submit_bodies_put_requests_last_and_lines_inherit_the_model() {
        let mut body = Body::new(Endpoint::Chat, "openai/gpt-4o-mini:batch");
        let Value::Object(req) = json!({"model": "openai/gpt-4o-mini", "stream": false,
            "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5})
        else {
            unreachable!()
        };
        body.push(&Body::line_bytes("r1-x", &req));
        body.push(&Body::line_bytes("r2-y", &req));
        let bytes = body.finish();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.starts_with(
                r#"{"endpoint":"/v1/chat/completions","model":"openai/gpt-4o-mini:batch","completion_window":"24h","requests":[{"custom_id":"r1-x","body":{"max_tokens":5,"messages""#
            ),
            "{text}"
        );
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["requests"].as_array().unwrap().len(), 2);
        assert!(v["requests"][0]["body"].get("model").is_none());
        assert!(v["requests"][0]["body"].get("stream").is_none());
        assert!(v.get("metadata").is_none());
    }

    #[test]
    fn lines_decode_to_answers_or_the_usual_error_kinds() {
        let ok = json!({"custom_id": "a", "error": null, "response": {"status_code": 200,
            "body": {"id": "gen-batch-1", "model": "m", "choices": [{"finish_reason": "stop",
            "message": {"content": "hello"}}], "usage": {"prompt_tokens": 3,
            "completion_tokens": 1, "total_tokens": 4, "cost": 1.5e-5}}}});
        let (id, answer) = decode_line(Endpoint::Chat, &ok);
        let answer = answer.unwrap();
        assert_eq!(id.as_deref(), Some("a"));
        assert_eq!(answer.output, "hello");
        assert_eq!(answer.generation_id.as_deref(), Some("gen-batch-1"));
        assert_eq!(answer.usage.unwrap().cost, Some(1.5e-5));
        let failed = json!({"custom_id": "b", "response": null,
            "error": {"message": "Provider returned error", "type": "provider_error"}});
        let e = decode_line(Endpoint::Chat, &failed).1.unwrap_err();
        assert_eq!(e.kind, ErrorKind::ProviderError);
        let http = json!({"custom_id": "c", "error": null, "response": {"status_code": 400,
            "body": {"error": {"code": 400, "message": "max_tokens must be at least 1"}}}});
        let e = decode_line(Endpoint::Chat, &http).1.unwrap_err();
        assert_eq!((e.kind, e.status), (ErrorKind::BadRequest, Some(400)));
        let nothing = json!({"custom_id": "d"});
        let e = decode_line(Endpoint::Chat, &nothing).1.unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidResponse);
    }

    #[test]
    fn batch_objects_are_read_leniently() {
        let b = Batch::from_json(&json!({"id": "batch-1", "status": "finalizing",
            "request_counts": {"total": 3}, "results": null, "error": null}))
        .unwrap();
        assert!(!b.is_terminal());
        assert_eq!((b.total, b.results.is_none()), (3, true));
        let bytes = br#"{"id":"batch-3","status":"completed","request_counts":{"total":2},
            "usage":{"cost":1e-5},"results":[{"custom_id":"a"},{"custom_id":"b"}],"x":[1]}"#;
        let b = Batch::from_bytes(bytes).unwrap();
        let lines = b.results.unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].get(), r#"{"custom_id":"b"}"#);
        assert_eq!(b.cost, Some(1e-5));
        let b = Batch::from_json(&json!({"id": "batch-2", "status": "failed",
            "error": {"message": "requests[0] bad"}}))
        .unwrap();
        assert!(b.is_terminal());
        assert_eq!(b.error.as_deref(), Some("requests[0] bad"));
        assert!(Batch::from_json(&json!({"status": "completed"})).is_none());
    }
}
