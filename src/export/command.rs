//! `orbatch export` from the command line: resolve the flags, then write to `-o` (a temp file
//! renamed into place) or to stdout (a closed pipe ends it quietly).

use std::io;
use std::path::Path;

use super::{ExportError, ExportJob, Format, Shape, export};
use crate::cli::{ExportArgs, ExportFormatArg, ExportShapeArg};
use crate::config::input_source;
use crate::exit::{Exit, Failure, Outcome, UsageError};
use crate::job::{InputConfig, InputFormat};

/// Run `orbatch export`.
pub fn run(args: &ExportArgs) -> Outcome {
    let job = resolve(args)?;
    let summary = match &args.output {
        Some(dest) => to_file(&job, dest)?,
        None => {
            let stdout = io::stdout();
            let mut lock = stdout.lock();
            match export(&job, &mut lock) {
                Ok(s) => s,
                // The reader has what it wanted (`| head`).
                Err(ExportError::Write(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
                    return Ok(Exit::Ok);
                }
                Err(e) => return Err(failure(e)),
            }
        }
    };
    if !args.verbosity.quiet {
        for w in &summary.warnings {
            eprintln!("orbatch: warning: {w}");
        }
        let to = args
            .output
            .as_ref()
            .map_or_else(|| "stdout".to_owned(), |p| p.display().to_string());
        eprintln!(
            "orbatch: exported {} rows × {} models as {} lines to {to}",
            summary.rows,
            summary.models.len(),
            summary.lines
        );
    }
    Ok(Exit::Ok)
}

fn failure(e: ExportError) -> Failure {
    match e {
        ExportError::Write(_) => Failure::failed(e),
        other => Failure::Usage(UsageError::new(other.to_string())),
    }
}

/// Export into `dest`, replaced whole or not at all.
fn to_file(job: &ExportJob, dest: &Path) -> Result<super::ExportSummary, Failure> {
    let cannot = |e: io::Error| {
        Failure::Usage(UsageError::new(format!(
            "{}: cannot write the export: {e}",
            dest.display()
        )))
    };
    crate::output::replace_file(dest, |w| export(job, w).map_err(failure), cannot)
}

fn resolve(args: &ExportArgs) -> Result<ExportJob, UsageError> {
    let (source, format) = input_source(&args.input, args.input_format.map(InputFormat::from))?;
    let out_format = match args.format {
        Some(ExportFormatArg::Csv) => Format::Csv,
        Some(ExportFormatArg::Jsonl) => Format::Jsonl,
        None => match args
            .output
            .as_ref()
            .and_then(|p| p.extension())
            .and_then(|e| e.to_str())
        {
            Some("jsonl" | "ndjson") => Format::Jsonl,
            _ => Format::Csv,
        },
    };
    Ok(ExportJob {
        outputs: args.outputs.clone(),
        input: InputConfig::rows_only(source, format, args.id_field.clone()),
        format: out_format,
        shape: match args.shape {
            ExportShapeArg::Long => Shape::Long,
            ExportShapeArg::Wide => Shape::Wide,
        },
        raw: args.raw,
    })
}
