//! The three figures of a job's spend — what its records say (inline `usage.cost`), what
//! `/generation` says (the `costs` sidecars), what the key's own usage says — and the
//! differences between them, each with what explains it. Pure: reading files and the API
//! is `command.rs`'s.
//!
//! Money is summed in picodollars (integers), so the order of the lines does not change
//! a total and differences of a millionth of a dollar are real, not rounding.

use std::collections::HashMap;

use serde::Deserialize;

use super::manage::ManagedKey;
use crate::money::Picos;
use crate::output::record::{InlineCost, Record, Status, byok_part};

/// The unexplained difference allowed between two figures: 0.5 % of the larger, at least
/// $0.000001.
pub fn tolerance(a: f64, b: f64) -> f64 {
    (TOLERANCE_SHARE * a.abs().max(b.abs())).max(TOLERANCE_FLOOR_USD)
}

pub const TOLERANCE_SHARE: f64 = 0.005;
pub const TOLERANCE_FLOOR_USD: f64 = 0.000_001;

/// OpenRouter's charge and the provider's (BYOK), in USD.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Split {
    pub openrouter: f64,
    pub byok: f64,
}

impl Split {
    pub fn total(self) -> f64 {
        self.openrouter + self.byok
    }
}

#[derive(Debug, Default)]
struct Sum {
    openrouter: Picos,
    byok: Picos,
}

impl Sum {
    fn add(&mut self, s: Split) {
        self.openrouter.add(Picos::from_usd(s.openrouter));
        self.byok.add(Picos::from_usd(s.byok));
    }

    fn split(&self) -> Split {
        Split {
            openrouter: self.openrouter.usd(),
            byok: self.byok.usd(),
        }
    }
}

/// What a record says it cost: `usage.cost` (OpenRouter's charge; for BYOK, its fee) and,
/// for BYOK, the provider's charge (`upstream_cost`).
fn record_split(r: &Record) -> Split {
    match r.inline_cost() {
        InlineCost::Known(_) => Split {
            openrouter: r.usage.as_ref().and_then(|u| u.cost).unwrap_or(0.0),
            byok: Some(r.byok_cost()).filter(|c| c.is_finite()).unwrap_or(0.0),
        },
        InlineCost::Free | InlineCost::Unknown => Split::default(),
    }
}

/// One `/generation` line of a sidecar.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Exact {
    pub id: String,
    #[serde(default)]
    pub total_cost: Option<f64>,
    #[serde(default)]
    pub is_byok: Option<bool>,
    #[serde(default)]
    pub upstream_inference_cost: Option<f64>,
}

impl Exact {
    fn split(&self) -> Split {
        Split {
            openrouter: self.total_cost.unwrap_or(0.0),
            // JSON has no NaN or infinity: the one BYOK rule of records and `costs` applies.
            byok: byok_part(self.is_byok, self.upstream_inference_cost),
        }
    }
}

/// Records and sidecar lines, summed as they are read.
#[derive(Debug, Default)]
pub struct Tally {
    records: u64,
    uncosted_answers: u64,
    inline: Sum,
    /// Every generation id of every record: whether it is an answer's, and that answer's
    /// inline cost.
    ids: HashMap<String, Option<Split>>,
    exact: HashMap<String, Split>,
}

impl Tally {
    /// Count one record.
    pub fn record(&mut self, r: &Record) {
        self.records += 1;
        let split = record_split(r);
        self.inline.add(split);
        let answered = r.status == Status::Ok;
        if answered && r.inline_cost() == InlineCost::Unknown {
            self.uncosted_answers += 1;
        }
        let known = answered && r.inline_cost() != InlineCost::Unknown;
        for id in &r.generation_ids {
            self.ids.entry(id.clone()).or_insert(None);
        }
        if let Some(id) = &r.generation_id {
            let entry = self.ids.entry(id.clone()).or_insert(None);
            if known {
                *entry = Some(split);
            }
        }
    }

    /// Note one `/generation` line (a later line for the same id wins).
    pub fn exact(&mut self, line: &Exact) {
        self.exact.insert(line.id.clone(), line.split());
    }

