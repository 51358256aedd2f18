//! The mock's Batch API (BATCH.md §1–§3, §6), under `/api/v1/batches` and `/api/beta/batches`:
//! submit (202 `validating`; `endpoint` and `model` must come before `requests`), get with the
//! statuses over `--batch-ms`, list, inline and paged results, and the ways it misbehaves —
//! 404s right after submit (`--batch-404s`), a 402 payment gate on results (`--batch-402`),
//! `completed` before its results are settled (`--batch-settle-polls`),
//! a submit stored but never answered (`--batch-drop-submits`), and per-prompt directives:
//! `[[mock:batch-fail]]` (the whole batch `failed`), `[[mock:batch-expire]]` (`expired`),
//! `[[mock:line-error]]` / `[[mock:line-400]]` (a failed line), `[[mock:line-missing]]` (left
//! out of the results). Lines are answered by the live mock's logic at half the list price.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::{Value, json};

use super::answer;
use super::inference::{self, Bill, Ctx};
use super::server::ConnKill;
use super::state::Shared;
use crate::endpoint::Endpoint;

/// What a batch line costs against the same request live.
pub const BATCH_FACTOR: f64 = 0.5;

/// Models the mock has no `:batch` endpoint for (and lists no `:batch` id for).
pub fn batchable(base: &str) -> bool {
    !base.starts_with("anthropic/") && !base.ends_with(":free")
}

/// Every batch submitted, by id, in order of creation.
#[derive(Default)]
pub struct Store {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    batches: Vec<Batch>,
    by_id: HashMap<String, usize>,
    submits: u64,
    lines: u64,
    gate_left: Option<u32>,
}

impl Store {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// (batches submitted, lines submitted): tests prove no row was submitted twice.
    pub fn counts(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.submits, inner.lines)
    }
}

struct Batch {
    id: String,
    endpoint: String,
    model: String,
    created_at: i64,
    created: Instant,
    gets: u32,
    /// Reads since it completed (for `--batch-settle-polls`).
    settled_reads: u32,
    lines: Vec<Line>,
    /// What the batch ends as, decided at submit from the directives in its lines.
    fate: Fate,
    /// The result lines, once materialised (answered and billed exactly once).
    results: Option<Vec<Value>>,
    key_hash: Option<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Fate {
    Complete,
    Fail(usize),
    Expire,
}

#[derive(Deserialize)]
struct Line {
    custom_id: Option<String>,
    body: Value,
}

/// The submit body, read in order: whether `endpoint` and `model` came before `requests`.
struct Submit {
    endpoint: Option<String>,
    model: Option<String>,
    requests: Vec<Line>,
    in_order: bool,
}

impl<'de> Deserialize<'de> for Submit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Submit;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a batch object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Submit, A::Error> {
                let mut s = Submit {
                    endpoint: None,
                    model: None,
                    requests: Vec::new(),
                    in_order: true,
                };
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "endpoint" => s.endpoint = map.next_value()?,
                        "model" => s.model = map.next_value()?,
                        "requests" => {
                            s.in_order &= s.endpoint.is_some() && s.model.is_some();
                            s.requests = map.next_value()?;
                        }
                        _ => {
                            // Any scalar field after `requests` breaks the stream parse too.
                            s.in_order &= s.requests.is_empty();
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(s)
            }
        }
        d.deserialize_map(V)
    }
}

fn error(status: u16, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        code,
        Json(json!({"error": {"code": status, "message": message}})),
    )
        .into_response()
}

fn endpoint_of(path: &str) -> Option<Endpoint> {
    match path {
        "/v1/chat/completions" => Some(Endpoint::Chat),
        "/v1/responses" => Some(Endpoint::Responses),
        _ => None,
    }
}

