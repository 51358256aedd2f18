//! `orbatch models` and `orbatch key` against the mock: prices per million consistent with
//! what it bills, search, usage reflecting the bill, and the key never printed.

use orbatch::mock::price_of;
use serde_json::Value;

use crate::support::{Cmd, Env, KEY};

fn models(env: &Env) -> Cmd {
    Cmd::new(&["models"]).base_url(&env.mock.base_url())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_lists_prices_per_million_as_billed() {
    let env = Env::new().await;
    let done = models(&env).args(&["--format", "json"]).output().await;
    done.code(0);
    let list: Vec<Value> = serde_json::from_str(&done.stdout).expect("stdout is JSON only");
    assert!(list.len() >= 4, "{list:?}");
    for m in &list {
        let id = m["id"].as_str().unwrap();
        let price = price_of(id);
        let prompt = m["prompt_per_m"].as_f64().unwrap();
        let completion = m["completion_per_m"].as_f64().unwrap();
        assert!((prompt - price.prompt * 1e6).abs() < 1e-9, "{id}: {prompt}");
        assert!((completion - price.completion * 1e6).abs() < 1e-9, "{id}");
        assert!(m["context_length"].is_u64() && m["name"].is_string());
    }
    let mini = list
        .iter()
        .find(|m| m["id"] == "openai/gpt-4o-mini")
        .unwrap();
    assert_eq!(mini["prompt_per_m"], 0.15);
    assert_eq!(mini["completion_per_m"], 0.6);

    let found = models(&env)
        .args(&["--search", "CLAUDE", "--format", "json"])
        .output()
        .await;
    found.code(0);
    let list: Vec<Value> = serde_json::from_str(&found.stdout).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], "anthropic/claude-3.5-haiku");

    let table = models(&env).args(&["--search", "llama"]).output().await;
    table.code(0);
    assert!(table.stdout.contains("meta-llama/llama-3.1-8b-instruct"));
    assert!(table.stdout.contains("0.02") && table.stdout.contains("prompt $/M"));
    assert!(!table.stdout.contains("gpt-4o"));
    // The model and its `:batch` variant (the mock lists batchable models twice, as OpenRouter).
    assert!(table.stderr.contains("2 of"), "{}", table.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_shows_what_the_mock_billed_and_never_the_key() {
    let env = Env::new().await;
    let input = env.jsonl("k.jsonl", &["one two", "three"]);
    env.run()
        .input(&input)
        .args(&["-m", "a/b", "-q"])
        .output()
        .await
        .code(0);
    let billed = env.stats().billed_usd;
    assert!(billed > 0.0);
    let done = Cmd::new(&["key"])
        .base_url(&env.mock.base_url())
        .output()
        .await;
    done.code(0);
    assert!(
        done.stdout.contains("sk-or-v1-moc...key"),
        "{}",
        done.stdout
    );
    assert!(done.stdout.contains("unlimited"));
    assert!(
        done.stdout.contains(&orbatch::text::usd(billed)),
        "usage {billed}: {}",
        done.stdout
    );
    assert!(!done.stdout.contains(KEY) && !done.stderr.contains(KEY));

    let mock = Cmd::new(&["key", "--mock"])
        .env_remove("OPENROUTER_API_KEY")
        .output()
        .await;
    mock.code(0);
    assert!(mock.stdout.contains("$0"), "{}", mock.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_needs_no_key() {
    let env = Env::new().await;
    let done = Cmd::new(&["models", "--format", "json"])
        .base_url(&env.mock.base_url())
        .env_remove("OPENROUTER_API_KEY")
        .output()
        .await;
    done.code(0);
    assert!(
        done.stdout.contains("openai/gpt-4o-mini"),
        "{}",
        done.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_as_json_reports_what_the_mock_billed() {
    let env = Env::new().await;
    let input = env.jsonl("kj.jsonl", &["a", "b"]);
    env.run()
        .input(&input)
        .args(&["-m", "openai/gpt-4o-mini", "-q"])
        .output()
        .await
        .code(0);
    let done = Cmd::new(&["key", "--format", "json"])
        .base_url(&env.mock.base_url())
        .output()
        .await;
    done.code(0);
    let v: Value = serde_json::from_str(&done.stdout).unwrap();
    assert_eq!(v["usage"].as_f64().unwrap(), env.stats().billed_usd);
    assert_eq!(v["limit"], Value::Null);
    assert!(!done.stdout.contains(KEY));
}
