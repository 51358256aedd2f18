//! The `judge` scorer: an LLM grades each answer against the expected one with a rubric.
//! Its requests are an ordinary orbatch job — one row per answer to grade, written to
//! `OUT.judge.in.jsonl`, sent through the same pool, limiter, retries and writer into
//! `OUT.judge.jsonl` — so judging resumes like any run (an answer already judged is not sent
//! again), and its spend is audited like any output (`orbatch costs OUT.judge.jsonl`; `report`
//! shows it apart).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value, json};

use tokio_util::sync::CancellationToken;

use super::Score;
use super::job::{Expect, ScoreError, ScoreJob, Verdicts, judge_rows};
use crate::config::RunConfig;
use crate::endpoint::Endpoint;
use crate::exit::{Exit, Failure, UsageError};
use crate::job::{Input, InputConfig, InputFormat, InputSource};
use crate::output::record::{Record, Status};
use crate::report::read;

/// The rubric orbatch ships; `--judge-template FILE` (job file `judge_template`) replaces it.
/// Variables: `question`, `answer`, `expected`, `answer_model`, and `row` (every field of the
/// input row, e.g. `{{ row.topic }}`).
pub const DEFAULT_RUBRIC: &str = include_str!("judge_rubric.txt");

/// How answers are judged.
#[derive(Debug, Clone)]
pub struct JudgeOptions {
    /// The judge model (`judge:model=…`, `--judge-model`, job file `judge_model`).
    pub model: Option<String>,
    /// The rubric template's source.
    pub rubric: String,
}

impl Default for JudgeOptions {
    fn default() -> Self {
        JudgeOptions {
            model: None,
            rubric: DEFAULT_RUBRIC.to_owned(),
        }
    }
}

/// `OUT.jsonl` → `OUT.judge.jsonl`: the judge's own output (records like any run's).
pub fn judge_path(out: &Path) -> PathBuf {
    crate::output::beside(out, "judge")
}

/// `OUT.jsonl` → `OUT.judge.in.jsonl`: the judge's input, one row per answer to grade.
pub fn judge_input_path(out: &Path) -> PathBuf {
    crate::output::beside(out, "judge.in")
}

/// One answer to grade.
pub struct Ask<'a> {
    pub id: &'a str,
    pub model: &'a str,
    pub answer: &'a str,
    pub expected: &'a str,
    pub row: &'a Map<String, Value>,
}

/// The judge row's id: the graded record's id and model.
pub fn row_id(id: &str, model: &str) -> String {
    format!("{id}@{model}")
}

/// The judge's input row for `ask`.
pub fn row(ask: &Ask<'_>) -> Value {
    let question = ["question", "prompt", "input", "text"]
        .iter()
        .find_map(|k| ask.row.get(*k).and_then(Value::as_str))
        .unwrap_or("");
    json!({
        "id": row_id(ask.id, ask.model),
        "question": question,
        "answer": ask.answer,
        "expected": ask.expected,
        "answer_model": ask.model,
        "row": ask.row,
    })
}

/// The run that sends the judge's requests: the base run's target, limits and retries, with
/// the judge's input, output and rubric (each row names its judge model). No `--max-cost`
/// (the judge's job has its own output and spend), no scoring.
pub fn run_config(base: &RunConfig, out: &Path, rubric: &str) -> RunConfig {
    let mut params = Map::new();
    params.insert("temperature".into(), json!(0));
    params.insert("max_tokens".into(), json!(16));
    let mut config = base.clone();
    config.input = InputConfig {
        source: InputSource::Path(judge_input_path(out)),
        format: InputFormat::Jsonl,
        models: Vec::new(),
        endpoint: Endpoint::Chat,
        template: Some(rubric.to_owned()),
        system: None,
        id_field: None,
        params,
        keep_fields: false,
        limit: None,
        shard: None,
        schema: None,
        hidden: false,
        context: base.input.context.clone(),
        chunk: None,
        reduce_from: None,
    };
    config.structured = None;
    config.reduce_template = None;
    // Verdicts are wanted now: the live lane.
    config.batch = crate::batch::Settings::default();
    config.output = judge_path(out);
    config.max_cost = None;
    config.fresh = false;
    config.retry_errors = true;
    config.truncated_error = false;
    config.score = None;
    config
}

