//! `POST /api/v1/chat/completions`: OpenRouter-shaped chat answers, whole or streamed (SSE with
//! keep-alive comments, content deltas, a finish chunk, a usage chunk and `[DONE]`).

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use serde::Serialize;
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
    // A struct of plain fields serializes to the same bytes as the `json!` tree it replaces.
    serde_json::to_value(UsageBody::new(plan, completion)).unwrap_or(Value::Null)
}

// The answer body as plain structs, not a `json!` tree: at thousands of answers a second the
// tree cost most of the mock's CPU. Fields are in alphabetical order, the order in which the
// tree (a `BTreeMap`) wrote them, so the bytes sent are the same.

#[derive(Serialize)]
struct WholeBody<'a> {
    choices: [WholeChoice; 1],
    created: i64,
    id: &'a str,
    model: &'a str,
    object: &'static str,
    provider: &'static str,
    service_tier: Option<&'static str>,
    system_fingerprint: &'static str,
    usage: UsageBody,
}

#[derive(Serialize)]
struct WholeChoice {
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
    finish_reason: &'static str,
    index: u32,
    logprobs: (),
    message: WholeMessage,
    native_finish_reason: &'static str,
}

#[derive(Serialize)]
struct WholeMessage {
    content: String,
    reasoning: (),
    refusal: (),
    role: &'static str,
}

#[derive(Serialize)]
struct UsageBody {
    completion_tokens: u64,
    completion_tokens_details: CompletionDetails,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost_details: Option<CostDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_byok: Option<bool>,
    prompt_tokens: u64,
    prompt_tokens_details: PromptDetails,
    total_tokens: u64,
}

#[derive(Serialize)]
struct CompletionDetails {
    audio_tokens: u64,
    image_tokens: u64,
    reasoning_tokens: u64,
}

#[derive(Serialize)]
struct CostDetails {
    upstream_inference_completions_cost: f64,
    upstream_inference_cost: f64,
    upstream_inference_prompt_cost: f64,
}

#[derive(Serialize)]
struct PromptDetails {
    audio_tokens: u64,
    cache_write_tokens: u64,
    cached_tokens: u64,
    video_tokens: u64,
}

impl UsageBody {
    fn new(plan: &Plan, completion: u64) -> UsageBody {
        let cost = plan.cost(completion);
        UsageBody {
            completion_tokens: completion,
            completion_tokens_details: CompletionDetails {
                audio_tokens: 0,
                image_tokens: 0,
                reasoning_tokens: 0,
            },
            cost: plan.with_cost.then_some(cost),
            cost_details: plan.with_cost.then(|| CostDetails {
                upstream_inference_completions_cost: plan.price.cost(0, completion),
                upstream_inference_cost: plan.upstream(completion),
                upstream_inference_prompt_cost: plan.price.cost(plan.prompt_tokens, 0),
            }),
            is_byok: plan.with_cost.then_some(plan.byok),
            prompt_tokens: plan.prompt_tokens,
            prompt_tokens_details: PromptDetails {
                audio_tokens: 0,
                cache_write_tokens: 0,
                cached_tokens: 0,
                video_tokens: 0,
            },
            total_tokens: plan.prompt_tokens + completion,
        }
    }
}

/// The bytes of a whole (non-streamed) chat answer.
fn whole_body(plan: &Plan) -> Vec<u8> {
    let body = WholeBody {
        choices: [WholeChoice {
            error: (plan.ending == Ending::Error).then(|| faults::provider_error(plan.provider)),
            finish_reason: plan.finish,
            index: 0,
            logprobs: (),
            message: WholeMessage {
                content: plan.text(),
                reasoning: (),
                refusal: (),
                role: "assistant",
            },
            native_finish_reason: plan.finish,
        }],
        created: plan.created,
        id: &plan.id,
        model: &plan.model,
        object: "chat.completion",
        provider: plan.provider,
        service_tier: plan.service_tier,
        system_fingerprint: "fp_mock",
        usage: UsageBody::new(plan, plan.completion_tokens()),
    };
    let mut bytes = Vec::with_capacity(1024);
    // Plain structs of strings and numbers: serializing cannot fail.
    let _ = serde_json::to_writer(&mut bytes, &body);
    bytes
}

/// A whole chat answer as JSON (a batch result line's body).
pub(super) fn whole_value(plan: &Plan) -> Value {
    serde_json::from_slice(&whole_body(plan)).unwrap_or(Value::Null)
}

async fn whole(ctx: &Ctx, plan: Plan) -> Response {
    inference::sleep(ctx.state.latency()).await;
    let mut bytes = whole_body(&plan);
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
        "service_tier": plan.service_tier,
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
    let interrupt = ctx.state.take_over_stream();
    tokio::spawn(produce(ctx.state.clone(), tx, plan, bill, interrupt));
    resp
}

