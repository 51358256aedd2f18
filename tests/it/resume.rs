//! Resume: rerunning the same command finishes the job without paying twice.

use std::collections::HashMap;
use std::time::Duration;

use orbatch::mock::MockConfig;

use crate::support::{Env, numbered, record, records};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_sends_nothing_already_answered() {
    let env = Env::new().await;
    let input = env.jsonl("r.jsonl", &["a", "b", "c"]);
    env.run()
        .input(&input)
        .args(&["-m", "x/y", "-q"])
        .output()
        .await
        .code(0);
    assert_eq!(env.stats().requests, 3);
    let done = env.run().input(&input).args(&["-m", "x/y"]).output().await;
    done.code(0);
    assert_eq!(env.stats().requests, 3, "nothing sent again");
    assert!(done.stderr.contains("skipped 3"), "{}", done.stderr);
    assert_eq!(records(&env.path("r.out.jsonl")).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_rows_and_errors_are_sent_again() {
    let env = Env::new().await;
    let input = env.jsonl(
        "c.jsonl",
        &["same", "[[mock:400*1]] fails once", "old text"],
    );
    env.run()
        .input(&input)
        .args(&["-m", "x/y", "-q"])
        .output()
        .await
        .code(1);
    assert_eq!(env.stats().requests, 3);
    // --no-retry-errors keeps the error and still exits 1.
    env.run()
        .input(&input)
        .args(&["-m", "x/y", "-q", "--no-retry-errors"])
        .output()
        .await
        .code(1);
    assert_eq!(env.stats().requests, 3);
    // Row 3 changes; row 2's error is retried by default.
    env.jsonl(
        "c.jsonl",
        &["same", "[[mock:400*1]] fails once", "new text"],
    );
    let done = env.run().input(&input).args(&["-m", "x/y"]).output().await;
    done.code(0);
    assert_eq!(
        env.stats().requests,
        5,
        "row 2 retried, row 3 changed; row 1 skipped"
    );
    assert!(done.stderr.contains("1 changed"), "{}", done.stderr);
    let recs = records(&env.path("c.out.jsonl"));
    assert_eq!(recs.len(), 5, "records are appended, never rewritten");
    assert_eq!(record(&recs, "r2")["status"], "ok");
    // A different model is a different key (and the mock fails row 2 once for it too).
    env.run()
        .input(&input)
        .args(&["-m", "other/model", "-q"])
        .output()
        .await
        .code(1);
    assert_eq!(env.stats().requests, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_starts_over() {
    let env = Env::new().await;
    let input = env.jsonl("f.jsonl", &["a", "b"]);
    env.run()
        .input(&input)
        .args(&["-m", "x/y", "-q"])
        .output()
        .await
        .code(0);
    env.run()
        .input(&input)
        .args(&["-m", "x/y", "-q", "--fresh"])
        .output()
        .await
        .code(0);
    assert_eq!(env.stats().requests, 4);
    assert_eq!(records(&env.path("f.out.jsonl")).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_line_is_repaired_with_a_warning() {
    let env = Env::new().await;
    let input = env.jsonl("t.jsonl", &["a", "b"]);
    env.run()
        .input(&input)
        .args(&["-m", "x/y", "-q"])
        .output()
        .await
        .code(0);
    let out = env.path("t.out.jsonl");
    let mut text = std::fs::read_to_string(&out).unwrap();
    // Cut the last record in half, as a crash mid-write would.
    let last_start = text.trim_end().rfind('\n').unwrap() + 1;
    text.truncate(last_start + 20);
    std::fs::write(&out, &text).unwrap();
    let done = env.run().input(&input).args(&["-m", "x/y"]).output().await;
    done.code(0);
    assert!(done.stderr.contains("cut off"), "{}", done.stderr);
    let recs = records(&out);
    assert_eq!(recs.len(), 2);
    assert_eq!(env.stats().requests, 3, "only the torn row is sent again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_the_same_output_is_refused() {
    let env = Env::with(MockConfig {
        latency_ms: 300,
        ..MockConfig::default()
    })
    .await;
    let input = env.jsonl("l.jsonl", &["a", "b", "c", "d"]);
    let first = env
        .run()
        .input(&input)
        .args(&["-m", "x/y", "-q", "-j", "1"])
        .spawn();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let done = env.run().input(&input).args(&["-m", "x/y"]).output().await;
    done.code(2);
    assert!(
        done.stderr.contains("another orbatch run"),
        "{}",
        done.stderr
    );
    let status = first.wait_with_output().await.unwrap().status;
    assert_eq!(status.code(), Some(0));
}

/// SIGKILL at several moments (a fixed pseudo-random schedule), then rerun: valid JSONL,
/// every row ok, no answered row sent twice. Each kill may tear the last line; each next run
/// must repair it and go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_run_then_rerun_finishes_without_paying_twice() {
    let env = Env::with(MockConfig {
        latency_ms: 20,
        jitter_ms: 40,
        ..MockConfig::default()
    })
    .await;
    const ROWS: usize = 400;
    const J: u64 = 8;
    let prompts = numbered(ROWS, "prompt number");
    let input = env.jsonl("k.jsonl", &prompts);
    let out = env.path("k.out.jsonl");
    // Kill points in ms after start: a fixed LCG so the test is repeatable.
    let mut x: u64 = 0x2545_f491;
    let kills: Vec<u64> = (0..5)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            60 + (x >> 33) % 300
        })
        .collect();
    for kill_after_ms in &kills {
        let mut child = env
            .run()
            .input(&input)
            .args(&["-m", "x/y", "-q", "-j", &J.to_string()])
            .spawn();
        tokio::time::sleep(Duration::from_millis(*kill_after_ms)).await;
        child.start_kill().unwrap(); // SIGKILL
        let _ = child.wait().await;
    }
    let before_rerun = records_lenient(&out);
    let done = env
        .run()
        .input(&input)
        .args(&["-m", "x/y", "-q", "-j", &J.to_string()])
        .output()
        .await;
    done.code(0);
    let recs = records(&out);
    let mut ok: HashMap<String, usize> = HashMap::new();
    for r in &recs {
        if r["status"] == "ok" {
            *ok.entry(r["id"].as_str().unwrap().to_owned()).or_default() += 1;
        }
    }
    assert_eq!(ok.len(), ROWS, "every row answered");
    assert!(
        ok.values().all(|&n| n == 1),
        "no answered row was sent again"
    );
    // Only requests in flight at a kill can have been answered without being recorded.
    let stats = env.stats();
    let bound = (ROWS as u64) + kills.len() as u64 * J;
    assert!(
        stats.answered <= bound,
        "answered {} > {bound}",
        stats.answered
    );
    assert!(
        before_rerun > 0 && before_rerun < ROWS,
        "the kills happened mid-run ({before_rerun} of {ROWS}, kills at {kills:?} ms)"
    );
}

/// Records in a file that may have a torn last line.
fn records_lenient(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        .count()
}

fn signal(child: &tokio::process::Child, sig: &str) {
    let pid = child.id().expect("running").to_string();
    let ok = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// First Ctrl-C: stop dispatching, let requests in flight finish, exit 130.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_finishes_in_flight_requests_then_exits_130() {
    let env = Env::with(MockConfig {
        latency_ms: 600,
        ..MockConfig::default()
    })
    .await;
    let prompts = numbered(20, "row");
    let input = env.jsonl("int.jsonl", &prompts);
    let child = env
        .run()
        .input(&input)
        .args(&["-m", "x/y", "-j", "2"])
        .spawn();
    tokio::time::sleep(Duration::from_millis(900)).await;
    signal(&child, "-INT");
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(130));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("interrupted"), "{stderr}");
    let recs = records(&env.path("int.out.jsonl"));
    // Every request sent (those done before the signal and those in flight at it) has its
    // ok record; nothing new was sent after the signal.
    assert!(!recs.is_empty() && recs.len() < 20, "{stderr}");
    assert!(recs.iter().all(|r| r["status"] == "ok"));
    assert_eq!(
        env.stats().requests,
        recs.len() as u64,
        "in-flight requests finished"
    );
}

/// Second Ctrl-C: quit at once; the output is still valid JSONL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_quits_at_once() {
    let env = Env::with(MockConfig {
        latency_ms: 5000,
        ..MockConfig::default()
    })
    .await;
    let input = env.jsonl("int2.jsonl", &["a", "b"]);
    let child = env.run().input(&input).args(&["-m", "x/y"]).spawn();
    tokio::time::sleep(Duration::from_millis(400)).await;
    signal(&child, "-INT");
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(&child, "-TERM");
    let started = std::time::Instant::now();
    let out = child.wait_with_output().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "did not wait for in-flight requests"
    );
    assert_eq!(out.status.code(), Some(130));
    assert!(records(&env.path("int2.out.jsonl")).is_empty());
}
