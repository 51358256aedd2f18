//! The batch lane (`--lane batch|auto`, issue #17) against the mock's Batch API: results
//! become ordinary records, nothing is submitted twice across reruns, and every way the API
//! misbehaves (early 404s, paged results, failed lines, failed and expired batches, the 402
//! gate, an unanswered submit) ends in records a rerun can finish.

use orbatch::mock::MockConfig;
use serde_json::{Value, json};

use crate::support::{Cmd, Env, numbered, record, records};

const MODEL: &str = "openai/gpt-4o-mini";

/// `orbatch run --lane batch` polling every 20 ms.
fn batch_run(env: &Env) -> Cmd {
    env.run()
        .args(&["--lane", "batch", "-m", MODEL])
        .env("ORBATCH_BATCH_POLL_MS", "20")
}

fn state_lines(env: &Env) -> Vec<Value> {
    records(&env.path("out.batches.jsonl"))
}

/// Wait (up to 10 s) until `out.batches.jsonl` holds the batch id the server answered.
async fn batch_id_written(env: &Env) {
    let state = env.path("out.batches.jsonl");
    for _ in 0..2000 {
        if std::fs::read_to_string(&state).is_ok_and(|t| t.contains("submitted")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

async fn with(config: MockConfig) -> Env {
    Env::with(config).await
}

#[tokio::test]
async fn a_batch_answers_every_row_at_the_batch_price_and_a_rerun_submits_nothing() {
    let env = with(MockConfig {
        batch_404s: 2,
        batch_settle_polls: 2,
        ..MockConfig::default()
    })
    .await;
    let input = env.jsonl("in.jsonl", &numbered(12, "say"));
    let out = env.path("out.jsonl");
    let done = batch_run(&env)
        .input(&input)
        .arg("-o")
        .arg(out.to_str().unwrap())
        .output()
        .await;
    done.code(0);
    assert!(
        done.stderr.contains("completed, 12/12 done")
            // Progress news, said plainly: not a warning.
            && done.stderr.contains("orbatch: batch ")
            && !done.stderr.contains("warning: batch"),
        "{}",
        done.stderr
    );
    assert!(
        !done.stderr.contains("the batch says"),
        "lines reconcile: {}",
        done.stderr
    );
    let recs = records(&out);
    assert_eq!(recs.len(), 12);
    let stats = env.stats();
    assert_eq!((stats.batch_submits, stats.batch_lines), (1, 12));
    assert_eq!(stats.requests, 0, "nothing went live");
    let batch_id = recs[0]["batch_id"].as_str().unwrap().to_owned();
    assert!(batch_id.starts_with("batch-"), "{batch_id}");
    for r in &recs {
        assert_eq!(r["status"], "ok", "{r}");
        assert_eq!(r["lane"], "batch");
        assert_eq!(r["batch_id"], batch_id.as_str());
        assert!(r["generation_id"].as_str().unwrap().starts_with("gen-"));
        assert!(r["output"].as_str().unwrap().len() > 1);
    }
    let batch_cost: f64 = recs
        .iter()
        .map(|r| r["usage"]["cost"].as_f64().unwrap())
        .sum();

    // The same rows live cost twice as much; and live records carry no lane fields.
    let live_out = env.path("live.jsonl");
    env.run()
        .args(&["-m", MODEL])
        .input(&input)
        .arg("-o")
        .arg(live_out.to_str().unwrap())
        .output()
        .await
        .code(0);
    let live = records(&live_out);
    let live_cost: f64 = live
        .iter()
        .map(|r| r["usage"]["cost"].as_f64().unwrap())
        .sum();
    assert!(
        (batch_cost * 2.0 - live_cost).abs() < 1e-12,
        "{batch_cost} vs {live_cost}"
    );
    assert!(live[0].get("lane").is_none() && live[0].get("batch_id").is_none());
    assert_eq!(
        record(&live, "r3")["output"],
        record(&recs, "r3")["output"],
        "the same answer logic"
    );

    // Rerun: everything answered, nothing submitted again.
    batch_run(&env)
        .input(&input)
        .arg("-o")
        .arg(out.to_str().unwrap())
        .output()
        .await
        .code(0);
    assert_eq!(env.stats().batch_submits, 1);
    let events: Vec<String> = state_lines(&env)
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(events, ["manifest", "submitted", "collected"]);
}

#[tokio::test]
async fn failed_and_missing_lines_are_error_records_a_rerun_submits_again() {
    let env = with(MockConfig {
        batch_results: "paged".into(),
        ..MockConfig::default()
    })
    .await;
    let mut prompts = numbered(5, "fine");
    prompts.push("a [[mock:line-error]]".into());
    prompts.push("b [[mock:line-400]]".into());
    prompts.push("c [[mock:line-missing]]".into());
    let input = env.jsonl("in.jsonl", &prompts);
    let out = env.path("out.jsonl");
    let done = batch_run(&env)
        .input(&input)
        .arg("-o")
        .arg(out.to_str().unwrap())
        .output()
        .await;
    done.code(1);
    let recs = records(&out);
    assert_eq!(recs.len(), 8);
    assert_eq!(recs.iter().filter(|r| r["status"] == "ok").count(), 5);
    let kind = |id: &str| record(&recs, id)["error"]["kind"].clone();
    assert_eq!(kind("r6"), "provider_error");
    assert_eq!(kind("r7"), "bad_request");
    assert_eq!(record(&recs, "r7")["error"]["status"], 400);
    assert_eq!(kind("r8"), "provider_error");
    assert!(
        record(&recs, "r8")["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing from the results")
    );
    assert_eq!(record(&recs, "r8")["lane"], "batch");

    // The rerun sends only the three failed rows, in a new batch.
    batch_run(&env)
        .input(&input)
        .arg("-o")
        .arg(out.to_str().unwrap())
        .output()
        .await
        .code(1);
    let stats = env.stats();
    assert_eq!((stats.batch_submits, stats.batch_lines), (2, 11));
    assert_eq!(
        stats.max_answers_per_prompt, 1,
        "no answered row paid twice"
    );
}

#[tokio::test]
async fn a_failed_batch_fails_every_row_and_fallback_sync_sends_them_live() {
    let env = Env::new().await;
    let mut prompts = numbered(3, "q");
    prompts.push("bad [[mock:batch-fail]]".into());
    let input = env.jsonl("in.jsonl", &prompts);
    let out = env.path("out.jsonl");
    batch_run(&env)
        .input(&input)
        .arg("-o")
        .arg(out.to_str().unwrap())
        .output()
        .await
        .code(1);
    let recs = records(&out);
    assert_eq!(recs.len(), 4);
    for r in &recs {
        assert_eq!(r["status"], "error");
        assert_eq!(r["error"]["kind"], "bad_request");
        let message = r["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("failed") && message.contains("custom_id 'r4-"),
            "{message}"
        );
    }
    assert_eq!(env.stats().billed_usd, 0.0, "a failed batch costs nothing");

    // --fallback sync: the rows of a failed batch are answered live.
    let out2 = env.path("out2.jsonl");
    batch_run(&env)
        .args(&["--fallback", "sync"])
        .input(&input)
        .arg("-o")
        .arg(out2.to_str().unwrap())
        .output()
        .await
        .code(0);
    let recs = records(&out2);
    assert_eq!(recs.len(), 4);
    assert!(
        recs.iter()
            .all(|r| r["status"] == "ok" && r.get("lane").is_none())
    );
    assert_eq!(env.stats().requests, 4);
}

#[tokio::test]
async fn an_expired_batch_leaves_error_records_for_a_rerun() {
    let env = Env::new().await;
    let input = env.jsonl("in.jsonl", &["x [[mock:batch-expire]]", "y"]);
    let out = env.path("out.jsonl");
    batch_run(&env)
        .input(&input)
        .arg("-o")
        .arg(out.to_str().unwrap())
        .output()
        .await
        .code(1);
    let recs = records(&out);
    assert!(
        recs.iter()
            .all(|r| r["error"]["kind"] == "transient" && r["error"]["code"] == "expired")
    );
}

#[tokio::test]
async fn the_payment_gate_stops_and_a_rerun_collects_without_resubmitting() {
    let env = with(MockConfig {
        batch_402: 1,
        ..MockConfig::default()
    })
    .await;
    let input = env.jsonl("in.jsonl", &numbered(4, "p"));
    let out = env.path("out.jsonl");
    let done = batch_run(&env)
        .input(&input)
        .arg("-o")
        .arg(out.to_str().unwrap())
        .output()
        .await;
    done.code(3);
    assert!(
        done.stderr.contains("credits unlock the results"),
        "{}",
        done.stderr
    );
    assert!(
        records(&out).is_empty(),
        "nothing recorded: the rows are not failures"
    );
    batch_run(&env)
        .input(&input)
        .arg("-o")
        .arg(out.to_str().unwrap())
        .output()
        .await
        .code(0);
    assert_eq!(records(&out).len(), 4);
    let stats = env.stats();
    assert_eq!(stats.batch_submits, 1);
    assert_eq!(stats.max_answers_per_prompt, 1);
}

#[tokio::test]
async fn wait_bounds_polling_and_a_rerun_continues_the_same_batch() {
    let env = with(MockConfig {
        batch_ms: 3_000,
        ..MockConfig::default()
    })
    .await;
    let input = env.jsonl("in.jsonl", &numbered(3, "w"));
    let out = env.path("out.jsonl");
    let done = batch_run(&env)
        .args(&["--wait", "0.2"])
        .input(&input)
        .arg("-o")
        .arg(out.to_str().unwrap())
        .output()
        .await;
    done.code(1);
    assert!(done.stderr.contains("still running"), "{}", done.stderr);
    assert!(
        done.stderr.contains("to continue polling"),
        "{}",
        done.stderr
    );
    assert!(records(&out).is_empty());
    // The rerun polls until done; it submits nothing.
    batch_run(&env)
        .input(&input)
        .arg("-o")
        .arg(out.to_str().unwrap())
        .output()
        .await
        .code(0);
    assert_eq!(records(&out).len(), 3);
    assert_eq!(env.stats().batch_submits, 1);
}

#[tokio::test]
async fn a_rerun_after_kill_9_polls_instead_of_submitting_again() {
    let env = with(MockConfig {
        batch_ms: 1_500,
        ..MockConfig::default()
    })
    .await;
    let input = env.jsonl("in.jsonl", &numbered(5, "k"));
    let out = env.path("out.jsonl");
    let mut child = batch_run(&env)
        .input(&input)
        .arg("-o")
        .arg(out.to_str().unwrap())
        .spawn();
    env.wait_for("the submit", |s| s.batch_submits == 1).await;
    // Let the batch id reach the state file, then SIGKILL.
    batch_id_written(&env).await;
    child.start_kill().unwrap();
    let _ = child.wait().await;
    batch_run(&env)
        .input(&input)
        .arg("-o")
        .arg(out.to_str().unwrap())
        .output()
        .await
        .code(0);
    assert_eq!(records(&out).len(), 5);
    assert_eq!(env.stats().batch_submits, 1);
}

#[tokio::test]
async fn an_unanswered_submit_is_found_by_listing_not_sent_twice() {
    let env = with(MockConfig {
        batch_drop_submits: 1,
        ..MockConfig::default()
    })
    .await;
    let input = env.jsonl("in.jsonl", &numbered(3, "a"));
    let out = env.path("out.jsonl");
    let done = batch_run(&env)
        .input(&input)
        .arg("-o")
        .arg(out.to_str().unwrap())
        .output()
        .await;
    done.code(0);
    assert!(
        done.stderr.contains("looking for the batch"),
        "{}",
        done.stderr
    );
    assert_eq!(records(&out).len(), 3);
    assert_eq!(env.stats().batch_submits, 1);
}

#[tokio::test]
async fn a_manifest_without_a_batch_id_is_resolved_by_listing_on_rerun() {
    let env = with(MockConfig {
        batch_ms: 500,
        ..MockConfig::default()
    })
    .await;
    let input = env.jsonl("in.jsonl", &numbered(3, "m"));
    let out = env.path("out.jsonl");
    batch_run(&env)
        .args(&["--wait", "0"])
        .input(&input)
        .arg("-o")
        .arg(out.to_str().unwrap())
        .output()
        .await
        .code(1);
    // As if killed between the submit and the server's answer: the id never written.
    let state = env.path("out.batches.jsonl");
    let text = std::fs::read_to_string(&state).unwrap();
    let manifest_only: String = text
        .lines()
        .filter(|l| l.contains("\"manifest\""))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&state, manifest_only).unwrap();
    batch_run(&env)
        .input(&input)
        .arg("-o")
        .arg(out.to_str().unwrap())
        .output()
        .await
        .code(0);
    assert_eq!(records(&out).len(), 3);
    assert_eq!(env.stats().batch_submits, 1);
}

#[tokio::test]
async fn auto_sends_models_without_a_batch_variant_live() {
    let env = Env::new().await;
    let input = env.jsonl("in.jsonl", &numbered(3, "auto"));
    let out = env.path("out.jsonl");
    env.run()
        .args(&[
            "--lane",
            "auto",
            "-m",
            MODEL,
            "-m",
            "anthropic/claude-3.5-haiku",
        ])
        .env("ORBATCH_BATCH_POLL_MS", "20")
        .input(&input)
        .arg("-o")
        .arg(out.to_str().unwrap())
        .output()
        .await
        .code(0);
    let recs = records(&out);
    assert_eq!(recs.len(), 6);
    for r in &recs {
        let batched = r["model"] == MODEL;
        assert_eq!(r.get("lane").is_some(), batched, "{r}");
    }
    let stats = env.stats();
    assert_eq!((stats.batch_lines, stats.requests), (3, 3));
    assert_eq!(
        stats.batch_submits, 1,
        "no batch was tried for the model without a variant"
    );
}

#[tokio::test]
async fn a_model_without_a_batch_endpoint_is_an_error_record_or_goes_live() {
    let env = Env::new().await;
    let input = env.jsonl("in.jsonl", &numbered(2, "nb"));
    let out = env.path("out.jsonl");
    env.run()
        .args(&["--lane", "batch", "-m", "anthropic/claude-3.5-haiku"])
        .env("ORBATCH_BATCH_POLL_MS", "20")
        .input(&input)
        .arg("-o")
        .arg(out.to_str().unwrap())
        .output()
        .await
        .code(1);
    let recs = records(&out);
    let message = recs[0]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("does not have a :batch endpoint"),
        "{message}"
    );
    assert!(message.contains("--lane auto"), "{message}");
    assert_eq!(recs[0]["error"]["kind"], "bad_request");
    // A rerun with --fallback sync answers them live.
    env.run()
        .args(&[
            "--lane",
            "batch",
            "--fallback",
            "sync",
            "-m",
            "anthropic/claude-3.5-haiku",
        ])
        .env("ORBATCH_BATCH_POLL_MS", "20")
        .input(&input)
        .arg("-o")
        .arg(out.to_str().unwrap())
        .output()
        .await
        .code(0);
    assert_eq!(env.stats().requests, 2);
}

#[tokio::test]
async fn the_beta_path_and_inline_plus_paged_results_work_too() {
    let env = with(MockConfig {
        batch_results: "both".into(),
        ..MockConfig::default()
    })
    .await;
    let input = env.jsonl("in.jsonl", &numbered(2, "beta"));
    let out = env.path("out.jsonl");
    let beta = format!("http://{}/api/beta/batches", env.mock.addr());
    batch_run(&env)
        .args(&["--batch-path", &beta])
        .input(&input)
        .arg("-o")
        .arg(out.to_str().unwrap())
        .output()
        .await
        .code(0);
    assert_eq!(records(&out).len(), 2);
}

#[tokio::test]
async fn the_mock_refuses_requests_before_endpoint_and_model() {
    let env = Env::new().await;
    let url = format!("{}/batches", env.mock.base_url());
    let client = reqwest::Client::new();
    let send = |body: String| {
        client
            .post(&url)
            .bearer_auth(crate::support::KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let line = json!({"custom_id": "a", "body": {"messages": [{"role": "user", "content": "hi"}]}});
    let bad = format!(
        r#"{{"requests":[{line}],"endpoint":"/v1/chat/completions","model":"{MODEL}:batch"}}"#
    );
    let resp = send(bad).await.unwrap();
    assert_eq!(resp.status(), 400);
    let text = resp.text().await.unwrap();
    assert!(text.contains("must appear before requests"), "{text}");
    let good = format!(
        r#"{{"endpoint":"/v1/chat/completions","model":"{MODEL}:batch","requests":[{line}]}}"#
    );
    let resp = send(good).await.unwrap();
    assert_eq!(resp.status(), 202);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "validating");
    // Base slugs are refused, as the live API did for some accounts.
    let base =
        format!(r#"{{"endpoint":"/v1/chat/completions","model":"{MODEL}","requests":[{line}]}}"#);
    assert_eq!(send(base).await.unwrap().status(), 400);
}

#[tokio::test]
async fn batch_records_fit_the_record_schema() {
    let env = Env::new().await;
    let input = env.jsonl("in.jsonl", &["ok", "no [[mock:line-error]]"]);
    let out = env.path("out.jsonl");
    batch_run(&env)
        .input(&input)
        .arg("-o")
        .arg(out.to_str().unwrap())
        .output()
        .await
        .code(1);
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schema/record.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    for r in records(&out) {
        let errors: Vec<String> = validator.iter_errors(&r).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{r}: {errors:?}");
    }
}

#[tokio::test]
async fn rows_are_split_into_batches_per_model_with_deterministic_custom_ids() {
    let env = Env::new().await;
    let input = env.jsonl("in.jsonl", &numbered(5, "split"));
    let out = env.path("out.jsonl");
    batch_run(&env)
        .args(&["-m", "meta-llama/llama-3.1-8b-instruct"])
        .env("ORBATCH_BATCH_MAX_REQUESTS", "2")
        .input(&input)
        .arg("-o")
        .arg(out.to_str().unwrap())
        .output()
        .await
        .code(0);
    assert_eq!(records(&out).len(), 10);
    // 5 rows × 2 models, at most 2 a batch: 3 batches a model.
    let stats = env.stats();
    assert_eq!((stats.batch_submits, stats.batch_lines), (6, 10));
    let manifests: Vec<Value> = state_lines(&env)
        .into_iter()
        .filter(|e| e["event"] == "manifest")
        .collect();
    assert_eq!(manifests.len(), 6);
    let first = &manifests[0]["requests"][0];
    assert!(first[0].as_str().unwrap().starts_with("r1-"), "{first}");
    assert_eq!(first[1], "r1");
    assert!(
        manifests
            .iter()
            .all(|m| m["batch_model"].as_str().unwrap().ends_with(":batch"))
    );
}

#[tokio::test]
async fn plan_shows_the_worst_case_per_lane_from_the_batch_entries() {
    let env = Env::new().await;
    let input = env.jsonl("in.jsonl", &numbered(4, "plan"));
    let done = Cmd::new(&["plan"])
        .base_url(&env.mock.base_url())
        .args(&[
            "--lane",
            "auto",
            "-m",
            MODEL,
            "-m",
            "anthropic/claude-3.5-haiku",
        ])
        .args(&["-p", "max_tokens=100"])
        .input(&input)
        .output()
        .await;
    done.code(0);
    let out = &done.stdout;
    assert!(out.contains("Worst case per lane"), "{out}");
    let line = |m: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(&format!("{m}:")))
            .unwrap_or_else(|| panic!("no line for {m}: {out}"))
            .to_owned()
    };
    let gpt = line(MODEL);
    assert!(gpt.contains(&format!("({MODEL}:batch)")), "{gpt}");
    let haiku = line("anthropic/claude-3.5-haiku");
    assert!(haiku.contains("no :batch variant"), "{out}");
    // 4 × (prompt + 100 completion tokens) at half the list price.
    let dollars = |s: &str| -> Vec<f64> {
        s.split('$')
            .skip(1)
            .filter_map(|p| p.split_whitespace().next()?.parse().ok())
            .collect()
    };
    let d = dollars(&gpt);
    assert!((d[0] - 2.0 * d[2]).abs() <= d[0] * 0.02, "{gpt}");
    assert!(out.contains("with --lane auto"), "{out}");
}

#[tokio::test]
async fn the_batch_lane_refuses_what_it_does_not_do_yet() {
    let env = Env::new().await;
    let input = env.jsonl("in.jsonl", &numbered(1, "x"));
    let done = batch_run(&env)
        .args(&["--max-cost", "1", "--fallback", "sync"])
        .input(&input)
        .output()
        .await;
    done.code(2);
    assert!(
        done.stderr
            .contains("--max-cost holds with --lane batch alone"),
        "{}",
        done.stderr
    );
    let schema = env.write("x.schema.json", r#"{"type": "object"}"#);
    let done = batch_run(&env)
        .args(&["--schema", schema.to_str().unwrap()])
        .input(&input)
        .output()
        .await;
    done.code(2);
    assert!(done.stderr.contains("--schema"), "{}", done.stderr);
    assert_eq!(env.stats().batch_submits, 0);
}

/// `--max-cost` reserves each row's worst case at the `:batch` entry's prices: a cap of
/// 20.5 rows' batch worst case submits 20 rows, holds back the other 10 (unrecorded, for a
/// rerun with a higher cap) and stops with exit 3 once the 20 are collected.
#[tokio::test]
async fn max_cost_reserves_batch_prices_and_holds_back_what_does_not_fit() {
    let env = Env::new().await;
    let prompts: Vec<String> = (0..30).map(|i| format!("cap {i:02}")).collect();
    let input = env.jsonl("in.jsonl", &prompts);
    let one = env.jsonl("one.jsonl", &prompts[..1]);
    let plan = Cmd::new(&["plan"])
        .base_url(&env.mock.base_url())
        .args(&["--lane", "batch", "-m", MODEL, "-p", "max_tokens=5000"])
        .input(&one)
        .output()
        .await;
    plan.code(0);
    let one_row: f64 = plan
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("with --lane batch: $"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{}", plan.stdout));
    let cap = one_row * 20.5;
    let out = env.path("out.jsonl");
    let done = batch_run(&env)
        .args(&["-p", "max_tokens=5000", "--max-cost", &format!("{cap}")])
        .input(&input)
        .arg("-o")
        .arg(out.to_str().unwrap())
        .output()
        .await;
    done.code(3);
    assert!(done.stderr.contains("--max-cost"), "{}", done.stderr);
    let recs = records(&out);
    assert_eq!(recs.len(), 20);
    assert!(recs.iter().all(|r| r["status"] == "ok"));
    let spent: f64 = recs
        .iter()
        .map(|r| r["usage"]["cost"].as_f64().unwrap())
        .sum();
    assert!(spent <= cap, "{spent} > {cap}");
    assert_eq!(env.stats().batch_lines, 20);
}

#[tokio::test]
async fn job_files_choose_the_lane_and_a_bad_wait_names_the_key() {
    let env = Env::new().await;
    env.jsonl("in.jsonl", &numbered(2, "job"));
    let job = env.write(
        "job.toml",
        &format!(
            "input = \"in.jsonl\"\noutput = \"out.jsonl\"\nmodels = [\"{MODEL}\"]\n\
             lane = \"batch\"\nwait = \"10m\"\nbatch_path = \"/batches\"\n"
        ),
    );
    Cmd::new(&["run", job.to_str().unwrap()])
        .base_url(&env.mock.base_url())
        .env("ORBATCH_BATCH_POLL_MS", "20")
        .output()
        .await
        .code(0);
    let recs = records(&env.path("out.jsonl"));
    assert!(recs.iter().all(|r| r["lane"] == "batch"));
    assert_eq!(env.stats().batch_submits, 1);
    let bad = env.write(
        "bad.toml",
        &format!(
            "input = \"in.jsonl\"\nmodels = [\"{MODEL}\"]\nlane = \"batch\"\nwait = \"soon\"\n"
        ),
    );
    let done = Cmd::new(&["run", bad.to_str().unwrap()])
        .base_url(&env.mock.base_url())
        .output()
        .await;
    done.code(2);
    assert!(
        done.stderr.contains("wait = \"soon\" in"),
        "{}",
        done.stderr
    );
}

#[tokio::test]
async fn responses_requests_go_by_batch_too() {
    let env = with(MockConfig {
        batch_results: "paged".into(),
        ..MockConfig::default()
    })
    .await;
    let input = env.jsonl("in.jsonl", &numbered(3, "resp"));
    let out = env.path("out.jsonl");
    batch_run(&env)
        .args(&["--endpoint", "responses"])
        .input(&input)
        .arg("-o")
        .arg(out.to_str().unwrap())
        .output()
        .await
        .code(0);
    let recs = records(&out);
    assert_eq!(recs.len(), 3);
    for r in &recs {
        assert_eq!(
            (r["endpoint"].as_str(), r["lane"].as_str()),
            (Some("responses"), Some("batch"))
        );
        assert!(r["usage"]["cost"].as_f64().unwrap() > 0.0);
    }
}

/// Ctrl-C while waiting for a batch: exit 130 at once, nothing recorded, and the rerun polls
/// the same batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_while_polling_exits_130_and_the_rerun_collects() {
    let env = with(MockConfig {
        batch_ms: 1_500,
        ..MockConfig::default()
    })
    .await;
    let input = env.jsonl("in.jsonl", &numbered(3, "int"));
    let out = env.path("out.jsonl");
    let mut child = batch_run(&env)
        .input(&input)
        .arg("-o")
        .arg(out.to_str().unwrap())
        .spawn();
    env.wait_for("the submit", |s| s.batch_submits == 1).await;
    batch_id_written(&env).await;
    let pid = child.id().expect("running").to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(std::fs::read_to_string(&out).unwrap_or_default().is_empty());
    batch_run(&env)
        .input(&input)
        .arg("-o")
        .arg(out.to_str().unwrap())
        .output()
        .await
        .code(0);
    assert_eq!(records(&out).len(), 3);
    assert_eq!(env.stats().batch_submits, 1);
}

#[tokio::test]
async fn a_batch_too_large_for_the_server_is_sent_as_two_halves() {
    let env = with(MockConfig {
        batch_max_bytes: Some(600),
        ..MockConfig::default()
    })
    .await;
    let input = env.jsonl(
        "in.jsonl",
        &numbered(4, "a somewhat longer prompt, to fill bytes"),
    );
    let out = env.path("out.jsonl");
    let done = batch_run(&env)
        .input(&input)
        .arg("-o")
        .arg(out.to_str().unwrap())
        .output()
        .await;
    done.code(0);
    assert!(done.stderr.contains("too large"), "{}", done.stderr);
    assert_eq!(records(&out).len(), 4);
    let stats = env.stats();
    assert_eq!(stats.batch_lines, 4, "each row in exactly one batch");
    assert!(stats.batch_submits >= 2);
}
