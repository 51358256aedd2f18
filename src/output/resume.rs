//! Opening the output file for a run: take the lock, repair a line torn by a crash, and scan
//! what earlier runs recorded so that nothing answered is sent (and paid for) twice.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Deserialize;

use super::record::Status;
use super::{AppendError, lock_for_append, open_append_locked};
use crate::hash::{key64, parse_hex128};

/// What the output file already says about each `(id, model)`: its last record's
/// fingerprint and whether it was ok. Kept as a sorted table of 16-byte entries — a 64-bit
/// key hash and 63 bits of the fingerprint hash plus an ok bit — not strings, so a
/// million-record file costs 16 MB (a hash map of the same would cost about 100 MB).
#[derive(Debug, Default)]
pub struct Prior {
    /// `(key64(id, model), packed)`, in file order while reading, then sorted by key with
    /// only the last record of each key kept (see [`Prior::seal`]).
    last: Vec<(u64, u64)>,
    /// Where each run of keys sharing their top `bits` bits starts in `last` (one more entry
    /// for the end), so that a lookup costs two memory reads instead of a binary search's
    /// twenty cache misses at a million keys (keys are hashes, so runs are short). Empty:
    /// look up by binary search.
    starts: Vec<u32>,
    /// How many top bits of a key index `starts` (0 when `starts` is empty).
    bits: u32,
    /// Records read.
    pub records: u64,
    /// Lines that were not records (warned about, otherwise ignored).
    pub bad_lines: u64,
    /// Sum of `usage.cost` (BYOK charges included) and `failed_cost_bound` over every record (what earlier runs spent
    /// on this output, failed attempts counted as `--max-cost` counted them).
    pub spent: f64,
}

/// The ok flag's bit in a packed entry; the other 63 bits are the fingerprint's.
const OK_BIT: u64 = 1 << 63;

/// Pack a fingerprint (as parsed by `parse_hex128`) and the ok flag into 64 bits.
fn pack(fingerprint: Option<u128>, ok: bool) -> u64 {
    let fp = fingerprint.map_or(0, |f| f as u64) & !OK_BIT;
    if ok { fp | OK_BIT } else { fp }
}

/// What to do with a request, given the output file's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Never attempted.
    New,
    /// Answered ok with the same request: skip (never pay twice).
    Done,
    /// Last record is an error: send again.
    RetryError,
    /// Last record is an error and `--no-retry-errors`: leave it.
    KeepError,
    /// The request changed since it was answered (template, params, system…): send again.
    Changed,
}

impl Prior {
    /// Decide for one request.
    pub fn decide(&self, id: &str, model: &str, fingerprint: &str, retry_errors: bool) -> Decision {
        let Some(last) = self.find(key64(id, model)) else {
            return Decision::New;
        };
        let ok = last & OK_BIT != 0;
        let same = parse_hex128(fingerprint).is_some_and(|f| pack(Some(f), ok) == last);
        match (ok, same) {
            (true, true) => Decision::Done,
            (true, false) => Decision::Changed,
            (false, _) if retry_errors => Decision::RetryError,
            (false, _) => Decision::KeepError,
        }
    }

    /// Whether the last record of the request with key `key64(id, model)` and fingerprint
    /// `fingerprint` (the low 64 bits of its number) is ok with that same fingerprint: the
    /// request is [`Decision::Done`], whatever `retry_errors`.
    pub fn is_done(&self, key: u64, fingerprint: u64) -> bool {
        self.find(key)
            .is_some_and(|last| last == pack(Some(u128::from(fingerprint)), true))
    }

    /// The packed entry of `key`, if recorded.
    fn find(&self, key: u64) -> Option<u64> {
        let run = if self.starts.is_empty() {
            &self.last[..]
        } else {
            // `bits` is 1..=31, so the shift is in range and the bucket below `starts.len() - 1`.
            let bucket = (key >> (64 - self.bits)) as usize;
            let start = *self.starts.get(bucket)? as usize;
            let end = *self.starts.get(bucket + 1)? as usize;
            self.last.get(start..end)?
        };
        let i = run.binary_search_by_key(&key, |&(k, _)| k).ok()?;
        Some(run[i].1)
    }

