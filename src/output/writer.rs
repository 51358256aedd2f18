//! The single writer: one task owns the output file, appends one record per line, each record
//! as soon as it arrives (or, when records come faster than one a millisecond, within a
//! millisecond), the records that arrived together in one `write` call (whole lines only, so a
//! crash can tear at most the last line), and keeps the run's tally.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::record::{ErrorKind, InlineCost, Record, Status};
use crate::progress::Progress;
use crate::text::sanitize;

/// How many example failures the summary keeps.
const EXAMPLES: usize = 3;

/// Most records written by one `write` call.
const BATCH: usize = 256;

/// Writes are at least this far apart: a record that arrives sooner after the last write
/// waits for the rest of it, with the records that come meanwhile. At a few thousand answers
/// a second this turns a thread wake-up and a `write` per record into one per millisecond; a
/// record that arrives later than this after the last write is written at once.
const LINGER: Duration = Duration::from_millis(1);

/// Totals over the records written by this run.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub ok: u64,
    pub failed: u64,
    pub attempts: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Spend over written records that have a `usage.cost`: OpenRouter's charge plus, for
    /// BYOK, the provider's.
    pub cost: f64,
    /// Of `cost`, what providers billed to the user's own keys (BYOK).
    pub byok: f64,
    /// Written answers that carry no `usage.cost` (servers other
    /// than OpenRouter often send none): then `cost` is a lower bound, or unknown if no
    /// record has a cost.
    pub uncosted: u64,
    /// Written records with a `usage.cost`.
    pub costed: u64,
    /// Ok answers cut at max_tokens (`finish_reason: length`), per model.
    pub truncated: BTreeMap<String, u64>,
    /// Attempts that failed and were tried again, by what they failed with.
    pub retried: BTreeMap<ErrorKind, u64>,
    /// Error records of requests that Ctrl-C kept from being tried again (not in `failed`).
    pub interrupted: u64,
    pub errors: BTreeMap<ErrorKind, u64>,
    /// A few failures, `id (model): kind: message`, for the summary.
    pub examples: Vec<String>,
}

impl Tally {
    pub fn written(&self) -> u64 {
        self.ok + self.failed + self.interrupted
    }

    /// The spend so far as text: `$0.0012`, `≥ $0.0012` or `—` (see [`crate::text::spend`]).
    pub fn spend(&self) -> String {
        let known = InlineCost::sum(self.cost, self.costed, self.uncosted);
        crate::text::spend(known, self.uncosted)
    }

    fn add(&mut self, r: &Record) {
        self.attempts += u64::from(r.attempts);
        for kind in &r.retried {
            *self.retried.entry(*kind).or_default() += 1;
        }
        if let Some(u) = &r.usage {
            self.prompt_tokens += u.prompt_tokens;
            self.completion_tokens += u.completion_tokens;
        }
        match r.inline_cost() {
            InlineCost::Known(c) => {
                self.cost += c;
                self.byok += r.byok_cost();
                self.costed += 1;
            }
            InlineCost::Free => {}
            InlineCost::Unknown => self.uncosted += 1,
        }
        match r.status {
            Status::Ok if r.finish_reason.as_deref() == Some("length") => {
                self.ok += 1;
                *self.truncated.entry(r.model.clone()).or_default() += 1;
            }
            Status::Ok => self.ok += 1,
            Status::Error if r.interrupted => self.interrupted += 1,
            Status::Error => {
                self.failed += 1;
                if let Some(e) = &r.error {
                    *self.errors.entry(e.kind).or_default() += 1;
                    if self.examples.len() < EXAMPLES {
                        let status = e.status.map(|s| format!(" {s}")).unwrap_or_default();
                        self.examples.push(format!(
                            "{} ({}): {}{status}: {}",
                            sanitize(&r.id),
                            sanitize(&r.model),
                            e.kind.as_str(),
                            e.message
                        ));
                    }
                }
            }
        }
    }
}

