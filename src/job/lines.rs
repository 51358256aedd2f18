//! A line reader with a length cap: a line longer than the cap is skipped up to its newline
//! without ever being held in memory, so a 1 GB line costs at most the cap.

use std::io::{self, BufRead};

/// Longest accepted line or CSV record, in bytes (without the line ending).
pub(crate) const MAX_LINE: usize = 10 * 1024 * 1024;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Reads `\n`-terminated lines, strips a trailing `\r` and a UTF-8 BOM on the first line.
pub(crate) struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    line: u64,
    max: usize,
}

/// What [`LineReader::next_line`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineStatus {
    /// The line is in [`LineReader::text`].
    Ok,
    /// The line was longer than the cap and was skipped.
    TooLong,
}

impl<R: BufRead> LineReader<R> {
    pub(crate) fn new(inner: R, max: usize) -> LineReader<R> {
        LineReader {
            inner,
            buf: Vec::new(),
            line: 0,
            max,
        }
    }

    /// The number of the last line returned (1-based), 0 before the first.
    pub(crate) fn line(&self) -> u64 {
        self.line
    }

    /// The text of the last line returned with [`LineStatus::Ok`].
    pub(crate) fn text(&self) -> &[u8] {
        &self.buf
    }

    /// The next line's number and status, or `None` at end of input.
    pub(crate) fn next_line(&mut self) -> io::Result<Option<(u64, LineStatus)>> {
        self.buf.clear();
        let mut too_long = false;
        let mut any = false;
        loop {
            let avail = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if avail.is_empty() {
                if !any {
                    return Ok(None);
                }
                break;
            }
            any = true;
            let (len, found) = match avail.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (avail.len(), false),
            };
            if !too_long {
                // One byte of slack for a `\r` before the newline.
                if self.buf.len() + len > self.max.saturating_add(1) {
                    too_long = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(&avail[..len]);
                }
            }
            self.inner.consume(len + usize::from(found));
            if found {
                break;
            }
        }
        self.line += 1;
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        if self.line == 1 && self.buf.starts_with(BOM) {
            self.buf.drain(..BOM.len());
        }
        if too_long || self.buf.len() > self.max {
            self.buf.clear();
            return Ok(Some((self.line, LineStatus::TooLong)));
        }
        Ok(Some((self.line, LineStatus::Ok)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<(u64, LineStatus, Vec<u8>)> {
        let mut r = LineReader::new(io::BufReader::with_capacity(4, input), max);
        let mut out = Vec::new();
        while let Some((n, s)) = r.next_line().unwrap_or(None) {
            out.push((n, s, r.text().to_vec()));
        }
        out
    }

    #[test]
    fn splits_strips_and_caps() {
        let got = lines(b"\xEF\xBB\xBFab\r\n\n0123456789\nxyz", 5);
        assert_eq!(
            got,
            vec![
                (1, LineStatus::Ok, b"ab".to_vec()),
                (2, LineStatus::Ok, b"".to_vec()),
                (3, LineStatus::TooLong, b"".to_vec()),
                (4, LineStatus::Ok, b"xyz".to_vec()),
            ]
        );
        assert_eq!(lines(b"12345\r\n", 5)[0].1, LineStatus::Ok);
        assert_eq!(lines(b"123456\r\n", 5)[0].1, LineStatus::TooLong);
        assert!(lines(b"", 5).is_empty());
    }
}
