//! `orbatch export` from the command line: resolve the flags, then write to `-o` (a temp file
//! renamed into place) or to stdout (a closed pipe ends it quietly).

use std::io;
use std::path::Path;

use super::to_dir::{self, Change, ToDir, ToDirError};
use super::{ExportError, ExportJob, Format, Shape, export};
use crate::cli::{ExportArgs, ExportFormatArg, ExportShapeArg};
use crate::config::input_source;
use crate::exit::{Exit, Failure, Outcome, UsageError};
use crate::job::{InputConfig, InputFormat};

/// Run `orbatch export`.
pub fn run(args: &ExportArgs) -> Outcome {
    if let Some(dir) = &args.to_dir {
        return to_dir(args, dir);
    }
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

/// `--to-dir DIR`: a file per answer, and the index.
fn to_dir(args: &ExportArgs, dir: &Path) -> Outcome {
    let job = ToDir {
        outputs: args.outputs.clone(),
        dir: dir.to_path_buf(),
        name: args
            .name
            .clone()
            .unwrap_or_else(|| to_dir::DEFAULT_NAME.to_owned()),
        dry_run: args.dry_run,
    };
    let summary = to_dir::export(&job).map_err(|e| match e {
        ToDirError::Write { .. } => Failure::failed(e),
        other => Failure::Usage(UsageError::new(other.to_string())),
    })?;
    if args.dry_run {
        crate::stdout::write(summary.listing(dir).as_bytes())?;
    }
    if !args.verbosity.quiet {
        for w in &summary.warnings {
            eprintln!("orbatch: warning: {w}");
        }
        let files = summary.files.len() - 1;
        let would = if args.dry_run { "would write" } else { "wrote" };
        let not_ok = match summary.not_ok {
            0 => String::new(),
            n => format!("; {n} requests whose last record is an error have no file"),
        };
        eprintln!(
            "orbatch: {would} {files} files and {} into {} ({} new, {} changed, {} \
             unchanged){not_ok}",
            to_dir::INDEX,
            dir.display(),
            summary.count(Change::New),
            summary.count(Change::Changed),
            summary.count(Change::Unchanged),
        );
    }
    Ok(Exit::Ok)
}

fn resolve(args: &ExportArgs) -> Result<ExportJob, UsageError> {
    let input = args
        .input
        .as_deref()
        .ok_or_else(|| UsageError::new("export needs --input IN (or --to-dir DIR)"))?;
    let (source, format) = input_source(input, args.input_format.map(InputFormat::from))?;
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
