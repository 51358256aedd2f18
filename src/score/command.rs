//! `orbatch score` from the command line: resolve the flags, score, write the scores files,
//! and show accuracy per model (stdout: the table; stderr: notes).

use std::fmt::Write as _;
use std::sync::Arc;

use comfy_table::{CellAlignment, Table, presets};

use super::Scorer;
use super::job::{ScoreJob, ScoreSummary, score};
use crate::cli::ScoreArgs;
use crate::config::input_source;
use crate::exit::{Exit, Failure, Outcome, UsageError};
use crate::job::{InputConfig, InputFormat};

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

fn resolve(args: &ScoreArgs) -> Result<ScoreJob, UsageError> {
    let scorer = Scorer::parse(&args.scorer).map_err(|e| UsageError::new(e.to_string()))?;
    let (source, format) = input_source(&args.input, args.input_format.map(InputFormat::from))?;
    if args.expected.trim().is_empty() {
        return Err(UsageError::new(
            "--expected: name the input field with the expected answers",
        ));
    }
    Ok(ScoreJob {
        outputs: args.outputs.clone(),
        input: InputConfig::rows_only(source, format, args.id_field.clone()),
        expected: args.expected.clone(),
        scorer: Arc::new(scorer),
        scorer_field: args.scorer_field.clone(),
    })
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
