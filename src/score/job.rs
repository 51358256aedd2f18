//! `orbatch score`: join the records of one or more outputs back to their input rows by id,
//! score every answer against the row's expected value, and write `OUT.scores.jsonl` beside
//! each output. Offline and cheap to rerun with another scorer (the file is replaced whole).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use super::judge::{self, JudgeOptions};
use super::{Score, Scorer};
use crate::job::rows::{Row, each_row};
use crate::job::{InputConfig, InputError, Problems};
use crate::output::record::{Record, Status};
use crate::output::{replace_jsonl, scores_path};
use crate::report::read;

/// Longest `extracted` text kept in a score line (an `exact` scorer extracts the whole answer).
const MAX_EXTRACTED: usize = 500;

/// What to score, resolved from the flags or the job file's `[score]` table.
#[derive(Debug)]
pub struct ScoreJob {
    /// Outputs of `orbatch run` (shards: several).
    pub outputs: Vec<PathBuf>,
    pub input: InputConfig,
    /// The input field holding the expected answer.
    pub expected: String,
    /// The scorer of rows that do not name their own.
    pub scorer: Arc<Scorer>,
    /// `--scorer-field`: the input field naming a row's own scorer spec (mixed sets).
    pub scorer_field: Option<String>,
    /// The judge's model and rubric, for rows scored by `judge`.
    pub judge: JudgeOptions,
}

/// Why scoring could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error("{0}")]
    Input(#[from] InputError),
    #[error("{0}")]
    Read(#[from] read::ReadError),
    /// The scoring cannot be set up (e.g. a judge without a model).
    #[error("{0}")]
    Setup(String),
    #[error("{path}: cannot write the scores: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// One line of `OUT.scores.jsonl` (SPEC §8).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScoreLine {
    pub id: String,
    pub model: String,
    pub scorer: &'static str,
    pub score: f64,
    pub passed: bool,
    pub extracted: Option<String>,
    pub expected: String,
}

/// Counts per model, for the summary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ModelTally {
    /// Answers scored.
    pub scored: u64,
    pub passed: u64,
    /// Requests whose last record is an error: no answer to score (a rerun retries them).
    pub unanswered: u64,
    /// Rows without an expected value: not scored.
    pub no_expected: u64,
    /// Records whose id is not a row of the input.
    pub not_in_input: u64,
    /// Answers for the judge that it has not graded (yet): its request failed or was not
    /// sent; rerunning `orbatch score` sends them.
    pub unjudged: u64,
}

/// What `score` did.
#[derive(Debug, Default)]
pub struct ScoreSummary {
    pub per_model: BTreeMap<String, ModelTally>,
    /// The scores files written, one per output.
    pub written: Vec<PathBuf>,
    pub warnings: Vec<String>,
}

/// What the input says about one row.
pub(crate) struct Expect {
    expected: Option<String>,
    scorer: Option<Arc<Scorer>>,
    /// The row's fields, kept for the judge's rubric (rows it grades only).
    fields: Option<Map<String, Value>>,
}

impl Expect {
    /// Scored by the judge (with an expected value to grade against).
    pub(crate) fn judged(&self) -> bool {
        self.fields.is_some()
    }
}

/// The judge's verdicts for one output, by judge row id ([`judge::row_id`]).
pub(crate) type Verdicts = HashMap<String, Score>;

/// Score every output of `job`, without the judge's verdicts.
#[cfg(test)]
pub fn score(job: &ScoreJob) -> Result<ScoreSummary, ScoreError> {
    let rows = expectations(job)?;
    score_rows(job, &rows, &HashMap::new())
}

/// [`score`] with the input read and the verdicts of each output given.
pub(crate) fn score_rows(
    job: &ScoreJob,
    rows: &HashMap<String, Expect>,
    verdicts: &HashMap<PathBuf, Verdicts>,
) -> Result<ScoreSummary, ScoreError> {
    let mut summary = ScoreSummary::default();
    let none = Verdicts::new();
    for out in &job.outputs {
        let verdicts = verdicts.get(out).unwrap_or(&none);
        let lines = score_output(out, rows, &job.scorer, verdicts, &mut summary)?;
        let dest = scores_path(out);
        replace_jsonl(&dest, &lines).map_err(|source| ScoreError::Write {
            path: dest.display().to_string(),
            source,
        })?;
        summary.written.push(dest);
    }
    Ok(summary)
}

