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

use super::record::{ErrorKind, Record, Status};
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
    /// Sum of `usage.cost` over written records.
    pub cost: f64,
    pub errors: BTreeMap<ErrorKind, u64>,
    /// A few failures, `id (model): kind: message`, for the summary.
    pub examples: Vec<String>,
}

impl Tally {
    pub fn written(&self) -> u64 {
        self.ok + self.failed
    }

    fn add(&mut self, r: &Record) {
        self.attempts += u64::from(r.attempts);
        if let Some(u) = &r.usage {
            self.prompt_tokens += u.prompt_tokens;
            self.completion_tokens += u.completion_tokens;
            self.cost += u.cost.unwrap_or(0.0);
        }
        match r.status {
            Status::Ok => self.ok += 1,
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

/// Start the writer on a blocking thread. It ends when every sender is dropped, returning
/// the tally; on a write error it cancels `stop` (nothing more can be recorded) and returns
/// the error.
pub fn spawn(
    mut file: File,
    mut events: mpsc::Receiver<Event>,
    mut progress: Box<dyn Progress>,
    stop: CancellationToken,
) -> JoinHandle<(io::Result<Tally>, Box<dyn Progress>)> {
    tokio::task::spawn_blocking(move || {
        let mut tally = Tally::default();
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
            line.clear();
            for record in &batch {
                if let Err(e) = serde_json::to_writer(&mut line, record) {
                    stop.cancel();
                    return (Err(io::Error::other(e)), progress);
                }
                line.push(b'\n');
            }
            if let Err(e) = file.write_all(&line) {
                stop.cancel();
                return (Err(e), progress);
            }
            last_write = Some(Instant::now());
            for record in batch.drain(..) {
                tally.add(&record);
                progress.record(&record, &tally);
            }
        }
        (Ok(tally), progress)
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
        let (tally, _) = spawn(file, rx, Box::new(Silent), CancellationToken::new())
            .await
            .unwrap();
        let tally = tally.unwrap();
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
}
