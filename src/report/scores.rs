//! The scores section of a report (`OUT.scores.jsonl` beside an output, from `orbatch
//! score`): per model, accuracy with its 95 % Wilson interval, mean score, spend and cost per
//! correct answer; per pair of models, the rows both were scored on, split four ways, with
//! the exact McNemar p-value, so that "A beats B" is only said when the data supports it.
//! Pure: the lines come in, a serializable [`Scores`] comes out.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::Row;
use super::render::Cells;
use crate::score::stats::{Paired, wilson};
use crate::text::usd;

/// Below this p-value a pair's difference is called significant.
pub const ALPHA: f64 = 0.05;

/// One line of a scores file, as read back (extra fields ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct Line {
    pub id: String,
    pub model: String,
    pub scorer: String,
    pub score: f64,
    pub passed: bool,
}

/// The scores section.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scores {
    /// The scores files read.
    pub files: Vec<String>,
    /// The scorers the lines came from (`exact`, `number`, …).
    pub scorers: Vec<String>,
    pub models: Vec<ModelScore>,
    pub pairs: Vec<Pair>,
}

/// One model's scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelScore {
    pub model: String,
    /// Answers scored.
    pub scored: u64,
    pub passed: u64,
    /// `passed / scored`; `null` with nothing scored.
    pub accuracy: Option<f64>,
    /// The 95 % Wilson interval of `accuracy`.
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub mean_score: Option<f64>,
    /// USD the model's requests cost (all attempts), from `spend_source`; `null` if unknown.
    pub spend: Option<f64>,
    /// `exact` (every generation id confirmed by `orbatch costs`), `inline` (`usage.cost`
    /// of every record), or `unknown` (some records carry no cost: no spend is shown).
    pub spend_source: &'static str,
    /// `spend / passed`; `null` without a correct answer or a known spend.
    pub cost_per_correct: Option<f64>,
    pub latency_p50_ms: Option<u64>,
    /// On the accuracy/spend Pareto front: it has a correct answer, and no other model is at
    /// least as accurate for at most the spend, and better in one of the two.
    pub pareto: bool,
}

/// Two models compared on the rows both were scored on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pair {
    pub a: String,
    pub b: String,
    #[serde(flatten)]
    pub counts: Paired,
    pub rows: u64,
    pub p_value: f64,
    /// The better model when `p_value < ALPHA`; `null` when the data does not say.
    pub better: Option<String>,
}

