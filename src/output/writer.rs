//! The single writer: one task owns the output file, appends one record per line with one
//! `write` call each (so a crash can tear at most the last line), and keeps the run's tally.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::record::{ErrorKind, Record, Status};
use crate::progress::Progress;

/// How many example failures the summary keeps.
const EXAMPLES: usize = 3;

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
                            r.id,
                            r.model,
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
        let mut line = Vec::with_capacity(4096);
        while let Some(event) = events.blocking_recv() {
            let record = match event {
                Event::Record(r) => r,
                Event::Skipped(n) => {
                    progress.skipped(n);
                    continue;
                }
            };
            line.clear();
            if let Err(e) = serde_json::to_writer(&mut line, &record) {
                stop.cancel();
                return (Err(io::Error::other(e)), progress);
            }
            line.push(b'\n');
            if let Err(e) = file.write_all(&line) {
                stop.cancel();
                return (Err(e), progress);
            }
            tally.add(&record);
            progress.record(&record, &tally);
        }
        (Ok(tally), progress)
    })
}