    /// Number of distinct `(id, model)` keys recorded.
    #[cfg(test)]
    pub fn keys(&self) -> usize {
        self.last.len()
    }

    /// After reading: sort by key and keep only the last record of each key.
    fn seal(&mut self) {
        // A stable sort keeps file order within a key, so the last of a run is the latest.
        self.last.sort_by_key(|&(k, _)| k);
        // `dedup_by` keeps the first of a run; move each later record into it first.
        self.last.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                *kept = *later;
            }
            same
        });
        self.last.shrink_to_fit();
        self.index();
    }

    /// Build `starts`: about one bucket per two keys.
    fn index(&mut self) {
        let n = self.last.len();
        self.starts = Vec::new();
        self.bits = 0;
        if n < 64 || u32::try_from(n).is_err() {
            return;
        }
        // floor(log2(n)) - 1 bits: between 2 and 4 keys a bucket on average.
        let bits = (usize::BITS - 1 - n.leading_zeros())
            .saturating_sub(1)
            .clamp(1, 31);
        let buckets = 1usize << bits;
        let mut starts = Vec::with_capacity(buckets + 1);
        let mut i = 0usize;
        for bucket in 0..buckets {
            while i < n && ((self.last[i].0 >> (64 - bits)) as usize) < bucket {
                i += 1;
            }
            starts.push(i as u32);
        }
        starts.push(n as u32);
        self.starts = starts;
        self.bits = bits;
    }

    /// Note the record on `line`; its `usage.cost` (+ the provider's charge for BYOK) +
    /// `failed_cost_bound` (0 if none), or `None` if it is not one.
    fn note(&mut self, line: &[u8]) -> Option<f64> {
        #[derive(Deserialize)]
        struct Key<'a> {
            #[serde(borrow)]
            id: Cow<'a, str>,
            #[serde(borrow)]
            model: Cow<'a, str>,
            status: Status,
            #[serde(borrow)]
            fingerprint: Cow<'a, str>,
            #[serde(default)]
            usage: Option<Cost>,
            #[serde(default)]
            failed_cost_bound: Option<f64>,
            #[serde(default)]
            is_byok: Option<bool>,
            #[serde(default)]
            upstream_cost: Option<f64>,
        }
        #[derive(Deserialize)]
        struct Cost {
            cost: Option<f64>,
        }
        let k = serde_json::from_slice::<Key>(line).ok()?;
        self.records += 1;
        self.last.push((
            key64(&k.id, &k.model),
            pack(parse_hex128(&k.fingerprint), k.status == Status::Ok),
        ));
        let failed = k.failed_cost_bound.filter(|c| c.is_finite()).unwrap_or(0.0);
        // As `Record::inline_cost` counts it: a BYOK provider charge is spend too.
        let byok = super::record::byok_part(k.is_byok, k.upstream_cost);
        let cost = k.usage.and_then(|u| u.cost).map_or(0.0, |c| c + byok);
        Some(cost + failed)
    }
}

/// The opened, locked, repaired output file and what it held.
#[derive(Debug)]
pub struct Opened {
    pub file: File,
    pub prior: Prior,
    /// Messages for the user (torn line repaired, unreadable lines).
    pub warnings: Vec<String>,
}

/// Why the output file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{path}: cannot open the output file: {source}")]
    Io { path: String, source: io::Error },
    #[error(
        "{path} is being written by another orbatch run (it holds a lock on it); wait for that \
         run to finish, or pass a different --output"
    )]
    Locked { path: String },
}

/// Open `path` for appending (creating it), lock it for this run, truncate it if `fresh`,
/// else repair a torn last line and read what it holds.
pub fn open(path: &Path, fresh: bool) -> Result<Opened, OpenError> {
    let shown = path.display().to_string();
    let io_err = |source| OpenError::Io {
        path: shown.clone(),
        source,
    };
    let mut file = open_append_locked(path).map_err(|e| match e {
        AppendError::Io(source) => io_err(source),
        AppendError::Locked => OpenError::Locked {
            path: shown.clone(),
        },
    })?;
    if fresh {
        file.set_len(0).map_err(io_err)?;
        return Ok(Opened {
            file,
            prior: Prior::default(),
            warnings: Vec::new(),
        });
    }
    let mut warnings = Vec::new();
    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    let (prior, torn) =
        read_records(&file, &shown, &mut warnings, &AtomicBool::new(false)).map_err(io_err)?;
    finish(file, prior, torn, &shown, warnings).map_err(io_err)
}

