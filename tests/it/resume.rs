//! Resume: rerunning the same command finishes the job without paying twice.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;

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
    // The lock is taken before the first request is sent.
    env.wait_for("the first request", |s| s.requests >= 1).await;
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
    // Kill points: after this many more answers, from a fixed LCG so the test is repeatable
    // (5 kills of at most 60 answers each cannot finish the 400 rows).
    let mut x: u64 = 0x2545_f491;
    let kills: Vec<u64> = (0..5)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            1 + (x >> 33) % 60
        })
        .collect();
    for more in &kills {
        let target = env.stats().answered + more;
        let mut child = env
            .run()
            .input(&input)
            .args(&["-m", "x/y", "-q", "-j", &J.to_string()])
            .spawn();
        env.wait_for("answers before the kill", |s| s.answered >= target)
            .await;
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
        "the kills happened mid-run ({before_rerun} of {ROWS}, kills after {kills:?} answers)"
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
    // Two answered, two more in flight.
    env.wait_for("two answers and two in flight", |s| {
        s.answered >= 2 && s.requests >= 4
    })
    .await;
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
    let mut child = env.run().input(&input).args(&["-m", "x/y"]).spawn();
    env.wait_for("both requests in flight", |s| s.requests >= 2)
        .await;
    signal(&child, "-INT");
    // Once the first signal is handled (it says so), a second one quits. It is sent again
    // until the process ends: one sent while the handler re-arms could go unseen.
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    while let Some(line) = stderr.next_line().await.unwrap() {
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("stopping:") {
            break;
        }
    }
    assert!(seen.contains("stopping:"), "{seen}");
    let started = std::time::Instant::now();
    let status = loop {
        signal(&child, "-TERM");
        match tokio::time::timeout(Duration::from_millis(100), child.wait()).await {
            Ok(status) => break status.unwrap(),
            Err(_) => continue,
        }
    };
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "did not wait for in-flight requests"
    );
    assert_eq!(status.code(), Some(130));
    assert!(records(&env.path("int2.out.jsonl")).is_empty());
}

/// The sum of `attempts` over records: what the server must have received.
fn attempts(recs: &[serde_json::Value]) -> u64 {
    recs.iter().map(|r| r["attempts"].as_u64().unwrap()).sum()
}

/// Whether process `pid` has `path` open (Linux: its `/proc/PID/fd` links).
#[cfg(target_os = "linux")]
fn holds_open(pid: u32, path: &std::path::Path) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.filter_map(Result::ok)
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == path))
        })
        .unwrap_or(false)
}

/// Run `orbatch -j 1` on a FIFO that gives `first` to the validation pass and `second` to the
/// sending pass: an input that changes under the run, at a point fixed by the test alone.
#[cfg(target_os = "linux")]
async fn run_on_changing_input(env: &Env, first: String, second: String) -> std::process::Output {
    use std::io::Write;
    let dir = std::fs::canonicalize(env.dir.path()).unwrap();
    let fifo = dir.join("live.jsonl");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
    let child = env
        .run()
        .input(&fifo)
        .args(&["-m", "x/y", "-j", "1"])
        .spawn();
    let pid = child.id().unwrap();
    let feed = tokio::task::spawn_blocking(move || {
        // Opening blocks until orbatch opens the FIFO for its first pass; more than a pipe's
        // 64 KiB is written, so orbatch has read from it (its descriptor is there) by the end.
        assert!(first.len() > 64 * 1024);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .unwrap()
            .write_all(first.as_bytes())
            .unwrap();
        // The first pass closes the FIFO; the second pass opens it again, which blocks until
        // a writer comes.
        while holds_open(pid, &fifo) {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .unwrap()
            .write_all(second.as_bytes())
            .unwrap();
    });
    tokio::time::timeout(Duration::from_secs(30), feed)
        .await
        .expect("orbatch read both passes")
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("orbatch finished")
        .unwrap()
}

/// Rows of about 2 KB, 40 of them: more than a pipe holds.
#[cfg(target_os = "linux")]
fn big_rows() -> Vec<String> {
    (1..=40)
        .map(|i| {
            serde_json::json!({"id": format!("r{i}"), "prompt": format!("{i} {}", "x".repeat(2000))})
                .to_string()
        })
        .collect()
}

/// The input changes after requests were sent: what was sent is recorded, the summary is
/// printed, and the exit code says "stopped early" (3), not "nothing was sent" (2).
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_changed_mid_run_still_records_every_paid_request() {
    let env = Env::new().await;
    let rows = big_rows();
    let first = rows.join("\n") + "\n";
    let second = format!("{}\n{}\n{{not json\n", rows[0], rows[1]);
    let out = run_on_changing_input(&env, first, second).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let recs = records(&env.path("live.out.jsonl"));
    let ids: Vec<&str> = recs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&"r1") && ids.contains(&"r2"), "{ids:?}");
    assert!(recs.iter().all(|r| r["status"] == "ok"));
    assert_eq!(
        attempts(&recs),
        env.stats().requests,
        "every request sent is recorded"
    );
    assert!(
        stderr.contains("  sent 2: 2 ok, 0 failed (2 attempts)"),
        "{stderr}"
    );
    let dir = std::fs::canonicalize(env.dir.path()).unwrap();
    let stopped = format!("  stopped: {}:3: ", dir.join("live.jsonl").display());
    assert!(stderr.contains(&stopped), "{stderr}");
    assert!(
        stderr.contains("(the input changed after it was validated)\n  rerun the same command"),
        "{stderr}"
    );
}

