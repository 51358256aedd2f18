//! How the core tells the outside world about progress, without knowing about terminals:
//! the writer calls a [`Progress`] for every record; the CLI layer decides what to draw.

use std::sync::Arc;

use crate::limit::Pacer;
use crate::output::record::Record;
use crate::output::writer::Tally;

/// Receives events from a run. All methods default to doing nothing.
pub trait Progress: Send {
    /// Sending starts: `total` requests in the input (some may be skipped).
    fn start(&mut self, _total: u64) {}
    /// The adaptive sending rate to show while it limits the run.
    fn watch_rate(&mut self, _rate: Arc<Pacer>) {}
    /// This many requests were skipped because an earlier run answered them.
    fn skipped(&mut self, _count: u64) {}
    /// One record was written.
    fn record(&mut self, _record: &Record, _tally: &Tally) {}
    /// The run is over; clear anything drawn.
    fn finish(&mut self) {}
}

/// Shows nothing (`-q`, tests, or stderr is not a terminal).
pub struct Silent;

impl Progress for Silent {}