/// `POST /batches`.
pub async fn submit(
    State(state): State<Arc<Shared>>,
    kill: Option<Extension<ConnKill>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key_hash = match inference::who(&state, &headers) {
        Ok(k) => k,
        Err(resp) => return resp,
    };
    if let Some(max) = state.config.batch_max_bytes
        && body.len() > max
    {
        return error(
            413,
            &format!("Batch body is {} bytes; at most {max}", body.len()),
        );
    }
    let s: Submit = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return error(400, &format!("Invalid batch body: {e}")),
    };
    let (Some(endpoint), Some(model), true) = (s.endpoint.clone(), s.model.clone(), s.in_order)
    else {
        return error(
            400,
            "endpoint and model are required and must appear before requests in the request body",
        );
    };
    if endpoint_of(&endpoint).is_none() {
        return error(400, &format!("Unsupported endpoint '{endpoint}'"));
    }
    let base = model.strip_suffix(":batch").unwrap_or(&model);
    if !model.ends_with(":batch") || !batchable(base) {
        return error(
            400,
            &format!("Model '{model}' does not have a :batch endpoint."),
        );
    }
    if s.requests.is_empty() {
        return error(400, "requests must be a non-empty array");
    }
    let mut seen = std::collections::HashSet::new();
    let mut fate = Fate::Complete;
    for (i, line) in s.requests.iter().enumerate() {
        let Some(id) = &line.custom_id else {
            return error(400, &format!("requests[{i}].custom_id is required"));
        };
        if !seen.insert(id.as_str()) {
            return error(422, &format!("Duplicate custom_id '{id}'"));
        }
        if let Some(m) = line.body.get("model").and_then(Value::as_str)
            && m != model
        {
            return error(
                400,
                &format!("requests[{i}].body.model '{m}' does not match the batch model '{model}'"),
            );
        }
        let text = line.body.to_string();
        if text.contains("[[mock:batch-fail]]") && fate == Fate::Complete {
            fate = Fate::Fail(i);
        } else if text.contains("[[mock:batch-expire]]") && fate == Fate::Complete {
            fate = Fate::Expire;
        }
    }
    let now = jiff::Timestamp::now().as_second();
    let (object, drop_it) = {
        let mut inner = state.batches.lock();
        let id = format!("batch-{now}-mock{:08}", inner.batches.len() + 1);
        inner.submits += 1;
        inner.lines += s.requests.len() as u64;
        let batch = Batch {
            id: id.clone(),
            endpoint,
            model,
            created_at: now,
            created: Instant::now(),
            gets: 0,
            settled_reads: 0,
            lines: s.requests,
            fate,
            results: None,
            key_hash,
        };
        let object = object(&batch, "validating", false);
        let at = inner.batches.len();
        inner.by_id.insert(id, at);
        inner.batches.push(batch);
        let drop_it = inner.submits <= u64::from(state.config.batch_drop_submits);
        (object, drop_it)
    };
    if drop_it && let Some(Extension(kill)) = kill {
        // Stored, but the client never hears: an ambiguous submit.
        kill.fire();
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    (StatusCode::ACCEPTED, Json(object)).into_response()
}

/// The status of `b` now, by its age against `--batch-ms`.
fn status_of(state: &Shared, b: &Batch) -> &'static str {
    let total = Duration::from_millis(state.config.batch_ms);
    let age = b.created.elapsed();
    if age < total / 3 {
        "validating"
    } else if age < total * 2 / 3 {
        "in_progress"
    } else if age < total {
        "finalizing"
    } else {
        match b.fate {
            Fate::Complete => "completed",
            Fate::Fail(_) => "failed",
            Fate::Expire => "expired",
        }
    }
}

/// The batch object; `with_results` puts the result lines inline.
fn object(b: &Batch, status: &str, with_results: bool) -> Value {
    let total = b.lines.len();
    let terminal = matches!(status, "completed" | "failed" | "expired");
    let (completed, failed, usage) = match (&b.results, status) {
        (Some(results), "completed") => {
            let failed = results.iter().filter(|r| !r["error"].is_null()).count();
            let mut cost = 0.0;
            let (mut p, mut c) = (0u64, 0u64);
            for r in results {
                let u = &r["response"]["body"]["usage"];
                cost += u["cost"].as_f64().unwrap_or(0.0);
                p += u["prompt_tokens"].as_u64().unwrap_or(0);
                c += u["completion_tokens"].as_u64().unwrap_or(0);
            }
            let usage = json!({"prompt_tokens": p, "completion_tokens": c,
                "total_tokens": p + c, "cost": cost, "is_byok": false});
            (
                results.len() - failed,
                total - results.len() + failed,
                usage,
            )
        }
        (None, "completed") => (total, 0, Value::Null),
        (_, "failed" | "expired") => (0, total, Value::Null),
        _ => (0, 0, Value::Null),
    };
    let error = match b.fate {
        Fate::Fail(i) if status == "failed" => json!({"message": format!(
            "requests[{i}] (custom_id '{}'): the request was rejected during validation",
            b.lines[i].custom_id.as_deref().unwrap_or(""))}),
        Fate::Expire if status == "expired" => {
            json!({"message": "the provider's completion window passed"})
        }
        _ => Value::Null,
    };
    let results = match (&b.results, with_results) {
        (Some(r), true) => Value::from(r.clone()),
        _ => Value::Null,
    };
    json!({
        "id": b.id, "object": "batch", "endpoint": b.endpoint, "model": b.model,
        "completion_window": "24h", "status": status, "created_at": b.created_at,
        "finalized_at": if terminal { json!(jiff::Timestamp::now().as_second()) } else { Value::Null },
        "expires_at": b.created_at + 86_400,
        "provider": if status == "validating" { Value::Null } else { json!("MockAI") },
        "request_counts": {"total": total, "completed": completed, "failed": failed},
        "usage": usage, "results": results, "error": error,
    })
}