/// Build the section from score `lines` (a later line of the same `(id, model)` wins) and the
/// report's per-model rows (for spend and latency).
pub fn scores(
    files: Vec<String>,
    lines: impl IntoIterator<Item = Line>,
    per_model: &[Row],
) -> Scores {
    let mut models: Vec<String> = Vec::new();
    let mut model_index: HashMap<String, usize> = HashMap::new();
    // id → (model → (passed, score)), in first-seen id order.
    let mut by_row: HashMap<String, BTreeMap<usize, (bool, f64)>> = HashMap::new();
    let mut scorers: Vec<String> = Vec::new();
    for line in lines {
        let m = match model_index.get(&line.model) {
            Some(&m) => m,
            None => {
                models.push(line.model.clone());
                model_index.insert(line.model.clone(), models.len() - 1);
                models.len() - 1
            }
        };
        if !scorers.contains(&line.scorer) {
            scorers.push(line.scorer.clone());
        }
        let score = if line.score.is_finite() {
            line.score.clamp(0.0, 1.0)
        } else {
            0.0
        };
        by_row
            .entry(line.id)
            .or_default()
            .insert(m, (line.passed, score));
    }
    let mut tally = vec![(0u64, 0u64, 0.0f64); models.len()];
    for scored in by_row.values() {
        for (&m, &(passed, score)) in scored {
            let t = &mut tally[m];
            t.0 += 1;
            t.1 += u64::from(passed);
            t.2 += score;
        }
    }
    let mut model_scores: Vec<ModelScore> = models
        .iter()
        .zip(&tally)
        .map(|(model, &(scored, passed, sum))| {
            let row = per_model.iter().find(|r| &r.key == model);
            let (spend, spend_source) = match row {
                Some(r) => match r.spend_exact {
                    Some(exact) if r.unconfirmed_ids == 0 => (Some(exact), "exact"),
                    // A lower bound would make the cost per correct answer look cheaper.
                    _ if r.records_without_cost == 0 => (r.spend_inline, "inline"),
                    _ => (None, "unknown"),
                },
                None => (None, "inline"),
            };
            let ci = wilson(passed, scored);
            ModelScore {
                model: model.clone(),
                scored,
                passed,
                accuracy: (scored > 0).then(|| passed as f64 / scored as f64),
                ci_low: ci.map(|c| c.0),
                ci_high: ci.map(|c| c.1),
                mean_score: (scored > 0).then(|| sum / scored as f64),
                spend,
                spend_source,
                cost_per_correct: spend.filter(|_| passed > 0).map(|s| s / passed as f64),
                latency_p50_ms: row.and_then(|r| r.latency_ms.p50),
                pareto: false,
            }
        })
        .collect();
    let points: Vec<Option<(f64, f64)>> = model_scores
        .iter()
        // A model with no correct answer is no value at any price.
        .map(|m| Some((m.spend?, m.accuracy.filter(|_| m.passed > 0)?)))
        .collect();
    for (i, m) in model_scores.iter_mut().enumerate() {
        let Some((spend, acc)) = points[i] else {
            continue;
        };
        m.pareto = !points.iter().enumerate().any(|(j, q)| {
            q.is_some_and(|(s2, a2)| j != i && s2 <= spend && a2 >= acc && (s2 < spend || a2 > acc))
        });
    }
    // Best first; ties by name, so the order is stable.
    model_scores.sort_by(|x, y| {
        y.accuracy
            .unwrap_or(-1.0)
            .total_cmp(&x.accuracy.unwrap_or(-1.0))
            .then_with(|| x.model.cmp(&y.model))
    });
    let order: Vec<usize> = model_scores
        .iter()
        .filter_map(|s| model_index.get(&s.model).copied())
        .collect();
    let mut pairs = Vec::new();
    for (i, &a) in order.iter().enumerate() {
        for &b in &order[i + 1..] {
            let mut counts = Paired::default();
            for scored in by_row.values() {
                if let (Some(&(pa, _)), Some(&(pb, _))) = (scored.get(&a), scored.get(&b)) {
                    counts.add(pa, pb);
                }
            }
            let p_value = counts.mcnemar_p();
            let better = (p_value < ALPHA).then(|| {
                if counts.only_a > counts.only_b {
                    models[a].clone()
                } else {
                    models[b].clone()
                }
            });
            pairs.push(Pair {
                a: models[a].clone(),
                b: models[b].clone(),
                rows: counts.rows(),
                counts,
                p_value,
                better,
            });
        }
    }
    Scores {
        files,
        scorers,
        models: model_scores,
        pairs,
    }
}

/// `0.9` → `90.0%`.
fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn or_dash(v: Option<String>) -> String {
    v.unwrap_or_else(|| "-".to_owned())
}

/// A p-value as a reader takes it in: `0.0391`, `<0.0001`.
pub fn p_text(p: f64) -> String {
    if p < 1e-4 {
        "<0.0001".to_owned()
    } else {
        format!("{p:.4}")
    }
}

/// What a pair's numbers allow one to say.
pub fn verdict(pair: &Pair) -> String {
    match &pair.better {
        Some(m) => format!("{m} better"),
        None if pair.rows == 0 => "no shared rows".to_owned(),
        None => "no significant difference".to_owned(),
    }
}

/// The two tables of the section, titled, for the terminal, Markdown and HTML.
pub(crate) fn sections(s: &Scores) -> Vec<(String, Cells)> {
    let models = Cells {
        header: [
            "model",
            "scored",
            "correct",
            "accuracy",
            "95% CI",
            "mean score",
            "spend",
            "per correct",
            "p50 ms",
        ]
        .map(str::to_owned)
        .to_vec(),
        numeric: vec![false, true, true, true, true, true, true, true, true],
        rows: s
            .models
            .iter()
            .map(|m| {
                vec![
                    if m.pareto {
                        format!("{} ★", m.model)
                    } else {
                        m.model.clone()
                    },
                    m.scored.to_string(),
                    m.passed.to_string(),
                    or_dash(m.accuracy.map(pct)),
                    match (m.ci_low, m.ci_high) {
                        (Some(lo), Some(hi)) => format!("{}–{}", pct(lo), pct(hi)),
                        _ => "-".to_owned(),
                    },
                    or_dash(m.mean_score.map(|x| format!("{x:.3}"))),
                    or_dash(m.spend.map(|x| format!("{} ({})", usd(x), m.spend_source))),
                    or_dash(m.cost_per_correct.map(usd)),
                    or_dash(m.latency_p50_ms.map(|x| x.to_string())),
                ]
            })
            .collect(),
    };
    let pairs = Cells {
        header: [
            "A",
            "B",
            "rows",
            "both right",
            "only A",
            "only B",
            "both wrong",
            "p (McNemar)",
            "verdict",
        ]
        .map(str::to_owned)
        .to_vec(),
        numeric: vec![false, false, true, true, true, true, true, true, false],
        rows: s
            .pairs
            .iter()
            .map(|p| {
                vec![
                    p.a.clone(),
                    p.b.clone(),
                    p.rows.to_string(),
                    p.counts.both_right.to_string(),
                    p.counts.only_a.to_string(),
                    p.counts.only_b.to_string(),
                    p.counts.both_wrong.to_string(),
                    p_text(p.p_value),
                    verdict(p),
                ]
            })
            .collect(),
    };
    let mut out = vec![(format!("Scores ({})", s.scorers.join(", ")), models)];
    if !s.pairs.is_empty() {
        out.push(("Models compared on the same rows".to_owned(), pairs));
    }
    out
}