/// Read the input: each row's expected value and scorer, by id.
pub(crate) fn expectations(job: &ScoreJob) -> Result<HashMap<String, Expect>, ScoreError> {
    let mut specs: HashMap<String, Arc<Scorer>> = HashMap::new();
    // A row naming a scorer that cannot be used (grouped and capped as input problems are).
    let mut bad_specs = Problems::default();
    let field = job.scorer_field.as_deref().unwrap_or_default();
    let mut rows = HashMap::new();
    let mut with_field = 0u64;
    let mut columns: Vec<String> = Vec::new();
    each_row(&job.input, |row: Row<'_>| {
        if row.fields.contains_key(&job.expected) {
            with_field += 1;
        } else if columns.is_empty() {
            columns = row.fields.keys().cloned().collect();
        }
        let scorer = job
            .scorer_field
            .as_deref()
            .and_then(|f| row.fields.get(f))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .and_then(|spec| match specs.get(spec) {
                Some(s) => Some(Arc::clone(s)),
                None => match Scorer::parse(spec) {
                    Ok(s) => {
                        let s = Arc::new(s);
                        specs.insert(spec.to_owned(), Arc::clone(&s));
                        Some(s)
                    }
                    Err(e) => {
                        bad_specs.push(
                            Some(row.line),
                            format!("scorer field {field:?}: {}", e.message),
                        );
                        None
                    }
                },
            });
        let expected = expected_text(row.fields.get(&job.expected));
        let judged = matches!(
            scorer.as_deref().unwrap_or(&job.scorer),
            Scorer::Judge { .. }
        );
        let fields = (judged && expected.is_some()).then(|| row.fields.clone());
        rows.insert(
            row.id.to_owned(),
            Expect {
                expected,
                scorer,
                fields,
            },
        );
    })?;
    let name = job.input.display_name();
    if with_field == 0 && !rows.is_empty() {
        let columns: Vec<String> = columns.iter().map(|c| format!("{c:?}")).collect();
        return Err(InputError::one(
            &name,
            None,
            format!(
                "no row has the field {:?} named by --expected (the rows have {})",
                job.expected,
                columns.join(", ")
            ),
        )
        .into());
    }
    if !bad_specs.is_empty() {
        return Err(bad_specs.into_error(&name).into());
    }
    Ok(rows)
}

/// The judge's input rows for the answers of `out` it grades: the last record of each
/// (id, model), when ok and its row has an expected value and is scored by `judge`. Each row
/// carries `model`: the judge model (of the row's `judge:model=…`, else `default_model`).
pub(crate) fn judge_rows(
    out: &Path,
    rows: &HashMap<String, Expect>,
    job: &ScoreJob,
    warnings: &mut Vec<String>,
) -> Result<Vec<Value>, ScoreError> {
    let mut order: Vec<(String, String)> = Vec::new();
    let mut latest: HashMap<(String, String), Option<Value>> = HashMap::new();
    let mut missing_model = false;
    read::records(out, warnings, |r: &Record| {
        let row = rows.get(&r.id).and_then(|e| {
            let fields = e.fields.as_ref()?;
            let expected = e.expected.as_deref()?;
            let Scorer::Judge { model } = e.scorer.as_deref().unwrap_or(&job.scorer) else {
                return None;
            };
            let answer = match (&r.status, &r.output) {
                (Status::Ok, Some(a)) => a,
                _ => return None,
            };
            let Some(judge_model) = model.as_deref().or(job.judge.model.as_deref()) else {
                missing_model = true;
                return None;
            };
            let mut row = judge::row(&judge::Ask {
                id: &r.id,
                model: &r.model,
                answer,
                expected,
                row: fields,
            });
            row["model"] = Value::String(judge_model.to_owned());
            Some(row)
        });
        let key = (r.id.clone(), r.model.clone());
        if latest.insert(key.clone(), row).is_none() {
            order.push(key);
        }
    })?;
    if missing_model {
        return Err(ScoreError::Setup(
            "the judge scorer needs a model: pass --judge-model ID (job file: judge_model in \
             [score]) or write judge:model=ID"
                .to_owned(),
        ));
    }
    Ok(order
        .into_iter()
        .filter_map(|k| latest.remove(&k).flatten())
        .collect())
}

