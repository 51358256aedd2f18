//! `POST /api/v1/chat/completions`: OpenRouter-shaped chat answers, whole or streamed (SSE with
//! keep-alive comments, content deltas, a finish chunk, a usage chunk and `[DONE]`).

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use super::faults;
use super::inference::{self, Bill, Ctx, Ending, Plan};
use super::server::ConnKill;
use super::sse;
use super::state::Shared;
use crate::endpoint::Endpoint;

/// The chat completions handler.
pub async fn handler(
    State(state): State<Arc<Shared>>,
    kill: Option<Extension<ConnKill>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let kill = kill.map(|Extension(k)| k);
    let ctx = match inference::admit(state, Endpoint::Chat, &headers, &body, kill).await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let plan = inference::plan(&ctx, ctx.fault.as_ref());
    let resp = if ctx.req.stream {
        streamed(&ctx, plan)
    } else {
        whole(&ctx, plan).await
    };
    inference::counted(&ctx.state, resp)
}

/// The `usage` object of a chat answer with `completion` tokens.
pub fn usage(plan: &Plan, completion: u64) -> Value {
    let prompt_cost = plan.price.cost(plan.prompt_tokens, 0);
    let completion_cost = plan.price.cost(0, completion);
    let cost = plan.cost(completion);
    json!({
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": plan.prompt_tokens + completion,
        "cost": cost,
        "is_byok": false,
        "prompt_tokens_details": {
            "cached_tokens": 0, "cache_write_tokens": 0, "audio_tokens": 0, "video_tokens": 0
        },
        "cost_details": {
            "upstream_inference_cost": cost,
            "upstream_inference_prompt_cost": prompt_cost,
            "upstream_inference_completions_cost": completion_cost
        },
        "completion_tokens_details": { "reasoning_tokens": 0, "image_tokens": 0, "audio_tokens": 0 }
    })
}

fn whole_body(plan: &Plan) -> Value {
    let mut choice = json!({
        "index": 0,
        "logprobs": null,
        "finish_reason": plan.finish,
        "native_finish_reason": plan.finish,
        "message": {
            "role": "assistant", "content": plan.text(), "refusal": null, "reasoning": null
        }
    });
    if plan.ending == Ending::Error {
        choice["error"] = faults::provider_error(plan.provider);
    }
    json!({
        "id": plan.id,
        "object": "chat.completion",
        "created": plan.created,
        "model": plan.model,
        "provider": plan.provider,
        "system_fingerprint": "fp_mock",
        "service_tier": null,
        "choices": [choice],
        "usage": usage(plan, plan.completion_tokens())
    })
}

async fn whole(ctx: &Ctx, plan: Plan) -> Response {
    inference::sleep(ctx.state.latency()).await;
    let mut bytes = whole_body(&plan).to_string().into_bytes();
    if plan.ending == Ending::Cut {
        bytes.truncate(bytes.len() / 2);
    }
    let body = inference::json_body(&ctx.state, Bytes::from(bytes));
    let resp = inference::ok_response(&plan.id, "application/json", body);
    Bill::new(ctx, &plan, false).settle(plan.completion_tokens(), plan.ending == Ending::Complete);
    resp
}

fn chunk(plan: &Plan, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": plan.id,
        "provider": plan.provider,
        "model": plan.model,
        "object": "chat.completion.chunk",
        "created": plan.created,
        "choices": [{
            "index": 0, "delta": delta, "finish_reason": finish,
            "native_finish_reason": finish, "logprobs": null
        }],
        "system_fingerprint": "fp_mock"
    })
}

fn streamed(ctx: &Ctx, plan: Plan) -> Response {
    let (tx, body) = sse::channel();
    let bill = Bill::new(ctx, &plan, true);
    let resp = inference::ok_response(&plan.id, "text/event-stream", body);
    tokio::spawn(produce(ctx.state.clone(), tx, plan, bill));
    resp
}

/// Write the chat stream; returns early (billing what was sent) if the client goes away.
async fn produce(state: Arc<Shared>, tx: sse::Sse, plan: Plan, mut bill: Bill) {
    sse::stall(&state).await;
    let step = sse::pacing(&state, plan.words.len() + 1);
    if !tx.comments(state.config.keepalive_comments).await {
        return;
    }
    inference::sleep(step).await;
    let deltas: Vec<String> = match plan.words.is_empty() {
        true => vec![String::new()],
        false => plan
            .words
            .iter()
            .enumerate()
            .map(|(i, w)| spaced(i, w))
            .collect(),
    };
    let mut sent = 0u64;
    for (i, text) in deltas.iter().enumerate() {
        let delta = match i {
            0 => json!({ "role": "assistant", "content": text }),
            _ => json!({ "content": text }),
        };
        if !tx.data(&chunk(&plan, delta, None)).await {
            return;
        }
        sent = (i + 1).min(plan.words.len()) as u64;
        bill.sent(sent);
        inference::sleep(step).await;
    }
    match plan.ending {
        Ending::Complete => {
            let last = chunk(
                &plan,
                json!({ "role": "assistant", "content": "" }),
                Some(plan.finish),
            );
            let mut with_usage = last.clone();
            with_usage["usage"] = usage(&plan, sent);
            if tx.data(&last).await && tx.data(&with_usage).await && tx.done().await {
                bill.settle(sent, true);
            }
        }
        Ending::Error => {
            let mut err = chunk(&plan, json!({ "content": "" }), Some("error"));
            err["error"] = faults::provider_error(plan.provider);
            tx.data(&err).await;
            bill.settle(sent, false);
        }
        Ending::Cut => bill.settle(sent, false),
    }
}

/// The delta text of word `i` (words after the first carry their leading space).
pub fn spaced(i: usize, word: &str) -> String {
    if i == 0 {
        word.to_string()
    } else {
        format!(" {word}")
    }
}
