//! `orbatch score` from the command line: resolve the flags, score, write the scores files,
//! and show accuracy per model (stdout: the table; stderr: notes).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use comfy_table::{CellAlignment, Table, presets};

use std::collections::HashMap;

use tokio_util::sync::CancellationToken;

use super::Scorer;
use super::job::{ScoreError, ScoreJob, ScoreSummary, expectations, score_rows};
use crate::cli::{RunArgs, ScoreArgs};
use crate::config::{
    Job, RunConfig, ScoreSettings, default_output, input_source, read_judge_rubric,
};
use crate::exit::{Exit, Failure, Outcome, UsageError};
use crate::job::{InputConfig, InputFormat, InputSource};

/// Run `orbatch score`. Offline, unless rows are scored by the judge: then its requests are
/// sent first (what it has judged already is not sent again).
pub async fn run(args: &ScoreArgs, interrupt: CancellationToken) -> Outcome {
    let job = resolve(args)?;
    let quiet = args.verbosity.quiet;
    let (summary, exit) =
        judge_and_score(&job, quiet, &interrupt, || judge_base(args, &job)).await?;
    if !quiet {
        for w in &summary.warnings {
            eprintln!("orbatch: warning: {w}");
        }
        for path in &summary.written {
            eprintln!("orbatch: wrote {}", path.display());
        }
    }
    crate::stdout::write(table(&summary).as_bytes())?;
    Ok(exit)
}

/// Read the input; judge what the judge grades (a run set up by `base`, asked for only when
/// there is something to judge); score everything. The exit is the judge's (`Ok` without).
async fn judge_and_score(
    job: &ScoreJob,
    quiet: bool,
    interrupt: &CancellationToken,
    base: impl FnOnce() -> Result<RunConfig, Failure>,
) -> Result<(ScoreSummary, Exit), Failure> {
    let rows = tokio::task::block_in_place(|| expectations(job)).map_err(failure)?;
    let mut warnings = Vec::new();
    let (verdicts, exit) = if needs_judge(&rows) {
        let mut base = base()?;
        base.quiet = quiet;
        super::judge::judge_all(job, &rows, &base, interrupt, &mut warnings).await?
    } else {
        (HashMap::new(), Exit::Ok)
    };
    let mut summary =
        tokio::task::block_in_place(|| score_rows(job, &rows, &verdicts)).map_err(failure)?;
    warnings.append(&mut summary.warnings);
    summary.warnings = warnings;
    Ok((summary, exit))
}

fn failure(e: ScoreError) -> Failure {
    match e {
        ScoreError::Write { .. } => Failure::failed(e),
        other => Failure::Usage(UsageError::new(other.to_string())),
    }
}

/// The run settings the judge's requests use under `orbatch score`: its `--base-url`,
/// `--mock`, key and headers, orbatch's defaults for the rest.
fn judge_base(args: &ScoreArgs, job: &ScoreJob) -> Result<RunConfig, Failure> {
    let first = job
        .outputs
        .first()
        .map(|o| super::judge::judge_input_path(o));
    let run = RunArgs {
        input: first.map(|p| p.display().to_string()),
        api: args.api.clone(),
        ..RunArgs::default()
    };
    Ok(RunConfig::resolve(&run, &|k| std::env::var(k).ok())?)
}

