//! Integration tests of the mock server over HTTP (reqwest against `MockServer::start`).

use std::time::Duration;

use serde_json::{Value, json};

use super::{MockConfig, MockServer};

async fn start(config: MockConfig) -> MockServer {
    let addr = "127.0.0.1:0".parse().expect("literal addr");
    MockServer::start(config, addr).await.expect("bind")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

async fn post(server: &MockServer, path: &str, body: Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", server.base_url()))
        .bearer_auth("sk-test")
        .json(&body)
        .send()
        .await
        .expect("send")
}

fn chat_body(model: &str, prompt: &str, stream: bool) -> Value {
    json!({ "model": model, "stream": stream, "messages": [{ "role": "user", "content": prompt }] })
}

fn responses_body(model: &str, prompt: &str, stream: bool) -> Value {
    json!({ "model": model, "stream": stream, "input": prompt })
}

/// The JSON data events of an SSE body (comments and `[DONE]` skipped).
fn events(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).expect("event json"))
        .collect()
}

#[tokio::test]
async fn chat_non_stream_shape() {
    let server = start(MockConfig::default()).await;
    let resp = post(
        &server,
        "/chat/completions",
        chat_body("openai/gpt-4o-mini", "hi there", false),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let header_id = resp.headers()["x-generation-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["id"], header_id);
    assert!(header_id.starts_with("gen-"));
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "openai/gpt-4o-mini-2024-07-18");
    assert_eq!(body["provider"], "OpenAI");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let text = body["choices"][0]["message"]["content"]
        .as_str()
        .expect("content");
    assert!(
        text.starts_with("mock answer (openai/gpt-4o-mini):"),
        "{text}"
    );
    let usage = &body["usage"];
    let (p, c) = (
        usage["prompt_tokens"].as_u64().unwrap_or(0),
        usage["completion_tokens"].as_u64().unwrap_or(0),
    );
    assert_eq!(c as usize, text.split_whitespace().count());
    assert_eq!(usage["total_tokens"].as_u64(), Some(p + c));
    assert_eq!(
        usage["cost"].as_f64(),
        Some(p as f64 * 0.000_000_15 + c as f64 * 0.000_000_6)
    );
    let stats = server.stats();
    assert_eq!(
        (stats.requests, stats.answered, stats.generations),
        (1, 1, 1)
    );
    assert_eq!(stats.by_status.get(&200), Some(&1));
    server.shutdown().await;
}

#[tokio::test]
async fn chat_stream_shape() {
    let server = start(MockConfig {
        keepalive_comments: 2,
        ..MockConfig::default()
    })
    .await;
    let resp = post(
        &server,
        "/chat/completions",
        chat_body("m/x", "stream me", true),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/event-stream")
    );
    let id = resp.headers()["x-generation-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    let body = resp.text().await.expect("body");
    assert!(body.starts_with(": OPENROUTER PROCESSING\n\n: OPENROUTER PROCESSING\n\n"));
    assert!(body.ends_with("data: [DONE]\n\n"));
    let evs = events(&body);
    assert!(evs.iter().all(|e| e["id"] == id));
    let text: String = evs
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(text.starts_with("mock answer (m/x):"));
    let last = evs.last().expect("events");
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert!(last["usage"]["cost"].as_f64().is_some_and(|c| c > 0.0));
    assert_eq!(evs.iter().filter(|e| e.get("usage").is_some()).count(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn responses_both_ways_match_chat() {
    let server = start(MockConfig::default()).await;
    let prompt = "tell me about rivers";
    let model = "anthropic/claude-3.5-haiku";
    let chat: Value = post(
        &server,
        "/chat/completions",
        chat_body(model, prompt, false),
    )
    .await
    .json()
    .await
    .expect("json");
    let chat_text = chat["choices"][0]["message"]["content"].clone();
    let resp = post(&server, "/responses", responses_body(model, prompt, false)).await;
    assert!(resp.headers().contains_key("x-generation-id"));
    let whole: Value = resp.json().await.expect("json");
    assert_eq!(whole["object"], "response");
    assert_eq!(whole["status"], "completed");
    assert_eq!(whole["output"][0]["type"], "message");
    assert_eq!(whole["output"][0]["content"][0]["type"], "output_text");
    assert_eq!(whole["output"][0]["content"][0]["text"], chat_text);
    let usage = &whole["usage"];
    assert_eq!(usage["input_tokens"], chat["usage"]["prompt_tokens"]);
    assert_eq!(usage["output_tokens"], chat["usage"]["completion_tokens"]);
    assert_eq!(usage["cost"], chat["usage"]["cost"]);
    assert_eq!(usage["input_tokens_details"]["cached_tokens"], 0);
    assert_eq!(usage["output_tokens_details"]["reasoning_tokens"], 0);

    let body = post(&server, "/responses", responses_body(model, prompt, true))
        .await
        .text()
        .await
        .expect("body");
    assert!(!body.contains("event:"));
    assert!(body.ends_with("data: [DONE]\n\n"));
    let evs = events(&body);
    let kinds: Vec<&str> = evs.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        kinds[..4],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added"
        ]
    );
    assert_eq!(
        kinds[kinds.len() - 4..],
        [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let seqs: Vec<u64> = evs
        .iter()
        .filter_map(|e| e["sequence_number"].as_u64())
        .collect();
    assert_eq!(seqs, (0..evs.len() as u64).collect::<Vec<_>>());
    let text: String = evs
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .filter_map(|e| e["delta"].as_str())
        .collect();
    assert_eq!(Some(text.as_str()), chat_text.as_str());
    let done = &evs[evs.len() - 1]["response"];
    assert_eq!(done["usage"]["cost"], chat["usage"]["cost"]);
    assert_eq!(server.stats().max_answers_per_prompt, 3);
    server.shutdown().await;
}