/// Judge the answers of every output of `job` that the judge grades, sending only what is not
/// judged yet (the judge's output resumes like any run's), through a run set up like `base`.
/// Returns each output's verdicts, and the exit of the judge's runs (not `Ok` when one of
/// them failed requests, was stopped or interrupted: what was judged is still used).
pub async fn judge_all(
    job: &ScoreJob,
    rows: &HashMap<String, Expect>,
    base: &RunConfig,
    interrupt: &CancellationToken,
    warnings: &mut Vec<String>,
) -> Result<(HashMap<PathBuf, Verdicts>, Exit), Failure> {
    let mut all = HashMap::new();
    let mut exit = Exit::Ok;
    for out in &job.outputs {
        let rows = judge_rows(out, rows, job, warnings).map_err(usage)?;
        if rows.is_empty() {
            continue;
        }
        let input = judge_input_path(out);
        crate::output::replace_jsonl(&input, &rows).map_err(|e| {
            Failure::failed(format!(
                "{}: cannot write the judge's input: {e}",
                input.display()
            ))
        })?;
        let config = run_config(base, out, &job.judge.rubric);
        let current = fingerprints(&config).map_err(|e| usage(e.into()))?;
        let quiet = base.quiet;
        let summary =
            crate::run::run(config, crate::ui::progress(quiet), interrupt.clone()).await?;
        let t = &summary.tally;
        if !quiet {
            eprintln!(
                "orbatch: judge: {} answers of {}: {} already judged, {} sent ({} ok, {} \
                 failed), spend {} → {}",
                rows.len(),
                out.display(),
                summary.skipped_done,
                t.written(),
                t.ok,
                t.failed,
                t.spend(),
                summary.output.display()
            );
        }
        if exit == Exit::Ok {
            exit = summary.exit();
        }
        all.insert(
            out.clone(),
            verdicts(out, &current, warnings).map_err(|e| usage(e.into()))?,
        );
    }
    Ok((all, exit))
}

fn usage(e: ScoreError) -> Failure {
    match e {
        ScoreError::Write { .. } => Failure::failed(e),
        other => Failure::Usage(UsageError::new(other.to_string())),
    }
}

/// The fingerprint of every judge request of `config`'s input, by judge row id: a judge
/// record counts only for the request as it is now (a changed answer is judged again).
pub fn fingerprints(config: &RunConfig) -> Result<HashMap<String, String>, crate::job::InputError> {
    let input = Input::open(config.input.clone())?;
    let mut out = HashMap::new();
    for req in input.requests()? {
        let req = req?;
        out.insert(req.id, req.fingerprint);
    }
    Ok(out)
}

/// The verdicts in the judge's output: the last ok record of each judge row whose
/// fingerprint is the current one. Keyed by judge row id.
pub fn verdicts(
    out: &Path,
    current: &HashMap<String, String>,
    warnings: &mut Vec<String>,
) -> Result<HashMap<String, Score>, read::ReadError> {
    let path = judge_path(out);
    let mut verdicts = HashMap::new();
    if !path.exists() {
        return Ok(verdicts);
    }
    read::records(&path, warnings, |r: &Record| {
        if current.get(&r.id) != Some(&r.fingerprint) {
            return;
        }
        match (&r.status, &r.output) {
            (Status::Ok, Some(text)) => {
                verdicts.insert(r.id.clone(), verdict(text));
            }
            _ => {
                verdicts.remove(&r.id);
            }
        }
    })?;
    Ok(verdicts)
}

/// What a judge's answer says: a `SCORE: x` line (0..1, for rubrics that grade on a scale;
/// passed from 0.5), else its first CORRECT or INCORRECT. Anything else fails, with nothing
/// extracted.
pub fn verdict(text: &str) -> Score {
    static SCORE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)\bscore\s*[:=]\s*([01](?:\.\d+)?|\.\d+)").expect("a valid pattern")
    });
    static WORD: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i)\b(incorrect|correct)\b").expect("a valid pattern"));
    if let Some(c) = SCORE.captures(text)
        && let Ok(x) = c[1].parse::<f64>()
    {
        let score = x.clamp(0.0, 1.0);
        return Score {
            score,
            passed: score >= 0.5,
            extracted: Some(c[0].to_owned()),
        };
    }
    match WORD.captures(text) {
        Some(c) => Score::of(
            c[1].eq_ignore_ascii_case("correct"),
            Some(c[1].to_uppercase()),
        ),
        None => Score::of(false, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_read_the_first_word_or_a_score() {
        for (text, score, passed, extracted) in [
            ("CORRECT", 1.0, true, Some("CORRECT")),
            ("Incorrect.", 0.0, false, Some("INCORRECT")),
            ("The answer is correct: Paris.", 1.0, true, Some("CORRECT")),
            (
                "**INCORRECT** (it says Lyon)",
                0.0,
                false,
                Some("INCORRECT"),
            ),
            ("SCORE: 0.75", 0.75, true, Some("SCORE: 0.75")),
            ("score=0.2, mostly wrong", 0.2, false, Some("score=0.2")),
            ("Score: 1", 1.0, true, Some("Score: 1")),
            ("I cannot tell.", 0.0, false, None),
            (
                "incorrectly formatted but correct",
                1.0,
                true,
                Some("CORRECT"),
            ),
        ] {
            let v = verdict(text);
            assert_eq!(
                (v.score, v.passed, v.extracted.as_deref()),
                (score, passed, extracted),
                "{text}"
            );
        }
    }

    #[test]
    fn the_default_rubric_names_its_variables_and_the_verdict_words() {
        for needle in [
            "{{ question }}",
            "{{ answer }}",
            "{{ expected }}",
            "CORRECT",
            "INCORRECT",
        ] {
            assert!(DEFAULT_RUBRIC.contains(needle), "{needle}");
        }
    }

    #[test]
    fn judge_files_sit_beside_the_output() {
        assert_eq!(
            judge_path(Path::new("d/eval.out.jsonl")),
            Path::new("d/eval.out.judge.jsonl")
        );
        assert_eq!(
            judge_input_path(Path::new("d/eval.out.jsonl")),
            Path::new("d/eval.out.judge.in.jsonl")
        );
    }
}