/// Flags first, then the job file (`--job`): its input, id field, output and `[score]` table.
fn resolve(args: &ScoreArgs) -> Result<ScoreJob, UsageError> {
    let job = match &args.job {
        Some(path) => Job::load(path)?,
        None => Job::default(),
    };
    let from_job = ScoreSettings::from_job(&job)?;
    let input_arg = match (&args.input, &job.file.input) {
        (Some(i), _) => i.clone(),
        (None, Some(i)) => job.resolve(Path::new(i)).to_string_lossy().into_owned(),
        (None, None) => {
            return Err(UsageError::new(
                "no input: pass --input PATH, the file the outputs were run on (or --job)",
            ));
        }
    };
    let format = args
        .input_format
        .or(job.file.input_format)
        .map(InputFormat::from);
    let (source, format) = input_source(&input_arg, format)?;
    let outputs = if !args.outputs.is_empty() {
        args.outputs.clone()
    } else if let Some(o) = &job.file.output {
        vec![job.resolve(o)]
    } else if let (Some(_), InputSource::Path(p)) = (&args.job, &source) {
        vec![default_output(p)]
    } else {
        return Err(UsageError::new(
            "no output to score: pass OUT.jsonl (the file `orbatch run` wrote)",
        ));
    };
    let expected = match (&args.expected, &from_job) {
        (Some(e), _) => e.clone(),
        (None, Some(s)) => s.expected.clone(),
        (None, None) => {
            return Err(UsageError::new(
                "--expected FIELD: name the input field with the expected answers (or give a \
                 job file with a [score] table)",
            ));
        }
    };
    if expected.trim().is_empty() {
        return Err(UsageError::new(
            "--expected: name the input field with the expected answers",
        ));
    }
    let scorer = match (&args.scorer, &from_job) {
        (Some(spec), _) => {
            Arc::new(Scorer::parse(spec).map_err(|e| UsageError::new(e.to_string()))?)
        }
        (None, Some(s)) => Arc::clone(&s.scorer),
        (None, None) => {
            Arc::new(Scorer::parse("exact").map_err(|e| UsageError::new(e.to_string()))?)
        }
    };
    let id_field = args.id_field.clone().or(job.file.id_field.clone());
    let mut judge = from_job
        .as_ref()
        .map(|s| s.judge.clone())
        .unwrap_or_default();
    if let Some(m) = &args.judge_model {
        judge.model = Some(m.clone());
    }
    if let Some(f) = &args.judge_template {
        judge.rubric = read_judge_rubric(f)?;
    }
    Ok(ScoreJob {
        judge,
        outputs,
        input: InputConfig::rows_only(source, format, id_field),
        expected,
        scorer,
        scorer_field: args
            .scorer_field
            .clone()
            .or(from_job.and_then(|s| s.scorer_field)),
    })
}

/// After `run` of a job with a `[score]` table: score its output (as `orbatch score --job`
/// would; the judge's requests go where the run's went) and show accuracy per model on
/// stderr. A problem here does not change how the run ended: it is said, and `orbatch score`
/// can be run again.
pub async fn after_run(config: &RunConfig, quiet: bool, interrupt: &CancellationToken) {
    let Some(settings) = &config.score else {
        return;
    };
    let job = ScoreJob {
        judge: settings.judge.clone(),
        outputs: vec![config.output.clone()],
        input: InputConfig::rows_only(
            config.input.source.clone(),
            config.input.format,
            config.input.id_field.clone(),
        ),
        expected: settings.expected.clone(),
        scorer: Arc::clone(&settings.scorer),
        scorer_field: settings.scorer_field.clone(),
    };
    if config.input.source == InputSource::Stdin {
        return;
    }
    let scored = judge_and_score(&job, quiet, interrupt, || Ok(config.clone())).await;
    match scored.map(|(summary, _)| summary) {
        Ok(summary) if !quiet => {
            for path in &summary.written {
                eprintln!("orbatch: scored the answers ([score]): {}", path.display());
            }
            eprint!("{}", table(&summary));
        }
        Ok(_) => {}
        Err(e) => eprintln!("orbatch: warning: the answers were not scored: {e}"),
    }
}

/// Whether any row of the input is scored by the judge.
fn needs_judge(rows: &HashMap<String, super::job::Expect>) -> bool {
    rows.values().any(super::job::Expect::judged)
}

/// Accuracy per model, best first.
fn table(summary: &ScoreSummary) -> String {
    let mut models: Vec<_> = summary.per_model.iter().collect();
    models.sort_by(|(a, x), (b, y)| {
        y.accuracy()
            .unwrap_or(-1.0)
            .total_cmp(&x.accuracy().unwrap_or(-1.0))
            .then_with(|| a.cmp(b))
    });
    let mut t = Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED);
    t.set_header([
        "model",
        "scored",
        "passed",
        "accuracy",
        "unanswered",
        "no expected",
    ]);
    for (model, tally) in &models {
        t.add_row([
            model.to_string(),
            tally.scored.to_string(),
            tally.passed.to_string(),
            tally
                .accuracy()
                .map_or_else(|| "-".to_owned(), |a| format!("{:.1}%", a * 100.0)),
            tally.unanswered.to_string(),
            tally.no_expected.to_string(),
        ]);
    }
    for i in 1..6 {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut out = format!("{t}\n");
    let unanswered: u64 = models.iter().map(|(_, t)| t.unanswered).sum();
    if unanswered > 0 {
        let _ = writeln!(
            out,
            "{unanswered} requests have no answer (their last record is an error): rerun `orbatch \
             run` to retry them, then score again"
        );
    }
    out
}