    /// The figures of everything counted.
    pub fn figures(&self) -> Figures {
        let mut f = Figures {
            records: self.records,
            uncosted_answers: self.uncosted_answers,
            inline: self.inline.split(),
            ids: self.ids.len() as u64,
            ..Figures::default()
        };
        let (mut exact, mut pending, mut failed, mut mismatch) = (
            Sum::default(),
            Sum::default(),
            Sum::default(),
            Sum::default(),
        );
        let mut mismatch_neg = Sum::default();
        // Ids in a fixed order, so that the sums do not depend on hashing.
        let mut ids: Vec<(&String, &Option<Split>)> = self.ids.iter().collect();
        ids.sort_by(|a, b| a.0.cmp(b.0));
        for (id, answer) in ids {
            match (self.exact.get(id), answer) {
                (Some(x), Some(inline)) => {
                    exact.add(*x);
                    f.looked_up += 1;
                    // What /generation says beyond what the record said.
                    let over = Split {
                        openrouter: (x.openrouter - inline.openrouter).max(0.0),
                        byok: (x.byok - inline.byok).max(0.0),
                    };
                    let under = Split {
                        openrouter: (inline.openrouter - x.openrouter).max(0.0),
                        byok: (inline.byok - x.byok).max(0.0),
                    };
                    mismatch.add(over);
                    mismatch_neg.add(under);
                }
                (Some(x), None) => {
                    exact.add(*x);
                    f.looked_up += 1;
                    f.failed_attempts += 1;
                    failed.add(*x);
                }
                (None, Some(inline)) => {
                    f.pending += 1;
                    pending.add(*inline);
                }
                (None, None) => {
                    f.pending += 1;
                    f.pending_unpriced += 1;
                }
            }
        }
        f.exact = exact.split();
        f.pending_inline = pending.split();
        f.failed_attempts_cost = failed.split();
        let over = mismatch.split();
        let under = mismatch_neg.split();
        f.answer_mismatch = Split {
            openrouter: over.openrouter - under.openrouter,
            byok: over.byok - under.byok,
        };
        f
    }
}

/// The job's spend as its records and `/generation` tell it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub records: u64,
    /// Answers without a `usage.cost` (a server that does not say): inline is a lower bound.
    pub uncosted_answers: u64,
    pub inline: Split,
    /// Distinct generation ids in the records.
    pub ids: u64,
    pub looked_up: u64,
    /// Sum of `/generation` over the ids looked up.
    pub exact: Split,
    /// Ids not looked up yet.
    pub pending: u64,
    /// …of which no answer gives a cost (failed attempts): their cost is not known.
    pub pending_unpriced: u64,
    /// What the records of the answered pending ids say they cost.
    pub pending_inline: Split,
    /// Ids looked up that are not an answer's (failed attempts, billed or not).
    pub failed_attempts: u64,
    pub failed_attempts_cost: Split,
    /// `/generation` minus `usage.cost` over answers looked up.
    pub answer_mismatch: Split,
}

impl Figures {
    /// The job's spend: exact where looked up, the records' figure for the rest.
    pub fn job(&self) -> Split {
        Split {
            openrouter: self.exact.openrouter + self.pending_inline.openrouter,
            byok: self.exact.byok + self.pending_inline.byok,
        }
    }
}

/// One difference, and whether what explains it is known.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// Which two figures: `records → /generation`, `/generation → key`, …
    pub between: &'static str,
    pub usd: f64,
    pub explained: bool,
    pub why: String,
}

/// The differences, and whether the figures agree.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconciliation {
    pub differences: Vec<Difference>,
    pub agree: bool,
}

