//! `GET /api/v1/generation?id=…` (the per-generation cost record, eventually consistent as on
//! OpenRouter) and `GET /api/v1/key` (what the mock has billed, against `--credit-limit`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::faults;
use super::state::{Generation, Lookup, Shared};

/// The account's key (`--require-key`, else any non-empty one) or a key created through
/// `/keys` that is not disabled; `/generation` and `/key` do not spend, so a key at its limit
/// may still look its generations up.
fn authorized(state: &Shared, headers: &HeaderMap) -> bool {
    let token = super::keys::bearer(headers);
    match state
        .keys
        .caller(state.config.management_key.as_deref(), token)
    {
        super::keys::Caller::Nobody => false,
        super::keys::Caller::Created(hash) => !matches!(
            state.keys.admit(&hash, jiff::Timestamp::now()),
            Err(super::keys::Refusal::Disabled | super::keys::Refusal::Expired)
        ),
        _ => state
            .config
            .require_key
            .as_deref()
            .is_none_or(|k| k == token),
    }
}

/// The generation lookup handler.
pub async fn generation(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !authorized(&state, &headers) {
        return faults::unauthorized();
    }
    let Some(id) = query.get("id").filter(|id| !id.is_empty()) else {
        return faults::bad_request("id: a generation id is required");
    };
    match state.lookup(id) {
        Lookup::Found(g) => Json(json!({ "data": generation_json(&g) })).into_response(),
        Lookup::NotYet | Lookup::Unknown => not_found(id),
    }
}

fn not_found(id: &str) -> Response {
    let body = json!({ "error": { "message": format!("Generation {id} not found"), "code": 404 } });
    (axum::http::StatusCode::NOT_FOUND, Json(body)).into_response()
}

fn generation_json(g: &Generation) -> Value {
    let mut data = json!({
        "id": g.id,
        "upstream_id": format!("chatcmpl-{}", g.id.trim_start_matches("gen-")),
        "total_cost": g.cost,
        "usage": g.cost,
        "cache_discount": null,
        "upstream_inference_cost": g.upstream_cost,
        "is_byok": g.is_byok,
        "created_at": g.created_at.to_string(),
        "model": g.model,
        "provider_name": g.provider,
        "provider_responses": [{
            "id": g.id, "endpoint_id": "mock-endpoint", "model_permaslug": g.model,
            "provider_name": g.provider, "status": 200, "latency": g.latency_ms,
            "is_byok": g.is_byok, "routed_service_tier": g.service_tier
        }],
        "router": null,
        "api_type": "completions",
        "streamed": g.streamed,
        "cancelled": g.cancelled,
        "finish_reason": g.finish_reason,
        "native_finish_reason": g.finish_reason,
        "latency": g.latency_ms,
        "generation_time": g.latency_ms,
        "moderation_latency": null,
    });
    let counts = json!({
        "tokens_prompt": g.prompt_tokens,
        "tokens_completion": g.completion_tokens,
        "native_tokens_prompt": g.prompt_tokens,
        "native_tokens_completion": g.completion_tokens,
        "native_tokens_reasoning": 0,
        "native_tokens_cached": 0,
        "native_tokens_completion_images": 0,
    });
    let request = json!({
        "num_media_prompt": null,
        "num_media_completion": null,
        "num_input_audio_prompt": null,
        "num_search_results": null,
        "num_fetches": null,
        "web_search_engine": null,
        "origin": g.http_referer.clone().unwrap_or_default(),
        "http_referer": g.http_referer,
        "user_agent": g.user_agent,
        "app_id": null,
        "external_user": null,
        "preset_id": null,
        "workspace_id": null,
        "service_tier": g.service_tier,
        "data_region": "global",
        "request_id": null,
        "session_id": null
    });
    for part in [counts, request] {
        if let (Some(obj), Value::Object(more)) = (data.as_object_mut(), part) {
            obj.extend(more);
        }
    }
    data
}

/// The key info handler (`/key` and the legacy `/auth/key`).
pub async fn key(State(state): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !authorized(&state, &headers) {
        return faults::unauthorized();
    }
    let token = super::keys::bearer(&headers);
    if let super::keys::Caller::Created(hash) = state
        .keys
        .caller(state.config.management_key.as_deref(), token)
        && let Some(data) = state.keys.self_view(&hash)
    {
        return Json(json!({ "data": data })).into_response();
    }
    let billed = state.billed();
    let byok = state.stats().byok_billed_usd;
    let limit = state.config.credit_limit;
    let remaining = limit.map(|l| (l - billed).max(0.0));
    Json(json!({ "data": {
        "label": "sk-or-v1-moc...key",
        "limit": limit,
        "limit_remaining": remaining,
        "limit_reset": null,
        "include_byok_in_limit": false,
        "usage": billed,
        "usage_daily": billed,
        "usage_weekly": billed,
        "usage_monthly": billed,
        "byok_usage": byok,
        "byok_usage_daily": byok,
        "byok_usage_weekly": byok,
        "byok_usage_monthly": byok,
        "is_free_tier": false,
        "is_management_key": false,
        "is_provisioning_key": false,
        "creator_user_id": null,
        "expires_at": null,
        "rate_limit": { "requests": -1, "interval": "10s", "note": "deprecated" }
    }}))
    .into_response()
}
