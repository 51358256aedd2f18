//! The feeder: the input's second pass on a blocking thread. It asks the output's history
//! whether each request is to be sent, queues those for the pool, and counts the rest; if the
//! input changed since it was validated, it stops feeding and says why, so that the run can
//! still finish what was sent.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::job::{Input, Request, RequestKeys};
use crate::output::resume::{Decision, Prior};
use crate::output::writer::Event;

/// Counts from the feeder: what the output file's history decided.
#[derive(Debug, Default)]
pub(super) struct Fed {
    pub skipped_done: u64,
    pub changed: u64,
    pub retried_errors: u64,
    pub kept_errors: u64,
    /// Why feeding stopped before the input ran out (the input changed under it).
    pub failure: Option<String>,
}

/// Most queue slots the feeder reserves at once.
const FEED_BATCH: usize = 64;

/// Skips are reported to the progress display this many at a time.
const SKIP_REPORT: u64 = 4096;

/// What the feeder is given.
pub(super) struct Feeder {
    pub input: Input,
    pub keys: RequestKeys,
    pub prior: Prior,
    pub retry_errors: bool,
    /// The pool's queue, of `queue` slots.
    pub requests: mpsc::Sender<Request>,
    pub queue: usize,
    /// The writer, told about skips.
    pub events: mpsc::Sender<Event>,
    pub stop: CancellationToken,
}

impl Feeder {
    /// Feed on a blocking thread until the input runs out, the run stops or the pool goes.
    pub fn spawn(self) -> JoinHandle<Fed> {
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let mut fed = Fed::default();
            if let Err(e) = self.feed(&handle, &mut fed) {
                fed.failure = Some(e.to_string());
            }
            fed
        })
    }

    fn feed(
        self,
        handle: &tokio::runtime::Handle,
        fed: &mut Fed,
    ) -> Result<(), crate::job::InputError> {
        let Feeder {
            input,
            keys,
            prior,
            retry_errors,
            requests: req_tx,
            queue,
            events,
            stop,
        } = self;
        // Queue slots are reserved `batch` at a time: the feeder sleeps until that many are
        // free, not until one is (which would wake this thread once per request). A row is
        // still queued as soon as it is read: nothing waits for a batch to fill.
        let batch = (queue / 4).clamp(1, FEED_BATCH);
        let mut slots = None;
        let mut skips = Skips::new(&events);
        // Rows whose every request is answered are skipped without being shaped again.
        let known = keys.resolve(|key, fingerprint| prior.is_done(key, fingerprint));
        let mut requests = input.requests_skipping(known)?;
        let result = loop {
            let next = requests.next();
            skips.add(&mut fed.skipped_done, requests.take_skipped());
            let Some(req) = next else { break Ok(()) };
            let req = match req {
                Ok(req) => req,
                Err(e) => break Err(e),
            };
            match prior.decide(&req.id, &req.model, &req.fingerprint, retry_errors) {
                Decision::Done => {
                    skips.add(&mut fed.skipped_done, 1);
                    continue;
                }
                Decision::KeepError => {
                    fed.kept_errors += 1;
                    continue;
                }
                Decision::Changed => fed.changed += 1,
                Decision::RetryError => fed.retried_errors += 1,
                Decision::New => {}
            }
            skips.report();
            if stop.is_cancelled() {
                break Ok(());
            }
            let slot = loop {
                if let Some(slot) = slots.as_mut().and_then(Iterator::next) {
                    break Some(slot);
                }
                match handle.block_on(req_tx.reserve_many(batch)) {
                    Ok(permits) => slots = Some(permits),
                    // The pool is gone (the run stopped): nothing more is sent.
                    Err(_) => break None,
                }
            };
            let Some(slot) = slot else { break Ok(()) };
            slot.send(req);
        };
        skips.report();
        result
    }
}

/// Skipped requests not yet reported to the writer (which shows them as progress).
struct Skips<'a> {
    events: &'a mpsc::Sender<Event>,
    unreported: u64,
}

impl<'a> Skips<'a> {
    fn new(events: &'a mpsc::Sender<Event>) -> Self {
        Skips {
            events,
            unreported: 0,
        }
    }

    /// Count `n` more skips into `total`, reporting them once enough have gathered.
    fn add(&mut self, total: &mut u64, n: u64) {
        if n == 0 {
            return;
        }
        *total += n;
        self.unreported += n;
        if self.unreported >= SKIP_REPORT {
            self.report();
        }
    }

    fn report(&mut self) {
        if self.unreported > 0 {
            let _ = self
                .events
                .blocking_send(Event::Skipped(std::mem::take(&mut self.unreported)));
        }
    }
}