/// Answer every line of a completed batch (once): the live mock's answer, at batch prices.
fn materialise(state: &Arc<Shared>, b: &mut Batch) {
    if b.results.is_some() {
        return;
    }
    let Some(endpoint) = endpoint_of(&b.endpoint) else {
        return;
    };
    let base = b
        .model
        .strip_suffix(":batch")
        .unwrap_or(&b.model)
        .to_owned();
    let mut results = Vec::with_capacity(b.lines.len());
    for (n, line) in b.lines.iter().enumerate() {
        let custom_id = line.custom_id.clone().unwrap_or_default();
        let text = line.body.to_string();
        let rid = format!("batch_req_{n:06}");
        if text.contains("[[mock:line-missing]]") {
            continue;
        }
        if text.contains("[[mock:line-error]]") {
            results.push(json!({"id": rid, "custom_id": custom_id, "response": null,
                "error": {"message": "Provider returned error", "type": "provider_error",
                          "param": null, "error_type": "provider_error"}}));
            continue;
        }
        if text.contains("[[mock:line-400]]") {
            results.push(json!({"id": rid, "custom_id": custom_id, "error": null,
                "response": {"status_code": 400, "request_id": rid,
                    "body": {"error": {"code": 400, "message": "max_tokens must be at least 1"}}}}));
            continue;
        }
        let mut body = line.body.clone();
        body["model"] = json!(base);
        let prompted = match answer::parse(endpoint, body.to_string().as_bytes()) {
            Ok(p) => p,
            Err(m) => {
                results.push(json!({"id": rid, "custom_id": custom_id, "response": null,
                    "error": {"message": m, "type": "invalid_request_error", "param": null}}));
                continue;
            }
        };
        let ctx = Ctx {
            state: Arc::clone(state),
            key: crate::hash::key64(&prompted.prompt, &prompted.model),
            fault: None,
            retry_after: None,
            referer: None,
            user_agent: None,
            flight: None,
            key_hash: b.key_hash.clone(),
            req: prompted,
        };
        let mut plan = inference::plan(&ctx, None);
        plan.price.prompt *= BATCH_FACTOR;
        plan.price.completion *= BATCH_FACTOR;
        let answer = match endpoint {
            Endpoint::Chat => super::chat::whole_value(&plan),
            Endpoint::Responses => super::responses::whole_value(&plan),
        };
        Bill::new(&ctx, &plan, false).settle(plan.completion_tokens(), true);
        results.push(json!({"id": rid, "custom_id": custom_id, "error": null,
            "response": {"status_code": 200, "request_id": rid, "body": answer}}));
    }
    // Result order is not the input's (BATCH.md §3): the client must key on custom_id.
    results.reverse();
    b.results = Some(results);
}

/// Whether a read of a completed batch still finds it settling (no results yet).
fn settling(state: &Shared, b: &mut Batch) -> bool {
    b.settled_reads += 1;
    b.settled_reads <= state.config.batch_settle_polls
}

/// Whether this read of results meets the payment gate (`--batch-402` reads are refused).
fn gated(state: &Shared, inner: &mut Inner) -> bool {
    let left = inner.gate_left.get_or_insert(state.config.batch_402);
    if *left > 0 {
        *left -= 1;
        return true;
    }
    false
}

