//! `orbatch score` from the command line: resolve the flags, score, write the scores files,
//! and show accuracy per model (stdout: the table; stderr: notes).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use comfy_table::{CellAlignment, Table, presets};

use super::Scorer;
use super::job::{ScoreJob, ScoreSummary, score};
use crate::cli::ScoreArgs;
use crate::config::{Job, ScoreSettings, default_output, input_source};
use crate::exit::{Exit, Failure, Outcome, UsageError};
use crate::job::{InputConfig, InputFormat, InputSource};

/// Run `orbatch score`.
pub fn run(args: &ScoreArgs) -> Outcome {
    let job = resolve(args)?;
    let summary = score(&job).map_err(|e| match e {
        super::job::ScoreError::Write { .. } => Failure::failed(e),
        other => Failure::Usage(UsageError::new(other.to_string())),
    })?;
    if !args.verbosity.quiet {
        for w in &summary.warnings {
            eprintln!("orbatch: warning: {w}");
        }
        for path in &summary.written {
            eprintln!("orbatch: wrote {}", path.display());
        }
    }
    crate::stdout::write(table(&summary).as_bytes())?;
    Ok(Exit::Ok)
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
    Ok(ScoreJob {
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
/// would) and show accuracy per model on stderr. A problem here does not change how the run
/// ended: it is said, and `orbatch score` can be run again.
pub fn after_run(config: &crate::config::RunConfig, quiet: bool) {
    let Some(settings) = &config.score else {
        return;
    };
    let job = ScoreJob {
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
    match score(&job) {
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