/// An existing output file, locked for this run and read, but not yet changed: what
/// [`read_ahead`] found while the input was still being validated.
#[derive(Debug)]
pub struct ReadAhead {
    file: File,
    prior: Prior,
    torn: Option<Torn>,
    warnings: Vec<String>,
}

/// Lock and read an existing output file while the input is validated on another thread, so
/// that a rerun pays for the longer of the two, not their sum. Changes nothing on disk (the
/// file is not created, a torn line is not repaired): that waits for [`open_after`], once
/// the input is known to be good. `None` whenever the ordinary [`open`] should do it instead:
/// no such file (or not a regular file), locked by another run, an I/O error (`open` reports
/// it, after the input's problems, as before), or `stop` was set (the input was bad).
pub fn read_ahead(path: &Path, stop: &AtomicBool) -> Option<ReadAhead> {
    if !std::fs::metadata(path).ok()?.is_file() {
        return None;
    }
    let mut file = lock_for_append(path, false).ok()?;
    file.seek(SeekFrom::Start(0)).ok()?;
    let shown = path.display().to_string();
    let mut warnings = Vec::new();
    let (prior, torn) = read_records(&file, &shown, &mut warnings, stop).ok()?;
    Some(ReadAhead {
        file,
        prior,
        torn,
        warnings,
    })
}

/// [`open`], finishing the work of a [`read_ahead`] when there is one (`fresh` runs do not
/// read ahead: their file is truncated, not read).
pub fn open_after(path: &Path, fresh: bool, ahead: Option<ReadAhead>) -> Result<Opened, OpenError> {
    match ahead {
        Some(ahead) if !fresh => {
            let shown = path.display().to_string();
            finish(ahead.file, ahead.prior, ahead.torn, &shown, ahead.warnings).map_err(|source| {
                OpenError::Io {
                    path: shown.clone(),
                    source,
                }
            })
        }
        _ => open(path, fresh),
    }
}

/// Repair the tail of a file that was read, and say what was found.
fn finish(
    mut file: File,
    prior: Prior,
    torn: Option<Torn>,
    shown: &str,
    mut warnings: Vec<String>,
) -> io::Result<Opened> {
    repair(&mut file, &prior, torn, shown, &mut warnings)?;
    Ok(Opened {
        file,
        prior,
        warnings,
    })
}

/// How the last line of a file ended, when it had no newline.
#[derive(Debug, Clone, Copy)]
struct Torn {
    /// Where the line starts.
    start: u64,
    /// Its line number.
    line_no: u64,
    /// It is a whole record that only lacks its newline.
    whole: bool,
}

/// A file at least this long is read by two threads, each half of it.
const SPLIT_AT: u64 = 16 << 20;

/// Read every record from the start of `file`; report a last line without a newline.
/// Gives up (with an `Interrupted` error) once `stop` is set.
fn read_records(
    file: &File,
    shown: &str,
    warnings: &mut Vec<String>,
    stop: &AtomicBool,
) -> io::Result<(Prior, Option<Torn>)> {
    read_records_split(file, shown, warnings, stop, SPLIT_AT)
}

