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

/// `x` as a client sees it: serialized by the server, parsed by serde_json.
fn reparse(x: f64) -> Value {
    serde_json::from_str(&json!(x).to_string()).unwrap_or(Value::Null)
}

async fn get(server: &MockServer, path: &str) -> reqwest::Response {
    client()
        .get(format!("{}{path}", server.base_url()))
        .bearer_auth("sk-test")
        .send()
        .await
        .expect("send")
}

#[tokio::test]
async fn answers_are_deterministic_across_transports() {
    let server = start(MockConfig::default()).await;
    let body = chat_body("x/y", "same prompt", false);
    let a: Value = post(&server, "/chat/completions", body.clone())
        .await
        .json()
        .await
        .expect("json");
    let b: Value = post(&server, "/chat/completions", body)
        .await
        .json()
        .await
        .expect("json");
    assert_ne!(a["id"], b["id"]);
    assert_eq!(a["choices"], b["choices"]);
    assert_eq!(a["usage"], b["usage"]);
    let sse = post(
        &server,
        "/chat/completions",
        chat_body("x/y", "same prompt", true),
    )
    .await
    .text()
    .await
    .expect("body");
    let evs = events(&sse);
    let text: String = evs
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        Some(text.as_str()),
        a["choices"][0]["message"]["content"].as_str()
    );
    assert_eq!(evs.last().map(|e| &e["usage"]), Some(&a["usage"]));
    server.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_envelopes() {
    let server = start(MockConfig {
        require_key: Some("sk-right".into()),
        ..MockConfig::default()
    })
    .await;
    let url = format!("{}/chat/completions", server.base_url());
    let resp = client()
        .post(&url)
        .bearer_auth("sk-wrong")
        .json(&chat_body("a/b", "x", false))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 401);
    let body = resp.text().await.expect("body");
    assert!(!body.contains("sk-wrong"));
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["error"]["code"], 401);
    let auth = |r: reqwest::RequestBuilder| r.bearer_auth("sk-right");
    let resp = auth(client().post(&url))
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    let resp = auth(client().post(&url))
        .json(&json!({"model": "a/b"}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    let resp = auth(client().post(&url))
        .json(&chat_body("bad/invalid-model", "x", false))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["metadata"]["error_type"], "invalid_request");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("is not a valid model ID")
    );
    let stats = server.stats();
    assert_eq!(
        (stats.requests, stats.generations, stats.answered),
        (4, 0, 0)
    );
    assert_eq!(stats.by_status.get(&400), Some(&3));
    server.shutdown().await;
}

#[tokio::test]
async fn directives_count_attempts_and_set_retry_after() {
    let server = start(MockConfig::default()).await;
    let body = chat_body("a/b", "q [[mock:429*1 retry-after=1]][[mock:500*1]]", false);
    let first = post(&server, "/chat/completions", body.clone()).await;
    assert_eq!(first.status(), 429);
    assert_eq!(first.headers()["retry-after"], "1");
    assert!(!first.headers().contains_key("x-generation-id"));
    let v: Value = first.json().await.expect("json");
    assert_eq!(v["error"]["metadata"]["error_type"], "rate_limit_exceeded");
    let second = post(&server, "/chat/completions", body.clone()).await;
    assert_eq!(second.status(), 500);
    assert_eq!(
        post(&server, "/chat/completions", body.clone())
            .await
            .status(),
        200
    );
    assert_eq!(post(&server, "/chat/completions", body).await.status(), 200);
    let stats = server.stats();
    assert_eq!(stats.max_answers_per_prompt, 2);
    assert_eq!(stats.by_status.get(&429), Some(&1));
    server.shutdown().await;
}

