//! Looking generation ids up at `GET /generation?id=…`: what each answer means
//! ([`classify`], pure) and a small scheduler that keeps at most `-j` lookups in flight,
//! retries "not yet" (404) on a growing schedule until the deadline, retries 429/5xx and
//! transport failures honouring `Retry-After` (which pauses every lookup), and stops at once
//! when the key is refused.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::wait::Schedule;
use crate::client::{Client, GetResponse};
use crate::retry::Failure;
use crate::retry::describe;
use crate::text::sanitize;

/// What one lookup answer means.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The record: the `data` object, to be kept verbatim.
    Found(Value),
    /// 404: the generation is not known yet (FACTS §5.2); ask again later.
    NotYet,
    /// A passing problem (429, 5xx, timeout, connection); ask again after `after` if given.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// 401/403: the key was refused; no lookup can succeed.
    Refused(String),
    /// A 404 that does not say the generation is unknown (no body, HTML, `Not Found`): the
    /// server may not serve `/generation` at all. "Not yet" until the grace has passed with
    /// nothing found.
    NoEndpoint(String),
    /// Anything else: this id cannot be looked up in this run.
    Failed(String),
}

impl Step {
    /// A word for the log (the record itself is too long to log).
    pub fn label(&self) -> &str {
        match self {
            Step::Found(_) => "found",
            Step::NotYet => "not yet (404)",
            Step::Retry { reason, .. }
            | Step::Refused(reason)
            | Step::Failed(reason)
            | Step::NoEndpoint(reason) => reason,
        }
    }
}

/// Classify the answer to a lookup of `id`.
pub fn classify(id: &str, answer: Result<GetResponse, Failure>) -> Step {
    let resp = match answer {
        Ok(resp) => resp,
        Err(failure) => {
            return Step::Retry {
                after: None,
                reason: describe(&failure),
            };
        }
    };
    let message = || {
        let detail = resp
            .error()
            .map(|e| sanitize(&e.message))
            .filter(|m| !m.is_empty());
        match detail {
            Some(m) => format!("HTTP {}: {m}", resp.status),
            None => format!("HTTP {}", resp.status),
        }
    };
    match resp.status {
        200 => found(id, &resp.body),
        // OpenRouter's "not yet": `{"error":{"message":"Generation gen-… not found"}}`.
        404 if resp
            .error()
            .is_some_and(|e| e.message.to_ascii_lowercase().contains("generation")) =>
        {
            Step::NotYet
        }
        404 => Step::NoEndpoint(message()),
        401 | 403 => Step::Refused(message()),
        408 | 429 | 500..=599 => Step::Retry {
            after: resp.retry_after,
            reason: message(),
        },
        _ => Step::Failed(message()),
    }
}

/// A 200 must carry a `data` object for the id asked about.
fn found(id: &str, body: &Value) -> Step {
    let Some(data) = body.get("data").filter(|d| d.is_object()) else {
        return Step::Failed("HTTP 200 without a data object".to_owned());
    };
    match data.get("id").and_then(Value::as_str) {
        Some(got) if got == id => Step::Found(data.clone()),
        Some(got) => Step::Failed(format!(
            "the server answered with generation {:?}",
            sanitize(got)
        )),
        None => Step::Failed("the data object has no id".to_owned()),
    }
}

/// `GET` path for an id; ids are opaque, so every byte outside RFC 3986's unreserved set is
/// percent-encoded.
pub fn lookup_path(id: &str) -> String {
    let mut path = String::with_capacity(id.len() + 16);
    path.push_str("/generation?id=");
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            path.push(char::from(b));
        } else {
            path.push_str(&format!("%{b:02X}"));
        }
    }
    path
}

/// How the lookups are run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub concurrency: usize,
    pub schedule: Schedule,
    /// No lookup starts after this; ids still unknown then stay pending.
    pub deadline: Instant,
    /// How long 404s that do not name a generation are taken for "not yet" while nothing
    /// has been found, before the server is taken not to serve `/generation`.
    pub grace: Duration,
}

