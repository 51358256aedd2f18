//! `POST /api/v1/responses`: OpenAI Responses-format answers as OpenRouter sends them, whole or
//! streamed (typed `data:` events with `sequence_number`, no `event:` lines, then `[DONE]`).

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use super::chat::spaced;
use super::inference::{self, Bill, Ctx, Ending, Plan};
use super::server::ConnKill;
use super::sse;
use super::state::Shared;
use crate::endpoint::Endpoint;

/// The responses handler.
pub async fn handler(
    State(state): State<Arc<Shared>>,
    kill: Option<Extension<ConnKill>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let kill = kill.map(|Extension(k)| k);
    let ctx = match inference::admit(state, Endpoint::Responses, &headers, &body, kill).await {
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

fn usage(plan: &Plan, output: u64) -> Value {
    let cost = plan.cost(output);
    if !plan.with_cost {
        return json!({
            "input_tokens": plan.prompt_tokens,
            "input_tokens_details": { "cached_tokens": 0 },
            "output_tokens": output,
            "output_tokens_details": { "reasoning_tokens": 0 },
            "total_tokens": plan.prompt_tokens + output,
        });
    }
    json!({
        "input_tokens": plan.prompt_tokens,
        "input_tokens_details": { "cached_tokens": 0 },
        "output_tokens": output,
        "output_tokens_details": { "reasoning_tokens": 0 },
        "total_tokens": plan.prompt_tokens + output,
        "cost": cost,
        "is_byok": plan.byok,
        "cost_details": {
            "upstream_inference_cost": plan.upstream(output),
            "upstream_inference_input_cost": plan.price.cost(plan.prompt_tokens, 0),
            "upstream_inference_output_cost": plan.price.cost(0, output)
        }
    })
}

fn message_id(plan: &Plan) -> String {
    format!("msg_{}", plan.id.trim_start_matches("gen-"))
}

fn message_item(plan: &Plan, text: &str, status: &str) -> Value {
    json!({
        "type": "message",
        "id": message_id(plan),
        "role": "assistant",
        "status": status,
        "content": [{ "type": "output_text", "text": text, "annotations": [], "logprobs": [] }]
    })
}

/// `status`, `incomplete_details`, `error`, `error_type` of a finished answer.
fn outcome(plan: &Plan) -> (&'static str, Value, Value, Value) {
    match (plan.ending, plan.finish) {
        (Ending::Error, _) => (
            "failed",
            Value::Null,
            json!({ "code": "server_error", "message": "Provider returned error" }),
            json!("provider_unavailable"),
        ),
        (_, "length") => (
            "incomplete",
            json!({ "reason": "max_output_tokens" }),
            Value::Null,
            Value::Null,
        ),
        (_, "content_filter") => (
            "incomplete",
            json!({ "reason": "content_filter" }),
            Value::Null,
            Value::Null,
        ),
        _ => ("completed", Value::Null, Value::Null, Value::Null),
    }
}

/// The response object; `output`/`usage` are `None` while in progress.
fn response_object(plan: &Plan, done: Option<(&str, u64)>) -> Value {
    let mut obj = json!({
        "id": plan.id,
        "object": "response",
        "created_at": plan.created,
        "completed_at": null,
        "model": plan.model,
        "status": "in_progress",
        "output": [],
        "usage": null,
        "error": null,
        "incomplete_details": null,
        "instructions": null,
        "max_output_tokens": null,
        "temperature": null,
        "top_p": null,
        "tools": [],
        "tool_choice": "auto",
        "parallel_tool_calls": true,
        "metadata": {},
        "service_tier": plan.service_tier,
        "text": { "format": { "type": "text" } },
        "reasoning": null
    });
    if let Some((text, output_tokens)) = done {
        let (status, incomplete, error, error_type) = outcome(plan);
        let item_status = if status == "completed" {
            "completed"
        } else {
            "incomplete"
        };
        obj["status"] = json!(status);
        obj["completed_at"] = json!(jiff::Timestamp::now().as_second());
        obj["output"] = json!([message_item(plan, text, item_status)]);
        obj["usage"] = usage(plan, output_tokens);
        obj["incomplete_details"] = incomplete;
        obj["error"] = error;
        if !error_type.is_null() {
            obj["error_type"] = error_type;
        }
    }
    obj
}

/// A whole response object (a batch result line's body).
pub(super) fn whole_value(plan: &Plan) -> Value {
    response_object(plan, Some((&plan.text(), plan.completion_tokens())))
}

async fn whole(ctx: &Ctx, plan: Plan) -> Response {
    inference::sleep(ctx.state.latency()).await;
    let obj = response_object(&plan, Some((&plan.text(), plan.completion_tokens())));
    let mut bytes = obj.to_string().into_bytes();
    if plan.ending == Ending::Cut {
        bytes.truncate(bytes.len() / 2);
    }
    let body = inference::json_body(&ctx.state, Bytes::from(bytes));
    let resp = inference::ok_response(&plan.id, "application/json", body);
    Bill::new(ctx, &plan, false).settle(plan.completion_tokens(), plan.ending == Ending::Complete);
    resp
}

fn streamed(ctx: &Ctx, plan: Plan) -> Response {
    let (tx, body) = sse::channel();
    let bill = Bill::new(ctx, &plan, true);
    let resp = inference::ok_response(&plan.id, "text/event-stream", body);
    tokio::spawn(produce(
        ctx.state.clone(),
        Events { tx, seq: 0 },
        plan,
        bill,
    ));
    resp
}

/// Typed events with increasing `sequence_number`.
struct Events {
    tx: sse::Sse,
    seq: u64,
}

impl Events {
    async fn emit(&mut self, kind: &str, mut fields: Value) -> bool {
        fields["type"] = json!(kind);
        fields["sequence_number"] = json!(self.seq);
        self.seq += 1;
        self.tx.data(&fields).await
    }
}

/// Write the responses stream (FACTS §4.3 order); returns early if the client goes away.
async fn produce(state: Arc<Shared>, mut ev: Events, plan: Plan, mut bill: Bill) {
    sse::stall(&state).await;
    let step = sse::pacing(&state, plan.words.len() + 1);
    if !ev.tx.comments(state.config.keepalive_comments).await {
        return;
    }
    let item_id = message_id(&plan);
    let at = |extra: Value| {
        let mut v = json!({ "item_id": item_id, "output_index": 0, "content_index": 0 });
        if let (Some(obj), Value::Object(more)) = (v.as_object_mut(), extra) {
            obj.extend(more);
        }
        v
    };
    let opened = ev
        .emit(
            "response.created",
            json!({ "response": response_object(&plan, None) }),
        )
        .await
        && ev
            .emit(
                "response.in_progress",
                json!({ "response": response_object(&plan, None) }),
            )
            .await
        && ev
            .emit(
                "response.output_item.added",
                json!({
                    "output_index": 0,
                    "item": { "type": "message", "id": item_id, "role": "assistant",
                              "status": "in_progress", "content": [] }
                }),
            )
            .await
        && ev
            .emit(
                "response.content_part.added",
                at(json!({
                    "part": { "type": "output_text", "text": "", "annotations": [], "logprobs": [] }
                })),
            )
            .await;
    if !opened {
        return;
    }
    inference::sleep(step).await;
    let mut sent = 0u64;
    for (i, word) in plan.words.iter().enumerate() {
        let delta = at(json!({ "delta": spaced(i, word), "logprobs": [] }));
        if !ev.emit("response.output_text.delta", delta).await {
            return;
        }
        sent = i as u64 + 1;
        bill.sent(sent);
        inference::sleep(step).await;
    }
    match plan.ending {
        Ending::Complete => {
            if finish_events(&mut ev, &plan, &at).await && ev.tx.done().await {
                bill.settle(sent, true);
            }
        }
        Ending::Error => {
            let text = plan.text();
            let billed = bill.failed_stream_tokens(sent, plan.planned_tokens);
            let failed = response_object(&plan, Some((&text, billed.unwrap_or(0))));
            ev.emit("response.failed", json!({ "response": failed }))
                .await;
            bill.settle_failed_stream(sent, plan.planned_tokens);
        }
        Ending::Cut | Ending::Interrupted => bill.settle(sent, false),
    }
}

async fn finish_events(ev: &mut Events, plan: &Plan, at: &impl Fn(Value) -> Value) -> bool {
    let text = plan.text();
    let final_obj = response_object(plan, Some((&text, plan.completion_tokens())));
    let item = final_obj["output"][0].clone();
    let terminal = match final_obj["status"].as_str() {
        Some("incomplete") => "response.incomplete",
        _ => "response.completed",
    };
    ev.emit("response.output_text.done", at(json!({ "text": text, "logprobs": [] }))).await
        && ev.emit("response.content_part.done", at(json!({
            "part": { "type": "output_text", "text": text, "annotations": [], "logprobs": [] }
        }))).await
        && ev.emit("response.output_item.done", json!({ "output_index": 0, "item": item })).await
        && ev.emit(terminal, json!({ "response": final_obj })).await
}