#[tokio::test]
async fn drop_err200_and_other_200_faults() {
    let server = start(MockConfig::default()).await;
    let dropped = client()
        .post(format!("{}/chat/completions", server.base_url()))
        .bearer_auth("k")
        .json(&chat_body("a/b", "[[mock:drop*1]]", false))
        .send()
        .await;
    assert!(dropped.is_err(), "{dropped:?}");
    assert_eq!(
        post(
            &server,
            "/chat/completions",
            chat_body("a/b", "[[mock:drop*1]]", false)
        )
        .await
        .status(),
        200
    );

    let resp = post(
        &server,
        "/chat/completions",
        chat_body("a/b", "[[mock:err200]]", false),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-generation-id"));
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["metadata"]["error_type"], "provider_unavailable");
    assert!(v.get("choices").is_none());

    let v: Value = post(
        &server,
        "/chat/completions",
        chat_body("a/b", "[[mock:choice-error]]", false),
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(v["choices"][0]["finish_reason"], "error");
    assert_eq!(v["choices"][0]["error"]["code"], 502);

    let resp = post(
        &server,
        "/chat/completions",
        chat_body("a/b", "[[mock:html502]]", false),
    )
    .await;
    assert_eq!(resp.status(), 502);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/html")
    );
    assert_eq!(
        post(
            &server,
            "/chat/completions",
            chat_body("a/b", "[[mock:empty200]]", false)
        )
        .await
        .text()
        .await
        .expect("b"),
        ""
    );
    assert_eq!(
        post(
            &server,
            "/chat/completions",
            chat_body("a/b", "[[mock:garbage200]]", false)
        )
        .await
        .text()
        .await
        .expect("b"),
        "not json"
    );
    let v: Value = post(
        &server,
        "/chat/completions",
        chat_body("a/b", "[[mock:length-empty]]", false),
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(
        (
            v["choices"][0]["finish_reason"].as_str(),
            v["choices"][0]["message"]["content"].as_str()
        ),
        (Some("length"), Some(""))
    );
    let v: Value = post(
        &server,
        "/responses",
        responses_body("a/b", "[[mock:content-filter]]", false),
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(
        (
            v["status"].as_str(),
            v["incomplete_details"]["reason"].as_str()
        ),
        (Some("incomplete"), Some("content_filter"))
    );
    let cut = post(
        &server,
        "/chat/completions",
        chat_body("a/b", "[[mock:truncate]]", false),
    )
    .await
    .text()
    .await
    .expect("b");
    assert!(serde_json::from_str::<Value>(&cut).is_err());
    let resp = post(
        &server,
        "/chat/completions",
        chat_body("a/b", "[[mock:402-inflight]]", false),
    )
    .await;
    assert_eq!(resp.status(), 402);
    assert!(resp.headers().contains_key("retry-after"));
    let v: Value = resp.json().await.expect("json");
    assert_eq!(
        v["error"]["metadata"]["limit_source"],
        "openrouter_in_flight_budget"
    );
    assert_eq!(server.stats().by_status.get(&0), Some(&1));
    server.shutdown().await;
}

#[tokio::test]
async fn stall_respects_client_timeout() {
    let server = start(MockConfig::default()).await;
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .expect("client");
    let started = std::time::Instant::now();
    let outcome = async {
        let resp = quick
            .post(format!("{}/chat/completions", server.base_url()))
            .bearer_auth("k")
            .json(&chat_body("a/b", "[[mock:stall]]", false))
            .send()
            .await?;
        resp.text().await
    }
    .await;
    assert!(outcome.is_err_and(|e| e.is_timeout()));
    assert!(started.elapsed() < Duration::from_secs(2));
    server.shutdown().await;
}

#[tokio::test]
async fn stream_faults_bill_what_was_sent() {
    let server = start(MockConfig::default()).await;
    let body = post(
        &server,
        "/chat/completions",
        chat_body("a/b", "one two [[mock:mid-stream-error]]", true),
    )
    .await
    .text()
    .await
    .expect("b");
    let evs = events(&body);
    let last = evs.last().expect("events");
    assert_eq!(
        last["error"]["metadata"]["error_type"],
        "provider_unavailable"
    );
    assert_eq!(last["choices"][0]["finish_reason"], "error");
    assert!(!body.contains("[DONE]") && !body.contains("\"usage\""));
    let resp = post(
        &server,
        "/chat/completions",
        chat_body("a/b", "three [[mock:truncate]]", true),
    )
    .await;
    let id = resp.headers()["x-generation-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    let body = resp.text().await.expect("b");
    assert!(!body.contains("[DONE]") && !body.contains("\"usage\""));
    let sent = events(&body).len() as u64;
    let g: Value = get(&server, &format!("/generation?id={id}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(g["data"]["tokens_completion"].as_u64(), Some(sent));
    let expected =
        super::price_of("a/b").cost(g["data"]["tokens_prompt"].as_u64().unwrap_or(0), sent);
    // Compare after the same parse: serde_json's default float parsing is not round-trip exact.
    assert_eq!(g["data"]["total_cost"], reparse(expected));
    let stats = server.stats();
    assert_eq!((stats.answered, stats.generations), (0, 2));
    server.shutdown().await;
}

#[tokio::test]
async fn generation_delay_then_exact_cost() {
    let server = start(MockConfig {
        generation_delay_ms: 150,
        ..MockConfig::default()
    })
    .await;
    let resp = post(
        &server,
        "/chat/completions",
        chat_body("google/gemini-2.0-flash-001", "cost me", false),
    )
    .await;
    let id = resp.headers()["x-generation-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    let body: Value = resp.json().await.expect("json");
    let path = format!("/generation?id={id}");
    let early = get(&server, &path).await;
    assert_eq!(early.status(), 404);
    let v: Value = early.json().await.expect("json");
    assert_eq!(v["error"]["message"], format!("Generation {id} not found"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let found: Value = get(&server, &path).await.json().await.expect("json");
    let data = &found["data"];
    assert_eq!(data["id"], id);
    assert_eq!(data["total_cost"], body["usage"]["cost"]);
    assert_eq!(data["tokens_prompt"], body["usage"]["prompt_tokens"]);
    assert_eq!(
        data["native_tokens_completion"],
        body["usage"]["completion_tokens"]
    );
    assert_eq!(data["provider_name"], "Google AI Studio");
    assert_eq!(data["finish_reason"], "stop");
    assert_eq!(data["streamed"], false);
    assert_eq!(
        get(&server, "/generation?id=gen-0-nope").await.status(),
        404
    );
    assert_eq!(server.stats().generation_lookups, 3);
    server.shutdown().await;
}

#[tokio::test]
async fn models_prices_equal_billing_and_key_reports_usage() {
    let server = start(MockConfig {
        credit_limit: Some(10.0),
        ..MockConfig::default()
    })
    .await;
    let models: Value = get(&server, "/models").await.json().await.expect("json");
    let haiku = models["data"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["id"] == "anthropic/claude-3.5-haiku"))
        .expect("listed")
        .clone();
    let price = |k: &str| {
        haiku["pricing"][k]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    let resp: Value = post(
        &server,
        "/chat/completions",
        chat_body("anthropic/claude-3.5-haiku", "price check", false),
    )
    .await
    .json()
    .await
    .expect("json");
    let u = &resp["usage"];
    let expect = u["prompt_tokens"].as_f64().unwrap_or(0.0) * price("prompt")
        + u["completion_tokens"].as_f64().unwrap_or(0.0) * price("completion");
    assert_eq!(u["cost"], reparse(expect));
    let key: Value = get(&server, "/key").await.json().await.expect("json");
    assert_eq!(key["data"]["usage"], u["cost"]);
    assert_eq!(key["data"]["limit"], 10.0);
    let remaining = key["data"]["limit_remaining"].as_f64().unwrap_or(f64::NAN);
    assert!((remaining - (10.0 - expect)).abs() < 1e-12);
    assert_eq!(key["data"]["is_free_tier"], false);
    let stats: Value = get(&server, "/_mock/stats")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(stats["billed_usd"], u["cost"]);
    server.shutdown().await;
}

#[tokio::test]
async fn credit_limit_gives_402() {
    let server = start(MockConfig {
        credit_limit: Some(1e-9),
        ..MockConfig::default()
    })
    .await;
    assert_eq!(
        post(
            &server,
            "/chat/completions",
            chat_body("a/b", "spend", false)
        )
        .await
        .status(),
        200
    );
    let resp = post(
        &server,
        "/chat/completions",
        chat_body("a/b", "spend", false),
    )
    .await;
    assert_eq!(resp.status(), 402);
    let v: Value = resp.json().await.expect("json");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("Insufficient credits")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn rate_limit_gives_429_with_retry_after() {
    let server = start(MockConfig {
        rate_limit: Some(2),
        ..MockConfig::default()
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let resp = post(&server, "/responses", responses_body("a/b", "fast", false)).await;
        statuses.push(resp.status().as_u16());
        if resp.status() == 429 {
            assert_eq!(resp.headers()["retry-after"], "1");
            let v: Value = resp.json().await.expect("json");
            assert_eq!(v["error"]["metadata"]["error_type"], "rate_limit_exceeded");
        }
    }
    assert_eq!(statuses, [200, 200, 429]);
    server.shutdown().await;
}

#[tokio::test]
async fn a_token_bucket_gives_429s_with_no_hint_unless_asked() {
    for retry_after in [None, Some(1)] {
        let server = start(MockConfig {
            rate_limit_bucket: Some(super::Bucket {
                per_second: 0.5,
                burst: 2,
            }),
            retry_after,
            ..MockConfig::default()
        })
        .await;
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let resp = post(&server, "/chat/completions", chat_body("a/b", "tb", false)).await;
            statuses.push(resp.status().as_u16());
            if resp.status() == 429 {
                let h = resp.headers();
                assert_eq!(
                    h.get("retry-after").map(|v| v.to_str().unwrap_or("?")),
                    retry_after.map(|_| "1")
                );
                assert!(!h.keys().any(|k| k.as_str().starts_with("x-ratelimit")));
                let v: Value = resp.json().await.expect("json");
                assert_eq!(v["error"]["metadata"]["error_type"], "rate_limit_exceeded");
                assert!(v["error"]["metadata"].get("retry_after_seconds").is_none());
            }
        }
        assert_eq!(statuses, [200, 200, 429], "a burst of 2, then 1 every 2 s");
        server.shutdown().await;
    }
}

#[tokio::test]
async fn only_the_newest_generations_can_be_looked_up() {
    let server = start(MockConfig {
        keep_generations: 1,
        ..MockConfig::default()
    })
    .await;
    let mut ids = Vec::new();
    for prompt in ["first", "second"] {
        let resp = post(
            &server,
            "/chat/completions",
            chat_body("a/b", prompt, false),
        )
        .await;
        ids.push(
            resp.headers()["x-generation-id"]
                .to_str()
                .expect("ascii")
                .to_string(),
        );
    }
    let status = |id: &str| {
        let path = format!("/generation?id={id}");
        let server = &server;
        async move { get(server, &path).await.status().as_u16() }
    };
    assert_eq!(status(&ids[0]).await, 404, "the oldest was dropped");
    assert_eq!(status(&ids[1]).await, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn seeded_random_faults_are_repeatable() {
    let config = MockConfig {
        rate_429: 0.3,
        rate_5xx: 0.3,
        retry_after: Some(2),
        seed: 7,
        ..MockConfig::default()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let server = start(config.clone()).await;
        let mut seen = Vec::new();
        for i in 0..12 {
            let resp = post(
                &server,
                "/chat/completions",
                chat_body("a/b", &format!("p{i}"), false),
            )
            .await;
            if matches!(resp.status().as_u16(), 429 | 503) {
                assert_eq!(resp.headers()["retry-after"], "2");
            }
            seen.push(resp.status().as_u16());
        }
        runs.push(seen);
        server.shutdown().await;
    }
    assert_eq!(runs[0], runs[1]);
    assert!(runs[0].contains(&200) && runs[0].iter().any(|s| *s != 200));
}

#[tokio::test]
async fn max_tokens_truncates_with_length() {
    let server = start(MockConfig::default()).await;
    let mut body = chat_body("a/b", "long answer please", false);
    body["max_tokens"] = json!(2);
    let v: Value = post(&server, "/chat/completions", body)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 2);
    let mut body = responses_body("a/b", "long answer please", false);
    body["max_output_tokens"] = json!(2);
    let v: Value = post(&server, "/responses", body)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
    server.shutdown().await;
}

/// `METHOD path` with `token` and an optional body.
async fn call_as(
    server: &MockServer,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = client()
        .request(method, format!("{}{path}", server.base_url()))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.expect("send")
}

#[tokio::test]
async fn keys_are_created_read_disabled_and_billed_as_openrouter_describes() {
    use reqwest::Method;
    let server = start(MockConfig {
        management_key: Some("mgmt".into()),
        ..MockConfig::default()
    })
    .await;
    let body = json!({"name": "job", "limit": 1.0, "expires_at": "2099-01-01T00:00:00Z"});
    // Only the management key may manage keys: the ordinary key gets 403.
    let resp = call_as(
        &server,
        Method::POST,
        "/keys",
        "sk-test",
        Some(body.clone()),
    )
    .await;
    assert_eq!(resp.status(), 403);
    let resp = call_as(&server, Method::POST, "/keys", "mgmt", Some(body)).await;
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.expect("json");
    let key = created["key"].as_str().expect("key").to_owned();
    let hash = created["data"]["hash"].as_str().expect("hash").to_owned();
    assert_eq!(created["data"]["limit"], 1.0);
    assert_eq!(created["data"]["usage"], 0.0);
    assert_eq!(created["data"]["expires_at"], "2099-01-01T00:00:00Z");
    assert!(
        !created["data"].to_string().contains(&key),
        "data never holds the key"
    );
    // The management key makes no completions; the new key does, and is billed for it.
    let chat = chat_body("openai/gpt-4o-mini", "hello", false);
    let resp = call_as(
        &server,
        Method::POST,
        "/chat/completions",
        "mgmt",
        Some(chat.clone()),
    )
    .await;
    assert_eq!(resp.status(), 401);
    let resp = call_as(
        &server,
        Method::POST,
        "/chat/completions",
        &key,
        Some(chat.clone()),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.expect("json");
    let cost = answer["usage"]["cost"].as_f64().expect("cost");
    let path = format!("/keys/{hash}");
    let got: Value = call_as(&server, Method::GET, &path, "mgmt", None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(got["data"]["usage"].as_f64(), Some(cost));
    // `/key` with the created key shows that key.
    let own: Value = call_as(&server, Method::GET, "/key", &key, None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(own["data"]["usage"].as_f64(), Some(cost));
    assert_eq!(own["data"]["limit"], 1.0);
    // Disabled: 401 for completions; unknown hashes are 404.
    let resp = call_as(
        &server,
        Method::PATCH,
        &path,
        "mgmt",
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let resp = call_as(&server, Method::POST, "/chat/completions", &key, Some(chat)).await;
    assert_eq!(resp.status(), 401);
    let resp = call_as(&server, Method::GET, "/keys/nope", "mgmt", None).await;
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn a_created_keys_limit_is_enforced_with_402() {
    use reqwest::Method;
    let server = start(MockConfig {
        management_key: Some("mgmt".into()),
        ..MockConfig::default()
    })
    .await;
    let resp = call_as(
        &server,
        Method::POST,
        "/keys",
        "mgmt",
        Some(json!({"name": "j", "limit": 0.0})),
    )
    .await;
    let created: Value = resp.json().await.expect("json");
    let key = created["key"].as_str().expect("key").to_owned();
    let chat = chat_body("openai/gpt-4o-mini", "hello", false);
    let resp = call_as(&server, Method::POST, "/chat/completions", &key, Some(chat)).await;
    assert_eq!(resp.status(), 402);
    assert!(
        resp.headers().get("retry-after").is_none(),
        "not the in-flight 402"
    );
    let body: Value = resp.json().await.expect("json");
    assert_eq!(
        body["error"]["metadata"]["limit_source"],
        "openrouter_key_limit"
    );
}
