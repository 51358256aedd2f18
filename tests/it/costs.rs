//! `orbatch costs`: every generation id (failed attempts too) looked up at `/generation`,
//! 404s waited out, the sidecar matching exactly what the mock billed, resumable.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use orbatch::mock::MockConfig;
use serde_json::Value;

use crate::support::{Cmd, Env, records};

/// `orbatch costs OUT` against this mock, with a fast 404 backoff (`--wait` stays real).
fn costs(env: &Env, out: &Path) -> Cmd {
    Cmd::new(&["costs", out.to_str().unwrap()])
        .base_url(&env.mock.base_url())
        .env("ORBATCH_COSTS_BACKOFF_MS", "100")
}

/// A job with failed-but-billed attempts (a 200 with an error, an error mid-stream), run one
/// request at a time so the mock bills in the order of the records.
async fn run_job(env: &Env) -> PathBuf {
    let input = env.jsonl(
        "c.jsonl",
        &[
            "hello there",
            "[[mock:err200*1]] x marks the spot",
            "[[mock:mid-stream-error*1]] y not",
            "four five six",
        ],
    );
    env.run()
        .input(&input)
        .args(&["-m", "a/b", "-q", "-j", "1", "--stream"])
        .output()
        .await
        .code(0);
    env.path("c.out.jsonl")
}

/// Every generation id of the output, in record and attempt order.
fn generation_ids(out: &Path) -> Vec<String> {
    records(out)
        .iter()
        .flat_map(|r| r["generation_ids"].as_array().unwrap().clone())
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

fn sidecar(out: &Path) -> PathBuf {
    let name = out.file_name().unwrap().to_str().unwrap();
    out.with_file_name(name.replace(".jsonl", ".generations.jsonl"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costs_waits_out_404s_and_matches_what_was_billed() {
    let env = Env::with(MockConfig {
        generation_delay_ms: 1500,
        ..MockConfig::default()
    })
    .await;
    let out = run_job(&env).await;
    let ids = generation_ids(&out);
    assert_eq!(ids.len(), 6, "two failed attempts add two ids: {ids:?}");

    let done = costs(&env, &out).output().await;
    done.code(0);
    assert!(
        done.stderr
            .contains("looked up 6, still pending 0, failed 0; sidecar:"),
        "{}",
        done.stderr
    );
    assert!(
        env.stats().generation_lookups > 6,
        "the first lookups came too early (404) and were retried"
    );

    let lines = records(&sidecar(&out));
    assert_eq!(lines.len(), ids.len(), "one line per generation id");
    let cost: HashMap<&str, f64> = lines
        .iter()
        .map(|l| (l["id"].as_str().unwrap(), l["total_cost"].as_f64().unwrap()))
        .collect();
    // Summed in billing order, the /generation costs are exactly what the mock billed.
    let total = ids.iter().fold(0.0, |sum, id| sum + cost[id.as_str()]);
    assert_eq!(total, env.stats().billed_usd);
    assert!(total > 0.0);
    // The failed attempts' records were fetched too (the 200-with-error one billed at 0).
    assert!(
        lines
            .iter()
            .any(|l| l["finish_reason"] == "error" && l["total_cost"] == 0.0),
        "{lines:?}"
    );
    assert!(lines.iter().all(|l| l["native_tokens_prompt"].is_u64()));
    let inline: f64 = records(&out)
        .iter()
        .filter_map(|r| r["usage"]["cost"].as_f64())
        .sum();
    assert!(done.stderr.contains("inline usage.cost"), "{}", done.stderr);
    assert!(inline > 0.0 && inline <= total);

    // A second run has nothing to look up.
    let lookups = env.stats().generation_lookups;
    let again = costs(&env, &out).output().await;
    again.code(0);
    assert!(
        again
            .stderr
            .contains("looked up 0, still pending 0, failed 0"),
        "{}",
        again.stderr
    );
    assert_eq!(env.stats().generation_lookups, lookups);
    assert_eq!(records(&sidecar(&out)).len(), ids.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_still_unknown_when_the_wait_ends_stay_pending_until_a_rerun() {
    let env = Env::with(MockConfig {
        generation_delay_ms: 4000,
        ..MockConfig::default()
    })
    .await;
    let input = env.jsonl("p.jsonl", &["one", "two"]);
    env.run()
        .input(&input)
        .args(&["-m", "a/b", "-q"])
        .output()
        .await
        .code(0);
    let out = env.path("p.out.jsonl");

    let early = costs(&env, &out).args(&["--wait", "1s"]).output().await;
    early.code(1);
    assert!(
        early
            .stderr
            .contains("looked up 0, still pending 2, failed 0"),
        "{}",
        early.stderr
    );
    assert!(
        early.stderr.contains(&format!(
            "rerun `orbatch costs {} --base-url",
            out.display()
        )),
        "{}",
        early.stderr
    );
    assert!(early.elapsed.as_secs_f64() < 3.0, "{:?}", early.elapsed);

    let later = costs(&env, &out).args(&["--wait", "30s"]).output().await;
    later.code(0);
    assert!(later.stderr.contains("looked up 2, still pending 0"));
    assert_eq!(records(&sidecar(&out)).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_sidecar_line_is_repaired_and_looked_up_again() {
    let env = Env::new().await;
    let input = env.jsonl("t.jsonl", &["one", "two", "three"]);
    env.run()
        .input(&input)
        .args(&["-m", "a/b", "-q"])
        .output()
        .await
        .code(0);
    let out = env.path("t.out.jsonl");
    costs(&env, &out).output().await.code(0);
    let path = sidecar(&out);
    let text = std::fs::read_to_string(&path).unwrap();
    // A crash in the middle of writing the last line.
    std::fs::write(&path, &text[..text.len() - 20]).unwrap();

    let done = costs(&env, &out).output().await;
    done.code(0);
    assert!(done.stderr.contains("cut off"), "{}", done.stderr);
    assert!(done.stderr.contains("looked up 1,"), "{}", done.stderr);
    let lines: Vec<Value> = records(&path);
    assert_eq!(lines.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_and_a_refused_key() {
    let env = Env::with(MockConfig {
        require_key: Some("the-right-key".into()),
        ..MockConfig::default()
    })
    .await;
    let missing = env.path("missing.out.jsonl");
    let done = costs(&env, &missing).output().await;
    done.code(2);
    assert!(done.stderr.contains("cannot read"), "{}", done.stderr);

    let out = env.write(
        "k.out.jsonl",
        "{\"id\":\"a\",\"generation_ids\":[\"gen-1\"],\"usage\":null}\n",
    );
    let mock = Cmd::new(&["costs", out.to_str().unwrap(), "--mock"])
        .output()
        .await;
    mock.code(2);
    assert!(mock.stderr.contains("--base-url"), "{}", mock.stderr);

    let refused = costs(&env, &out).output().await;
    refused.code(3);
    assert!(refused.stderr.contains("refused"), "{}", refused.stderr);
    assert!(!refused.stderr.contains(crate::support::KEY));

    let bad_wait = costs(&env, &out).args(&["--wait", "soon"]).output().await;
    bad_wait.code(2);
}
