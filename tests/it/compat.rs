//! Servers that are not OpenRouter, as the mock can play them: no `usage.cost`, usage in a
//! stream only when asked, no `/key`. orbatch must say "unknown", ask for usage, and tell a
//! missing endpoint from a refused key.

use orbatch::mock::MockConfig;

use crate::support::{Cmd, Env, dead_url, records};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_cost_gives_unknown_spend_not_zero() {
    let env = Env::with(MockConfig {
        no_cost: true,
        ..MockConfig::default()
    })
    .await;
    let input = env.jsonl("q.jsonl", &["one", "two", "three"]);
    let done = env.run().input(&input).args(&["-m", "m/a"]).output().await;
    done.code(0);
    assert!(
        done.stderr.contains(
            "spend unknown: the server sent no usage.cost for 3 records (`orbatch costs` looks them up)"
        ),
        "{}",
        done.stderr
    );
    assert!(!done.stderr.contains("$0.000000"), "{}", done.stderr);
    let out = env.path("q.out.jsonl");
    for r in records(&out) {
        assert!(r["usage"]["cost"].is_null(), "{r}");
        assert!(r["usage"]["prompt_tokens"].as_u64().unwrap() > 0, "{r}");
    }
    let report = Cmd::new(&["report", out.to_str().unwrap()]).output().await;
    report.code(0);
    assert!(
        report.stdout.contains("spend: unknown"),
        "{}",
        report.stdout
    );
    assert!(!report.stdout.contains("$0.000000"), "{}", report.stdout);
    let json = Cmd::new(&["report", out.to_str().unwrap(), "--format", "json"])
        .output()
        .await;
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert!(v["total"]["spend_inline"].is_null(), "{v}");
    assert_eq!(v["total"]["records_without_cost"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_chat_asks_for_usage_where_it_is_only_sent_when_asked() {
    let env = Env::with(MockConfig {
        usage_only_if_asked: true,
        ..MockConfig::default()
    })
    .await;
    // Row 2 opts out, as a user may: then the server sends no usage.
    let input = env.write(
        "q.jsonl",
        "{\"id\":\"asked\",\"prompt\":\"one\"}\n\
         {\"id\":\"not\",\"prompt\":\"two\",\"params\":{\"stream_options\":{\"include_usage\":false}}}\n",
    );
    let done = env
        .run()
        .input(&input)
        .args(&["-m", "m/a", "--stream", "-q"])
        .output()
        .await;
    done.code(0);
    let recs = records(&env.path("q.out.jsonl"));
    let asked = recs.iter().find(|r| r["id"] == "asked").unwrap();
    assert!(
        asked["usage"]["completion_tokens"].as_u64().unwrap() > 0,
        "{asked}"
    );
    assert!(asked["usage"]["cost"].as_f64().unwrap() > 0.0, "{asked}");
    let not = recs.iter().find(|r| r["id"] == "not").unwrap();
    assert_eq!(not["status"], "ok", "{not}");
    assert!(not["usage"].is_null(), "{not}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_key_is_not_a_refused_key() {
    let env = Env::with(MockConfig {
        without: vec!["key".into()],
        ..MockConfig::default()
    })
    .await;
    let url = env.mock.base_url();
    let done = Cmd::new(&["key"]).base_url(&url).output().await;
    done.code(1);
    assert!(
        done.stderr.contains("GET /key: HTTP 404")
            && done.stderr.contains("this server has no /key"),
        "{}",
        done.stderr
    );
    assert!(!done.stderr.contains("refused"), "{}", done.stderr);
    // plan still prints its estimate, and says the credit was not checked.
    let input = env.jsonl("q.jsonl", &["one", "two"]);
    let plan = Cmd::new(&["plan", "-m", "openai/gpt-4o-mini"])
        .input(&input)
        .base_url(&url)
        .output()
        .await;
    plan.code(0);
    assert!(
        plan.stdout.contains("openai/gpt-4o-mini"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stderr
            .contains("warning: the key's credit was not checked: GET /key: HTTP 404"),
        "{}",
        plan.stderr
    );
}

fn attempts(records: &[serde_json::Value]) -> u64 {
    records
        .iter()
        .map(|r| r["attempts"].as_u64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_base_url_stops_at_once_with_exit_2() {
    let env = Env::new().await;
    let input = env.jsonl("q.jsonl", &crate::support::numbered(25, "q"));
    // The mock's root, without /api/v1: every path is a 404 with no body.
    let root = env.mock.base_url().trim_end_matches("/api/v1").to_owned();
    let done = Cmd::new(&["run", "-m", "m/a", "-j", "4"])
        .input(&input)
        .base_url(&root)
        .output()
        .await;
    done.code(2);
    assert!(
        done.stderr.contains(&format!(
            "stopped: POST {root}/chat/completions answered HTTP 404: this server does not serve \
             /chat/completions"
        )),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains("https://openrouter.ai/api/v1"),
        "{}",
        done.stderr
    );
    let recs = records(&env.path("q.out.jsonl"));
    // Nothing like one 404 per row: the requests in flight at the first answer, no more.
    assert!(recs.len() <= 8, "{} records", recs.len());
    // Each one 404'd once (not retried) and no inference request reached the API.
    assert_eq!(attempts(&recs), recs.len() as u64);
    assert_eq!(env.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_responses_says_so_once() {
    let env = Env::with(MockConfig {
        without: vec!["responses".into()],
        ..MockConfig::default()
    })
    .await;
    let input = env.jsonl("q.jsonl", &crate::support::numbered(20, "q"));
    let done = env
        .run()
        .input(&input)
        .args(&["-m", "m/a", "--endpoint", "responses", "-j", "2"])
        .output()
        .await;
    done.code(2);
    assert!(
        done.stderr.contains("does not serve /responses")
            && done.stderr.contains("try --endpoint chat"),
        "{}",
        done.stderr
    );
    assert!(env.stats().requests <= 8, "{}", env.stats().requests);
    // -q hides the summary, not why the run stopped.
    let done = env
        .run()
        .input(&input)
        .args(&["-m", "m/a", "--endpoint", "responses", "-q", "-o"])
        .arg(env.path("q2.jsonl").to_str().unwrap())
        .output()
        .await;
    done.code(2);
    assert!(
        done.stderr.starts_with("orbatch: stopped: ")
            && done.stderr.contains("does not serve /responses"),
        "{}",
        done.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_stops_the_run_with_exit_3() {
    let env = Env::new().await;
    let input = env.jsonl("q.jsonl", &crate::support::numbered(25, "q"));
    let dead = dead_url();
    let done = Cmd::new(&["run", "-m", "m/a", "-j", "4"])
        .input(&input)
        .base_url(&dead)
        .output()
        .await;
    done.code(3);
    assert!(
        done.stderr
            .contains("attempts in a row could not connect and none has succeeded"),
        "{}",
        done.stderr
    );
    let recs = records(&env.path("q.out.jsonl"));
    // 25 rows × 6 attempts would be 150; the streak stops it after a handful.
    let sent = attempts(&recs);
    assert!(sent < 25, "{sent} attempts");
    assert!(recs.iter().all(|r| r["status"] == "error"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_a_plain_http_server_is_a_configuration_error() {
    let env = Env::new().await;
    let input = env.jsonl("q.jsonl", &["one", "two", "three"]);
    let https = env.mock.base_url().replace("http://", "https://");
    let done = Cmd::new(&["run", "-m", "m/a"])
        .input(&input)
        .base_url(&https)
        .output()
        .await;
    done.code(2);
    assert!(
        done.stderr.contains("does not speak TLS")
            && done.stderr.contains("use http:// instead of https://"),
        "{}",
        done.stderr
    );
}

/// `costs` against a server without `/generation`: after a short grace of bare 404s, it says
/// the server may not serve it and stops (exit 1, ids pending), instead of waiting out
/// `--wait`; its rerun hint keeps `--base-url`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costs_against_a_server_without_generation_stops_after_a_grace() {
    let env = Env::with(MockConfig {
        without: vec!["generation".into()],
        ..MockConfig::default()
    })
    .await;
    let input = env.jsonl("g.jsonl", &["one", "two"]);
    env.run()
        .input(&input)
        .args(&["-m", "m/a", "-q"])
        .output()
        .await
        .code(0);
    let out = env.path("g.out.jsonl");
    let url = env.mock.base_url();
    let started = std::time::Instant::now();
    let done = Cmd::new(&["costs", out.to_str().unwrap(), "--wait", "10m"])
        .base_url(&url)
        .env("ORBATCH_COSTS_BACKOFF_MS", "50")
        .env("ORBATCH_GENERATION_GRACE_MS", "300")
        .output()
        .await;
    done.code(1);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "waited out --wait"
    );
    assert!(
        done.stderr
            .contains("this server may not serve /generation"),
        "{}",
        done.stderr
    );
    assert!(done.stderr.contains("still pending 2"), "{}", done.stderr);
    assert!(
        !done
            .stderr
            .contains("OpenRouter does not know every generation yet"),
        "{}",
        done.stderr
    );
    // No difference from a partial sidecar (it would be negative here).
    assert!(
        done.stderr
            .contains("difference: not known until every id is looked up"),
        "{}",
        done.stderr
    );
    // Once a server has /generation, the pending ids' rerun hint keeps the target.
    let env2 = Env::with(MockConfig {
        generation_delay_ms: 60_000,
        ..MockConfig::default()
    })
    .await;
    env2.run()
        .input(&input)
        .args(&["-m", "m/a", "-q", "--fresh"])
        .output()
        .await
        .code(0);
    let url2 = env2.mock.base_url();
    let done = Cmd::new(&["costs", input.with_extension("out.jsonl").to_str().unwrap()])
        .args(&["--wait", "0"])
        .base_url(&url2)
        .output()
        .await;
    done.code(1);
    assert!(
        done.stderr.contains(&format!("--base-url {url2}")),
        "the rerun hint keeps the target: {}",
        done.stderr
    );
}

/// `-H` (and the job file's `[headers]`) reach every request; a gateway that needs its own
/// header refuses without it; the value never shows in logs; `Authorization` is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_headers_are_sent_and_never_shown() {
    let env = Env::with(MockConfig {
        require_header: Some("X-Gateway-Key: gw-SECRETVALUE".into()),
        ..MockConfig::default()
    })
    .await;
    let input = env.jsonl("h.jsonl", &["one", "two"]);
    let without = env
        .run()
        .input(&input)
        .args(&["-m", "m/a", "-q", "-o"])
        .arg(env.path("no.jsonl").to_str().unwrap())
        .output()
        .await;
    without.code(3);
    let with = env
        .run()
        .input(&input)
        .args(&["-m", "m/a", "-vvv", "-H", "X-Gateway-Key: gw-SECRETVALUE"])
        .env("RUST_LOG", "trace")
        .output()
        .await;
    with.code(0);
    assert!(!with.stderr.contains("SECRETVALUE"), "{}", with.stderr);
    assert!(!with.stdout.contains("SECRETVALUE"));
    let out = std::fs::read_to_string(env.path("h.out.jsonl")).unwrap();
    assert!(!out.contains("SECRETVALUE"));
    // From a job file too.
    let job = env.write(
        "h.toml",
        "input = \"h.jsonl\"\noutput = \"h2.jsonl\"\nmodels = [\"m/a\"]\n[headers]\n\"X-Gateway-Key\" = \"gw-SECRETVALUE\"\n",
    );
    env.run()
        .arg(job.to_str().unwrap())
        .arg("-q")
        .output()
        .await
        .code(0);
    // The key comes from the environment only.
    let refused = env
        .run()
        .input(&input)
        .args(&["-m", "m/a", "-H", "Authorization: Bearer sk-other"])
        .output()
        .await;
    refused.code(2);
    assert!(
        refused.stderr.contains("orbatch sets Authorization itself"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stderr.contains("sk-other"), "{}", refused.stderr);
    // A query string in the base URL is refused at start.
    let q = Cmd::new(&["run", "-m", "m/a"])
        .input(&input)
        .base_url(&format!("{}?x=1", env.mock.base_url()))
        .output()
        .await;
    q.code(2);
    assert!(
        q.stderr.contains("no query string or fragment"),
        "{}",
        q.stderr
    );
}