/// [`read_records`], in two halves on two threads if the file is at least `split_at` long.
fn read_records_split(
    file: &File,
    shown: &str,
    warnings: &mut Vec<String>,
    stop: &AtomicBool,
    split_at: u64,
) -> io::Result<(Prior, Option<Torn>)> {
    let Some((first, second)) = read_halves(file, stop, split_at)? else {
        // From the file's current position (the start: callers seek there).
        let piece = read_piece(BufReader::with_capacity(1 << 20, file), stop, false)?;
        return Ok(piece.finish(shown, warnings));
    };
    // The second half continues the first: its lines, offsets and costs come after.
    let mut piece = first;
    let (lines, bytes) = (piece.lines, piece.bytes);
    piece.prior.records += second.prior.records;
    piece.prior.bad_lines += second.prior.bad_lines;
    piece.prior.last.extend(second.prior.last);
    // Summed one by one in file order, so the total is the same to the last bit.
    for cost in second.costs {
        piece.prior.spent += cost;
    }
    let room = 3usize.saturating_sub(piece.bad.len());
    piece
        .bad
        .extend(second.bad.iter().take(room).map(|n| n + lines));
    piece.torn = second.torn.map(|t| Torn {
        start: t.start + bytes,
        line_no: t.line_no + lines,
        whole: t.whole,
    });
    Ok(piece.finish(shown, warnings))
}

/// Both halves of a long file, read on two threads; `None` if it is shorter than
/// `split_at` (or has no line break after its middle): read it in one piece.
#[cfg(unix)]
fn read_halves(
    file: &File,
    stop: &AtomicBool,
    split_at: u64,
) -> io::Result<Option<(Piece, Piece)>> {
    let len = file.metadata()?.len();
    if len < split_at.max(2) {
        return Ok(None);
    }
    let Some(middle) = line_start_after(file, len / 2)? else {
        return Ok(None);
    };
    let halves = std::thread::scope(|scope| {
        let second = scope.spawn(|| {
            let at = At { file, pos: middle };
            read_piece(BufReader::with_capacity(1 << 20, at), stop, true)
        });
        let at = At { file, pos: 0 };
        let first = read_piece(
            BufReader::with_capacity(1 << 20, at.take(middle)),
            stop,
            false,
        );
        let second = second
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the reading thread panicked")));
        (first, second)
    });
    Ok(Some((halves.0?, halves.1?)))
}

#[cfg(not(unix))]
fn read_halves(_: &File, _: &AtomicBool, _: u64) -> io::Result<Option<(Piece, Piece)>> {
    Ok(None)
}

/// The offset just after the first line break at or after `from`, if there is one within
/// a megabyte.
#[cfg(unix)]
fn line_start_after(file: &File, from: u64) -> io::Result<Option<u64>> {
    let mut reader = BufReader::with_capacity(64 << 10, At { file, pos: from });
    let mut skipped = Vec::new();
    let n = (&mut reader)
        .take(1 << 20)
        .read_until(b'\n', &mut skipped)?;
    Ok((skipped.last() == Some(&b'\n')).then_some(from + n as u64))
}

/// Reads `file` from `pos` on, without moving the file's own position (so that two threads
/// can read one file at once).
#[cfg(unix)]
struct At<'a> {
    file: &'a File,
    pos: u64,
}

#[cfg(unix)]
impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(self.file, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// What a stretch of a file held; line numbers and offsets count from its start.
#[derive(Debug, Default)]
struct Piece {
    /// Its records (`last` in file order, not yet sealed).
    prior: Prior,
    /// Each record's non-zero cost, in order, when asked for (else summed into `prior`).
    costs: Vec<f64>,
    /// Lines and bytes read.
    lines: u64,
    bytes: u64,
    /// Line numbers of the first three lines that were not records.
    bad: Vec<u64>,
    torn: Option<Torn>,
}

impl Piece {
    /// The warnings about lines that were not records, and the sealed result.
    fn finish(mut self, shown: &str, warnings: &mut Vec<String>) -> (Prior, Option<Torn>) {
        for line_no in &self.bad {
            warnings.push(format!("{shown}:{line_no}: not an orbatch record; ignored"));
        }
        self.prior.seal();
        (self.prior, self.torn)
    }
}

/// Read records from `reader` to its end; a last line without a newline ends the piece as
/// `torn`. With `keep_costs`, costs are listed in `costs` instead of summed.
fn read_piece(mut reader: impl BufRead, stop: &AtomicBool, keep_costs: bool) -> io::Result<Piece> {
    let mut piece = Piece::default();
    let mut line = Vec::with_capacity(4096);
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "stopped"));
        }
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(piece);
        }
        piece.lines += 1;
        let body = trim_line(&line);
        let parsed = if body.is_empty() {
            true
        } else {
            match piece.prior.note(body) {
                Some(cost) if keep_costs => {
                    if cost != 0.0 {
                        piece.costs.push(cost);
                    }
                    true
                }
                Some(cost) => {
                    piece.prior.spent += cost;
                    true
                }
                None => false,
            }
        };
        if line.last() != Some(&b'\n') {
            piece.torn = Some(Torn {
                start: piece.bytes,
                line_no: piece.lines,
                whole: parsed && !body.is_empty(),
            });
            piece.bytes += n as u64;
            return Ok(piece);
        }
        if !parsed {
            piece.prior.bad_lines += 1;
            if piece.bad.len() < 3 {
                piece.bad.push(piece.lines);
            }
        }
        piece.bytes += n as u64;
    }
}