/// Compare the figures with the key's account.
pub fn reconcile(f: &Figures, key: &ManagedKey) -> Reconciliation {
    let usd = crate::text::usd;
    let mut d = Vec::new();
    let inline_total = f.inline.total();
    if f.failed_attempts > 0 {
        d.push(Difference {
            between: "records → /generation",
            usd: f.failed_attempts_cost.total(),
            explained: true,
            why: format!(
                "{} failed attempts (ids of retried or failed requests), billed by \
                 /generation but in no record's usage.cost",
                f.failed_attempts
            ),
        });
    }
    let mismatch = f.answer_mismatch.total();
    if mismatch != 0.0 {
        let ok = mismatch.abs() <= tolerance(inline_total, inline_total + mismatch);
        d.push(Difference {
            between: "records → /generation",
            usd: mismatch,
            explained: ok,
            why: if ok {
                "answers' /generation cost vs their usage.cost: within tolerance".to_owned()
            } else {
                "answers whose /generation cost differs from their record's usage.cost \
                 (not explained: compare them with `orbatch report`)"
                    .to_owned()
            },
        });
    }
    if f.pending > 0 {
        let mut why = format!(
            "{} ids not looked up yet: counted at their records' {}",
            f.pending,
            usd(f.pending_inline.total())
        );
        if f.pending_unpriced > 0 {
            why.push_str(&format!(
                " ({} of them failed attempts of unknown cost)",
                f.pending_unpriced
            ));
        }
        why.push_str("; run `orbatch costs OUT.jsonl` for the exact figure");
        d.push(Difference {
            between: "records → /generation",
            usd: f.pending_inline.total(),
            explained: true,
            why,
        });
    }
    let job = f.job();
    key_difference(
        &mut d,
        "/generation → key usage",
        job.openrouter,
        key.usage,
        f.pending_unpriced,
        "",
    );
    if job.byok > 0.0 || key.byok_usage.is_some_and(|b| b > 0.0) {
        let limit = if key.include_byok_in_limit {
            "include_byok_in_limit is true: they count against its limit".to_owned()
        } else {
            "include_byok_in_limit is false: they do not count against its limit".to_owned()
        };
        d.push(Difference {
            between: "BYOK",
            usd: job.byok,
            explained: true,
            why: format!(
                "providers charged {} for BYOK requests: not in the key's usage (OpenRouter \
                 counts them as byok_usage); {limit}",
                usd(job.byok)
            ),
        });
        if let Some(byok_usage) = key.byok_usage {
            key_difference(
                &mut d,
                "/generation → key byok_usage",
                job.byok,
                byok_usage,
                0,
                "BYOK ",
            );
        }
    }
    let agree = d.iter().all(|x| x.explained);
    Reconciliation {
        differences: d,
        agree,
    }
}

