//! Opening the input for each pass (stdin is spooled to a temporary file during the first) and
//! the [`RowSource`] trait the JSONL and CSV readers implement.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::Arc;

use serde_json::{Map, Value};
use tempfile::NamedTempFile;

use super::problems::InputError;
use super::{InputConfig, InputFormat, InputSource};

/// One thing a reader found.
#[derive(Debug)]
pub(crate) enum Item {
    /// A data row (it counts for `--limit` and row numbers even when it is unusable).
    Row {
        line: u64,
        fields: Result<Map<String, Value>, String>,
    },
    /// A problem that is not a row (bad header, unterminated quote at the end, I/O error).
    /// After a note the reader may stop.
    Note { line: Option<u64>, message: String },
    /// A problem with one file of a document input, named by its path (a `row` counts for
    /// `--limit` and row numbers, as an unusable line does).
    Bad {
        file: String,
        message: String,
        row: bool,
    },
}

/// A streaming reader of rows.
pub(crate) trait RowSource: Send {
    fn next_item(&mut self) -> Option<Item>;

    /// Like [`RowSource::next_item`], for a row whose fields are not needed: a reader that can
    /// tell where a row ends without parsing it gives an empty object instead.
    fn skip_item(&mut self) -> Option<Item> {
        self.next_item()
    }

    /// What the reader has to say once it is done that is not a problem (files it skipped).
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}

const BUF: usize = 64 * 1024;

/// A row reader and, for stdin, the spool file that receives every byte it reads.
pub(crate) type Opened = (Box<dyn RowSource>, Option<Arc<NamedTempFile>>);

/// Opens the source for the first pass. For stdin, also returns the spool file that receives
/// every byte read.
pub(crate) fn open_first(
    config: &InputConfig,
    display: &str,
    stdin: impl FnOnce() -> Box<dyn Read + Send>,
) -> Result<Opened, InputError> {
    match &config.source {
        InputSource::Path(path) if config.format == InputFormat::Documents => {
            Ok((documents(config, path, display)?, None))
        }
        InputSource::Path(path) => {
            let file = File::open(path)
                .map_err(|e| InputError::one(display, None, format!("cannot open: {e}")))?;
            Ok((reader(config.format, Box::new(file)), None))
        }
        InputSource::Stdin => {
            let spool = NamedTempFile::new().map_err(|e| {
                InputError::one(
                    display,
                    None,
                    format!("cannot create a temporary file to hold stdin: {e}"),
                )
            })?;
            let out = spool.reopen().map_err(|e| {
                InputError::one(
                    display,
                    None,
                    format!("cannot open the temporary file that holds stdin: {e}"),
                )
            })?;
            let tee = Tee {
                inner: stdin(),
                out,
            };
            Ok((reader(config.format, Box::new(tee)), Some(Arc::new(spool))))
        }
    }
}

/// Opens the source again for the second pass.
pub(crate) fn open_again(
    config: &InputConfig,
    display: &str,
    spool: Option<&NamedTempFile>,
) -> Result<Box<dyn RowSource>, InputError> {
    if let (InputFormat::Documents, InputSource::Path(path)) = (config.format, &config.source) {
        return documents(config, path, display);
    }
    let file = match (spool, &config.source) {
        (Some(spool), _) => spool.reopen(),
        (None, InputSource::Path(path)) => File::open(path),
        (None, InputSource::Stdin) => Err(io::Error::other("stdin was not spooled")),
    }
    .map_err(|e| InputError::one(display, None, format!("cannot open: {e}")))?;
    Ok(reader(config.format, Box::new(file)))
}

/// The files of a document input (a folder, a glob or one file).
fn documents(
    config: &InputConfig,
    path: &std::path::Path,
    display: &str,
) -> Result<Box<dyn RowSource>, InputError> {
    let selection = crate::docs::Selection::parse(&path.to_string_lossy())
        .map_err(|e| InputError::one(display, None, e))?;
    let docs = super::files::DocsSource::new(selection, config.hidden, display, config.chunk);
    Ok(match &config.reduce_from {
        Some(output) => Box::new(super::reduce::ReduceSource::new(
            docs,
            &config.models,
            output,
        )),
        None => Box::new(docs),
    })
}

fn reader(format: InputFormat, raw: Box<dyn Read + Send>) -> Box<dyn RowSource> {
    let buffered: Box<dyn BufRead + Send> = Box::new(BufReader::with_capacity(BUF, raw));
    match format {
        // Documents are opened by `documents`; a document input is never a byte stream.
        InputFormat::Documents => Box::new(super::jsonl::JsonlSource::new(buffered)),
        InputFormat::Jsonl => Box::new(super::jsonl::JsonlSource::new(buffered)),
        InputFormat::Csv => Box::new(super::csv::CsvSource::new(buffered, b',')),
        InputFormat::Tsv => Box::new(super::csv::CsvSource::new(buffered, b'\t')),
    }
}

/// Copies everything read from `inner` into `out`.
struct Tee<R> {
    inner: R,
    out: File,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n]).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot write stdin to a temporary file: {e}"),
            )
        })?;
        Ok(n)
    }
}

/// `a string`, `an array`, … for messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
