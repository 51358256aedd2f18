//! The export itself: columns, the two passes over the input, and the cells.

use std::io::{self, Write};
use std::path::PathBuf;

use serde_json::{Map, Value, json};

use super::index::{Index, Located, Reader};
use crate::job::rows::{Row, each_row};
use crate::job::{InputConfig, InputError, InputFormat, InputSource};
use crate::output::record::{Record, Status};
use crate::report::read::ReadError;

/// How the export is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
}

/// One line per (row, model), or one per row with columns per model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Long,
    Wide,
}

/// What to export.
#[derive(Debug)]
pub struct ExportJob {
    pub outputs: Vec<PathBuf>,
    pub input: InputConfig,
    pub format: Format,
    pub shape: Shape,
    /// Keep cells that start like a formula as they are.
    pub raw: bool,
}

/// Why the export could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0}")]
    Input(#[from] InputError),
    #[error("{0}")]
    Read(#[from] ReadError),
    #[error("cannot write the export: {0}")]
    Write(#[from] io::Error),
}

/// What was exported.
#[derive(Debug, Default)]
pub struct ExportSummary {
    pub rows: u64,
    pub lines: u64,
    pub models: Vec<String>,
    pub warnings: Vec<String>,
}

/// The per-model values, in column order.
const PER_MODEL: [&str; 9] = [
    "status",
    "output",
    "error_kind",
    "tokens_in",
    "tokens_out",
    "spend_usd",
    "spend_source",
    "score",
    "passed",
];

/// Export `job` to `out`.
pub fn export(job: &ExportJob, out: &mut dyn Write) -> Result<ExportSummary, ExportError> {
    let mut summary = ExportSummary::default();
    if job.input.source == InputSource::Stdin {
        return Err(InputError::one(
            crate::job::STDIN_NAME,
            None,
            "export reads the input twice: pass it as a file, not -",
        )
        .into());
    }
    let index = Index::build(&job.outputs, &mut summary.warnings)?;
    summary.models = index.models.clone();
    let columns = input_columns(&job.input)?;
    let names = per_model_names(&index.json_fields);
    let mut reader = Reader::new(&index.files);
    let mut w = Lines::new(job.format, out, !job.raw);
    // The header.
    if job.format == Format::Csv {
        let mut header = vec!["id".to_owned()];
        header.extend(columns.iter().cloned());
        match job.shape {
            Shape::Long => {
                header.push("model".to_owned());
                header.extend(names.iter().cloned());
            }
            Shape::Wide => {
                for m in &index.models {
                    header.extend(names.iter().map(|c| format!("{m}:{c}")));
                }
            }
        }
        w.csv_header(&header)?;
    }
    let mut failure: Option<ExportError> = None;
    let mut ids_seen = std::collections::HashSet::new();
    each_row(&job.input, |row: Row<'_>| {
        if failure.is_some() {
            return;
        }
        ids_seen.insert(crate::hash::hash64(row.id.as_bytes()));
        summary.rows += 1;
        let result = (|| -> Result<(), ExportError> {
            let mut per_model = Vec::with_capacity(index.models.len());
            for m in 0..index.models.len() {
                let values = match index.get(row.id, m) {
                    Some(at) => values(&reader.record(at)?, at, &index.json_fields),
                    None => not_run(names.len()),
                };
                per_model.push(values);
            }
            match (job.format, job.shape) {
                (Format::Csv, Shape::Long) => {
                    for (m, values) in per_model.iter().enumerate() {
                        let mut cells = input_cells(&row, &columns);
                        cells.push(Cell::Text(index.models[m].clone()));
                        cells.extend(values.iter().cloned());
                        w.csv(&cells)?;
                        summary.lines += 1;
                    }
                }
                (Format::Csv, Shape::Wide) => {
                    let mut cells = input_cells(&row, &columns);
                    for values in &per_model {
                        cells.extend(values.iter().cloned());
                    }
                    w.csv(&cells)?;
                    summary.lines += 1;
                }
                (Format::Jsonl, Shape::Long) => {
                    for (m, values) in per_model.iter().enumerate() {
                        let mut line = Map::new();
                        line.insert("id".into(), json!(row.id));
                        line.insert("input".into(), Value::Object(row.fields.clone()));
                        line.insert("model".into(), json!(index.models[m]));
                        for (name, cell) in names.iter().zip(values) {
                            line.insert(name.clone(), cell.json());
                        }
                        w.json(&Value::Object(line))?;
                        summary.lines += 1;
                    }
                }
                (Format::Jsonl, Shape::Wide) => {
                    let models: Map<String, Value> = per_model
                        .iter()
                        .enumerate()
                        .map(|(m, values)| {
                            let o: Map<String, Value> = names
                                .iter()
                                .zip(values)
                                .map(|(n, c)| (n.clone(), c.json()))
                                .collect();
                            (index.models[m].clone(), Value::Object(o))
                        })
                        .collect();
                    w.json(&json!({"id": row.id, "input": row.fields, "models": models}))?;
                    summary.lines += 1;
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            failure = Some(e);
        }
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    w.flush()?;
    let unknown = index.count_unknown(&|id| ids_seen.contains(&crate::hash::hash64(id.as_bytes())));
    if unknown > 0 {
        summary.warnings.push(format!(
            "{unknown} records have an id that is not a row of the input (not exported); is \
             --input the file these outputs were run on?"
        ));
    }
    Ok(summary)
}

/// One exported value.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    /// Text from the input or a model (neutralised in CSV if it starts like a formula).
    Text(String),
    /// A number or flag orbatch wrote.
    Number(String),
    /// A field of `output_json`: a string is text (neutralised in CSV), anything else is
    /// written as JSON.
    Json(Value),
    Empty,
}

impl Cell {
    fn json(&self) -> Value {
        match self {
            Cell::Text(s) => Value::String(s.clone()),
            Cell::Number(n) => serde_json::from_str(n).unwrap_or_else(|_| Value::String(n.clone())),
            Cell::Json(v) => v.clone(),
            Cell::Empty => Value::Null,
        }
    }
}

/// The input's columns, in the order a reader expects: a CSV's header order; JSONL keys in
/// first-seen order. The id column, when it is the row's id, is the export's first column.
fn input_columns(input: &InputConfig) -> Result<Vec<String>, ExportError> {
    let id_field = input.id_field.clone().unwrap_or_else(|| "id".to_owned());
    let mut columns: Vec<String> = Vec::new();
    match input.format {
        InputFormat::Csv | InputFormat::Tsv => {
            if let InputSource::Path(p) = &input.source {
                let delimiter = if input.format == InputFormat::Tsv {
                    b'\t'
                } else {
                    b','
                };
                let mut rdr = csv::ReaderBuilder::new()
                    .delimiter(delimiter)
                    .from_path(p)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                let headers = rdr.headers().map_err(|e| io::Error::other(e.to_string()))?;
                columns = headers
                    .iter()
                    .map(|h| h.trim_start_matches('\u{feff}').to_owned())
                    .collect();
            }
        }
        // A document's fields, without its whole text.
        InputFormat::Documents => {
            columns = ["path", "name", "stem", "ext", "bytes"]
                .map(str::to_owned)
                .to_vec();
        }
        InputFormat::Jsonl => {
            let mut seen = std::collections::HashSet::new();
            each_row(input, |row| {
                for k in row.fields.keys() {
                    if seen.insert(k.clone()) {
                        columns.push(k.clone());
                    }
                }
            })?;
        }
    }
    columns.retain(|c| *c != id_field);
    Ok(columns)
}

fn input_cells(row: &Row<'_>, columns: &[String]) -> Vec<Cell> {
    let mut cells = vec![Cell::Text(row.id.to_owned())];
    cells.extend(columns.iter().map(|c| match row.fields.get(c) {
        None | Some(Value::Null) => Cell::Empty,
        Some(Value::String(s)) => Cell::Text(s.clone()),
        Some(other) => Cell::Text(other.to_string()),
    }));
    cells
}

/// The per-model column names: `PER_MODEL`, then `json.FIELD` for each field of the
/// `output_json`s.
fn per_model_names(json_fields: &std::collections::BTreeSet<String>) -> Vec<String> {
    let mut names: Vec<String> = PER_MODEL.iter().map(|c| (*c).to_owned()).collect();
    names.extend(json_fields.iter().map(|f| format!("json.{f}")));
    names
}

/// The per-model values of one record (`per_model_names` order).
fn values(r: &Record, at: &Located, json_fields: &std::collections::BTreeSet<String>) -> Vec<Cell> {
    let usage = r.usage.as_ref();
    let num = |n: Option<u64>| n.map_or(Cell::Empty, |n| Cell::Number(n.to_string()));
    let (spend, source) = match at.exact {
        Some(exact) => (Cell::Number(exact.to_string()), "exact"),
        None if at.uncosted == 0 => (Cell::Number(at.inline.to_string()), "inline"),
        // The server gave no cost: unknown, not $0.
        None => (Cell::Empty, "unknown"),
    };
    vec![
        Cell::Text(match r.status {
            Status::Ok => "ok".to_owned(),
            Status::Error => "error".to_owned(),
        }),
        r.output.clone().map_or(Cell::Empty, Cell::Text),
        r.error
            .as_ref()
            .map_or(Cell::Empty, |e| Cell::Text(e.kind.as_str().to_owned())),
        num(usage.map(|u| u.prompt_tokens)),
        num(usage.map(|u| u.completion_tokens)),
        spend,
        Cell::Text(source.to_owned()),
        at.score
            .map_or(Cell::Empty, |s| Cell::Number(s.to_string())),
        at.passed
            .map_or(Cell::Empty, |p| Cell::Number(p.to_string())),
    ]
    .into_iter()
    .chain(json_fields.iter().map(|f| {
        r.output_json
            .as_ref()
            .and_then(|v| v.get(f))
            .map_or(Cell::Empty, |v| Cell::Json(v.clone()))
    }))
    .collect()
}

/// A (row, model) with no record: it was never run (`width` cells).
fn not_run(width: usize) -> Vec<Cell> {
    let mut v = vec![Cell::Text("not_run".to_owned())];
    v.resize(width, Cell::Empty);
    v
}

/// The lines being written.
struct Lines<'w> {
    format: Format,
    csv: Option<csv::Writer<&'w mut dyn Write>>,
    plain: Option<io::BufWriter<&'w mut dyn Write>>,
    neutralise: bool,
}

impl<'w> Lines<'w> {
    fn new(format: Format, out: &'w mut dyn Write, neutralise: bool) -> Lines<'w> {
        match format {
            Format::Csv => Lines {
                format,
                csv: Some(csv::Writer::from_writer(out)),
                plain: None,
                neutralise,
            },
            Format::Jsonl => Lines {
                format,
                csv: None,
                plain: Some(io::BufWriter::new(out)),
                neutralise,
            },
        }
    }

    fn csv_header(&mut self, header: &[String]) -> io::Result<()> {
        let cells: Vec<Cell> = header.iter().map(|h| Cell::Text(h.clone())).collect();
        self.csv(&cells)
    }

    fn csv(&mut self, cells: &[Cell]) -> io::Result<()> {
        let neutralise = self.neutralise;
        let Some(w) = self.csv.as_mut() else {
            return Ok(());
        };
        let texts = cells.iter().map(|c| match c {
            Cell::Text(s) if neutralise => neutralised(s),
            Cell::Text(s) | Cell::Number(s) => s.clone(),
            Cell::Json(Value::String(s)) if neutralise => neutralised(s),
            Cell::Json(Value::String(s)) => s.clone(),
            Cell::Json(Value::Null) | Cell::Empty => String::new(),
            Cell::Json(v) => v.to_string(),
        });
        w.write_record(texts).map_err(csv_io)
    }

    fn json(&mut self, v: &Value) -> io::Result<()> {
        let Some(w) = self.plain.as_mut() else {
            return Ok(());
        };
        serde_json::to_writer(&mut *w, v)?;
        w.write_all(b"\n")
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.format {
            Format::Csv => self.csv.as_mut().map_or(Ok(()), |w| w.flush()),
            Format::Jsonl => self.plain.as_mut().map_or(Ok(()), |w| w.flush()),
        }
    }
}

fn csv_io(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("{other:?}")),
    }
}

/// A cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab or CR first) gets a
/// leading `'`, which spreadsheets show as text (OWASP's advice for CSV injection).
fn neutralised(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised() {
        assert_eq!(neutralised("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        for s in ["+1", "-1+2", "@SUM(A1)", "\tx", "\rx"] {
            assert!(neutralised(s).starts_with('\''), "{s:?}");
        }
        assert_eq!(neutralised("Paris"), "Paris");
        assert_eq!(neutralised(""), "");
    }
}