/// The lines under the scores tables.
pub fn notes(s: &Scores) -> Vec<String> {
    let mut notes = vec![format!(
        "scores: {}; 95% CI is the Wilson interval; ★ = best value (no other model is as \
         accurate for less); a pair is called only when the exact McNemar p < {ALPHA}",
        s.files.join(", ")
    )];
    if s.models.iter().any(|m| m.spend_source == "unknown") {
        notes.push(
            "spend - (unknown): some records carry no usage.cost, so no cost per correct answer \
             is given; `orbatch costs` looks every generation id up"
                .to_owned(),
        );
    }
    if s.models.iter().any(|m| m.spend_source == "inline") {
        notes.push(
            "spend marked (inline) is usage.cost; run `orbatch costs` until every id is \
             confirmed for exact spend"
                .to_owned(),
        );
    }
    notes
}

/// The section as two CSV tables (header, rows), with plain numbers.
pub(crate) fn csv_tables(s: &Scores) -> Vec<(Vec<String>, Vec<Vec<String>>)> {
    let f = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    let models = (
        [
            "model",
            "scored",
            "correct",
            "accuracy",
            "ci_low",
            "ci_high",
            "mean_score",
            "spend_usd",
            "spend_source",
            "cost_per_correct_usd",
            "latency_p50_ms",
            "pareto",
        ]
        .map(str::to_owned)
        .to_vec(),
        s.models
            .iter()
            .map(|m| {
                vec![
                    m.model.clone(),
                    m.scored.to_string(),
                    m.passed.to_string(),
                    f(m.accuracy),
                    f(m.ci_low),
                    f(m.ci_high),
                    f(m.mean_score),
                    f(m.spend),
                    m.spend_source.to_owned(),
                    f(m.cost_per_correct),
                    m.latency_p50_ms.map(|x| x.to_string()).unwrap_or_default(),
                    m.pareto.to_string(),
                ]
            })
            .collect(),
    );
    let pairs = (
        [
            "a",
            "b",
            "rows",
            "both_right",
            "only_a",
            "only_b",
            "both_wrong",
            "p_value",
            "better",
        ]
        .map(str::to_owned)
        .to_vec(),
        s.pairs
            .iter()
            .map(|p| {
                vec![
                    p.a.clone(),
                    p.b.clone(),
                    p.rows.to_string(),
                    p.counts.both_right.to_string(),
                    p.counts.only_a.to_string(),
                    p.counts.only_b.to_string(),
                    p.counts.both_wrong.to_string(),
                    p.p_value.to_string(),
                    p.better.clone().unwrap_or_default(),
                ]
            })
            .collect(),
    );
    vec![models, pairs]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::ok;
    use crate::report::{GroupBy, aggregate};

    fn line(id: &str, model: &str, passed: bool) -> Line {
        Line {
            id: id.into(),
            model: model.into(),
            scorer: "exact".into(),
            score: if passed { 1.0 } else { 0.0 },
            passed,
        }
    }

    #[test]
    fn accuracy_intervals_cost_per_correct_and_pairs_by_hand() {
        // 10 rows. A right on 9, B right on 2, C on 9 (not always the same rows as A).
        let mut lines = Vec::new();
        for i in 0..10 {
            let id = format!("q{i}");
            lines.push(line(&id, "m/a", i != 0));
            lines.push(line(&id, "m/b", i < 2));
            lines.push(line(&id, "m/c", i != 9));
        }
        // C was rescored on q9: the later line wins (now right: 10 of 10).
        lines.push(line("q9", "m/c", true));
        let records: Vec<_> = ["m/a", "m/b", "m/c"]
            .iter()
            .flat_map(|m| (0..10).map(move |i| ok(&format!("q{i}"), m, 0.001, 100)))
            .collect();
        let report = aggregate(GroupBy::Model, None, &records);
        let s = scores(vec!["x.scores.jsonl".into()], lines, &report.groups);
        let names: Vec<&str> = s.models.iter().map(|m| m.model.as_str()).collect();
        assert_eq!(names, ["m/c", "m/a", "m/b"]);
        let a = &s.models[1];
        assert_eq!((a.scored, a.passed), (10, 9));
        assert_eq!(a.accuracy, Some(0.9));
        // Wilson 9/10: (0.5958, 0.9821).
        assert!((a.ci_low.unwrap() - 0.5958).abs() < 1e-4, "{a:?}");
        assert!((a.ci_high.unwrap() - 0.9821).abs() < 1e-4, "{a:?}");
        assert_eq!(a.spend_source, "inline");
        assert!((a.spend.unwrap() - 0.01).abs() < 1e-12);
        assert!((a.cost_per_correct.unwrap() - 0.01 / 9.0).abs() < 1e-12);
        assert_eq!(a.latency_p50_ms, Some(100));
        // A vs B: both right on q1; only A on q2..q9 (8); only B on q0 (1); p = 2·(1+9)/512.
        let ab = s
            .pairs
            .iter()
            .find(|p| p.a == "m/a" && p.b == "m/b")
            .unwrap();
        assert_eq!(
            ab.counts,
            Paired {
                both_right: 1,
                only_a: 8,
                only_b: 1,
                both_wrong: 0
            }
        );
        assert!((ab.p_value - 20.0 / 512.0).abs() < 1e-12);
        assert_eq!(ab.better.as_deref(), Some("m/a"));
        // C vs A: 10 vs 9 correct, 1 discordant row: no evidence either way.
        let ca = s
            .pairs
            .iter()
            .find(|p| p.a == "m/c" && p.b == "m/a")
            .unwrap();
        assert_eq!((ca.counts.only_a, ca.counts.only_b), (1, 0));
        assert_eq!(ca.p_value, 1.0);
        assert_eq!(ca.better, None);
        assert_eq!(s.pairs.len(), 3);
        // Same spend each: only the most accurate is on the front.
        let front: Vec<&str> = s
            .models
            .iter()
            .filter(|m| m.pareto)
            .map(|m| m.model.as_str())
            .collect();
        assert_eq!(front, ["m/c"]);
    }

    #[test]
    fn the_pareto_front_keeps_cheaper_models_that_are_less_accurate() {
        let mut lines = Vec::new();
        let mut records = Vec::new();
        // (model, correct of 10, cost a request)
        for (model, right, cost) in [("big", 9, 0.01), ("small", 7, 0.001), ("bad", 6, 0.002)] {
            for i in 0..10 {
                lines.push(line(&format!("q{i}"), model, i < right));
                records.push(ok(&format!("q{i}"), model, cost, 50));
            }
        }
        let report = aggregate(GroupBy::Model, None, &records);
        let s = scores(Vec::new(), lines.clone(), &report.groups);
        let pareto = |m: &str| s.models.iter().find(|x| x.model == m).unwrap().pareto;
        assert!(pareto("big") && pareto("small") && !pareto("bad"));
        // The cheapest model, never right, is not "best value".
        for i in 0..10 {
            lines.push(line(&format!("q{i}"), "free", false));
            records.push(ok(&format!("q{i}"), "free", 0.0, 50));
        }
        let report = aggregate(GroupBy::Model, None, &records);
        let s = scores(Vec::new(), lines, &report.groups);
        let pareto = |m: &str| s.models.iter().find(|x| x.model == m).unwrap().pareto;
        assert!(pareto("big") && pareto("small") && !pareto("free"));
    }

    #[test]
    fn pairs_use_only_rows_both_were_scored_on() {
        let lines = vec![
            line("q1", "a", true),
            line("q1", "b", false),
            line("q2", "a", true),
            // q3 only for b.
            line("q3", "b", true),
        ];
        let s = scores(Vec::new(), lines, &[]);
        assert_eq!(s.pairs[0].rows, 1);
        assert_eq!(s.models.iter().find(|m| m.model == "b").unwrap().scored, 2);
        // No report rows: spend unknown, so no cost per correct answer.
        assert!(
            s.models
                .iter()
                .all(|m| m.spend.is_none() && m.cost_per_correct.is_none())
        );
    }
}
