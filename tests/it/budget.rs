//! `--max-cost` and running out of credit: spend stays under the cap, the run stops with
//! exit 3, and a rerun with a higher cap continues.

use orbatch::mock::MockConfig;

use crate::support::{Env, numbered, records};

fn prompts(n: usize) -> Vec<String> {
    numbered(n, "Please answer question number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_never_passes_the_cap_and_a_higher_cap_continues() {
    let env = Env::new().await;
    let input = env.jsonl("b.jsonl", &prompts(60));
    let cap = 0.0004;
    let done = env
        .run()
        .input(&input)
        .args(&["-m", "openai/gpt-4o-mini", "-p", "max_tokens=64", "-j", "4"])
        .args(&["--max-cost", &cap.to_string()])
        .output()
        .await;
    done.code(3);
    assert!(done.stderr.contains("--max-cost"), "{}", done.stderr);
    let recs = records(&env.path("b.out.jsonl"));
    let spent: f64 = recs
        .iter()
        .map(|r| r["usage"]["cost"].as_f64().unwrap_or(0.0))
        .sum();
    let billed = env.stats().billed_usd;
    assert!((spent - billed).abs() < 1e-12);
    assert!(billed <= cap, "billed {billed} > cap {cap}");
    // The worst case of one request: ~20 prompt tokens + 64 completion tokens.
    let worst = 30.0 * 0.15e-6 + 64.0 * 0.6e-6;
    assert!(
        billed >= cap - 2.0 * worst,
        "stopped too early: {billed} of {cap}"
    );
    assert!(recs.len() < 60 && recs.iter().all(|r| r["status"] == "ok"));

    // A rerun with a higher cap continues where it stopped and finishes.
    env.run()
        .input(&input)
        .args(&[
            "-m",
            "openai/gpt-4o-mini",
            "-p",
            "max_tokens=64",
            "-j",
            "4",
            "-q",
        ])
        .args(&["--max-cost", "1"])
        .output()
        .await
        .code(0);
    assert_eq!(records(&env.path("b.out.jsonl")).len(), 60);
    assert_eq!(env.stats().answered, 60, "nothing answered twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn earlier_spend_on_the_output_counts_against_the_cap() {
    let env = Env::new().await;
    let p = prompts(10);
    let input = env.jsonl("e.jsonl", &p[..5]);
    env.run()
        .input(&input)
        .args(&["-m", "openai/gpt-4o-mini", "-q"])
        .output()
        .await
        .code(0);
    let spent = env.stats().billed_usd;
    let input = env.jsonl("e.jsonl", &p);
    env.run()
        .input(&input)
        .args(&["-m", "openai/gpt-4o-mini", "-q", "--max-cost"])
        .arg(spent.to_string())
        .output()
        .await
        .code(3);
    assert_eq!(env.stats().requests, 5, "the cap was already used up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_credit_stops_at_once() {
    let env = Env::with(MockConfig {
        credit_limit: Some(0.0001),
        ..MockConfig::default()
    })
    .await;
    let input = env.jsonl("c.jsonl", &prompts(100));
    let done = env
        .run()
        .input(&input)
        .args(&["-m", "openai/gpt-4o-mini", "-j", "4"])
        .output()
        .await;
    done.code(3);
    assert!(done.stderr.contains("credit"), "{}", done.stderr);
    let stats = env.stats();
    let credit_402s = stats.by_status.get(&402).copied().unwrap_or(0);
    assert!(
        (1..=4).contains(&credit_402s),
        "only requests in flight see 402: {credit_402s}"
    );
    assert!(
        stats.requests < 40,
        "stopped at once: {} requests",
        stats.requests
    );
    let recs = records(&env.path("c.out.jsonl"));
    assert!(recs.iter().any(|r| r["error"]["kind"] == "credits"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_without_a_price_cannot_run_under_a_cap() {
    let env = Env::new().await;
    let input = env.jsonl("n.jsonl", &["x"]);
    let done = env
        .run()
        .input(&input)
        .args(&["-m", "not/in-catalog", "--max-cost", "1"])
        .output()
        .await;
    done.code(3);
    assert!(
        done.stderr.contains(
            "stopped: --max-cost: /models has no price for not/in-catalog, so its cost cannot be \
             bounded; pick a model that /models prices (`orbatch models`), or drop --max-cost"
        ),
        "{}",
        done.stderr
    );
    // A higher cap would not help, so it is not suggested.
    assert!(
        !done.stderr.contains("higher --max-cost"),
        "{}",
        done.stderr
    );
    assert_eq!(env.stats().requests, 0);
}