fn payment_required(object: Value) -> Response {
    let mut body = object;
    body["results"] = Value::Null;
    body["error"] = json!({"code": 402, "message":
        "Insufficient credits to release batch results. Add credits to unlock them."});
    (StatusCode::PAYMENT_REQUIRED, Json(body)).into_response()
}

/// Find a batch for a read, counting the early 404s (`--batch-404s`).
fn find(state: &Shared, inner: &mut Inner, id: &str) -> Option<usize> {
    let i = *inner.by_id.get(id)?;
    let b = &mut inner.batches[i];
    b.gets += 1;
    (b.gets > state.config.batch_404s).then_some(i)
}

fn not_found(id: &str) -> Response {
    error(404, &format!("Batch '{id}' not found"))
}

/// `GET /batches/{id}`.
pub async fn get(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(resp) = inference::who(&state, &headers) {
        return resp;
    }
    let mut inner = state.batches.lock();
    let Some(i) = find(&state, &mut inner, &id) else {
        return not_found(&id);
    };
    let status = status_of(&state, &inner.batches[i]);
    if status == "completed" && settling(&state, &mut inner.batches[i]) {
        return Json(object(&inner.batches[i], status, false)).into_response();
    }
    if status == "completed" {
        materialise(&state, &mut inner.batches[i]);
        if gated(&state, &mut inner) {
            return payment_required(object(&inner.batches[i], status, false));
        }
    }
    let inline = state.config.batch_results != "paged";
    Json(object(&inner.batches[i], status, inline)).into_response()
}

#[derive(Deserialize)]
pub struct Page {
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /batches/{id}/results?limit=&cursor=`.
pub async fn results(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(page): Query<Page>,
) -> Response {
    if let Err(resp) = inference::who(&state, &headers) {
        return resp;
    }
    if state.config.batch_results == "inline" {
        return error(404, "Not Found");
    }
    let mut inner = state.batches.lock();
    let Some(&i) = inner.by_id.get(&id) else {
        return not_found(&id);
    };
    if status_of(&state, &inner.batches[i]) != "completed"
        || inner.batches[i].settled_reads <= state.config.batch_settle_polls
    {
        return error(
            409,
            "Batch results are not available until the batch is completed",
        );
    }
    materialise(&state, &mut inner.batches[i]);
    if gated(&state, &mut inner) {
        let status = status_of(&state, &inner.batches[i]);
        return payment_required(object(&inner.batches[i], status, false));
    }
    let all = inner.batches[i].results.as_deref().unwrap_or_default();
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    let start = page
        .cursor
        .and_then(|c| c.strip_prefix("c").and_then(|n| n.parse::<usize>().ok()))
        .unwrap_or(0)
        .min(all.len());
    let end = (start + limit).min(all.len());
    let has_more = end < all.len();
    Json(
        json!({"object": "list", "data": &all[start..end], "has_more": has_more,
        "next_cursor": if has_more { json!(format!("c{end}")) } else { Value::Null }}),
    )
    .into_response()
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<usize>,
    after: Option<String>,
    created_after: Option<i64>,
}

/// `GET /batches`: newest first, without results.
pub async fn list(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Err(resp) = inference::who(&state, &headers) {
        return resp;
    }
    let inner = state.batches.lock();
    let limit = q.limit.unwrap_or(20).clamp(1, 100);
    let mut items = inner
        .batches
        .iter()
        .rev()
        .filter(|b| q.created_after.is_none_or(|t| b.created_at >= t));
    if let Some(after) = &q.after {
        for b in items.by_ref() {
            if &b.id == after {
                break;
            }
        }
    }
    let data: Vec<Value> = items
        .take(limit + 1)
        .map(|b| {
            let status = match status_of(&state, b) {
                "finalizing" => "in_progress",
                s => s,
            };
            object(b, status, false)
        })
        .collect();
    let has_more = data.len() > limit;
    let data = &data[..data.len().min(limit)];
    Json(json!({"object": "list", "data": data,
        "first_id": data.first().map(|b| b["id"].clone()),
        "last_id": data.last().map(|b| b["id"].clone()), "has_more": has_more}))
    .into_response()
}
