//! `orbatch plan`: validates like `run`, estimates, prices, checks the key; sends no prompt.

use orbatch::mock::MockConfig;

use crate::support::{Cmd, Env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_estimates_and_prices_without_sending_a_prompt() {
    let env = Env::with(MockConfig {
        credit_limit: Some(0.00001),
        ..MockConfig::default()
    })
    .await;
    let input = env.jsonl(
        "p.jsonl",
        &["What is the capital of France?", "Name a prime number."],
    );
    let done = Cmd::new(&["plan"])
        .base_url(&env.mock.base_url())
        .input(&input)
        .args(&[
            "-m",
            "openai/gpt-4o-mini",
            "-m",
            "mock/unpriced",
            "-p",
            "max_tokens=100",
        ])
        .args(&["--max-cost", "0.00001"])
        .output()
        .await;
    done.code(0);
    let out = &done.stdout;
    assert!(
        out.contains("openai/gpt-4o-mini") && out.contains("4 requests"),
        "{out}"
    );
    // 2 prompts × 100 completion tokens bound.
    assert!(out.contains("200"), "{out}");
    assert!(out.contains("remaining"), "{out}");
    let err = &done.stderr;
    assert!(
        err.contains(
            "mock/unpriced is not a model in /models (unknown model id; the total leaves it out)"
        ),
        "{err}"
    );
    assert!(err.contains("exceeds --max-cost"), "{err}");
    assert!(err.contains("remaining credit"), "{err}");
    assert_eq!(env.stats().requests, 0, "plan sends no prompt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_refuses_bad_input_like_run() {
    let env = Env::new().await;
    let input = env.write("bad.jsonl", "{\"prompt\":\"ok\"}\nnot json\n");
    let done = Cmd::new(&["plan"])
        .base_url(&env.mock.base_url())
        .input(&input)
        .args(&["-m", "a/b"])
        .output()
        .await;
    done.code(2);
    assert!(done.stderr.contains("bad.jsonl:2:"), "{}", done.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_works_without_a_key() {
    let env = Env::new().await;
    let input = env.jsonl("k.jsonl", &["hello"]);
    let done = Cmd::new(&["plan"])
        .base_url(&env.mock.base_url())
        .input(&input)
        .args(&["-m", "openai/gpt-4o-mini"])
        .env_remove("OPENROUTER_API_KEY")
        .output()
        .await;
    done.code(0);
    assert!(
        done.stderr.contains("not checked") || done.stderr.contains("not set"),
        "{}",
        done.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_counts_only_what_a_rerun_would_send() {
    let env = Env::new().await;
    let input = env.jsonl("half.jsonl", &["one", "two", "three", "four"]);
    env.run()
        .input(&input)
        .args(&["-m", "a/b", "-q", "--limit", "3"])
        .output()
        .await
        .code(0);
    let done = Cmd::new(&["plan"])
        .base_url(&env.mock.base_url())
        .input(&input)
        .args(&["-m", "a/b"])
        .output()
        .await;
    done.code(0);
    assert!(
        done.stdout
            .contains("1 requests to send (3 more already in the output are skipped)"),
        "{}",
        done.stdout
    );
    assert_eq!(env.stats().requests, 3, "plan sends nothing");
}

/// A model id `/models` does not list is named, with the ids that look like it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_model_id_is_named_with_close_matches() {
    let env = Env::new().await;
    let input = env.jsonl("u.jsonl", &["one"]);
    let done = Cmd::new(&["plan", "-m", "openai/gpt-4o-mimi"])
        .input(&input)
        .base_url(&env.mock.base_url())
        .output()
        .await;
    done.code(0);
    assert!(
        done.stderr.contains(
            "warning: openai/gpt-4o-mimi is not a model in /models (unknown model id; the total leaves it out); did you mean openai/gpt-4o-mini"
        ),
        "{}",
        done.stderr
    );
}

/// Under `--schema` with re-asks, `plan` says its worst case is for the first ask only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_says_re_asks_can_multiply_the_worst_case() {
    let job = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/extract.toml");
    let done = crate::support::Cmd::new(&["plan", job.to_str().unwrap(), "--mock"])
        .output()
        .await;
    done.code(0);
    assert!(
        done.stderr.contains("--schema with --reask 1: ")
            && done
                .stderr
                .contains("up to 2× more if every answer is re-asked"),
        "{}",
        done.stderr
    );
}
