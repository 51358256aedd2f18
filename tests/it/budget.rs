//! `--max-cost` and running out of credit: spend stays under the cap, the run stops with
//! exit 3, and a rerun with a higher cap continues.

use orbatch::mock::{MidStreamBilling, MockConfig, Spread};

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

/// Prompts of about 200 characters (the prompt is a real share of the cost).
fn long_prompts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("Question {i}: {}", "lorem ipsum dolor sit amet ".repeat(7)))
        .collect()
}

/// A server whose tokenizer counts `factor` × orbatch's estimate, whose answers run 20 to
/// 600 tokens, and whose streams fail mid-answer 20 % of the time (billed for what they sent).
fn other_tokenizer(factor: f64, seed: u64) -> MockConfig {
    MockConfig {
        seed,
        token_factor: factor,
        completion_spread: Some(Spread { min: 20, max: 600 }),
        rate_mid_stream_error: 0.2,
        ..MockConfig::default()
    }
}

const CHEAP: &str = "meta-llama/llama-3.1-8b-instruct";

/// Run `input` under `cap` with no max_tokens, streamed; what the mock billed.
async fn capped_run(env: &Env, input: &std::path::Path, cap: f64) -> f64 {
    let done = env
        .run()
        .input(input)
        .args(&["-m", CHEAP, "--stream", "-j", "8", "-q"])
        .args(&["--max-cost", &cap.to_string()])
        .env("ORBATCH_COSTS_BACKOFF_MS", "5")
        .output()
        .await;
    done.code(3);
    env.stats().billed_usd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_holds_for_any_tokenizer_with_failed_streams_and_no_max_tokens() {
    // About 40 answers' worth: the old reservations (characters ÷ 4, failed attempts released
    // as $0) billed past it.
    let cap = 0.0008;
    for (factor, seed) in [(0.7, 1), (1.6, 2)] {
        let env = Env::with(other_tokenizer(factor, seed)).await;
        let input = env.jsonl("t.jsonl", &long_prompts(200));
        let billed = capped_run(&env, &input, cap).await;
        assert!(
            billed <= cap,
            "factor {factor}: billed {billed} > cap {cap}"
        );
        assert!(
            billed >= 0.6 * cap,
            "factor {factor}: stopped early, {billed} of {cap}"
        );
        let recs = records(&env.path("t.out.jsonl"));
        assert!(
            recs.iter().any(|r| r["attempts"].as_u64() > Some(1)),
            "some streams failed and were retried"
        );
        // The mock counts (and bills) prompt tokens the way its tokenizer does.
        let prompt = &long_prompts(200)[0];
        let estimate = (prompt.chars().count() as u64).div_ceil(4) + 4;
        let r1 = recs.iter().find(|r| r["id"] == "r1" && r["status"] == "ok");
        if let Some(r1) = r1 {
            assert_eq!(
                r1["usage"]["prompt_tokens"].as_u64(),
                Some((estimate as f64 * factor).ceil() as u64)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_generation_lookups_a_failed_attempt_counts_its_worst_case() {
    // A server with no /generation: failed streams cannot be priced, so each one counts as
    // its reservation; the cap still holds, with more of it left unused.
    let env = Env::with(MockConfig {
        without: vec!["generation".into()],
        ..other_tokenizer(1.6, 3)
    })
    .await;
    let input = env.jsonl("g.jsonl", &long_prompts(200));
    let cap = 0.0008;
    let billed = capped_run(&env, &input, cap).await;
    assert!(billed <= cap, "billed {billed} > cap {cap}");
    assert!(billed >= 0.3 * cap, "stopped early: {billed} of {cap}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_attempts_cost_nothing_against_the_cap() {
    // Every prompt is refused twice with 429 (no generation), then answered: the refusals
    // leave the whole cap to the answers.
    let env = Env::new().await;
    let rows: Vec<String> = prompts(40)
        .into_iter()
        .map(|p| format!("{p} [[mock:429*2]]"))
        .collect();
    let input = env.jsonl("r.jsonl", &rows);
    let cap = 0.0004;
    let done = env
        .run()
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
        .args(&["--max-cost", &cap.to_string()])
        .output()
        .await;
    done.code(3);
    let billed = env.stats().billed_usd;
    let worst = 30.0 * 0.15e-6 + 64.0 * 0.6e-6;
    assert!(billed <= cap, "billed {billed} > cap {cap}");
    assert!(
        billed >= cap - 2.0 * worst,
        "the 429s were counted: {billed} of {cap}"
    );
    assert!(env.stats().by_status.get(&429).copied().unwrap_or(0) >= 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_counts_what_earlier_failed_attempts_may_have_cost() {
    // Without /generation, failed streams count at their worst case; their records say so
    // (failed_cost_bound), and a rerun with a higher cap counts it against that cap.
    let env = Env::with(MockConfig {
        without: vec!["generation".into()],
        ..other_tokenizer(1.6, 4)
    })
    .await;
    let input = env.jsonl("f.jsonl", &long_prompts(200));
    let first = capped_run(&env, &input, 0.0004).await;
    let recs = records(&env.path("f.out.jsonl"));
    let bounds: f64 = recs
        .iter()
        .filter_map(|r| r["failed_cost_bound"].as_f64())
        .sum();
    assert!(bounds > 0.0, "some streams failed under the cap");
    assert!(
        recs.iter()
            .all(|r| r["failed_cost_bound"].as_f64() != Some(0.0))
    );
    let cap = 0.0008;
    let total = capped_run(&env, &input, cap).await;
    assert!(
        total > first && total <= cap,
        "billed {total} of {cap} in all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_holds_whatever_a_failed_stream_is_billed() {
    // A stream failing mid-answer may be billed for what it sent, for nothing
    // (zero-completion insurance) or for the whole answer (the provider finished anyway):
    // orbatch does not guess, it asks /generation.
    let mut billed_one = Vec::new();
    for billing in [
        MidStreamBilling::None,
        MidStreamBilling::Sent,
        MidStreamBilling::Full,
    ] {
        // One prompt that fails once mid-stream, then answers: what the failure cost.
        let env = Env::with(MockConfig {
            mid_stream_billing: billing,
            completion_spread: Some(Spread { min: 40, max: 40 }),
            ..MockConfig::default()
        })
        .await;
        let one = env.jsonl("one.jsonl", &["fail once [[mock:mid-stream-error*1]]"]);
        env.run()
            .input(&one)
            .args(&["-m", CHEAP, "--stream", "-q"])
            .output()
            .await
            .code(0);
        let answer = records(&env.path("one.out.jsonl"))[0]["usage"]["cost"]
            .as_f64()
            .unwrap();
        billed_one.push(env.stats().billed_usd - answer);

        let env = Env::with(MockConfig {
            mid_stream_billing: billing,
            ..other_tokenizer(1.6, 5)
        })
        .await;
        let input = env.jsonl("w.jsonl", &long_prompts(200));
        let cap = 0.0008;
        let billed = capped_run(&env, &input, cap).await;
        assert!(billed <= cap, "{billing:?}: billed {billed} > cap {cap}");
    }
    // The prompt alone costs something unless nothing is billed; in full, the whole answer.
    assert!(billed_one[0].abs() < 1e-15, "{billed_one:?}");
    assert!(
        billed_one[1] > 0.0 && billed_one[1] < billed_one[2],
        "{billed_one:?}"
    );
}