/// A row's expected answer as text: a string as it is, another JSON value as JSON; `None`
/// for a missing, null or blank field (such a row is not scored).
pub(crate) fn expected_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The score lines of one output: the last record of each (id, model), in first-seen order.
fn score_output(
    out: &Path,
    rows: &HashMap<String, Expect>,
    default: &Scorer,
    verdicts: &Verdicts,
    summary: &mut ScoreSummary,
) -> Result<Vec<ScoreLine>, ScoreError> {
    // The outcome of each key's latest record; a later record (a rerun) replaces it.
    enum Outcome {
        Scored(ScoreLine),
        Unanswered,
        Unjudged,
        NoExpected,
        NotInInput,
    }
    let mut order: Vec<(String, String)> = Vec::new();
    let mut latest: HashMap<(String, String), Outcome> = HashMap::new();
    read::records(out, &mut summary.warnings, |r: &Record| {
        let outcome = match rows.get(&r.id) {
            None => Outcome::NotInInput,
            Some(Expect { expected: None, .. }) => Outcome::NoExpected,
            Some(Expect {
                expected: Some(expected),
                scorer,
                ..
            }) => match (&r.status, &r.output) {
                (Status::Ok, Some(answer)) => {
                    let scorer = scorer.as_deref().unwrap_or(default);
                    let verdict = match scorer {
                        Scorer::Judge { .. } => {
                            verdicts.get(&judge::row_id(&r.id, &r.model)).cloned()
                        }
                        _ => Some(scorer.score(answer, expected)),
                    };
                    let Some(Score {
                        score,
                        passed,
                        extracted,
                    }) = verdict
                    else {
                        let key = (r.id.clone(), r.model.clone());
                        if latest.insert(key.clone(), Outcome::Unjudged).is_none() {
                            order.push(key);
                        }
                        return;
                    };
                    Outcome::Scored(ScoreLine {
                        id: r.id.clone(),
                        model: r.model.clone(),
                        scorer: scorer.kind(),
                        score,
                        passed,
                        extracted: extracted.map(clip),
                        expected: expected.clone(),
                    })
                }
                _ => Outcome::Unanswered,
            },
        };
        let key = (r.id.clone(), r.model.clone());
        if latest.insert(key.clone(), outcome).is_none() {
            order.push(key);
        }
    })?;
    let mut lines = Vec::new();
    let mut not_in_input = 0u64;
    for key in order {
        let Some(outcome) = latest.remove(&key) else {
            continue;
        };
        let tally = summary.per_model.entry(key.1).or_default();
        match outcome {
            Outcome::Scored(line) => {
                tally.scored += 1;
                tally.passed += u64::from(line.passed);
                lines.push(line);
            }
            Outcome::Unanswered => tally.unanswered += 1,
            Outcome::Unjudged => tally.unjudged += 1,
            Outcome::NoExpected => tally.no_expected += 1,
            Outcome::NotInInput => {
                tally.not_in_input += 1;
                not_in_input += 1;
            }
        }
    }
    if not_in_input > 0 {
        summary.warnings.push(format!(
            "{}: {not_in_input} records have an id that is not a row of the input; is --input \
             the file this output was run on?",
            out.display()
        ));
    }
    Ok(lines)
}

/// At most [`MAX_EXTRACTED`] characters, with `…` when cut.
fn clip(text: String) -> String {
    match text.char_indices().nth(MAX_EXTRACTED) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

impl ModelTally {
    /// Share of scored answers that passed; `None` with nothing scored.
    pub fn accuracy(&self) -> Option<f64> {
        (self.scored > 0).then(|| self.passed as f64 / self.scored as f64)
    }
}
