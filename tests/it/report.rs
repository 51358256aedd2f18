//! `orbatch report` end to end: a real run against the mock, then the report of its output
//! checked against what the records say; shards merged; sidecars; bad inputs.

use std::path::Path;

use serde_json::{Value, json};

use crate::support::{Cmd, Env, records};

const PROMPTS: &[&str] = &["hello", "[[mock:400]] x", "[[mock:500*1]] y", "fine"];

/// Run the standard job (4 rows × 2 models) into `out`, with `extra` flags.
async fn run_job(env: &Env, out: &str, extra: &[&str]) {
    let input = env.jsonl("q.jsonl", PROMPTS);
    let done = env
        .run()
        .input(&input)
        .args(&["-m", "m/a", "-m", "m/b", "-q", "-o"])
        .arg(env.path(out).to_str().unwrap())
        .args(extra)
        .output()
        .await;
    assert!(done.code == 0 || done.code == 1, "stderr:\n{}", done.stderr);
}

/// `orbatch report FILES… ARGS…` as JSON, asserting exit 0.
async fn report_json(files: &[&Path], args: &[&str]) -> Value {
    let mut cmd = Cmd::new(&["report"]);
    for f in files {
        cmd = cmd.arg(f.to_str().unwrap());
    }
    let done = cmd.args(&["--format", "json"]).args(args).output().await;
    done.code(0);
    serde_json::from_str(&done.stdout).unwrap_or_else(|e| panic!("{e}: {}", done.stdout))
}

fn cost(r: &Value) -> f64 {
    r["usage"]["cost"].as_f64().unwrap_or(0.0)
}