/// Write the chat stream; returns early (billing what was sent) if the client goes away.
async fn produce(
    state: Arc<Shared>,
    tx: sse::Sse,
    mut plan: Plan,
    mut bill: Bill,
    interrupt: Option<tokio_util::sync::CancellationToken>,
) {
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
        if interrupt.as_ref().is_some_and(|t| t.is_cancelled()) && i + 1 < deltas.len() {
            plan.ending = Ending::Interrupted;
            break;
        }
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
            if tx.data(&last).await
                && (!plan.stream_usage || tx.data(&with_usage).await)
                && tx.done().await
            {
                bill.settle(sent, true);
            }
        }
        Ending::Error => {
            let mut err = chunk(&plan, json!({ "content": "" }), Some("error"));
            err["error"] = faults::provider_error(plan.provider);
            tx.data(&err).await;
            bill.settle_failed_stream(sent, plan.planned_tokens);
        }
        Ending::Interrupted => {
            tx.done().await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::Price;

    /// The answer body as it was built before (a `json!` tree), to hold the structs to it.
    fn tree_body(plan: &Plan) -> Value {
        let completion = plan.completion_tokens();
        let cost = plan.cost(completion);
        let usage = json!({
            "prompt_tokens": plan.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": plan.prompt_tokens + completion,
            "cost": cost,
            "is_byok": plan.byok,
            "prompt_tokens_details": {
                "cached_tokens": 0, "cache_write_tokens": 0, "audio_tokens": 0, "video_tokens": 0
            },
            "cost_details": {
                "upstream_inference_cost": plan.upstream(completion),
                "upstream_inference_prompt_cost": plan.price.cost(plan.prompt_tokens, 0),
                "upstream_inference_completions_cost": plan.price.cost(0, completion)
            },
            "completion_tokens_details": { "reasoning_tokens": 0, "image_tokens": 0, "audio_tokens": 0 }
        });
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
            "service_tier": plan.service_tier,
            "choices": [choice],
            "usage": usage
        })
    }

    #[test]
    fn the_answer_body_has_the_same_bytes_as_the_json_tree() {
        for (case, byok) in [
            (
                vec!["a", "b\"c", "é"],
                Ending::Complete,
                "stop",
                Price {
                    prompt: 1.5e-7,
                    completion: 6e-7,
                },
            ),
            (
                vec![],
                Ending::Complete,
                "length",
                Price {
                    prompt: 0.0,
                    completion: 0.0,
                },
            ),
            (
                vec!["x"],
                Ending::Error,
                "error",
                Price {
                    prompt: 3e-6,
                    completion: 1.5e-5,
                },
            ),
            (
                vec!["y"; 40],
                Ending::Cut,
                "stop",
                Price {
                    prompt: f64::NAN,
                    completion: 0.1,
                },
            ),
        ]
        .into_iter()
        .flat_map(|case| [(case.clone(), false), (case, true)])
        {
            let (words, ending, finish, price) = case;
            let plan = Plan {
                id: "gen-1-abc".into(),
                created: 1_779_358_422,
                model: "openai/gpt-4o-mini-2024-07-18".into(),
                provider: "OpenAI",
                prompt_tokens: 27,
                words: words.into_iter().map(str::to_owned).collect(),
                planned_tokens: 0,
                finish,
                ending,
                price,
                with_cost: true,
                stream_usage: true,
                byok,
                service_tier: byok.then_some("flex"),
            };
            assert_eq!(whole_body(&plan), tree_body(&plan).to_string().into_bytes());
            assert_eq!(
                usage(&plan, 3).to_string(),
                tree_body(&Plan {
                    words: vec!["w".into(); 3],
                    ..plan
                })["usage"]
                    .to_string()
            );
        }
    }

    /// `--no-cost`: tokens, but no cost, cost details or BYOK flag, as OpenAI-compatible
    /// servers answer.
    #[test]
    fn without_cost_the_usage_has_tokens_only() {
        let plan = Plan {
            id: "gen-1".into(),
            created: 0,
            model: "m".into(),
            provider: "P",
            prompt_tokens: 5,
            words: vec!["a".into(), "b".into()],
            planned_tokens: 2,
            finish: "stop",
            ending: Ending::Complete,
            price: Price {
                prompt: 1e-6,
                completion: 2e-6,
            },
            with_cost: false,
            stream_usage: true,
            byok: false,
            service_tier: None,
        };
        let u = usage(&plan, 2);
        assert_eq!(u["prompt_tokens"], 5);
        assert_eq!(u["completion_tokens"], 2);
        for absent in ["cost", "cost_details", "is_byok"] {
            assert!(u.get(absent).is_none(), "{absent} in {u}");
        }
    }
}
