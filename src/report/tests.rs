//! Unit tests of the aggregation: last record per key, spend over all records, sidecar
//! matching, percentiles, merged files, every `--by`.

use crate::endpoint::Endpoint;
use crate::output::record::{ErrorKind, Record, RecordError, Status, Usage};

use super::{Bucket, Generations, GroupBy, Report, aggregate, nice_width};
use crate::costs::charge::Charge;

/// An ok record of `(id, model)` costing `cost`, with one generation id per attempt.
pub(crate) fn ok(id: &str, model: &str, cost: f64, latency_ms: u64) -> Record {
    Record {
        id: id.to_owned(),
        model: model.to_owned(),
        endpoint: Endpoint::Chat,
        row: 1,
        status: Status::Ok,
        output: Some("answer".to_owned()),
        finish_reason: Some("stop".to_owned()),
        generation_id: Some(format!("gen-{id}-{model}")),
        generation_ids: vec![format!("gen-{id}-{model}")],
        provider: Some("Prov".to_owned()),
        model_used: Some(model.to_owned()),
        usage: Some(Usage {
            prompt_tokens: 10,
            completion_tokens: 5,
            total_tokens: 15,
            cost: Some(cost),
            ..Usage::default()
        }),
        is_byok: None,
        upstream_cost: None,
        service_tier: None,
        attempts: 1,
        latency_ms: Some(latency_ms),
        ttft_ms: None,
        started_at: "2026-11-25T17:00:00.000Z".to_owned(),
        finished_at: "2026-11-25T17:00:01.000Z".to_owned(),
        fingerprint: "0".repeat(32),
        error: None,
        meta: None,
        output_json: None,
        reasks: 0,
        lenient_json: false,
        failed_cost_bound: None,
        stage: None,
        parts: Vec::new(),
        lane: None,
        batch_id: None,
        retried: Vec::new(),
        interrupted: false,
    }
}

/// A failed record of `(id, model)`: no usage, `attempts` attempts with a generation id each.
pub(crate) fn failed(id: &str, model: &str, kind: ErrorKind, attempts: u32) -> Record {
    Record {
        status: Status::Error,
        output: None,
        finish_reason: None,
        generation_id: None,
        generation_ids: (1..=attempts)
            .map(|a| format!("gen-{id}-{model}-try{a}"))
            .collect(),
        provider: None,
        usage: None,
        attempts,
        latency_ms: Some(30),
        error: Some(RecordError {
            kind,
            status: Some(500),
            code: None,
            message: "boom".to_owned(),
        }),
        ..ok(id, model, 0.0, 0)
    }
}