fn close(a: &Value, b: f64) -> bool {
    (a.as_f64().unwrap() - b).abs() < 1e-9
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_says_what_the_records_say() {
    let env = Env::new().await;
    run_job(&env, "out.jsonl", &[]).await;
    let out = env.path("out.jsonl");
    let recs = records(&out);
    let report = report_json(&[&out], &[]).await;

    let t = &report["total"];
    let ok = recs.iter().filter(|r| r["status"] == "ok").count() as u64;
    let attempts: u64 = recs.iter().map(|r| r["attempts"].as_u64().unwrap()).sum();
    assert_eq!(t["requests"], 8);
    assert_eq!(t["ok"], ok);
    assert_eq!(t["errors"], 8 - ok);
    assert_eq!(t["attempts"], attempts);
    assert!(attempts > 8, "the 500 was retried");
    assert!(close(&t["ok_pct"], ok as f64 * 100.0 / 8.0));
    let spend: f64 = recs.iter().map(cost).sum();
    assert!(close(&t["spend_inline"], spend), "{t}");
    assert!(close(&report["spend"]["inline"], spend));
    assert_eq!(t["error_kinds"], json!({"bad_request": 2}));
    assert_eq!(report["spend"]["exact"], Value::Null, "no sidecar");
    let groups: Vec<&str> = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["key"].as_str().unwrap())
        .collect();
    assert_eq!(groups, ["m/a", "m/b"]);
    assert!(t["latency_ms"]["p50"].as_u64().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_gives_exact_spend_and_counts_unknown_ids() {
    let env = Env::new().await;
    run_job(&env, "out.jsonl", &[]).await;
    let out = env.path("out.jsonl");
    let recs = records(&out);
    // Every id but the first costs what the record says for its final attempt, 0 otherwise.
    let mut lines = String::new();
    let mut ids = 0;
    let mut exact = 0.0;
    for r in &recs {
        for id in r["generation_ids"].as_array().unwrap() {
            ids += 1;
            if ids == 1 {
                continue;
            }
            let c = if *id == r["generation_id"] {
                cost(r)
            } else {
                0.0
            };
            exact += c;
            lines.push_str(&format!(
                "{}\n",
                json!({"id": id, "total_cost": c, "model": "x"})
            ));
        }
    }
    lines.push_str("{\"id\":\"gen-torn"); // a torn last line is ignored
    env.write("out.generations.jsonl", &lines);

    let report = report_json(&[&out], &["--by", "status"]).await;
    let s = &report["spend"];
    assert_eq!(s["generation_ids"], ids);
    assert_eq!(s["unconfirmed_ids"], 1);
    assert_eq!(s["difference_final"], false);
    assert!(close(&s["exact"], exact), "{s}");
    assert_eq!(report["inputs"][0]["generations"], ids - 1);
    assert_eq!(report["by"], "status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_merge_to_the_totals_of_one_run() {
    let whole = Env::new().await;
    run_job(&whole, "all.jsonl", &[]).await;
    let one = report_json(&[&whole.path("all.jsonl")], &[]).await;

    let sharded = Env::new().await;
    run_job(&sharded, "s0.jsonl", &["--shard", "0/2"]).await;
    run_job(&sharded, "s1.jsonl", &["--shard", "1/2"]).await;
    let (s0, s1) = (sharded.path("s0.jsonl"), sharded.path("s1.jsonl"));
    assert!(!records(&s0).is_empty() && !records(&s1).is_empty());
    let merged = report_json(&[&s0, &s1], &[]).await;

    for f in [
        "requests",
        "ok",
        "errors",
        "attempts",
        "tokens_in",
        "tokens_out",
        "spend_inline",
        "error_kinds",
    ] {
        assert_eq!(merged["total"][f], one["total"][f], "{f}");
    }
    assert_eq!(merged["inputs"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_renders_and_o_writes_a_file() {
    let env = Env::new().await;
    run_job(&env, "out.jsonl", &[]).await;
    let out = env.path("out.jsonl");
    for (format, needle) in [
        ("table", "TOTAL"),
        ("md", "| TOTAL |"),
        ("csv", "\nTOTAL,8,"),
    ] {
        let done = Cmd::new(&["report", out.to_str().unwrap(), "--format", format])
            .output()
            .await;
        done.code(0);
        assert!(done.stdout.contains(needle), "{format}:\n{}", done.stdout);
        assert!(done.stdout.contains("m/a"), "{format}");
    }
    let file = env.path("r.md");
    let done = Cmd::new(&["report", out.to_str().unwrap(), "--format", "md", "-o"])
        .arg(file.to_str().unwrap())
        .output()
        .await;
    done.code(0);
    assert_eq!(done.stdout, "");
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("| TOTAL |")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_input_exits_2_naming_it() {
    let env = Env::new().await;
    let missing = env.path("nope.jsonl");
    let done = Cmd::new(&["report", missing.to_str().unwrap()])
        .output()
        .await;
    done.code(2);
    assert!(
        done.stderr.contains("nope.jsonl: cannot read"),
        "{}",
        done.stderr
    );
    assert_eq!(done.stdout, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_input_is_a_report_with_no_rows() {
    let env = Env::new().await;
    let empty = env.write("empty.jsonl", "");
    // A run killed while writing its first record: only a torn line.
    let bad = env.write("bad.jsonl", "{\"id\":\"q1\",\"mod");
    let done = Cmd::new(&["report", empty.to_str().unwrap(), bad.to_str().unwrap()])
        .args(&["--format", "json"])
        .output()
        .await;
    done.code(0);
    let v: Value = serde_json::from_str(&done.stdout).unwrap();
    assert_eq!(v["groups"], json!([]));
    assert_eq!(v["total"]["requests"], 0);
    assert!(
        done.stderr
            .contains("bad.jsonl:1: skipped a torn last line"),
        "{}",
        done.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_is_one_self_contained_page_with_charts() {
    let env = Env::new().await;
    run_job(&env, "out.jsonl", &[]).await;
    let page = env.path("page.html");
    let done = Cmd::new(&["report", env.path("out.jsonl").to_str().unwrap()])
        .args(&["--format", "html", "-o", page.to_str().unwrap()])
        .output()
        .await;
    done.code(0);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<svg"), "{html}");
    assert!(html.contains("m/a") && html.contains("bad_request"));
    for bad in ["http://", "https://", "<script src", "<link"] {
        assert!(!html.contains(bad), "{bad} in the page");
    }
    // The table scrolls in its own box rather than widening the page.
    assert!(
        html.contains("<div class=\"scroll\">\n<table>")
            && html.contains(".scroll{overflow-x:auto"),
        "{html}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_not_an_output_is_refused() {
    let env = Env::new().await;
    // The input given by mistake: lines of JSON, none a record.
    let input = env.jsonl("q.jsonl", PROMPTS);
    let done = Cmd::new(&["report", input.to_str().unwrap()])
        .output()
        .await;
    done.code(2);
    assert!(
        done.stderr.contains(&format!(
            "{}: not an orbatch output (none of its 4 lines is a record)",
            input.display()
        )),
        "{}",
        done.stderr
    );
    assert_eq!(done.stdout, "");
    // An output with some bad lines is still reported (with a warning).
    run_job(&env, "out.jsonl", &[]).await;
    let out = env.path("out.jsonl");
    let mut text = std::fs::read_to_string(&out).unwrap();
    text.push_str("{\"not\":\"a record\"}\n");
    std::fs::write(&out, text).unwrap();
    let done = Cmd::new(&["report", out.to_str().unwrap()]).output().await;
    done.code(0);
    assert!(done.stderr.contains("warning"), "{}", done.stderr);
}
