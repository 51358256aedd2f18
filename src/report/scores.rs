//! The scores section of a report (`OUT.scores.jsonl` beside an output, from `orbatch
//! score`): per model, accuracy with its 95 % Wilson interval, mean score, spend and cost per
//! correct answer; per pair of models, the rows both were scored on, split four ways, with
//! the exact McNemar p-value, so that "A beats B" is only said when the data supports it.
//! Pure: the lines come in, a serializable [`Scores`] comes out.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::Row;
use crate::score::stats::{Paired, wilson};

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
    /// `exact` (every generation id confirmed by `orbatch costs`) or `inline` (`usage.cost`).
    pub spend_source: &'static str,
    /// `spend / passed`; `null` without a correct answer or a known spend.
    pub cost_per_correct: Option<f64>,
    pub latency_p50_ms: Option<u64>,
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
                    _ => (Some(r.spend_inline), "inline"),
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
            }
        })
        .collect();
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
