//! The mock's management API (`/keys`, `/keys/{hash}`, as in OpenRouter's OpenAPI): keys
//! created with a credit limit that the mock then enforces, so a per-job key can be tested
//! end to end. A created key's `usage` is the sum of what was billed with it; once it reaches
//! the limit, inference with that key answers 402 (or 403 with `--key-limit-status 403`), a
//! disabled or expired key 401. Management calls need `--management-key`; any other key gets
//! `--management-refusal` (403, or 401), and inference with the management key gets 401.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::faults;
use super::state::Shared;

/// Who is calling, by the bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No `Authorization: Bearer …` at all.
    Nobody,
    /// The `--management-key`.
    Management,
    /// A key created through `POST /keys`, by its hash.
    Created(String),
    /// Any other key (the ordinary key of the account).
    Other,
}

/// Why a created key may not be used for inference now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Disabled,
    Expired,
    /// Its usage reached its limit.
    Limit,
}

/// One created key.
#[derive(Debug, Clone)]
struct MockKey {
    hash: String,
    name: String,
    label: String,
    limit: Option<f64>,
    limit_reset: Option<String>,
    include_byok_in_limit: bool,
    disabled: bool,
    expires_at: Option<jiff::Timestamp>,
    created_at: jiff::Timestamp,
    updated_at: Option<jiff::Timestamp>,
    /// USD billed with this key (OpenRouter's charge).
    usage: f64,
    /// USD the providers charged for BYOK requests made with this key.
    byok_usage: f64,
}

impl MockKey {
    /// What counts against the limit.
    fn counted(&self) -> f64 {
        if self.include_byok_in_limit {
            self.usage + self.byok_usage
        } else {
            self.usage
        }
    }

    fn json(&self) -> Value {
        let remaining = self.limit.map(|l| (l - self.counted()).max(0.0));
        json!({
            "hash": self.hash,
            "name": self.name,
            "label": self.label,
            "disabled": self.disabled,
            "limit": self.limit,
            "limit_remaining": remaining,
            "limit_reset": self.limit_reset,
            "include_byok_in_limit": self.include_byok_in_limit,
            "usage": self.usage,
            "usage_daily": self.usage,
            "usage_weekly": self.usage,
            "usage_monthly": self.usage,
            "byok_usage": self.byok_usage,
            "byok_usage_daily": self.byok_usage,
            "byok_usage_weekly": self.byok_usage,
            "byok_usage_monthly": self.byok_usage,
            "created_at": self.created_at.to_string(),
            "updated_at": self.updated_at.map(|t| t.to_string()),
            "expires_at": self.expires_at.map(|t| t.to_string()),
            "creator_user_id": "user_mock",
            "workspace_id": "00000000-0000-0000-0000-000000000000",
        })
    }

    /// The `/key` view of this key (what the key itself sees).
    fn self_json(&self) -> Value {
        let mut v = self.json();
        if let Some(obj) = v.as_object_mut() {
            for k in ["hash", "name", "disabled", "created_at", "updated_at"] {
                obj.remove(k);
            }
            obj.insert("is_free_tier".into(), json!(false));
            obj.insert("is_management_key".into(), json!(false));
            obj.insert("is_provisioning_key".into(), json!(false));
        }
        v
    }
}

#[derive(Default)]
struct Book {
    by_hash: HashMap<String, MockKey>,
    /// Token → hash.
    by_token: HashMap<String, String>,
}

/// The created keys.
#[derive(Default)]
pub struct Keys {
    book: Mutex<Book>,
}

/// The bearer token of a request ("" when there is none).
pub fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("")
}

impl Keys {
    fn book(&self) -> MutexGuard<'_, Book> {
        self.book
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Who `token` is.
    pub fn caller(&self, management_key: Option<&str>, token: &str) -> Caller {
        if token.is_empty() {
            return Caller::Nobody;
        }
        if management_key == Some(token) {
            return Caller::Management;
        }
        match self.book().by_token.get(token) {
            Some(hash) => Caller::Created(hash.clone()),
            None => Caller::Other,
        }
    }

    /// Whether the created key `hash` may make a paid request now.
    pub fn admit(&self, hash: &str, now: jiff::Timestamp) -> Result<(), Refusal> {
        let book = self.book();
        let Some(k) = book.by_hash.get(hash) else {
            return Err(Refusal::Disabled);
        };
        if k.disabled {
            return Err(Refusal::Disabled);
        }
        if k.expires_at.is_some_and(|t| t <= now) {
            return Err(Refusal::Expired);
        }
        if k.limit.is_some_and(|l| k.counted() >= l) {
            return Err(Refusal::Limit);
        }
        Ok(())
    }