/// How the lookups of one run ended.
#[derive(Debug, Default)]
pub struct Tally {
    pub found: u64,
    /// Still unknown at the deadline (or when stopped); a rerun will ask again.
    pub pending: u64,
    /// Of the pending, how many last saw an error rather than a 404, and one such error.
    pub pending_errors: u64,
    pub last_error: Option<String>,
    /// Ids that cannot be looked up, with the reason.
    pub failed: Vec<(String, String)>,
    /// The key was refused (401/403), with the server's message.
    pub refused: Option<String>,
    /// The server seems not to serve `/generation` (see [`Step::NoEndpoint`]).
    pub no_endpoint: Option<String>,
    pub interrupted: bool,
}

/// Where the lookups stand, for a progress display.
#[derive(Debug, Clone, Copy)]
pub struct Status {
    pub found: u64,
    pub failed: usize,
    /// Ids still to be answered (in flight or waiting for their next lookup).
    pub waiting: usize,
    /// When the next lookup may start, if none is in flight.
    pub idle_until: Option<Instant>,
}

/// An id waiting for its next lookup.
#[derive(Debug)]
struct Due {
    at: Instant,
    seq: u64,
    id: String,
    lookups: u32,
    last_error: Option<String>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Ids by the time of their next lookup (earliest first; first come first served on ties).
struct Queue {
    heap: BinaryHeap<Reverse<Due>>,
    seq: u64,
}

impl Queue {
    fn new(ids: Vec<String>, now: Instant) -> Queue {
        let mut q = Queue {
            heap: BinaryHeap::with_capacity(ids.len()),
            seq: 0,
        };
        for id in ids {
            q.push(Due {
                at: now,
                seq: 0,
                id,
                lookups: 0,
                last_error: None,
            });
        }
        q
    }

    fn push(&mut self, mut due: Due) {
        self.seq += 1;
        due.seq = self.seq;
        self.heap.push(Reverse(due));
    }

    fn pop_due(&mut self, now: Instant) -> Option<Due> {
        if self.heap.peek()?.0.at <= now {
            self.heap.pop().map(|Reverse(d)| d)
        } else {
            None
        }
    }

    fn next_at(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(d)| d.at)
    }

    fn drain(&mut self) -> impl Iterator<Item = Due> + '_ {
        self.heap.drain().map(|Reverse(d)| d)
    }
}

async fn fetch(client: &Client, mut due: Due) -> (Due, Step) {
    due.lookups += 1;
    let answer = client.get(&lookup_path(&due.id)).await;
    let step = classify(&due.id, answer);
    tracing::debug!(id = %due.id, lookup = due.lookups, outcome = step.label(), "GET /generation");
    (due, step)
}

