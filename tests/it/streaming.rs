//! Both endpoints × both transports give the same record; stream failures are retried.

use serde_json::Value;

use crate::support::{Env, record, records};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_and_transports_agree() {
    let env = Env::new().await;
    let input = env.write(
        "e.jsonl",
        "{\"id\":\"p\",\"prompt\":\"Tell me about otters.\"}\n\
         {\"id\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"Two plus two?\"}]}\n",
    );
    let mut results: Vec<Vec<Value>> = Vec::new();
    for (endpoint, stream) in [
        ("chat", false),
        ("chat", true),
        ("responses", false),
        ("responses", true),
    ] {
        let out = env.path(&format!("e.{endpoint}.{stream}.jsonl"));
        let mut cmd = env
            .run()
            .input(&input)
            .args(&[
                "-m",
                "openai/gpt-4o-mini",
                "-q",
                "--system",
                "Be brief.",
                "--endpoint",
                endpoint,
                "-o",
            ])
            .arg(out.to_str().unwrap());
        if stream {
            cmd = cmd.arg("--stream");
        }
        cmd.output().await.code(0);
        let recs = records(&out);
        for r in &recs {
            assert_eq!(r["endpoint"], endpoint);
            assert!(r["generation_id"].as_str().unwrap().starts_with("gen-"));
            if stream {
                assert!(r["ttft_ms"].is_u64(), "streamed rows record TTFT: {r}");
            } else {
                assert_eq!(r["ttft_ms"], Value::Null);
            }
        }
        results.push(recs);
    }
    for id in ["p", "m"] {
        let first = record(&results[0], id);
        for other in &results[1..] {
            let r = record(other, id);
            assert_eq!(r["output"], first["output"], "{id}");
            assert_eq!(
                r["usage"]["prompt_tokens"], first["usage"]["prompt_tokens"],
                "{id}"
            );
            assert_eq!(
                r["usage"]["completion_tokens"], first["usage"]["completion_tokens"],
                "{id}"
            );
            assert_eq!(r["usage"]["cost"], first["usage"]["cost"], "{id}");
            assert_eq!(r["finish_reason"], first["finish_reason"], "{id}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_failures_are_retried_to_the_full_answer() {
    let env = Env::new().await;
    for endpoint in ["chat", "responses"] {
        // The mock counts directive attempts per (model, prompt): a prompt per endpoint.
        let prompts = [
            format!("[[mock:mid-stream-error*1]] one {endpoint}"),
            format!("[[mock:truncate*1]] two {endpoint}"),
            format!("[[mock:429*1 retry-after=0]] three {endpoint}"),
        ];
        let input = env.jsonl(&format!("s-{endpoint}.jsonl"), &prompts);
        env.run()
            .input(&input)
            .args(&["-m", "a/b", "-q", "--stream", "--endpoint", endpoint])
            .output()
            .await
            .code(0);
        let recs = records(&env.path(&format!("s-{endpoint}.out.jsonl")));
        for id in ["r1", "r2", "r3"] {
            let r = record(&recs, id);
            assert_eq!(r["status"], "ok", "{endpoint} {id}: {r}");
            assert_eq!(r["attempts"], 2, "{endpoint} {id}");
            assert!(!r["output"].as_str().unwrap().is_empty());
        }
        // The broken attempts had generation ids (billed for what they streamed): kept.
        for id in ["r1", "r2"] {
            let r = record(&recs, id);
            assert_eq!(
                r["generation_ids"].as_array().unwrap().len(),
                2,
                "{endpoint} {id}: {r}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_stream_times_out_and_is_retried() {
    let env = Env::new().await;
    let input = env.jsonl("st.jsonl", &["[[mock:stall*1]] quiet"]);
    env.run()
        .input(&input)
        .args(&["-m", "a/b", "-q", "--stream", "--timeout", "0.5"])
        .output()
        .await
        .code(0);
    let r = &records(&env.path("st.out.jsonl"))[0];
    assert_eq!(r["attempts"], 2);
}

/// A stream that says `[DONE]` without a finish chunk (llama.cpp's server ends a stream that
/// another request interrupts this way) is a cut-off answer: retried, never recorded as ok;
/// an uninterrupted retry gives the whole answer with its finish reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_done_without_a_finish_reason_is_retried_not_kept() {
    let env = Env::new().await;
    let input = env.jsonl(
        "i.jsonl",
        &[
            "[[mock:interrupted*1]] Summarise the river report.",
            "[[mock:interrupted]] Summarise the bakery news.",
        ],
    );
    let done = env
        .run()
        .input(&input)
        .args(&["-m", "a/b", "--stream", "--max-attempts", "3", "-q"])
        .output()
        .await;
    done.code(1);
    let recs = records(&env.path("i.out.jsonl"));
    let once = record(&recs, "r1");
    assert_eq!(once["status"], "ok", "{once}");
    assert_eq!(once["attempts"], 2, "{once}");
    assert_eq!(once["finish_reason"], "stop", "{once}");
    assert_eq!(
        once["generation_ids"].as_array().unwrap().len(),
        2,
        "{once}"
    );
    let always = record(&recs, "r2");
    assert_eq!(always["status"], "error", "{always}");
    assert_eq!(always["error"]["kind"], "truncated", "{always}");
    assert!(
        always["error"]["message"]
            .as_str()
            .unwrap()
            .contains("without a finish reason"),
        "{always}"
    );
    assert_eq!(env.stats().answered, 1);
}

/// Against a server that answers one stream at a time and cuts the running one short when
/// another arrives (llama.cpp's), orbatch records no cut answer as ok and lowers how many it
/// keeps in flight until the cuts stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_cuts_streams_short_gets_fewer_at_once() {
    let env = Env::with(orbatch::mock::MockConfig {
        interrupt_streams: true,
        latency_ms: 200,
        ..orbatch::mock::MockConfig::default()
    })
    .await;
    let input = env.jsonl("c.jsonl", &crate::support::numbered(8, "Summarise item"));
    let done = env
        .run()
        .input(&input)
        .args(&["-m", "a/b", "--stream", "-j", "4", "-v"])
        .output()
        .await;
    done.code(0);
    assert!(
        done.stderr.contains("one request at a time from now on"),
        "{}",
        done.stderr
    );
    let recs = records(&env.path("c.out.jsonl"));
    assert_eq!(recs.len(), 8);
    assert!(
        recs.iter()
            .all(|r| r["status"] == "ok" && r["finish_reason"] == "stop")
    );
    let attempts: u64 = recs.iter().map(|r| r["attempts"].as_u64().unwrap()).sum();
    assert!(attempts > 8, "some streams were cut and sent again");
    assert_eq!(env.stats().answered, 8);
}