    /// Add what one generation cost to the key `hash`'s usage.
    pub fn bill(&self, hash: &str, cost: f64, byok_upstream: f64) {
        if let Some(k) = self.book().by_hash.get_mut(hash) {
            k.usage += cost;
            k.byok_usage += byok_upstream;
        }
    }

    /// The `/key` data of created key `hash`.
    pub fn self_view(&self, hash: &str) -> Option<Value> {
        self.book().by_hash.get(hash).map(MockKey::self_json)
    }

    fn create(
        &self,
        body: CreateBody,
        expires_at: Option<jiff::Timestamp>,
        now: jiff::Timestamp,
    ) -> (Value, String) {
        let token = new_token();
        let hash = format!("{:032x}", crate::hash::hash128(token.as_bytes()));
        let key = MockKey {
            hash: hash.clone(),
            label: label_of(&token),
            name: body.name,
            limit: body.limit,
            limit_reset: body.limit_reset,
            include_byok_in_limit: body.include_byok_in_limit.unwrap_or(false),
            disabled: false,
            expires_at,
            created_at: now,
            updated_at: None,
            usage: 0.0,
            byok_usage: 0.0,
        };
        let data = key.json();
        let mut book = self.book();
        book.by_token.insert(token.clone(), hash.clone());
        book.by_hash.insert(hash, key);
        (data, token)
    }
}

/// `sk-or-v1-` and 64 hex digits, as OpenRouter's keys look.
fn new_token() -> String {
    let a: u128 = rand::random();
    let b: u128 = rand::random();
    format!("sk-or-v1-{a:032x}{b:032x}")
}

/// The masked form OpenRouter shows: `sk-or-v1-0e6...1c96`.
fn label_of(token: &str) -> String {
    let body = token.strip_prefix("sk-or-v1-").unwrap_or(token);
    let head: String = body.chars().take(3).collect();
    let tail: String = body
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("sk-or-v1-{head}...{tail}")
}

#[derive(Deserialize)]
struct CreateBody {
    name: String,
    #[serde(default)]
    limit: Option<f64>,
    #[serde(default)]
    limit_reset: Option<String>,
    #[serde(default)]
    include_byok_in_limit: Option<bool>,
    /// ISO 8601, UTC.
    #[serde(default)]
    expires_at: Option<String>,
}

#[derive(Deserialize)]
struct PatchBody {
    #[serde(default)]
    disabled: Option<bool>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    limit: Option<f64>,
    #[serde(default)]
    include_byok_in_limit: Option<bool>,
}

/// The error envelope of the management API: `{"error":{"code","message"}}`.
fn error(status: u16, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({ "error": { "code": status, "message": message } });
    (code, Json(body)).into_response()
}

/// Only the management key may call `/keys`.
#[allow(clippy::result_large_err)]
fn management_only(state: &Shared, headers: &HeaderMap) -> Result<(), Response> {
    let config = &state.config;
    match state
        .keys
        .caller(config.management_key.as_deref(), bearer(headers))
    {
        Caller::Management => Ok(()),
        Caller::Nobody => Err(error(401, "Missing Authentication header")),
        _ if config.management_refusal == 401 => Err(error(401, "Invalid management key")),
        _ => Err(error(
            403,
            "Only management keys can perform this operation",
        )),
    }
}

/// `POST /keys`: 201 `{data: {…, hash}, key}`.
pub async fn create(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(resp) = management_only(&state, &headers) {
        return resp;
    }
    let body: CreateBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(400, &format!("Invalid request parameters: {e}")),
    };
    if body.name.trim().is_empty() {
        return error(400, "Invalid request parameters: name must not be empty");
    }
    if body.limit.is_some_and(|l| !(l.is_finite() && l >= 0.0)) {
        return error(400, "Invalid request parameters: limit must be ≥ 0");
    }
    let expires_at = match body
        .expires_at
        .as_deref()
        .map(str::parse::<jiff::Timestamp>)
    {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => return error(400, &format!("Invalid request parameters: expires_at: {e}")),
    };
    let (data, key) = state.keys.create(body, expires_at, jiff::Timestamp::now());
    (
        StatusCode::CREATED,
        Json(json!({ "data": data, "key": key })),
    )
        .into_response()
}

/// `GET /keys/{hash}`.
pub async fn get(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(hash): Path<String>,
) -> Response {
    if let Err(resp) = management_only(&state, &headers) {
        return resp;
    }
    match state.keys.book().by_hash.get(&hash) {
        Some(k) => Json(json!({ "data": k.json() })).into_response(),
        None => error(404, "Resource not found"),
    }
}

