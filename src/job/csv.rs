//! CSV/TSV rows: a header row, then one object of strings per record. Ragged records, invalid
//! UTF-8, an unterminated quote and a record over 10 MB are reported with their line.

use std::collections::{BTreeSet, VecDeque};
use std::io::{self, BufRead, Read};

use csv::{ByteRecord, ReaderBuilder};
use serde_json::{Map, Value};

use super::lines::MAX_LINE;
use super::source::{Item, RowSource};

const BOM: &[u8] = b"\xEF\xBB\xBF";

pub(crate) struct CsvSource<R> {
    rdr: csv::Reader<Tracker<R>>,
    headers: Option<Vec<String>>,
    record: ByteRecord,
    done: bool,
}

impl<R: BufRead> CsvSource<R> {
    pub(crate) fn new(inner: R, delimiter: u8) -> CsvSource<R> {
        let tracker = Tracker {
            inner,
            delimiter,
            state: State::FieldStart,
            line: 1,
            quote_line: 0,
            record_line: 1,
            record_bytes: 0,
            max: MAX_LINE as u64,
            started: false,
            starts: VecDeque::new(),
        };
        let rdr = ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(tracker);
        CsvSource {
            rdr,
            headers: None,
            record: ByteRecord::new(),
            done: false,
        }
    }

    fn fail(&mut self, e: csv::Error) -> Item {
        self.done = true;
        let t = self.rdr.get_ref();
        let line = match e.kind() {
            csv::ErrorKind::Io(_) => Some(t.record_line),
            _ => e.position().map(|p| p.line()),
        };
        let message = match e.kind() {
            csv::ErrorKind::Io(io) => io.to_string(),
            _ => e.to_string(),
        };
        Item::Note { line, message }
    }

    /// Reads the next record into `self.record`: `Ok(Some(line))`, `Ok(None)` at the end.
    fn read(&mut self) -> Result<Option<u64>, csv::Error> {
        if self.rdr.read_byte_record(&mut self.record)? {
            let fallback = self.record.position().map_or(0, |p| p.line());
            let line = self.rdr.get_mut().starts.pop_front().unwrap_or(fallback);
            Ok(Some(line))
        } else {
            Ok(None)
        }
    }

    fn end(&mut self) -> Option<Item> {
        self.done = true;
        let t = self.rdr.get_ref();
        if t.state == State::Quoted {
            return Some(Item::Note {
                line: Some(t.quote_line),
                message: "unterminated quote: the quoted field that starts here never ends".into(),
            });
        }
        None
    }
}

impl<R: BufRead + Send> RowSource for CsvSource<R> {
    fn next_item(&mut self) -> Option<Item> {
        if self.done {
            return None;
        }
        if self.headers.is_none() {
            let line = match self.read() {
                Ok(Some(line)) => line,
                Ok(None) => return self.end(),
                Err(e) => return Some(self.fail(e)),
            };
            let mut names = Vec::with_capacity(self.record.len());
            let mut seen = BTreeSet::new();
            for field in self.record.iter() {
                let Ok(name) = std::str::from_utf8(field) else {
                    self.done = true;
                    return Some(Item::Note {
                        line: Some(line),
                        message: "header: invalid UTF-8".into(),
                    });
                };
                if !seen.insert(name.to_owned()) {
                    self.done = true;
                    return Some(Item::Note {
                        line: Some(line),
                        message: format!("header: duplicate column \"{name}\""),
                    });
                }
                names.push(name.to_owned());
            }
            self.headers = Some(names);
        }
        let line = match self.read() {
            Ok(Some(line)) => line,
            Ok(None) => return self.end(),
            Err(e) => return Some(self.fail(e)),
        };
        let headers = self.headers.as_deref().unwrap_or_default();
        if self.record.len() != headers.len() {
            return Some(Item::Row {
                line,
                fields: Err(format!(
                    "row has {} fields, the header has {}",
                    self.record.len(),
                    headers.len()
                )),
            });
        }
        let mut fields = Map::new();
        for (name, value) in headers.iter().zip(self.record.iter()) {
            match std::str::from_utf8(value) {
                Ok(s) => {
                    fields.insert(name.clone(), Value::String(s.to_owned()));
                }
                Err(_) => {
                    return Some(Item::Row {
                        line,
                        fields: Err(format!("invalid UTF-8 in column \"{name}\"")),
                    });
                }
            }
        }
        Some(Item::Row {
            line,
            fields: Ok(fields),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    FieldStart,
    Unquoted,
    Quoted,
    /// A `"` inside a quoted field: either its end or the first half of `""`.
    AfterQuote,
}

/// Watches the bytes the csv parser reads, mirroring its quoting rules, to notice an
/// unterminated quote (which the csv crate silently closes at the end of the input) and to cap
/// the size of one record. Also strips a UTF-8 BOM.
struct Tracker<R> {
    inner: R,
    delimiter: u8,
    state: State,
    /// Current line (1-based).
    line: u64,
    /// Line where the last quoted field opened.
    quote_line: u64,
    /// Line where the current record started.
    record_line: u64,
    record_bytes: u64,
    max: u64,
    started: bool,
    /// Start lines of the records read ahead of the parser, oldest first. (The csv crate's own
    /// record positions are off after CRLF endings and blank lines.)
    starts: VecDeque<u64>,
}

impl<R: BufRead> Read for Tracker<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.started {
            self.started = true;
            let head = self.inner.fill_buf()?;
            if head.starts_with(BOM) {
                self.inner.consume(BOM.len());
            }
        }
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            let record_start = self.state == State::FieldStart && self.record_bytes == 0;
            if record_start && b != b'\n' && b != b'\r' {
                self.record_line = self.line;
                self.starts.push_back(self.line);
            }
            self.state = match (self.state, b) {
                (State::Quoted, b'"') => State::AfterQuote,
                (State::Quoted, _) => State::Quoted,
                (State::AfterQuote, b'"') => State::Quoted,
                (State::FieldStart, b'"') => {
                    self.quote_line = self.line;
                    State::Quoted
                }
                (_, b'\n' | b'\r') => {
                    self.record_bytes = 0;
                    State::FieldStart
                }
                (_, d) if d == self.delimiter => State::FieldStart,
                _ => State::Unquoted,
            };
            if b == b'\n' {
                self.line += 1;
            }
            if !(self.state == State::FieldStart && (b == b'\n' || b == b'\r')) {
                self.record_bytes += 1;
                if self.record_bytes > self.max {
                    return Err(io::Error::other("row is longer than 10 MB"));
                }
            }
        }
        Ok(n)
    }
}
