//! Retry rules of SPEC §5 end to end: what is retried, what is not, what stops the run.

use std::time::Duration;

use crate::support::{Env, numbered, record, records};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_is_waited_out_then_succeeds() {
    let env = Env::new().await;
    let input = env.jsonl("ra.jsonl", &["[[mock:429*1 retry-after=1]] hello"]);
    let done = env
        .run()
        .input(&input)
        .args(&["-m", "a/b", "-q"])
        .output()
        .await;
    done.code(0);
    assert!(
        done.elapsed >= Duration::from_secs(1),
        "Retry-After honoured: {:?}",
        done.elapsed
    );
    let recs = records(&env.path("ra.out.jsonl"));
    let r = record(&recs, "r1");
    assert_eq!(r["status"], "ok");
    assert_eq!(r["attempts"], 2);
    assert_eq!(env.stats().by_status.get(&429), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_until_an_answer() {
    let env = Env::new().await;
    let input = env.jsonl(
        "tr.jsonl",
        &[
            "[[mock:500*1]][[mock:502*1]] a",
            "[[mock:drop*1]] b",
            "[[mock:err200*1]] c",
            "[[mock:choice-error*1]] d",
            "[[mock:html502*1]] e",
            "[[mock:garbage200*1]] f",
            "[[mock:524*1]][[mock:529*1]] g",
        ],
    );
    env.run()
        .input(&input)
        .args(&["-m", "a/b", "-q"])
        .output()
        .await
        .code(0);
    let recs = records(&env.path("tr.out.jsonl"));
    assert_eq!(recs.len(), 7);
    for r in &recs {
        assert_eq!(r["status"], "ok", "{r}");
    }
    assert_eq!(record(&recs, "r1")["attempts"], 3);
    assert_eq!(record(&recs, "r7")["attempts"], 3);
    // A 200 with an error still created a (billable) generation: both ids are kept.
    let c = record(&recs, "r3");
    assert_eq!(c["generation_ids"].as_array().unwrap().len(), 2, "{c}");
    assert_eq!(c["generation_id"], c["generation_ids"][1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_is_not_retried_and_the_run_exits_1() {
    let env = Env::new().await;
    let input = env.jsonl("bad.jsonl", &["fine", "[[mock:400]] rejected"]);
    env.run()
        .input(&input)
        .args(&["-m", "a/b", "-q"])
        .output()
        .await
        .code(1);
    let recs = records(&env.path("bad.out.jsonl"));
    let r = record(&recs, "r2");
    assert_eq!(r["status"], "error");
    assert_eq!(r["attempts"], 1);
    assert_eq!(r["error"]["kind"], "bad_request");
    assert_eq!(r["error"]["status"], 400);
    assert!(r["error"]["message"].as_str().unwrap().contains("400"));
    assert_eq!(record(&recs, "r1")["status"], "ok");
    assert_eq!(env.stats().requests, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_at_max_attempts() {
    let env = Env::new().await;
    let input = env.jsonl("max.jsonl", &["[[mock:503]] always down"]);
    env.run()
        .input(&input)
        .args(&["-m", "a/b", "-q", "--max-attempts", "3"])
        .output()
        .await
        .code(1);
    let r = &records(&env.path("max.out.jsonl"))[0];
    assert_eq!(r["attempts"], 3);
    assert_eq!(r["error"]["kind"], "transient");
    assert_eq!(env.stats().requests, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_stops_the_run_with_exit_3() {
    let env = Env::new().await;
    let prompts: Vec<String> = std::iter::once("[[mock:401]] first".to_owned())
        .chain(numbered(20, "row"))
        .collect();
    let input = env.jsonl("auth.jsonl", &prompts);
    let done = env
        .run()
        .input(&input)
        .args(&["-m", "a/b", "-j", "1"])
        .output()
        .await;
    done.code(3);
    assert!(
        done.stderr.contains("key"),
        "says the key was refused: {}",
        done.stderr
    );
    let recs = records(&env.path("auth.out.jsonl"));
    assert_eq!(recs.len(), 1, "no request after the 401");
    assert_eq!(recs[0]["error"]["kind"], "auth");
    assert_eq!(env.stats().requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_credit_stops_the_run_but_an_in_flight_budget_402_is_retried() {
    let env = Env::new().await;
    let input = env.jsonl(
        "cr.jsonl",
        &[
            "[[mock:402-inflight*1 retry-after=0]] ok later",
            "[[mock:402]] broke",
            "never sent",
        ],
    );
    let done = env
        .run()
        .input(&input)
        .args(&["-m", "a/b", "-j", "1"])
        .output()
        .await;
    done.code(3);
    let recs = records(&env.path("cr.out.jsonl"));
    assert_eq!(record(&recs, "r1")["status"], "ok");
    assert_eq!(record(&recs, "r2")["error"]["kind"], "credits");
    assert!(recs.iter().all(|r| r["id"] != "r3"));
    assert!(done.stderr.contains("credit"), "{}", done.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_times_out() {
    let env = Env::new().await;
    let input = env.jsonl("st.jsonl", &["[[mock:stall*1]] slow then fine"]);
    let done = env
        .run()
        .input(&input)
        .args(&["-m", "a/b", "-q", "--timeout", "0.5"])
        .output()
        .await;
    done.code(0);
    let r = &records(&env.path("st.out.jsonl"))[0];
    assert_eq!(r["attempts"], 2);
    // The stalled attempt got a generation id in its headers: it is kept for the audit.
    assert_eq!(r["generation_ids"].as_array().unwrap().len(), 2, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_answers_are_errors_not_outputs() {
    let env = Env::new().await;
    let input = env.jsonl(
        "u.jsonl",
        &["[[mock:content-filter]] x", "[[mock:length-empty]] y"],
    );
    env.run()
        .input(&input)
        .args(&["-m", "a/b", "-q"])
        .output()
        .await
        .code(1);
    let recs = records(&env.path("u.out.jsonl"));
    assert_eq!(record(&recs, "r1")["error"]["kind"], "content_filter");
    assert_eq!(record(&recs, "r2")["error"]["kind"], "truncated");
    assert_eq!(record(&recs, "r1")["attempts"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_pauses_every_worker() {
    let env = Env::new().await;
    // Row 2 fails twice with 500s, whose backoff alone (100 ms base) would let it finish in
    // well under a second. Row 1's 429 asks for 3 s, which must hold row 2's retries too.
    let input = env.jsonl(
        "pause.jsonl",
        &[
            "[[mock:429*1 retry-after=3]] first",
            "[[mock:500*2]] second",
        ],
    );
    env.run()
        .input(&input)
        .args(&["-m", "a/b", "-q", "-j", "2"])
        .env("ORBATCH_BACKOFF_BASE_MS", "100")
        .output()
        .await
        .code(0);
    let recs = records(&env.path("pause.out.jsonl"));
    let ts = |r: &serde_json::Value, k: &str| -> jiff::Timestamp {
        r[k].as_str().unwrap().parse().unwrap()
    };
    let second = record(&recs, "r2");
    assert_eq!(second["attempts"], 3);
    let took = ts(second, "finished_at").duration_since(ts(second, "started_at"));
    assert!(
        took.as_secs_f64() >= 2.5,
        "row 2 was not held by row 1's Retry-After: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_ceiling_holds_from_the_first_request() {
    let env = Env::new().await;
    let prompts = numbered(20, "p");
    let input = env.jsonl("rate.jsonl", &prompts);
    let done = env
        .run()
        .input(&input)
        .args(&["-m", "a/b", "-q", "-j", "32", "--rps", "20"])
        .output()
        .await;
    done.code(0);
    // The bucket starts empty: 20 requests at 20/s cannot all start in under ~1 s.
    assert!(
        done.elapsed >= Duration::from_millis(950),
        "{:?}",
        done.elapsed
    );
}

/// Server error text reaches the terminal and the output only after sanitising: the mock
/// echoes the model id in its 400 message, so a model id with terminal escapes comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_server_error_text_is_sanitised() {
    let env = Env::new().await;
    let input = env.jsonl("h.jsonl", &["hi"]);
    let model = "x/invalid\u{1b}[2J\u{1b}]0;pwned\u{7}\r\nFAKE LINE";
    let done = env.run().input(&input).args(&["-m", model]).output().await;
    done.code(1);
    assert!(
        !done.stderr.contains('\u{1b}'),
        "escape reached the terminal: {:?}",
        done.stderr
    );
    assert!(!done.stderr.contains('\u{7}'));
    let r = &records(&env.path("h.out.jsonl"))[0];
    let message = r["error"]["message"].as_str().unwrap();
    assert!(message.contains("invalid"), "{message}");
    assert!(!message.chars().any(char::is_control), "{message:?}");
}

/// The summary breaks the extra attempts down by cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_says_what_the_retries_were_for() {
    let env = Env::new().await;
    let input = env.jsonl(
        "c.jsonl",
        &[
            "[[mock:500*2]] a",
            "[[mock:429*1]] b",
            "[[mock:503*1]] c",
            "fine",
        ],
    );
    let done = env.run().input(&input).args(&["-m", "m/a"]).output().await;
    done.code(0);
    assert!(
        done.stderr
            .contains("retried 4 attempts: transient 3, rate_limited 1"),
        "{}",
        done.stderr
    );
}