/// Look every id up; `on_found` gets each record as it arrives (the one writer). Returns
/// early with its error if it fails. `interrupt` stops the lookups (what is left is pending).
pub async fn look_up_all(
    client: &Client,
    ids: Vec<String>,
    plan: Plan,
    interrupt: &CancellationToken,
    mut on_found: impl FnMut(&Value) -> std::io::Result<()>,
    mut watch: impl FnMut(Status),
) -> std::io::Result<Tally> {
    let mut tally = Tally::default();
    let started = Instant::now();
    let mut queue = Queue::new(ids, Instant::now());
    let mut inflight = FuturesUnordered::new();
    // Retry-After from the server pauses every lookup until then.
    let mut not_before = Instant::now();
    let concurrency = plan.concurrency.max(1);
    loop {
        let now = Instant::now();
        while inflight.len() < concurrency && now >= not_before {
            match queue.pop_due(now) {
                Some(due) => inflight.push(fetch(client, due)),
                None => break,
            }
        }
        if inflight.is_empty() && queue.next_at().is_none() {
            break;
        }
        let wake = queue.next_at().map(|at| at.max(not_before));
        let can_start = inflight.len() < concurrency;
        watch(Status {
            found: tally.found,
            failed: tally.failed.len(),
            waiting: inflight.len() + queue.heap.len(),
            idle_until: wake.filter(|_| inflight.is_empty()),
        });
        tokio::select! {
            Some((due, step)) = inflight.next(), if !inflight.is_empty() => {
                match step {
                    Step::Found(data) => {
                        on_found(&data)?;
                        tally.found += 1;
                    }
                    Step::NotYet => again(&mut queue, &mut tally, &plan, due, None, None),
                    Step::NoEndpoint(message)
                        if tally.found == 0 && started.elapsed() >= plan.grace =>
                    {
                        tally.no_endpoint = Some(message);
                        tally.pending += 1;
                        break;
                    }
                    Step::NoEndpoint(_) => again(&mut queue, &mut tally, &plan, due, None, None),
                    Step::Retry { after, reason } => {
                        if let Some(after) = after {
                            not_before = not_before.max(Instant::now() + after);
                        }
                        again(&mut queue, &mut tally, &plan, due, after, Some(reason));
                    }
                    Step::Failed(reason) => tally.failed.push((due.id, reason)),
                    Step::Refused(message) => {
                        tally.refused = Some(message);
                        tally.pending += 1;
                        break;
                    }
                }
            }
            // At least once a second, so that a progress display can count the wait down.
            () = sleep_until(wake.map(|w| w.min(Instant::now() + Duration::from_secs(1)))),
                if can_start && wake.is_some() => {}
            () = interrupt.cancelled() => {
                tally.interrupted = true;
                break;
            }
        }
    }
    // Whatever was not answered stays pending: a rerun asks again.
    tally.pending += (inflight.len() + queue.heap.len()) as u64;
    for due in queue.drain() {
        tally.note_pending_error(due.last_error);
    }
    Ok(tally)
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

/// Schedule the next lookup of `due`, or leave it pending when the deadline has passed.
fn again(
    queue: &mut Queue,
    tally: &mut Tally,
    plan: &Plan,
    mut due: Due,
    after: Option<Duration>,
    error: Option<String>,
) {
    due.last_error = error;
    let now = Instant::now();
    if now >= plan.deadline {
        tally.pending += 1;
        tally.note_pending_error(due.last_error);
        return;
    }
    let pause = after.unwrap_or_else(|| plan.schedule.pause(due.lookups));
    due.at = (now + pause).min(plan.deadline);
    queue.push(due);
}

impl Tally {
    fn note_pending_error(&mut self, error: Option<String>) {
        if let Some(e) = error {
            self.pending_errors += 1;
            self.last_error = Some(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resp(status: u16, body: Value) -> Result<GetResponse, Failure> {
        Ok(GetResponse {
            status,
            body,
            retry_after: None,
        })
    }

    #[test]
    fn answers_are_classified() {
        let data = json!({"id": "gen-1", "total_cost": 0.5});
        assert_eq!(
            classify("gen-1", resp(200, json!({ "data": data }))),
            Step::Found(data)
        );
        assert!(matches!(
            classify("gen-1", resp(200, json!({"data": {"id": "gen-2"}}))),
            Step::Failed(_)
        ));
        assert!(matches!(
            classify("gen-1", resp(200, Value::Null)),
            Step::Failed(_)
        ));
        let not_yet = json!({"error": {"message": "Generation gen-1 not found", "code": 404}});
        assert_eq!(classify("gen-1", resp(404, not_yet)), Step::NotYet);
        // A 404 that names no generation: perhaps no `/generation` at all.
        assert_eq!(
            classify("gen-1", resp(404, Value::Null)),
            Step::NoEndpoint("HTTP 404".into())
        );
        assert_eq!(
            classify("gen-1", resp(404, json!({"detail": "Not Found"}))),
            Step::NoEndpoint("HTTP 404".into())
        );
        let refused = classify(
            "gen-1",
            resp(401, json!({"error": {"message": "No auth", "code": 401}})),
        );
        assert_eq!(refused, Step::Refused("HTTP 401: No auth".into()));
        assert!(matches!(
            classify("gen-1", resp(529, Value::Null)),
            Step::Retry { .. }
        ));
        assert!(matches!(
            classify("gen-1", Err(Failure::Timeout)),
            Step::Retry { .. }
        ));
        assert_eq!(
            classify("gen-1", resp(400, Value::Null)),
            Step::Failed("HTTP 400".into())
        );
    }

    #[test]
    fn ids_are_percent_encoded() {
        assert_eq!(lookup_path("gen-12_a.b~"), "/generation?id=gen-12_a.b~");
        assert_eq!(
            lookup_path("a&b=c d/é"),
            "/generation?id=a%26b%3Dc%20d%2F%C3%A9"
        );
    }
}