/// The input changes before anything was sent: that is still a usage error (2).
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_changed_before_anything_was_sent_is_a_usage_error() {
    let env = Env::new().await;
    let rows = big_rows();
    let first = rows.join("\n") + "\n";
    let out = run_on_changing_input(&env, first, "{not json\n".into()).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("(the input changed after it was validated)"),
        "{stderr}"
    );
    assert_eq!(env.stats().requests, 0);
    assert!(records(&env.path("live.out.jsonl")).is_empty());
}

/// The output cannot grow (a file-size limit, `ulimit -f`): the run stops (3), the file keeps
/// whole lines only, and the summary says how many answered requests it could not record, so
/// that records + unrecorded = requests the server received.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_error_stops_the_run_and_says_what_was_not_recorded() {
    let env = Env::new().await;
    let input = env.jsonl("w.jsonl", &numbered(6, "row"));
    let out = env.path("w.out.jsonl");
    // SIGXFSZ ignored: writes past the limit fail with EFBIG instead of killing orbatch.
    let done = tokio::process::Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 1 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_orbatch"))
        .args([
            "run",
            "-m",
            "x/y",
            "-j",
            "1",
            "--base-url",
            &env.mock.base_url(),
            "-i",
        ])
        .arg(&input)
        .env("OPENROUTER_API_KEY", crate::support::KEY)
        .env_remove("RUST_LOG")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(3), "{stderr}");
    let recs = records(&out);
    let prefix = format!(
        "  stopped: {}: cannot write the output file: ",
        out.display()
    );
    assert!(stderr.contains(&prefix), "{stderr}");
    // "…; N answered request(s) ($X spent) could not be recorded; …"
    let before = stderr
        .split(" answered request")
        .next()
        .filter(|b| b.len() < stderr.len())
        .unwrap_or_else(|| panic!("no count of unrecorded requests: {stderr}"));
    let digits = before.len() - before.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let lost: u64 = before[before.len() - digits..].parse().unwrap();
    assert!(lost >= 1, "{stderr}");
    assert_eq!(
        recs.len() as u64 + lost,
        env.stats().requests,
        "recorded + unrecorded = sent; {stderr}"
    );
    assert!(recs.len() < 6);
}

/// Ctrl-C while requests wait to be tried again (here: a long Retry-After): their records say
/// interrupted, the summary counts them as interrupted, not failed, and a rerun sends them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_for_a_retry_at_ctrl_c_are_interrupted_not_failed() {
    // The 429s come after a second, so both requests are out before the first one's
    // Retry-After pauses every worker, however loaded the machine is.
    let env = Env::with(MockConfig {
        latency_ms: 1000,
        ..MockConfig::default()
    })
    .await;
    let input = env.jsonl(
        "wait.jsonl",
        &[
            "[[mock:429*1 retry-after=30]] one",
            "[[mock:429*1 retry-after=30]] two",
        ],
    );
    let child = env
        .run()
        .input(&input)
        .args(&["-m", "x/y", "-j", "2"])
        .spawn();
    env.wait_for("both 429s", |s| s.by_status.get(&429).copied() == Some(2))
        .await;
    signal(&child, "-INT");
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(130));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sent 2: 0 ok, 0 failed, 2 interrupted"),
        "{stderr}"
    );
    let recs = records(&env.path("wait.out.jsonl"));
    assert_eq!(recs.len(), 2);
    for r in &recs {
        assert_eq!(r["status"], "error");
        let msg = r["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("interrupted before it was tried again"),
            "{msg}"
        );
    }
    // The rerun sends both again (and, the 429 spent, they are answered).
    env.run()
        .input(&input)
        .args(&["-m", "x/y", "-q"])
        .output()
        .await
        .code(0);
    assert_eq!(env.stats().requests, 4);
}
