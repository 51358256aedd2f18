//! BYOK and service tiers end to end: what the provider billed to the user's own key is part
//! of the spend in records, the run's summary, `--max-cost`, `costs` and `report`; the tier
//! that served a request is recorded and can be grouped by.

use orbatch::mock::MockConfig;
use serde_json::Value;

use crate::support::{Cmd, Env, numbered, records};

fn byok_env(rate: f64) -> MockConfig {
    MockConfig {
        byok_rate: rate,
        ..MockConfig::default()
    }
}

/// What a record says it cost: `usage.cost` plus the provider's charge for BYOK.
fn spend_of(r: &Value) -> f64 {
    let cost = r["usage"]["cost"].as_f64().unwrap_or(0.0);
    let byok = if r["is_byok"] == true {
        r["upstream_cost"].as_f64().unwrap()
    } else {
        0.0
    };
    cost + byok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byok_spend_is_in_every_record_the_summary_costs_and_report() {
    let env = Env::with(byok_env(0.5)).await;
    let input = env.jsonl("b.jsonl", &numbered(20, "Summarise item"));
    let mut outs = Vec::new();
    for (name, extra) in [
        ("chat", &[][..]),
        ("chat-stream", &["--stream"][..]),
        ("responses", &["--endpoint", "responses"][..]),
        (
            "responses-stream",
            &["--endpoint", "responses", "--stream"][..],
        ),
    ] {
        let out = env.path(&format!("{name}.jsonl"));
        let done = env
            .run()
            .input(&input)
            .args(&["-m", "openai/gpt-4o-mini", "-o", out.to_str().unwrap()])
            .args(extra)
            .output()
            .await;
        done.code(0);
        assert!(
            done.stderr
                .contains("billed by providers to your own keys (BYOK)"),
            "{}",
            done.stderr
        );
        let recs = records(&out);
        let byok: Vec<&Value> = recs.iter().filter(|r| r["is_byok"] == true).collect();
        assert!(
            (3..=17).contains(&byok.len()),
            "{name}: {} of 20 BYOK at a 50 % rate",
            byok.len()
        );
        for r in &recs {
            assert!(r["is_byok"].is_boolean(), "{name}: {r}");
            let upstream = r["upstream_cost"].as_f64().unwrap();
            let cost = r["usage"]["cost"].as_f64().unwrap();
            if r["is_byok"] == true {
                // OpenRouter's fee is 5 % of what the provider charged.
                assert!((cost - upstream * 0.05).abs() < 1e-15, "{name}: {r}");
            } else {
                assert_eq!(cost, upstream, "{name}: {r}");
            }
            assert_eq!(r["service_tier"], "standard", "{name}: {r}");
        }
        outs.push(out);
    }
    let stats = env.stats();
    let recorded: f64 = outs
        .iter()
        .flat_map(|o| records(o))
        .map(|r| spend_of(&r))
        .sum();
    let billed = stats.billed_usd + stats.byok_billed_usd;
    assert!(stats.byok_billed_usd > 10.0 * stats.billed_usd / 20.0);
    assert!((recorded - billed).abs() < 1e-12, "{recorded} vs {billed}");

    // `costs` finds the same split at /generation, and `report` shows it.
    let out = &outs[0];
    Cmd::new(&["costs", out.to_str().unwrap()])
        .base_url(&env.mock.base_url())
        .output()
        .await
        .code(0);
    let done = Cmd::new(&["report", out.to_str().unwrap(), "--format", "json"])
        .output()
        .await;
    done.code(0);
    let report: Value = serde_json::from_str(&done.stdout).unwrap();
    let audit = &report["total"]["audit"];
    assert_eq!(audit["source"], "exact", "{audit}");
    let recs = records(out);
    let byok: f64 = recs
        .iter()
        .filter(|r| r["is_byok"] == true)
        .map(|r| r["upstream_cost"].as_f64().unwrap())
        .sum();
    let total: f64 = recs.iter().map(spend_of).sum();
    let near = |v: &Value, x: f64| (v.as_f64().unwrap() - x).abs() < 1e-12;
    assert!(near(&audit["byok"], byok), "{audit} vs {byok}");
    assert!(near(&audit["total"], total), "{audit} vs {total}");
    assert!(near(&audit["openrouter"], total - byok), "{audit}");
    assert!(near(&report["spend"]["exact"], total), "{report}");
    let table = Cmd::new(&["report", out.to_str().unwrap()]).output().await;
    assert!(table.stdout.contains("provider (BYOK)"), "{}", table.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_counts_what_providers_bill_for_byok() {
    let env = Env::with(byok_env(1.0)).await;
    let input = env.jsonl("b.jsonl", &numbered(60, "Please answer question number"));
    let cap = 0.0004;
    let done = env
        .run()
        .input(&input)
        .args(&["-m", "openai/gpt-4o-mini", "-p", "max_tokens=64", "-j", "4"])
        .args(&["--max-cost", &cap.to_string()])
        .output()
        .await;
    done.code(3);
    let stats = env.stats();
    let billed = stats.billed_usd + stats.byok_billed_usd;
    // Counting only OpenRouter's 5 % fee would have let every row through (20× the cap).
    assert!(billed <= cap, "billed {billed} > cap {cap}");
    assert!(billed >= cap * 0.5, "stopped too early: {billed} of {cap}");
    let recs = records(&env.path("b.out.jsonl"));
    assert!(recs.len() < 60 && recs.iter().all(|r| r["is_byok"] == true));
    // A rerun with the same cap counts what the first one spent, BYOK charges included: it
    // sends (almost) nothing more, and the job stays under its cap.
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
        .args(&["--max-cost", &cap.to_string()])
        .output()
        .await
        .code(3);
    let stats = env.stats();
    let billed = stats.billed_usd + stats.byok_billed_usd;
    assert!(
        billed <= cap,
        "after the rerun: billed {billed} > cap {cap}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_tier_is_recorded_billed_and_grouped_by() {
    let env = Env::new().await;
    let mut costs = Vec::new();
    for tier in ["flex", "priority", "default"] {
        // Rows of their own per tier: `report` merges files by (id, model).
        let rows: Vec<String> = (1..=6)
            .map(|i| format!("{{\"id\":\"{tier}-{i}\",\"prompt\":\"Classify item {i}\"}}\n"))
            .collect();
        let input = env.write(&format!("{tier}.in.jsonl"), &rows.concat());
        let out = env.path(&format!("{tier}.jsonl"));
        env.run()
            .input(&input)
            .args(&[
                "-m",
                "openai/gpt-4o-mini",
                "-q",
                "-o",
                out.to_str().unwrap(),
            ])
            .args(&["-p", &format!("service_tier={tier}")])
            .output()
            .await
            .code(0);
        let recs = records(&out);
        let served = if tier == "default" { "standard" } else { tier };
        assert!(
            recs.iter().all(|r| r["service_tier"] == served),
            "{tier}: {recs:?}"
        );
        costs.push(recs.iter().map(spend_of).sum::<f64>());
    }
    // The mock bills flex at half and priority at double the standard price.
    assert!((costs[0] * 2.0 - costs[2]).abs() < 1e-12, "{costs:?}");
    assert!((costs[1] - costs[2] * 2.0).abs() < 1e-12, "{costs:?}");
    let paths: Vec<String> = ["flex", "priority", "default"]
        .iter()
        .map(|t| env.path(&format!("{t}.jsonl")).display().to_string())
        .collect();
    let mut args = vec!["report"];
    args.extend(paths.iter().map(String::as_str));
    args.extend(["--by", "tier", "--format", "json"]);
    let done = Cmd::new(&args).output().await;
    done.code(0);
    let report: Value = serde_json::from_str(&done.stdout).unwrap();
    let keys: Vec<&str> = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["flex", "priority", "standard"]);
    args.truncate(args.len() - 4);
    args.extend(["--by", "input", "--format", "csv"]);
    let done = Cmd::new(&args).output().await;
    done.code(0);
    for p in &paths {
        assert!(done.stdout.contains(p.as_str()), "{}", done.stdout);
    }
}

/// A re-asked structured answer is one record of two answers: what both cost, the providers'
/// BYOK charges included, is in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byok_charges_of_re_asked_answers_stay_in_the_record() {
    let env = Env::with(byok_env(1.0)).await;
    let schema = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs/extract.schema.json");
    let input = env.jsonl(
        "s.jsonl",
        &["[[mock:json-invalid*1]] Extract the invoice fields from: ACME, 3 items, $12."],
    );
    env.run()
        .input(&input)
        .args(&[
            "-m",
            "openai/gpt-4o-mini",
            "-q",
            "--schema",
            schema.to_str().unwrap(),
        ])
        .output()
        .await
        .code(0);
    let recs = records(&env.path("s.out.jsonl"));
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(r["reasks"], 1, "{r}");
    assert_eq!(r["is_byok"], true, "{r}");
    let stats = env.stats();
    let billed = stats.billed_usd + stats.byok_billed_usd;
    assert!(
        (spend_of(r) - billed).abs() < 1e-15,
        "{} vs {billed}: {r}",
        spend_of(r)
    );
    assert!((r["upstream_cost"].as_f64().unwrap() - stats.byok_billed_usd).abs() < 1e-15);
}
