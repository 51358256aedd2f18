//! `orbatch report` as a command: resolve its flags, read every output file (and sidecar),
//! aggregate, render, and write to stdout or `-o PATH`.

use std::collections::HashSet;
use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};

use super::read::{self, ReadError};
use super::{Aggregator, Generations, GroupBy, Judge, Report, html, render, scores};
use crate::cli::{ReportArgs, ReportByArg, ReportFormatArg};
use crate::exit::{Exit, Outcome, UsageError};
use crate::stdout;

/// How the report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
    Md,
    Html,
}

/// `orbatch report`'s settings, resolved from the command line.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Output files to merge, in the order given.
    pub inputs: Vec<PathBuf>,
    pub by: GroupBy,
    pub format: Format,
    /// Where to write; stdout when `None`.
    pub output: Option<PathBuf>,
    /// No warnings on stderr.
    pub quiet: bool,
}

impl ReportOptions {
    pub fn from_args(args: &ReportArgs) -> ReportOptions {
        ReportOptions {
            inputs: args.inputs.clone(),
            by: match args.by {
                ReportByArg::Model => GroupBy::Model,
                ReportByArg::Provider => GroupBy::Provider,
                ReportByArg::Status => GroupBy::Status,
                ReportByArg::Error => GroupBy::Error,
                ReportByArg::Tier => GroupBy::Tier,
                ReportByArg::Input => GroupBy::Input,
                ReportByArg::Document => GroupBy::Document,
                ReportByArg::Lane => GroupBy::Lane,
            },
            format: match args.format {
                ReportFormatArg::Table => Format::Table,
                ReportFormatArg::Json => Format::Json,
                ReportFormatArg::Csv => Format::Csv,
                ReportFormatArg::Md => Format::Md,
                ReportFormatArg::Html => Format::Html,
            },
            output: args.output.clone(),
            quiet: args.verbosity.quiet,
        }
    }
}

/// Run `orbatch report`. An unreadable input or an unwritable `-o` is a usage error (exit 2).
pub fn run(opts: &ReportOptions) -> Outcome {
    let mut warnings = Vec::new();
    let report = build(opts, &mut warnings).map_err(|e| UsageError::new(e.to_string()))?;
    if !opts.quiet {
        for w in &warnings {
            eprintln!("orbatch: warning: {w}");
        }
    }
    // A table shown on a terminal fits its width: the least useful columns are left out.
    let width = match (opts.format, &opts.output) {
        (Format::Table, None) if io::stdout().is_terminal() => comfy_table::Table::new().width(),
        _ => None,
    };
    let text = render_as(opts.format, &report, width);
    write(opts.output.as_deref(), text.as_bytes())?;
    Ok(Exit::Ok)
}

/// Read the inputs and aggregate them.
pub fn build(opts: &ReportOptions, warnings: &mut Vec<String>) -> Result<Report, ReadError> {
    let inputs = distinct(&opts.inputs, warnings);
    // Fail before any work if an input cannot be opened.
    for path in &inputs {
        read::open(path)?;
    }
    let mut generations = Generations::default();
    let mut sidecars = Vec::new();
    for path in &inputs {
        sidecars.push(read::sidecar(path, &mut generations, warnings)?);
    }
    let any_sidecar = sidecars.iter().any(Option::is_some);
    let generations = any_sidecar.then_some(&generations);
    let mut score_files = Vec::new();
    let mut score_lines = Vec::new();
    for path in &inputs {
        if let Some((file, lines)) = read::score_lines(path, warnings)? {
            score_files.push(file.display().to_string());
            score_lines.extend(lines);
        }
    }
    let mut agg = Aggregator::new(opts.by, generations);
    // Scores are per model whatever `--by` is: their spend and latency come from a second
    // aggregation by model in the same pass.
    let mut by_model = (!score_files.is_empty() && opts.by != GroupBy::Model)
        .then(|| Aggregator::new(GroupBy::Model, generations));
    let mut read_inputs = Vec::new();
    for (path, sidecar) in inputs.iter().zip(sidecars) {
        agg.set_input(&path.display().to_string());
        let mut input = read::records(path, warnings, |r| {
            agg.add(r);
            if let Some(m) = by_model.as_mut() {
                m.add(r);
            }
        })?;
        if let Some((side, count)) = sidecar {
            input.sidecar = Some(side.display().to_string());
            input.generations = count;
        }
        read_inputs.push(input);
    }
    let mut report = agg.finish();
    report.inputs = read_inputs;
    report.judge = judge(&inputs, warnings)?;
    if !score_files.is_empty() {
        let model_rows = match by_model {
            Some(m) => m.finish().groups,
            None => report.groups.clone(),
        };
        report.scores = Some(scores::scores(score_files, score_lines, &model_rows));
    }
    Ok(report)
}

/// The judge's outputs beside `inputs` (`OUT.judge.jsonl`, with their own sidecars), summed.
fn judge(inputs: &[PathBuf], warnings: &mut Vec<String>) -> Result<Option<Judge>, ReadError> {
    let files: Vec<PathBuf> = inputs
        .iter()
        .map(|p| crate::score::judge::judge_path(p))
        .filter(|p| p.exists())
        .collect();
    if files.is_empty() {
        return Ok(None);
    }
    let mut generations = Generations::default();
    let mut any_sidecar = false;
    for f in &files {
        any_sidecar |= read::sidecar(f, &mut generations, warnings)?.is_some();
    }
    let mut agg = Aggregator::new(GroupBy::Model, any_sidecar.then_some(&generations));
    for f in &files {
        read::records(f, warnings, |r| agg.add(r))?;
    }
    Ok(Some(Judge {
        files: files.iter().map(|f| f.display().to_string()).collect(),
        total: agg.finish().total,
    }))
}

/// The inputs without repeats (a file given twice would count its spend twice).
fn distinct(inputs: &[PathBuf], warnings: &mut Vec<String>) -> Vec<PathBuf> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for p in inputs {
        let canonical = p.canonicalize().unwrap_or_else(|_| p.clone());
        if seen.insert(canonical) {
            out.push(p.clone());
        } else {
            warnings.push(format!("{}: given twice; read once", p.display()));
        }
    }
    out
}

/// The report as a document in `format`.
pub fn render_as(format: Format, report: &Report, width: Option<u16>) -> String {
    match format {
        Format::Table => render::table(report, width),
        Format::Json => render::json(report),
        Format::Csv => render::csv(report),
        Format::Md => render::md(report),
        Format::Html => html::html(report),
    }
}

/// Write `bytes` to `path`, or to stdout. A closed pipe (`| head`) is not an error.
fn write(path: Option<&Path>, bytes: &[u8]) -> Result<(), crate::exit::Failure> {
    match path {
        Some(p) => std::fs::write(p, bytes).map_err(|e| {
            UsageError::new(format!("{}: cannot write the report: {e}", p.display())).into()
        }),
        None => stdout::write(bytes),
    }
}