/// `PATCH /keys/{hash}`: `disabled`, `name`, `limit`, `include_byok_in_limit`.
pub async fn patch(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(hash): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(resp) = management_only(&state, &headers) {
        return resp;
    }
    let body: PatchBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(400, &format!("Invalid request parameters: {e}")),
    };
    let mut book = state.keys.book();
    let Some(k) = book.by_hash.get_mut(&hash) else {
        return error(404, "Resource not found");
    };
    if let Some(d) = body.disabled {
        k.disabled = d;
    }
    if let Some(n) = body.name {
        k.name = n;
    }
    if body.limit.is_some() {
        k.limit = body.limit;
    }
    if let Some(b) = body.include_byok_in_limit {
        k.include_byok_in_limit = b;
    }
    k.updated_at = Some(jiff::Timestamp::now());
    Json(json!({ "data": k.json() })).into_response()
}

/// The answer to an inference request made with a created key that may not be used now.
pub fn refused(refusal: Refusal, limit_status: u16) -> Response {
    match refusal {
        Refusal::Disabled => faults::envelope(
            401,
            faults::error_object(401, "This API key is disabled", "authentication"),
        ),
        Refusal::Expired => faults::envelope(
            401,
            faults::error_object(401, "This API key has expired", "authentication"),
        ),
        Refusal::Limit => {
            let status = if limit_status == 403 { 403 } else { 402 };
            let error = json!({
                "code": status,
                "message": "Key limit exceeded",
                "metadata": {
                    "error_type": if status == 403 { "permission_denied" } else { "payment_required" },
                    "limit_source": "openrouter_key_limit"
                }
            });
            faults::envelope(status, error)
        }
    }
}

/// The 401 for inference with the management key (it cannot make completions).
pub fn management_key_used_for_inference() -> Response {
    faults::envelope(
        401,
        faults::error_object(
            401,
            "Management keys cannot be used for inference; use an API key",
            "authentication",
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(limit: Option<f64>) -> CreateBody {
        CreateBody {
            name: "job".into(),
            limit,
            limit_reset: None,
            include_byok_in_limit: None,
            expires_at: None,
        }
    }

    #[test]
    fn a_created_key_is_refused_once_its_usage_reaches_the_limit() {
        let keys = Keys::default();
        let now = jiff::Timestamp::now();
        let (data, token) = keys.create(body(Some(0.01)), None, now);
        let hash = data["hash"].as_str().unwrap_or_default().to_owned();
        assert_eq!(keys.caller(None, &token), Caller::Created(hash.clone()));
        assert_eq!(data["label"], label_of(&token));
        assert!(
            !data["label"]
                .as_str()
                .unwrap_or_default()
                .contains(&token[12..20])
        );
        assert_eq!(keys.admit(&hash, now), Ok(()));
        keys.bill(&hash, 0.006, 0.0);
        assert_eq!(keys.admit(&hash, now), Ok(()), "under the limit");
        keys.bill(&hash, 0.004, 0.0);
        assert_eq!(keys.admit(&hash, now), Err(Refusal::Limit));
    }

    #[test]
    fn byok_counts_against_the_limit_only_when_the_key_says_so() {
        let keys = Keys::default();
        let now = jiff::Timestamp::now();
        let (plain, _) = keys.create(body(Some(0.01)), None, now);
        let mut with = body(Some(0.01));
        with.include_byok_in_limit = Some(true);
        let (byok, _) = keys.create(with, None, now);
        for d in [&plain, &byok] {
            let h = d["hash"].as_str().unwrap_or_default();
            keys.bill(h, 0.001, 0.02);
        }
        let h = |d: &Value| d["hash"].as_str().unwrap_or_default().to_owned();
        assert_eq!(keys.admit(&h(&plain), now), Ok(()));
        assert_eq!(keys.admit(&h(&byok), now), Err(Refusal::Limit));
    }

    #[test]
    fn expired_and_unknown_keys_are_refused_and_tokens_are_told_apart() {
        let keys = Keys::default();
        let now = jiff::Timestamp::now();
        let (data, _) = keys.create(body(None), Some(now), now);
        let hash = data["hash"].as_str().unwrap_or_default();
        assert_eq!(keys.admit(hash, now), Err(Refusal::Expired));
        assert_eq!(keys.admit("nope", now), Err(Refusal::Disabled));
        assert_eq!(keys.caller(Some("m"), "m"), Caller::Management);
        assert_eq!(keys.caller(Some("m"), "x"), Caller::Other);
        assert_eq!(keys.caller(Some("m"), ""), Caller::Nobody);
    }
}