/// Read what an output file holds without changing or locking it (for `plan`); a missing
/// file holds nothing.
pub fn peek(path: &Path) -> io::Result<Prior> {
    match File::open(path) {
        Ok(file) => {
            let shown = path.display().to_string();
            Ok(read_records(&file, &shown, &mut Vec::new(), &AtomicBool::new(false))?.0)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Prior::default()),
        Err(e) => Err(e),
    }
}

/// Repair the tail of a file [`read_records`] read, so it is valid JSONL again.
fn repair(
    file: &mut File,
    prior: &Prior,
    torn: Option<Torn>,
    shown: &str,
    warnings: &mut Vec<String>,
) -> io::Result<()> {
    match torn {
        // The last record was written whole but its newline was not: finish the line.
        Some(Torn { whole: true, .. }) => file.write_all(b"\n")?,
        // A record cut off mid-write by a crash: drop it; that request will be sent again.
        Some(Torn { start, line_no, .. }) => {
            let len = file.metadata()?.len();
            file.set_len(start)?;
            warnings.push(format!(
                "{shown}:{line_no}: the last line was cut off (by a crash?); removed its {} bytes",
                len - start
            ));
        }
        None => {}
    }
    if prior.bad_lines > 3 {
        warnings.push(format!(
            "{shown}: {} lines in all were not orbatch records and were ignored",
            prior.bad_lines
        ));
    }
    Ok(())
}