fn by(by: GroupBy, records: &[Record]) -> Report {
    aggregate(by, None, records)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn the_last_record_of_a_key_decides_its_outcome_and_every_record_is_paid() {
    let recs = [
        failed("q1", "m/a", ErrorKind::Transient, 2),
        ok("q2", "m/a", 0.002, 100),
        ok("q1", "m/a", 0.001, 200),
    ];
    let r = by(GroupBy::Model, &recs);
    assert_eq!(r.groups.len(), 1);
    let t = &r.total;
    assert_eq!((t.requests, t.ok, t.errors, t.records), (2, 2, 0, 3));
    assert_eq!(t.ok_pct, Some(100.0));
    assert_eq!(t.attempts, 4, "attempts of every record");
    assert_eq!((t.tokens_in, t.tokens_out), (20, 10));
    assert!(close(t.spend_inline.unwrap(), 0.003));
    assert!(t.error_kinds.is_empty(), "the failure was superseded");
    assert_eq!(r.spend.generation_ids, 4);
    assert_eq!(r.spend.exact, None);
    assert!(!r.spend.difference_final);
}

#[test]
fn a_later_error_supersedes_an_ok() {
    let recs = [
        ok("q1", "m/a", 0.001, 100),
        failed("q1", "m/a", ErrorKind::BadRequest, 1),
    ];
    let t = by(GroupBy::Model, &recs).total;
    assert_eq!((t.requests, t.ok, t.errors), (1, 0, 1));
    assert_eq!(t.ok_pct, Some(0.0));
    assert_eq!(t.error_kinds.get(&ErrorKind::BadRequest), Some(&1));
    assert_eq!(t.latency_ms.p50, None, "latency is over ok requests only");
    assert!(
        close(t.spend_inline.unwrap(), 0.001),
        "the superseded ok was still paid"
    );
}

#[test]
fn the_same_id_under_two_models_is_two_requests() {
    let recs = [ok("q1", "m/a", 0.001, 100), ok("q1", "m/b", 0.001, 100)];
    let r = by(GroupBy::Model, &recs);
    assert_eq!(r.total.requests, 2);
    let keys: Vec<&str> = r.groups.iter().map(|g| g.key.as_str()).collect();
    assert_eq!(keys, ["m/a", "m/b"]);
}

#[test]
fn exact_spend_counts_every_known_generation_id_and_the_unknown_ones() {
    let recs = [
        failed("q1", "m/a", ErrorKind::Transient, 2),
        ok("q1", "m/a", 0.001, 100),
        ok("q2", "m/a", 0.002, 100),
    ];
    let mut g = Generations::default();
    g.insert_usd("gen-q1-m/a-try1", 0.0005);
    g.insert_usd("gen-q1-m/a-try2", 0.0005);
    g.insert_usd("gen-q1-m/a", 0.001);
    g.insert_usd("gen-unrelated", 9.0);
    let r = aggregate(GroupBy::Model, Some(&g), &recs);
    let s = &r.spend;
    assert_eq!((s.generation_ids, s.unconfirmed_ids), (4, 1));
    assert!(close(s.exact.unwrap(), 0.002));
    // A partial sidecar gives no difference (it would be negative here: 0.002 - 0.003).
    assert_eq!(s.difference, None);
    assert!(!s.difference_final, "q2's id is not confirmed yet");
    assert_eq!(r.total.unconfirmed_ids, 1);
    assert!(close(r.groups[0].spend_exact.unwrap(), 0.002));

    g.insert_usd("gen-q2-m/a", 0.002);
    let s = aggregate(GroupBy::Model, Some(&g), &recs).spend;
    assert!(s.difference_final);
    assert!(
        close(s.difference.unwrap(), 0.001),
        "failed attempts cost extra"
    );
}

#[test]
fn an_empty_sidecar_still_means_exact_spend_is_reported() {
    let recs = [ok("q1", "m/a", 0.001, 100)];
    let g = Generations::default();
    let s = aggregate(GroupBy::Model, Some(&g), &recs).spend;
    assert_eq!(s.exact, Some(0.0));
    assert_eq!(s.unconfirmed_ids, 1);
}

#[test]
fn percentiles_come_from_the_ok_requests() {
    let mut recs: Vec<Record> = (1..=100)
        .map(|i| ok(&format!("q{i}"), "m/a", 0.0, i * 10))
        .collect();
    recs.push(failed("x", "m/a", ErrorKind::Timeout, 1));
    recs[0].ttft_ms = Some(7);
    recs[1].ttft_ms = Some(9);
    let t = by(GroupBy::Model, &recs).total;
    assert_eq!(t.latency_ms.p50, Some(500));
    assert_eq!(t.latency_ms.p95, Some(950));
    assert_eq!(t.latency_ms.p99, Some(990));
    assert_eq!(t.ttft_p50_ms, Some(7));
    assert_eq!(t.errors, 1);
}

#[test]
fn latency_buckets_have_a_round_width_and_hold_every_ok_request() {
    let recs: Vec<Record> = [5, 12, 180, 190, 399]
        .iter()
        .enumerate()
        .map(|(i, &ms)| ok(&format!("q{i}"), "m/a", 0.0, ms))
        .collect();
    let h = by(GroupBy::Model, &recs).latency_histogram;
    assert_eq!(h.len(), 20);
    assert_eq!(
        h[0],
        Bucket {
            from_ms: 0,
            to_ms: 20,
            count: 2
        }
    );
    assert_eq!(h[9].count, 2);
    assert_eq!(h[19].count, 1);
    assert_eq!(h.iter().map(|b| b.count).sum::<u64>(), 5);
    assert_eq!([nice_width(0), nice_width(3), nice_width(21)], [1, 5, 50]);
}

#[test]
fn files_merge_like_one_file_in_any_order() {
    let a = [
        ok("q1", "m/a", 0.1, 100),
        failed("q2", "m/a", ErrorKind::Timeout, 3),
    ];
    let b = [ok("q3", "m/b", 0.2, 300), ok("q4", "m/b", 0.3, 400)];
    let ab = aggregate(GroupBy::Model, None, a.iter().chain(&b));
    let ba = aggregate(GroupBy::Model, None, b.iter().chain(&a));
    assert_eq!(ab, ba);
    assert_eq!(ab.total.requests, 4);
    assert!(close(ab.total.spend_inline.unwrap(), 0.6));
}

#[test]
fn every_grouping_partitions_requests_and_spend() {
    let mut recs = vec![
        ok("q1", "m/a", 0.001, 100),
        failed("q2", "m/a", ErrorKind::BadRequest, 1),
        failed("q3", "m/b", ErrorKind::Timeout, 2),
        ok("q4", "m/b", 0.004, 100),
    ];
    recs[3].provider = Some("Other".to_owned());
    let keys = |g: GroupBy| -> Vec<(String, u64)> {
        by(g, &recs)
            .groups
            .iter()
            .map(|r| (r.key.clone(), r.requests))
            .collect()
    };
    let k = |s: &str, n| (s.to_owned(), n);
    assert_eq!(keys(GroupBy::Model), [k("m/a", 2), k("m/b", 2)]);
    assert_eq!(
        keys(GroupBy::Provider),
        [k("-", 2), k("Other", 1), k("Prov", 1)]
    );
    assert_eq!(keys(GroupBy::Status), [k("error", 2), k("ok", 2)]);
    assert_eq!(
        keys(GroupBy::Error),
        [k("-", 2), k("bad_request", 1), k("timeout", 1)]
    );
    for g in [
        GroupBy::Model,
        GroupBy::Provider,
        GroupBy::Status,
        GroupBy::Error,
        GroupBy::Tier,
        GroupBy::Input,
        GroupBy::Document,
        GroupBy::Lane,
    ] {
        let r = by(g, &recs);
        let spend: f64 = r.groups.iter().filter_map(|g| g.spend_inline).sum();
        assert!(close(spend, r.total.spend_inline.unwrap()), "{g:?}");
        assert_eq!(r.groups.iter().map(|g| g.attempts).sum::<u64>(), 5);
    }
}

#[test]
fn spend_follows_a_key_into_the_group_of_its_last_record() {
    // q1 failed with a paid attempt, then succeeded: by status, all of it is "ok".
    let mut first = failed("q1", "m/a", ErrorKind::Transient, 1);
    first.usage = Some(Usage {
        cost: Some(0.5),
        ..Usage::default()
    });
    let recs = [first, ok("q1", "m/a", 0.25, 100)];
    let r = by(GroupBy::Status, &recs);
    assert_eq!(r.groups.len(), 1);
    assert_eq!(r.groups[0].key, "ok");
    assert!(close(r.groups[0].spend_inline.unwrap(), 0.75));
}

#[test]
fn no_records_make_an_empty_report() {
    let r = by(GroupBy::Model, &[]);
    assert!(r.groups.is_empty());
    assert_eq!(r.total.requests, 0);
    assert_eq!(r.total.ok_pct, None);
    assert!(r.latency_histogram.is_empty());
}

#[test]
fn nonsense_costs_do_not_poison_the_sum() {
    let recs = [ok("q1", "m/a", f64::NAN, 100), ok("q2", "m/a", 0.001, 100)];
    assert!(close(
        by(GroupBy::Model, &recs).total.spend_inline.unwrap(),
        0.001
    ));
}

/// A small fixed report: two models, a retried request, a failure, one unconfirmed id.
pub(super) fn sample() -> Report {
    let mut slow = ok("q2", "openai/gpt-4o-mini", 0.0000312, 812);
    slow.ttft_ms = Some(240);
    let recs = [
        ok("q1", "openai/gpt-4o-mini", 0.00001245, 125),
        failed("q2", "openai/gpt-4o-mini", ErrorKind::Transient, 1),
        slow,
        ok("q1", "meta-llama/llama-3.1-8b-instruct", 0.0000021, 340),
        failed(
            "q2",
            "meta-llama/llama-3.1-8b-instruct",
            ErrorKind::BadRequest,
            1,
        ),
    ];
    let mut g = Generations::default();
    g.insert_usd("gen-q1-openai/gpt-4o-mini", 0.00001245);
    g.insert_usd("gen-q2-openai/gpt-4o-mini-try1", 0.0000004);
    g.insert_usd("gen-q2-openai/gpt-4o-mini", 0.0000312);
    g.insert_usd("gen-q1-meta-llama/llama-3.1-8b-instruct", 0.0000021);
    let mut r = aggregate(GroupBy::Model, Some(&g), &recs);
    r.inputs = vec![super::Input {
        path: "demo.out.jsonl".to_owned(),
        records: 5,
        skipped_lines: 0,
        sidecar: Some("demo.out.generations.jsonl".to_owned()),
        generations: 4,
    }];
    r
}

#[test]
fn table_snapshot() {
    insta::assert_snapshot!(super::render::table(&sample(), None));
}

#[test]
fn a_narrow_terminal_loses_the_least_useful_columns_first() {
    // The table's own lines: they start with a box-drawing character.
    let table_width = |t: &str| {
        t.lines()
            .filter(|l| l.starts_with(['┌', '│', '╞', '└']))
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(0)
    };
    let full = super::render::table(&sample(), None);
    assert!(table_width(&full) > 100, "{full}");
    assert!(!full.contains("hidden to fit"));
    let narrow = super::render::table(&sample(), Some(100));
    assert!(table_width(&narrow) <= 100, "{narrow}");
    assert!(
        narrow.contains("hidden to fit the terminal: p99 ms"),
        "{narrow}"
    );
    for kept in ["model", "requests", "spend", "p50 ms"] {
        assert!(narrow.contains(kept), "{kept}: {narrow}");
    }
    assert!(!narrow.contains("p99 ms ┆") && !narrow.contains("┆ p99 ms"));
}

#[test]
fn md_snapshot() {
    insta::assert_snapshot!(super::render::md(&sample()));
}

#[test]
fn csv_has_a_line_per_group_and_the_total() {
    let text = super::render::csv(&sample());
    let lines: Vec<&str> = text.lines().collect();
    // The main table (header, two groups, total), a blank line, the spend table.
    assert_eq!(lines.len(), 9, "{text}");
    assert_eq!(lines[4], "");
    assert!(lines[5].starts_with("model,source,openrouter_usd,byok_usd,total_usd,"));
    assert!(lines[0].starts_with("model,requests,ok,truncated,errors,ok_pct,"));
    assert!(
        lines[3].starts_with("TOTAL,4,3,0,1,75.0,5,5,30,15,"),
        "{}",
        lines[3]
    );
    assert!(lines[1].ends_with(",bad_request:1"), "{}", lines[1]);
}

#[test]
fn json_is_the_report() {
    let v: serde_json::Value = serde_json::from_str(&super::render::json(&sample())).unwrap();
    assert_eq!(v["by"], "model");
    assert_eq!(v["total"]["requests"], 4);
    assert_eq!(v["groups"][0]["error_kinds"]["bad_request"], 1);
    assert_eq!(v["spend"]["unconfirmed_ids"], 1);
    assert_eq!(v["spend"]["difference_final"], false);
}

/// Answers from a server that sends no `usage.cost`: spend is unknown (`null`, `—`), not $0;
/// some answers without one: a lower bound, said as such; failed records without a cost do
/// not make it unknown (what failed attempts cost is exact minus inline).
#[test]
fn unknown_cost_is_not_zero() {
    let mut no_cost = ok("q1", "m/a", 0.0, 100);
    no_cost.usage.as_mut().unwrap().cost = None;
    let mut no_cost2 = ok("q2", "m/a", 0.0, 100);
    no_cost2.usage.as_mut().unwrap().cost = None;
    let r = aggregate(GroupBy::Model, None, [&no_cost, &no_cost2]);
    assert_eq!(r.total.spend_inline, None);
    assert_eq!(r.total.records_without_cost, 2);
    assert_eq!(r.spend.inline, None);
    let table = super::render::table(&r, None);
    assert!(table.contains("\u{2014}"), "{table}");
    assert!(!table.contains("$0.000000"), "{table}");
    assert!(table.contains("spend: unknown"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&super::render::json(&r)).unwrap();
    assert_eq!(json["spend"]["inline"], serde_json::Value::Null);
    assert!(super::render::csv(&r).contains("m/a,2,2,0,0,100.0,2,2,20,10,,2,"));

    let priced = ok("q3", "m/a", 0.001, 100);
    let r = aggregate(GroupBy::Model, None, [&no_cost, &priced]);
    assert!(close(r.total.spend_inline.unwrap(), 0.001));
    assert_eq!(r.total.records_without_cost, 1);
    let table = super::render::table(&r, None);
    assert!(table.contains("\u{2265} $0.001000"), "{table}");
    assert!(table.contains("spend: at least $0.001000"), "{table}");

    let failure = failed("q4", "m/a", ErrorKind::Transient, 2);
    let r = aggregate(GroupBy::Model, None, [&priced, &failure]);
    assert_eq!(r.total.records_without_cost, 0);
    assert!(close(r.total.spend_inline.unwrap(), 0.001));
}

/// Two requests of one model: a BYOK answer (fee $0.05, provider $1), and one answered
/// after two failed attempts (the failed record has no usage).
fn byok_and_retried() -> [Record; 3] {
    let mut byok = ok("q1", "m/a", 0.05, 100);
    byok.is_byok = Some(true);
    byok.upstream_cost = Some(1.0);
    byok.service_tier = Some("flex".to_owned());
    [
        byok,
        failed("q2", "m/a", ErrorKind::Transient, 2),
        ok("q2", "m/a", 0.5, 100),
    ]
}

#[test]
fn inline_spend_is_openrouter_plus_byok_and_failed_attempts_are_a_lower_bound() {
    let r = by(GroupBy::Model, &byok_and_retried());
    let a = &r.total.audit;
    assert_eq!(a.source, "inline");
    assert!(close(a.total.unwrap(), 1.55), "{a:?}");
    assert!(close(a.byok.unwrap(), 1.0), "{a:?}");
    assert!(close(a.openrouter.unwrap(), 0.55), "{a:?}");
    // Inline, the two failed attempts are not known to have cost anything.
    assert!(close(a.failed_attempts.unwrap(), 0.0), "{a:?}");
    assert!(close(a.answers.unwrap(), 1.55), "{a:?}");
    assert!(close(a.per_1000_rows.unwrap(), 775.0), "{a:?}");
    assert!(close(r.total.spend_inline.unwrap(), 1.55));
}

#[test]
fn exact_spend_splits_byok_and_failed_attempts_once_every_id_is_known() {
    let mut g = Generations::default();
    g.insert(
        "gen-q1-m/a",
        Charge {
            openrouter: 0.05,
            byok: 1.0,
        },
    );
    g.insert_usd("gen-q2-m/a-try1", 0.1);
    g.insert_usd("gen-q2-m/a-try2", 0.2);
    g.insert_usd("gen-q2-m/a", 0.5);
    let r = aggregate(GroupBy::Model, Some(&g), &byok_and_retried());
    let a = &r.total.audit;
    assert_eq!(a.source, "exact");
    assert!(close(a.total.unwrap(), 1.85), "{a:?}");
    assert!(close(a.byok.unwrap(), 1.0), "{a:?}");
    assert!(close(a.openrouter.unwrap(), 0.85), "{a:?}");
    assert!(close(a.failed_attempts.unwrap(), 0.3), "{a:?}");
    assert!(close(a.answers.unwrap(), 1.55), "{a:?}");
    assert!(close(r.spend.exact.unwrap(), 1.85));
    // One id unknown: the audit falls back to inline rather than show a partial sum.
    let mut partial = Generations::default();
    partial.insert_usd("gen-q2-m/a", 0.5);
    let r = aggregate(GroupBy::Model, Some(&partial), &byok_and_retried());
    assert_eq!(r.total.audit.source, "inline");
}

#[test]
fn by_tier_groups_by_the_served_tier() {
    let r = by(GroupBy::Tier, &byok_and_retried());
    let keys: Vec<&str> = r.groups.iter().map(|g| g.key.as_str()).collect();
    assert_eq!(keys, ["-", "flex"]);
    assert!(close(r.groups[1].audit.total.unwrap(), 1.05));
}

#[test]
fn by_input_gives_a_line_per_file() {
    let recs = byok_and_retried();
    let mut agg = super::Aggregator::new(GroupBy::Input, None);
    agg.set_input("a.jsonl");
    agg.add(&recs[0]);
    agg.set_input("b.jsonl");
    agg.add(&recs[1]);
    agg.add(&recs[2]);
    let r = agg.finish();
    let keys: Vec<(&str, u64)> = r
        .groups
        .iter()
        .map(|g| (g.key.as_str(), g.requests))
        .collect();
    assert_eq!(keys, [("a.jsonl", 1), ("b.jsonl", 1)]);
    assert!(close(r.groups[1].audit.total.unwrap(), 0.5));
}

#[test]
fn by_document_adds_a_documents_chunks_and_its_reduce() {
    use crate::output::record::Stage;
    let chunk = |k: u32, cost: f64| {
        let mut r = ok(&format!("long.md#{k}"), "m/a", cost, 10);
        r.stage = Some(Stage::Map);
        r
    };
    let mut reduce = ok("long.md", "m/a", 0.5, 10);
    reduce.stage = Some(Stage::Reduce);
    reduce.parts = vec!["long.md#1".into(), "long.md#2".into()];
    // An id with a # that is not a chunk stays itself.
    let plain = ok("notes#draft", "m/a", 0.25, 10);
    let r = by(
        GroupBy::Document,
        &[chunk(1, 0.125), chunk(2, 0.125), reduce, plain],
    );
    let keys: Vec<(&str, u64)> = r
        .groups
        .iter()
        .map(|g| (g.key.as_str(), g.requests))
        .collect();
    assert_eq!(keys, [("long.md", 3), ("notes#draft", 1)]);
    assert!(close(r.groups[0].audit.total.unwrap(), 0.75));
}

#[test]
fn by_lane_puts_batch_records_apart_from_live_ones() {
    let mut batch = ok("q1", "m/a", 0.5, 10);
    batch.lane = Some("batch".into());
    batch.batch_id = Some("batch-1".into());
    let r = by(GroupBy::Lane, &[batch, ok("q2", "m/a", 1.0, 10)]);
    let keys: Vec<&str> = r.groups.iter().map(|g| g.key.as_str()).collect();
    assert_eq!(keys, ["batch", "sync"]);
    assert!(close(r.groups[0].audit.total.unwrap(), 0.5));
}
