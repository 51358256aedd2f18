//! JSONL rows: one JSON object a line, blank lines skipped (but counted), BOM and CRLF accepted,
//! lines over 10 MB rejected without being read into memory.

use std::io::BufRead;

use serde_json::{Map, Value};

use super::lines::{LineReader, LineStatus, MAX_LINE};
use super::source::{Item, RowSource, kind};

pub(crate) struct JsonlSource<R> {
    lines: LineReader<R>,
    done: bool,
}

impl<R: BufRead> JsonlSource<R> {
    pub(crate) fn new(inner: R) -> JsonlSource<R> {
        JsonlSource {
            lines: LineReader::new(inner, MAX_LINE),
            done: false,
        }
    }
}

impl<R: BufRead + Send> RowSource for JsonlSource<R> {
    fn next_item(&mut self) -> Option<Item> {
        self.item(true)
    }

    fn skip_item(&mut self) -> Option<Item> {
        self.item(false)
    }
}

impl<R: BufRead + Send> JsonlSource<R> {
    /// The next row, its line parsed only if `parse` (else its fields are an empty object).
    fn item(&mut self, parse: bool) -> Option<Item> {
        if self.done {
            return None;
        }
        loop {
            let (line, status) = match self.lines.next_line() {
                Ok(Some(x)) => x,
                Ok(None) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Item::Note {
                        line: Some(self.lines.line() + 1),
                        message: format!("cannot read: {e}"),
                    });
                }
            };
            if status == LineStatus::TooLong {
                return Some(Item::Row {
                    line,
                    fields: Err("line is longer than 10 MB".into()),
                });
            }
            let text = self.lines.text();
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let fields = if parse {
                parse_line(text)
            } else {
                Ok(Map::new())
            };
            return Some(Item::Row { line, fields });
        }
    }
}

/// One line → a JSON object, or what is wrong with it.
pub(crate) fn parse_line(text: &[u8]) -> Result<Map<String, Value>, String> {
    let text = std::str::from_utf8(text)
        .map_err(|e| format!("invalid UTF-8 (at byte {})", e.valid_up_to() + 1))?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!("expected a JSON object, found {}", kind(&other))),
        Err(e) => {
            let full = e.to_string();
            let msg = match full.rfind(" at line ") {
                Some(i) => &full[..i],
                None => full.as_str(),
            };
            Err(format!("invalid JSON at column {}: {msg}", e.column()))
        }
    }
}
