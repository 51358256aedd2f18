//! A small incremental Server-Sent Events parser (the WHATWG `text/event-stream` rules):
//! bytes go in as they arrive, split anywhere; whole events come out. Comment lines
//! (`: OPENROUTER PROCESSING`) are skipped, `event:` is kept, multi-line `data:` is joined
//! with newlines, and LF, CRLF and CR all end a line.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// The longest line accepted; a longer one is an error rather than unbounded memory.
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// A line longer than [`MAX_LINE`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an event-stream line is longer than {MAX_LINE} bytes")]
pub struct LineTooLong;

/// Incremental parser state.
#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    /// The previous chunk ended in CR: a leading LF in the next chunk belongs to it.
    after_cr: bool,
    data: Vec<u8>,
    has_data: bool,
    event: Option<String>,
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Feed the next bytes; completed events are appended to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<Event>) -> Result<(), LineTooLong> {
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        while let Some(pos) = bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.push(&bytes[..pos])?;
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, out);
            self.line = line;
            self.line.clear();
            if bytes[pos] == b'\r' {
                match bytes.get(pos + 1) {
                    Some(b'\n') => bytes = &bytes[pos + 2..],
                    Some(_) => bytes = &bytes[pos + 1..],
                    None => {
                        self.after_cr = true;
                        bytes = &[];
                    }
                }
            } else {
                bytes = &bytes[pos + 1..];
            }
        }
        self.push(bytes)
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), LineTooLong> {
        if self.line.len() + bytes.len() > MAX_LINE {
            return Err(LineTooLong);
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<Event>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return; // a comment / keep-alive
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {} // id, retry and unknown fields do not matter here
        }
    }

    fn dispatch(&mut self, out: &mut Vec<Event>) {
        let event = self.event.take();
        if !self.has_data {
            return;
        }
        self.has_data = false;
        let data = String::from_utf8(std::mem::take(&mut self.data))
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        out.push(Event { event, data });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<Event> {
        let mut p = Parser::new();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out).unwrap();
        }
        out
    }

    fn data(d: &str) -> Event {
        Event {
            event: None,
            data: d.into(),
        }
    }

    const STREAM: &str = ": OPENROUTER PROCESSING\n\n: OPENROUTER PROCESSING\r\n\r\n\
        data: {\"id\":\"gen-1\",\"choices\":[{\"delta\":{\"content\":\"héllo ✓\"}}]}\n\n\
        event: message\r\ndata: line one\r\ndata: line two\r\n\r\n\
        data:no-space\rdata: cr only\r\r\
        :\n\
        data: [DONE]\n\n";

    fn expected() -> Vec<Event> {
        vec![
            data("{\"id\":\"gen-1\",\"choices\":[{\"delta\":{\"content\":\"héllo ✓\"}}]}"),
            Event {
                event: Some("message".into()),
                data: "line one\nline two".into(),
            },
            data("no-space\ncr only"),
            data("[DONE]"),
        ]
    }

    #[test]
    fn parses_comments_events_multiline_and_all_line_endings() {
        assert_eq!(parse_all(&[STREAM.as_bytes()]), expected());
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let bytes = STREAM.as_bytes();
        for i in 0..=bytes.len() {
            assert_eq!(
                parse_all(&[&bytes[..i], &bytes[i..]]),
                expected(),
                "split at {i}"
            );
        }
        // And byte by byte.
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(parse_all(&singles), expected());
    }

    #[test]
    fn an_unfinished_event_is_not_dispatched() {
        assert_eq!(parse_all(&[b"data: partial"]), vec![]);
        assert_eq!(parse_all(&[b"data: a\n"]), vec![]);
    }

    #[test]
    fn a_huge_line_is_refused() {
        let mut p = Parser::new();
        let mut out = Vec::new();
        let chunk = vec![b'x'; 1024 * 1024];
        let mut result = Ok(());
        for _ in 0..17 {
            result = p.feed(&chunk, &mut out);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(LineTooLong));
    }
}