/// What the writer receives.
#[derive(Debug)]
pub enum Event {
    /// A finished request: append it.
    Record(Box<Record>),
    /// This many requests were skipped (answered by an earlier run): only counted.
    Skipped(u64),
}

/// What the writer did, once every sender is gone.
pub struct Written {
    /// The records written.
    pub tally: Tally,
    /// The write error that stopped the run, if one did.
    pub failure: Option<WriteFailure>,
    pub progress: Box<dyn Progress>,
}

/// A write that failed, and the answered records that could not be written after it.
#[derive(Debug)]
pub struct WriteFailure {
    pub error: io::Error,
    /// Records received but not written (the one that failed and every later one).
    pub unwritten: Tally,
}

/// Start the writer on a blocking thread. It ends when every sender is dropped. On a write
/// error it cancels `stop` (nothing more can be recorded), cuts the file back to its last
/// whole line, and goes on receiving (so that the pool's workers finish) and counting what it
/// could not write. If it panics, `stop` is cancelled too.
pub fn spawn(
    mut file: File,
    mut events: mpsc::Receiver<Event>,
    mut progress: Box<dyn Progress>,
    stop: CancellationToken,
) -> JoinHandle<Written> {
    tokio::task::spawn_blocking(move || {
        let on_panic = stop.clone().drop_guard();
        let mut tally = Tally::default();
        let mut failure: Option<WriteFailure> = None;
        // Where the last whole line ends (regular files: appends start at their length).
        let mut whole = file
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        let mut line = Vec::with_capacity(64 * 1024);
        let mut batch: Vec<Box<Record>> = Vec::with_capacity(BATCH);
        let mut last_write: Option<Instant> = None;
        while let Some(first) = events.blocking_recv() {
            // Soon after the last write: let the records that are about to come join this one.
            if let Some(wait) = last_write.and_then(|t| LINGER.checked_sub(t.elapsed())) {
                std::thread::sleep(wait);
            }
            // Take whatever else has already arrived: it is written in the same `write` call
            // (whole lines only, so a crash still tears at most the last one), which saves a
            // system call and a thread wake-up per record when answers come fast.
            let mut next = Some(first);
            while let Some(event) = next.take() {
                match event {
                    Event::Record(r) => batch.push(r),
                    Event::Skipped(n) => progress.skipped(n),
                }
                if batch.len() < BATCH {
                    next = events.try_recv().ok();
                }
            }
            if batch.is_empty() {
                continue;
            }
            if let Some(f) = &mut failure {
                for record in batch.drain(..) {
                    f.unwritten.add(&record);
                }
                continue;
            }
            line.clear();
            let written = batch.iter().try_for_each(|record| {
                serde_json::to_writer(&mut line, record).map_err(io::Error::other)?;
                line.push(b'\n');
                Ok(())
            });
            match written.and_then(|()| file.write_all(&line)) {
                Ok(()) => {
                    whole = whole.map(|n| n + line.len() as u64);
                    last_write = Some(Instant::now());
                    for record in batch.drain(..) {
                        tally.add(&record);
                        progress.record(&record, &tally);
                    }
                }
                Err(error) => {
                    stop.cancel();
                    // A write cut short leaves a torn line: cut it off (resume would too).
                    if let Some(n) = whole {
                        let _ = file.set_len(n);
                    }
                    let mut unwritten = Tally::default();
                    for record in batch.drain(..) {
                        unwritten.add(&record);
                    }
                    failure = Some(WriteFailure { error, unwritten });
                }
            }
        }
        on_panic.disarm();
        Written {
            tally,
            failure,
            progress,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::Endpoint;
    use crate::output::record::{RecordError, Usage};
    use crate::progress::Silent;

    fn record(i: u64, ok: bool) -> Box<Record> {
        Box::new(Record {
            id: format!("r{i}"),
            model: "m".into(),
            endpoint: Endpoint::Chat,
            row: i,
            status: if ok { Status::Ok } else { Status::Error },
            output: ok.then(|| format!("answer {i}")),
            finish_reason: None,
            generation_id: None,
            generation_ids: Vec::new(),
            provider: None,
            model_used: None,
            usage: Some(Usage {
                prompt_tokens: 2,
                completion_tokens: 3,
                cost: Some(0.5),
                ..Usage::default()
            }),
            is_byok: None,
            upstream_cost: None,
            service_tier: None,
            attempts: 1,
            latency_ms: Some(1),
            ttft_ms: None,
            started_at: "2026-11-25T17:00:00.000Z".into(),
            finished_at: "2026-11-25T17:00:00.001Z".into(),
            fingerprint: "0".repeat(32),
            error: (!ok).then(|| RecordError {
                kind: ErrorKind::Transient,
                status: Some(503),
                code: None,
                message: "x".into(),
            }),
            meta: None,
            output_json: None,
            reasks: 0,
            lenient_json: false,
            failed_cost_bound: None,
            stage: None,
            parts: Vec::new(),
            lane: None,
            batch_id: None,
            retried: Vec::new(),
            interrupted: false,
        })
    }

    /// Many records queued at once are written in batches, each as one whole line, in order,
    /// and every one is counted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_records_are_written_whole_in_order_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let file = File::create(&path).unwrap();
        let (tx, rx) = mpsc::channel(2000);
        let n = 1000u64;
        for i in 0..n {
            tx.send(Event::Record(record(i, i % 10 != 0)))
                .await
                .unwrap();
            if i % 100 == 0 {
                tx.send(Event::Skipped(2)).await.unwrap();
            }
        }
        drop(tx);
        let written = spawn(file, rx, Box::new(Silent), CancellationToken::new())
            .await
            .unwrap();
        assert!(written.failure.is_none());
        let tally = written.tally;
        assert_eq!((tally.ok, tally.failed), (900, 100));
        assert_eq!(tally.prompt_tokens, 2 * n);
        assert_eq!(tally.cost, 0.5 * n as f64);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len() as u64, n);
        for (i, l) in lines.iter().enumerate() {
            let r: Record = serde_json::from_str(l).unwrap();
            assert_eq!(r, *record(i as u64, i % 10 != 0));
        }
        assert!(text.ends_with('\n'));
    }

    /// A write error stops the run, yet every record that comes after it is still received
    /// and counted as unwritten (so the summary can say what was paid and not recorded).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_error_stops_the_run_and_counts_what_was_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, "").unwrap();
        // Opened for reading only: every write fails.
        let file = File::open(&path).unwrap();
        let (tx, rx) = mpsc::channel(16);
        let stop = CancellationToken::new();
        let writer = spawn(file, rx, Box::new(Silent), stop.clone());
        for i in 0..5 {
            tx.send(Event::Record(record(i, i != 3))).await.unwrap();
        }
        drop(tx);
        let written = writer.await.unwrap();
        assert!(stop.is_cancelled());
        assert_eq!(written.tally.written(), 0);
        let failure = written.failure.expect("a write failure");
        assert_eq!((failure.unwritten.ok, failure.unwritten.failed), (4, 1));
        assert_eq!(failure.unwritten.cost, 2.5);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }

    struct Panics;
    impl Progress for Panics {
        fn record(&mut self, _: &Record, _: &Tally) {
            panic!("a progress display that panics");
        }
    }

    /// A writer that panics stops the run: the pool must not go on sending what nobody records.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_writer_stops_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("out.jsonl")).unwrap();
        let (tx, rx) = mpsc::channel(16);
        let stop = CancellationToken::new();
        let writer = spawn(file, rx, Box::new(Panics), stop.clone());
        tx.send(Event::Record(record(0, true))).await.unwrap();
        assert!(writer.await.is_err());
        assert!(stop.is_cancelled());
    }
}