/// The key's figure against the job's.
fn key_difference(
    d: &mut Vec<Difference>,
    between: &'static str,
    job: f64,
    key: f64,
    unpriced: u64,
    what: &str,
) {
    let usd = crate::text::usd;
    // To the picodollar: the key's figure is a float sum, the job's an exact one.
    let diff = Picos::from_usd(key)
        .0
        .saturating_sub(Picos::from_usd(job).0) as f64
        / 1e12;
    let tol = tolerance(job, key);
    let (explained, why) = if diff.abs() <= tol {
        (
            true,
            format!("the key's {what}usage matches the job's spend"),
        )
    } else if diff > 0.0 {
        let mut why = format!(
            "other use of the key: {} {what}billed to it is in none of these outputs (an \
             output of another shard or run not given here, or the key used outside \
             orbatch)",
            usd(diff)
        );
        if unpriced > 0 {
            why.push_str(&format!(
                "; or part of the {unpriced} failed attempts not looked up yet (run `orbatch \
                 costs`)"
            ));
        }
        (false, why)
    } else {
        (
            false,
            format!(
                "the key's {what}usage is {} below the job's spend: OpenRouter updates a key's \
                 usage minutes late, so rerun `orbatch audit` later; if it stays below, these \
                 outputs were not (all) made with this key",
                usd(-diff)
            ),
        )
    };
    d.push(Difference {
        between,
        usd: diff,
        explained,
        why,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line(v: serde_json::Value) -> Record {
        serde_json::from_value(v).unwrap()
    }

    fn rec(
        id: &str,
        status: &str,
        cost: Option<f64>,
        ids: &[&str],
        extra: serde_json::Value,
    ) -> Record {
        let mut v = json!({
            "id": id, "model": "m/a", "endpoint": "chat", "row": 1, "status": status,
            "output": "x", "finish_reason": "stop",
            "generation_id": ids.last(), "generation_ids": ids,
            "provider": "P", "model_used": "m/a",
            "usage": {"prompt_tokens":1,"completion_tokens":1,"total_tokens":2,
                      "reasoning_tokens":0,"cached_tokens":0,"cost": cost},
            "attempts": ids.len(), "latency_ms": 1, "ttft_ms": null,
            "started_at": "2026-01-01T00:00:00.000Z", "finished_at": "2026-01-01T00:00:00.001Z",
            "fingerprint": "f", "error": null
        });
        if status == "error" {
            v["error"] = json!({"kind":"transient","status":502,"code":null,"message":"x"});
        }
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        line(v)
    }

    fn key(usage: f64) -> ManagedKey {
        ManagedKey {
            hash: "h".into(),
            usage,
            ..ManagedKey::default()
        }
    }

    fn exact(id: &str, cost: f64) -> Exact {
        Exact {
            id: id.into(),
            total_cost: Some(cost),
            ..Exact::default()
        }
    }

    #[test]
    fn the_three_agree_and_failed_attempts_explain_exact_over_inline() {
        let mut t = Tally::default();
        let r = rec("a", "ok", Some(0.001), &["g1", "g2"], json!({}));
        t.record(&r);
        let r = rec("b", "ok", Some(0.002), &["g3"], json!({}));
        t.record(&r);
        for (id, c) in [("g1", 0.0005), ("g2", 0.001), ("g3", 0.002)] {
            t.exact(&exact(id, c));
        }
        let f = t.figures();
        assert_eq!(
            (f.ids, f.looked_up, f.pending, f.failed_attempts),
            (3, 3, 0, 1)
        );
        assert!((f.job().openrouter - 0.0035).abs() < 1e-12);
        let r = reconcile(&f, &key(0.0035));
        assert!(r.agree, "{r:?}");
        assert!(r.differences[0].why.contains("failed attempts"));
    }

    #[test]
    fn more_on_the_key_is_other_use_and_less_is_lag() {
        let mut t = Tally::default();
        let r = rec("a", "ok", Some(0.001), &["g1"], json!({}));
        t.record(&r);
        let f = t.figures();
        assert_eq!((f.pending, f.pending_unpriced), (1, 0));
        let r = reconcile(&f, &key(0.003));
        assert!(!r.agree);
        assert!(
            r.differences
                .iter()
                .any(|d| d.why.contains("other use of the key")),
            "{r:?}"
        );
        let r = reconcile(&f, &key(0.0005));
        assert!(!r.agree);
        assert!(
            r.differences.iter().any(|d| d.why.contains("minutes late")),
            "{r:?}"
        );
        // Within tolerance: 0.5 % of $0.001 is $0.000005.
        let r = reconcile(&f, &key(0.001004));
        assert!(r.agree, "{r:?}");
        let r = reconcile(&f, &key(0.001006));
        assert!(!r.agree, "{r:?}");
    }

    #[test]
    fn byok_provider_charges_are_not_in_the_keys_usage() {
        let mut t = Tally::default();
        let byok = json!({"is_byok": true, "upstream_cost": 0.02});
        let r = rec("a", "ok", Some(0.001), &["g1"], byok);
        t.record(&r);
        t.exact(&Exact {
            id: "g1".into(),
            total_cost: Some(0.001),
            is_byok: Some(true),
            upstream_inference_cost: Some(0.02),
        });
        let f = t.figures();
        assert!((f.inline.byok - 0.02).abs() < 1e-12 && (f.inline.total() - 0.021).abs() < 1e-12);
        // The key counts OpenRouter's fee as usage and the rest as byok_usage.
        let k = ManagedKey {
            byok_usage: Some(0.02),
            ..key(0.001)
        };
        let r = reconcile(&f, &k);
        assert!(r.agree, "{r:?}");
        let byok_line = r.differences.iter().find(|d| d.between == "BYOK");
        assert!(
            byok_line.is_some_and(|d| d.why.contains("include_byok_in_limit is false")),
            "{r:?}"
        );
        // A key that reports no byok_usage still agrees on OpenRouter's part.
        assert!(reconcile(&f, &key(0.001)).agree);
        // More BYOK on the key than in the outputs: other use.
        let k = ManagedKey {
            byok_usage: Some(0.05),
            ..key(0.001)
        };
        assert!(!reconcile(&f, &k).agree);
    }

    #[test]
    fn pending_failed_attempts_are_counted_apart() {
        let mut t = Tally::default();
        let r = rec("a", "error", None, &["g1"], json!({}));
        t.record(&r);
        let f = t.figures();
        assert_eq!((f.pending, f.pending_unpriced), (1, 1));
        let r = reconcile(&f, &key(0.001));
        assert!(!r.agree);
        let why: Vec<&str> = r.differences.iter().map(|d| d.why.as_str()).collect();
        assert!(
            why.iter()
                .any(|w| w.contains("failed attempts not looked up")),
            "{why:?}"
        );
    }

    #[test]
    fn tolerance_is_half_a_percent_or_a_millionth() {
        assert_eq!(tolerance(0.0, 0.0), 0.000_001);
        assert!((tolerance(10.0, 9.0) - 0.05).abs() < 1e-12);
    }
}