fn trim_line(line: &[u8]) -> &[u8] {
    let mut l = line;
    while let Some((last, rest)) = l.split_last() {
        if last.is_ascii_whitespace() {
            l = rest;
        } else {
            break;
        }
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn rec(id: &str, status: &str, fp: &str) -> String {
        format!(
            "{{\"id\":\"{id}\",\"model\":\"m\",\"status\":\"{status}\",\"fingerprint\":\"{fp}\",\"output\":\"x\"}}\n"
        )
    }

    const FP1: &str = "0000000000000000000000000000000a";
    const FP2: &str = "0000000000000000000000000000000b";

    fn read(path: &Path) -> String {
        let mut s = String::new();
        File::open(path).unwrap().read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn decisions_follow_the_last_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let content = [
            rec("a", "ok", FP1),
            rec("b", "error", FP1),
            rec("c", "error", FP1),
            rec("c", "ok", FP1),
            rec("d", "ok", FP1),
            rec("d", "error", FP1),
        ]
        .concat();
        std::fs::write(&path, content).unwrap();
        let opened = open(&path, false).unwrap();
        let p = &opened.prior;
        assert_eq!(p.records, 6);
        assert_eq!(p.spent, 0.0);
        assert_eq!(p.decide("a", "m", FP1, true), Decision::Done);
        assert_eq!(p.decide("a", "m", FP2, true), Decision::Changed);
        assert_eq!(p.decide("a", "other", FP1, true), Decision::New);
        assert_eq!(p.decide("b", "m", FP1, true), Decision::RetryError);
        assert_eq!(p.decide("b", "m", FP1, false), Decision::KeepError);
        assert_eq!(p.decide("c", "m", FP1, true), Decision::Done);
        assert_eq!(p.decide("d", "m", FP1, true), Decision::RetryError);
        assert!(opened.warnings.is_empty());
        // `is_done` on hashes agrees with `decide` on strings.
        let fp1 = parse_hex128(FP1).unwrap() as u64;
        let fp2 = parse_hex128(FP2).unwrap() as u64;
        for id in ["a", "b", "c", "d", "e"] {
            for fp in [FP1, FP2] {
                let n = if fp == FP1 { fp1 } else { fp2 };
                assert_eq!(
                    p.is_done(key64(id, "m"), n),
                    p.decide(id, "m", fp, false) == Decision::Done,
                    "{id} {fp}"
                );
            }
        }
    }

    #[test]
    fn earlier_spend_counts_failed_attempts_as_the_cap_counted_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let line = |id: &str, status: &str, tail: &str| {
            format!(
                "{{\"id\":\"{id}\",\"model\":\"m\",\"status\":\"{status}\",\"fingerprint\":\"{FP1}\"{tail}}}\n"
            )
        };
        let content = [
            line("a", "ok", r#","usage":{"cost":0.25}"#),
            line(
                "b",
                "ok",
                r#","usage":{"cost":0.25},"failed_cost_bound":0.5"#,
            ),
            line("c", "error", r#","usage":null,"failed_cost_bound":1.0"#),
        ]
        .concat();
        std::fs::write(&path, content).unwrap();
        assert_eq!(open(&path, false).unwrap().prior.spent, 2.0);
    }

    #[test]
    fn the_last_record_wins_among_many_interleaved_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        // Three passes over 500 ids: error, ok, then error again for every third id.
        let mut content = String::new();
        for pass in 0..3 {
            for i in 0..500 {
                let status = match pass {
                    1 => "ok",
                    2 if i % 3 == 0 => "error",
                    2 => continue,
                    _ => "error",
                };
                content.push_str(&rec(&format!("id{i}"), status, FP1));
            }
        }
        std::fs::write(&path, content).unwrap();
        let opened = open(&path, false).unwrap();
        let p = &opened.prior;
        assert_eq!(p.keys(), 500);
        for i in 0..500 {
            let expected = if i % 3 == 0 {
                Decision::RetryError
            } else {
                Decision::Done
            };
            assert_eq!(
                p.decide(&format!("id{i}"), "m", FP1, true),
                expected,
                "id{i}"
            );
        }
    }

    #[test]
    fn the_bucket_index_finds_every_key_and_no_other() {
        for n in [0u64, 1, 63, 64, 65, 1000, 4097, 50_000] {
            let mut p = Prior::default();
            // Hashed keys, plus the extremes of the key space.
            let mut keys: Vec<u64> = (0..n)
                .map(|i| crate::hash::hash64(&i.to_le_bytes()))
                .collect();
            if n > 2 {
                keys[0] = 0;
                keys[1] = u64::MAX;
            }
            for (i, &k) in keys.iter().enumerate() {
                p.last.push((k, i as u64));
            }
            p.seal();
            assert_eq!(p.starts.is_empty(), n < 64, "n = {n}");
            for (i, &k) in keys.iter().enumerate() {
                assert_eq!(p.find(k), Some(i as u64), "n = {n}, key {k:x}");
            }
            for i in n..n + 1000 {
                let absent = crate::hash::hash64(&i.to_le_bytes());
                assert_eq!(p.find(absent), None);
            }
        }
    }

    #[test]
    fn a_torn_last_line_is_removed_and_the_file_stays_valid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let whole = rec("a", "ok", FP1);
        std::fs::write(&path, format!("{whole}{{\"id\":\"b\",\"mod")).unwrap();
        let opened = open(&path, false).unwrap();
        assert_eq!(opened.prior.records, 1);
        assert_eq!(opened.warnings.len(), 1, "{:?}", opened.warnings);
        drop(opened);
        assert_eq!(read(&path), whole);
    }

    #[test]
    fn reading_ahead_changes_nothing_until_open_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let go = AtomicBool::new(false);
        // No file: nothing read ahead, and none created.
        assert!(read_ahead(&path, &go).is_none());
        assert!(!path.exists());
        let whole = rec("a", "ok", FP1);
        let torn = format!("{whole}{{\"id\":\"b\",\"mod");
        std::fs::write(&path, &torn).unwrap();
        let ahead = read_ahead(&path, &go).unwrap();
        // Locked while held, and the torn line is still there.
        assert!(matches!(open(&path, false), Err(OpenError::Locked { .. })));
        assert!(read_ahead(&path, &go).is_none());
        assert_eq!(read(&path), torn);
        let opened = open_after(&path, false, Some(ahead)).unwrap();
        assert_eq!(opened.prior.records, 1);
        assert_eq!(opened.prior.decide("a", "m", FP1, true), Decision::Done);
        assert_eq!(opened.warnings.len(), 1, "{:?}", opened.warnings);
        assert!(opened.warnings[0].contains(":2: the last line was cut off"));
        drop(opened);
        assert_eq!(read(&path), whole);
        // A stopped read gives the file (and its lock) back.
        assert!(read_ahead(&path, &AtomicBool::new(true)).is_none());
        assert!(open(&path, false).is_ok());
        // Without a read-ahead, open_after is open.
        let opened = open_after(&path, false, None).unwrap();
        assert_eq!(opened.prior.records, 1);
    }

    #[test]
    fn reading_in_two_halves_finds_what_reading_in_one_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut content = String::new();
        for i in 0..400 {
            let status = if i % 7 == 0 { "error" } else { "ok" };
            let fp = if i % 2 == 0 { FP1 } else { FP2 };
            content.push_str(&format!(
                "{{\"id\":\"id{}\",\"model\":\"m\",\"status\":\"{status}\",\"fingerprint\":\"{fp}\",\"usage\":{{\"cost\":{}}}}}\n",
                i % 150,
                0.1 + f64::from(i) * 1e-7
            ));
            if i % 90 == 5 {
                content.push_str("not a record\n\n");
            }
        }
        let whole_but_unended = rec("z", "ok", FP1).trim_end().to_owned();
        for tail in ["", "{\"id\":\"cut", whole_but_unended.as_str()] {
            std::fs::write(&path, format!("{content}{tail}")).unwrap();
            let file = File::open(&path).unwrap();
            let go = AtomicBool::new(false);
            let (mut w1, mut w2) = (Vec::new(), Vec::new());
            let (one, torn1) = read_records_split(&file, "o", &mut w1, &go, u64::MAX).unwrap();
            let (two, torn2) = read_records_split(&file, "o", &mut w2, &go, 0).unwrap();
            assert_eq!(one.last, two.last, "{tail}");
            assert_eq!(one.starts, two.starts);
            assert_eq!(
                (one.records, one.bad_lines, one.spent.to_bits()),
                (two.records, two.bad_lines, two.spent.to_bits())
            );
            assert_eq!(one.bad_lines, 5);
            assert_eq!(w1, w2);
            assert_eq!(w1.len(), 3, "{w1:?}");
            assert_eq!(format!("{torn1:?}"), format!("{torn2:?}"));
            assert_eq!(torn1.is_some(), !tail.is_empty());
        }
    }

    #[test]
    fn a_whole_record_missing_its_newline_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let whole = rec("a", "ok", FP1);
        std::fs::write(&path, whole.trim_end()).unwrap();
        let opened = open(&path, false).unwrap();
        assert_eq!(opened.prior.decide("a", "m", FP1, true), Decision::Done);
        drop(opened);
        assert_eq!(read(&path), whole);
    }

    #[test]
    fn bad_lines_are_counted_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, format!("garbage\n\n{}", rec("a", "ok", FP1))).unwrap();
        let opened = open(&path, false).unwrap();
        assert_eq!(opened.prior.bad_lines, 1);
        assert_eq!(opened.prior.records, 1);
        assert!(opened.warnings[0].contains(":1:"));
    }

    #[test]
    fn fresh_truncates_and_a_second_open_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, rec("a", "ok", FP1)).unwrap();
        let first = open(&path, true).unwrap();
        assert_eq!(first.prior.records, 0);
        assert_eq!(read(&path), "");
        assert!(matches!(open(&path, false), Err(OpenError::Locked { .. })));
        drop(first);
        assert!(open(&path, false).is_ok());
    }
}
