//! The worker pool: takes requests from a bounded channel, holds one concurrency permit per
//! request, paces every attempt (pause gate, then rate limiter), retries by the verdict of
//! [`retry::classify`](crate::retry::classify), and sends exactly one record per request to
//! the writer. A fatal verdict (bad key, no credit) stops dispatching for everyone; a spent
//! daily free-model quota stops that model only (its other rows get the error unsent).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::Answer;
use crate::budget::{Budget, BudgetStop, Claim};
use crate::client::{Attempt, Client};
use crate::health::{Alarm, Health};
use crate::job::Request;
use crate::limit::{Pacer, Pause, PauseGate};
use crate::output::record::{ErrorKind, Record, RecordError, Status, timestamp};
use crate::output::writer::Event;
use crate::retry::{Action, Backoff, DAILY_QUOTA_MESSAGE, Failure, Verdict, classify, describe};
use crate::schema::{Asks, Reviewed};

/// How the pool behaves.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Attempts per request, including the first.
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub stream: bool,
    /// An answer cut at max_tokens is an error record (`--truncated error`).
    pub truncated_error: bool,
    /// `--schema`: answers are checked against it and re-asked ([`crate::schema`]).
    pub structured: Option<Arc<crate::schema::Structured>>,
}

/// Why dispatching stopped before the input ran out.
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    /// 401/403: the key was refused.
    Auth(String),
    /// 402 or a budget block: no credit left.
    Credits(String),
    /// Ctrl-C / SIGTERM.
    Interrupted,
    /// The output could not be written.
    WriteFailed,
    /// `--max-cost` was reached.
    Budget(String),
    /// Under `--max-cost`, a model `/models` has no price for (its cost cannot be bounded).
    Unpriced(String),
    /// The first failures show that the run cannot work (wrong base URL or endpoint, no
    /// TLS, the server down).
    Unusable(Alarm),
}

/// The run stopped before an attempt could be made.
struct Stopped;

/// State shared by the dispatcher and every worker.
pub struct Pool {
    client: Client,
    config: PoolConfig,
    pacer: Arc<Pacer>,
    gate: PauseGate,
    /// Cancelled to stop dispatching (fatal error, interrupt, writer failure).
    stop: CancellationToken,
    reason: Mutex<Option<StopReason>>,
    budget: Option<Arc<Budget>>,
    /// Models whose daily quota is spent, with the error their remaining rows get.
    exhausted: Mutex<HashMap<String, RecordError>>,
    health: Health,
}

impl Pool {
    pub fn new(
        client: Client,
        config: PoolConfig,
        pacer: Arc<Pacer>,
        stop: CancellationToken,
        budget: Option<Arc<Budget>>,
    ) -> Pool {
        Pool {
            client,
            config,
            pacer,
            gate: PauseGate::default(),
            stop,
            reason: Mutex::new(None),
            budget,
            exhausted: Mutex::new(HashMap::new()),
            health: Health::default(),
        }
    }

    /// The error for rows of `model` once its daily quota is spent.
    fn exhausted_error(&self, model: &str) -> Option<RecordError> {
        let map = self.exhausted.lock().unwrap_or_else(|e| e.into_inner());
        map.get(model).cloned()
    }

    /// Send nothing more to `model` in this run; its rows get `error` instead.
    fn exhaust_model(&self, model: &str, error: &RecordError) {
        let mut map = self.exhausted.lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(model) {
            tracing::warn!("{model}: {DAILY_QUOTA_MESSAGE}; its remaining rows are not sent");
            map.insert(model.to_owned(), error.clone());
        }
    }

    /// Stop dispatching, remembering the first reason given.
    pub fn stop(&self, reason: StopReason) {
        let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none() {
            *r = Some(reason);
        }
        self.stop.cancel();
    }

    /// Why dispatching stopped, if it did.
    pub fn stop_reason(&self) -> Option<StopReason> {
        let r = self
            .reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match r {
            None if self.stop.is_cancelled() => Some(StopReason::WriteFailed),
            r => r,
        }
    }

    /// Dispatch every request from `requests` until it closes or the run stops; returns when
    /// every started request has sent its record.
    pub async fn run(
        self: Arc<Self>,
        mut requests: mpsc::Receiver<Request>,
        records: mpsc::Sender<Event>,
    ) {
        let permits = Arc::new(Semaphore::new(self.config.concurrency));
        let tracker = TaskTracker::new();
        loop {
            let permit = tokio::select! {
                biased;
                _ = self.stop.cancelled() => break,
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let req = tokio::select! {
                biased;
                _ = self.stop.cancelled() => break,
                r = requests.recv() => match r {
                    Some(r) => r,
                    None => break,
                },
            };
            let pool = Arc::clone(&self);
            let records = records.clone();
            tracker.spawn(async move {
                let record = pool.process(req).await;
                if let Some(record) = record {
                    // The writer only goes away after a write error, which stopped the run.
                    let _ = records.send(Event::Record(Box::new(record))).await;
                }
                drop(permit);
            });
        }
        tracker.close();
        tracker.wait().await;
        if let Some(budget) = &self.budget {
            budget.finish();
        }
    }

    /// Under `--max-cost`, reserve the worst case of one attempt of `req`, waiting while it
    /// does not fit yet. `Err` when the run stopped first, or stops now: the cap is reached.
    async fn claim(&self, req: &Request) -> Result<Option<Claim>, Stopped> {
        let Some(budget) = &self.budget else {
            return Ok(None);
        };
        tokio::select! {
            biased;
            _ = self.stop.cancelled() => Err(Stopped),
            r = budget.reserve(req) => match r {
                Ok(claim) => Ok(Some(claim)),
                Err(e) => {
                    self.stop(match e {
                        BudgetStop::NoPrice(_) => StopReason::Unpriced(e.to_string()),
                        BudgetStop::Reached { .. } => StopReason::Budget(e.to_string()),
                    });
                    Err(Stopped)
                }
            },
        }
    }

    /// The record of a request whose next attempt the stop (Ctrl-C, the cap) prevented: the
    /// answer that was to be re-asked (it was paid for), else the last failed attempt; `None`
    /// before any attempt.
    fn stopped_before(
        &self,
        req: Request,
        started: jiff::Timestamp,
        ids: Vec<String>,
        attempts: u32,
        last: Option<(Attempt, Failure, Verdict)>,
        asks: &mut Asks,
    ) -> Option<Record> {
        if last.is_none()
            && let Some((answer, error)) = asks.unsent_reask()
        {
            let mut record = invalid(req, started, ids, attempts, &no_attempt(), answer, error);
            record.latency_ms = None;
            return Some(self.cut_short(record));
        }
        last.map(|(a, f, v)| {
            self.cut_short(finish(
                req,
                started,
                ids,
                attempts,
                &a,
                Err(record_error(&f, v)),
            ))
        })
    }

    /// Run every attempt of one request. `None` if the run stopped before its first attempt
    /// (nothing sent, nothing to record).
    async fn process(&self, req: Request) -> Option<Record> {
        let mut retried = Vec::new();
        let mut asks = Asks::new(self.config.structured.clone());
        let mut failed_cost = 0.0;
        let mut record = self
            .attempts(req, &mut retried, &mut asks, &mut failed_cost)
            .await?;
        record.retried = retried;
        asks.settle(&mut record);
        record.failed_cost_bound = (failed_cost > 0.0).then_some(failed_cost);
        Some(record)
    }

    /// The record of a request whose retry the stop prevented: under Ctrl-C it is
    /// interrupted (said so), not failed.
    fn cut_short(&self, mut record: Record) -> Record {
        if self.stop_reason() == Some(StopReason::Interrupted) {
            record.interrupted = true;
            if let Some(e) = record.error.as_mut() {
                e.message
                    .push_str(" (interrupted before it was tried again; a rerun sends it)");
            }
        }
        record
    }

    /// [`Pool::process`], noting in `retried` what each retried attempt failed with, and in
    /// `failed_cost` what `--max-cost` counted for the failed ones; `asks` reviews each answer
    /// against the job's schema (a re-ask is the next attempt).
    async fn attempts(
        &self,
        mut req: Request,
        retried: &mut Vec<ErrorKind>,
        asks: &mut Asks,
        failed_cost: &mut f64,
    ) -> Option<Record> {
        let started = jiff::Timestamp::now();
        let mut ids: Vec<String> = Vec::new();
        let mut attempts: u32 = 0;
        // Attempts before the current ask (a re-ask starts a new one, with its own retries).
        let mut before_ask: u32 = 0;
        // The last failed attempt; recorded if the run stops before the next one.
        let mut last: Option<(Attempt, Failure, Verdict)> = None;
        loop {
            if let Some(error) = self.exhausted_error(&req.model) {
                return Some(unsent(req, started, ids, attempts, last, error));
            }
            // --max-cost: every attempt reserves its worst case before it waits for its turn
            // (dropped unsent, the claim is released).
            let Ok(claim) = self.claim(&req).await else {
                return self.stopped_before(req, started, ids, attempts, last, asks);
            };
            // Wait for a pause and the rate limiter; a stop meanwhile means this attempt is
            // never made.
            let ready = async {
                let slot = self.pacer.in_flight().acquire().await;
                loop {
                    self.gate.wait().await;
                    self.pacer.ready(&req.model).await;
                    // A pause that began while this worker waited for its slot voids the
                    // slot: every worker would otherwise leave together when the pause ends,
                    // and that burst meets the limit again.
                    if !self.gate.is_closed() {
                        break;
                    }
                }
                slot
            };
            let slot = tokio::select! {
                biased;
                _ = self.stop.cancelled() => {
                    return self.stopped_before(req, started, ids, attempts, last, asks);
                }
                slot = ready => slot,
            };
            // The quota may have run out while this request waited for its slot.
            if let Some(error) = self.exhausted_error(&req.model) {
                return Some(unsent(req, started, ids, attempts, last, error));
            }
            attempts += 1;
            self.pacer.on_send();
            tracing::debug!(id = %req.id, model = %req.model, attempt = attempts, "sending");
            let mut attempt = self.client.send(&req, self.config.stream).await;
            if let Some(claim) = claim {
                let counted = claim.settle(&attempt, &self.client);
                if attempt.result.is_err() {
                    *failed_cost += counted;
                }
            }
            if let Some(id) = &attempt.generation_id
                && !ids.contains(id)
            {
                ids.push(id.clone());
            }
            let failure = match std::mem::replace(&mut attempt.result, Err(Failure::Timeout)) {
                Ok(answer) => {
                    self.pacer.on_success();
                    self.health.on_success();
                    if self.config.truncated_error && answer.is_cut_at_max_tokens() {
                        return Some(truncated(req, started, ids, attempts, &attempt, answer));
                    }
                    if self.config.structured.is_some()
                        && let Some(id) = &answer.generation_id
                        && !ids.contains(id)
                    {
                        ids.push(id.clone());
                    }
                    match asks.review(req.endpoint, &mut req.body, answer) {
                        Reviewed::Answer(answer) => {
                            return Some(finish(req, started, ids, attempts, &attempt, Ok(answer)));
                        }
                        Reviewed::Invalid(answer, error) => {
                            return Some(invalid(
                                req, started, ids, attempts, &attempt, answer, error,
                            ));
                        }
                        // The retry budget (--max-attempts) is per ask: re-asks have their own.
                        Reviewed::Reask => {
                            retried.push(ErrorKind::InvalidOutput);
                            before_ask = attempts;
                            last = None;
                            continue;
                        }
                    }
                }
                Err(f) => f,
            };
            let verdict = classify(&failure);
            // A server that cuts a stream short when another request comes (llama.cpp's)
            // answers one at a time.
            if matches!(failure, Failure::CutShort(_))
                && self.pacer.in_flight().one_at_a_time().is_some()
            {
                tracing::warn!(
                    "the server cuts a stream short when another request comes: one request \
                     at a time from now on"
                );
            }
            // A 429 limits the rate; the in-flight budget's 402 limits how many run at once.
            if verdict.kind == ErrorKind::RateLimited {
                if matches!(failure, Failure::Http { status: 402, .. }) {
                    if let Some(n) = self.pacer.in_flight().on_pushback() {
                        tracing::info!("too many requests in flight: at most {n} at once now");
                    }
                } else if let Some(rate) = self
                    .pacer
                    .on_rate_limited(matches!(verdict.action, Action::Retry { after: Some(_) }))
                {
                    tracing::info!("rate limited: slowing down to {rate:.1} requests/s");
                }
            }
            // Held until here so that a refused attempt counts as in flight in `on_pushback`.
            drop(slot);
            tracing::info!(
                id = %req.id, model = %req.model, attempt = attempts,
                kind = verdict.kind.as_str(), "attempt failed: {}", describe(&failure)
            );
            let url = self.client.url(req.endpoint.path());
            if let Some(alarm) = self
                .health
                .on_failure(&failure, req.endpoint, &req.model, &url)
            {
                self.stop(StopReason::Unusable(alarm));
            }
            let give_up = self.stop.is_cancelled()
                || match verdict.action {
                    Action::StopRun => {
                        let msg = describe(&failure);
                        self.stop(match verdict.kind {
                            ErrorKind::Credits => StopReason::Credits(msg),
                            _ => StopReason::Auth(msg),
                        });
                        true
                    }
                    Action::StopModel => {
                        let error = quota_error(&failure, verdict);
                        self.exhaust_model(&req.model, &error);
                        return Some(finish(req, started, ids, attempts, &attempt, Err(error)));
                    }
                    Action::GiveUp => true,
                    Action::Retry { .. } => attempts - before_ask >= self.config.max_attempts,
                };
            if give_up {
                let error = record_error(&failure, verdict);
                return Some(finish(req, started, ids, attempts, &attempt, Err(error)));
            }
            let pause = match verdict.action {
                Action::Retry { after: Some(d) } => {
                    // Retry-After speaks for the whole key: hold every worker.
                    let pause = self.gate.pause_for(d);
                    if pause != Pause::Unchanged {
                        self.pacer.hold_until(tokio::time::Instant::now() + d);
                    }
                    if pause == Pause::Began {
                        tracing::warn!(
                            "server asked to wait {:.1}s; pausing all requests",
                            d.as_secs_f64()
                        );
                    }
                    Duration::ZERO
                }
                _ => self.config.backoff.pause(attempts, rand::random::<f64>()),
            };
            retried.push(verdict.kind);
            last = Some((attempt, failure, verdict));
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// The record of a finished request: its answer, or the error of its final attempt.
fn finish(
    req: Request,
    started: jiff::Timestamp,
    ids: Vec<String>,
    attempts: u32,
    a: &Attempt,
    outcome: Result<Answer, RecordError>,
) -> Record {
    let made = Made {
        generation_id: a.generation_id.clone(),
        generation_ids: ids,
        attempts,
        latency_ms: Some(millis(a.latency)),
        ttft_ms: a.ttft.map(millis),
        started_at: timestamp(started),
    };
    record_of(req, outcome, made)
}

/// What a record holds besides its request and its outcome: how it was sent.
pub(crate) struct Made {
    /// The final attempt's generation id (else the answer's own).
    pub generation_id: Option<String>,
    pub generation_ids: Vec<String>,
    pub attempts: u32,
    pub latency_ms: Option<u64>,
    pub ttft_ms: Option<u64>,
    pub started_at: String,
}

/// The record of `req` with its answer (or its error): the one constructor of both lanes.
pub(crate) fn record_of(req: Request, outcome: Result<Answer, RecordError>, made: Made) -> Record {
    let (status, answer, error) = match outcome {
        Ok(answer) => (Status::Ok, answer, None),
        Err(e) => (Status::Error, Answer::default(), Some(e)),
    };
    Record {
        id: req.id,
        model: req.model,
        endpoint: req.endpoint,
        row: req.row,
        status,
        output: (status == Status::Ok).then_some(answer.output),
        finish_reason: answer.finish_reason,
        generation_id: made.generation_id.or(answer.generation_id),
        generation_ids: made.generation_ids,
        provider: answer.provider,
        model_used: answer.model,
        usage: answer.usage,
        is_byok: answer.billing.is_byok,
        upstream_cost: answer.billing.upstream_cost,
        service_tier: answer.service_tier,
        attempts: made.attempts,
        latency_ms: made.latency_ms,
        ttft_ms: made.ttft_ms,
        started_at: made.started_at,
        finished_at: timestamp(jiff::Timestamp::now()),
        fingerprint: req.fingerprint,
        error,
        meta: req.meta,
        output_json: None,
        reasks: 0,
        lenient_json: false,
        failed_cost_bound: None,
        stage: req.stage,
        parts: req.parts,
        lane: None,
        batch_id: None,
        retried: Vec::new(),
        interrupted: false,
    }
}

/// The error record of an answer cut at max_tokens under `--truncated error`: not retried
/// in this run (the same request would be cut again), sent again by a rerun. Its usage is
/// kept: the answer was billed, and `--max-cost` must count it.
fn truncated(
    req: Request,
    started: jiff::Timestamp,
    mut ids: Vec<String>,
    attempts: u32,
    a: &Attempt,
    answer: Answer,
) -> Record {
    if let Some(id) = &answer.generation_id
        && !ids.contains(id)
    {
        ids.push(id.clone());
    }
    let error = RecordError {
        kind: ErrorKind::Truncated,
        status: Some(200),
        code: None,
        message: format!(
            "the answer was cut at max_tokens after {} characters (finish_reason: length; \
             --truncated error makes that an error)",
            answer.output.chars().count()
        ),
    };
    let mut record = finish(req, started, ids, attempts, a, Err(error));
    keep_answer(&mut record, answer);
    record
}

/// The `invalid_output` record of an answer that does not fit the schema: its raw text is
/// kept in `output`, and its usage is the sum [`Asks::settle`] makes.
fn invalid(
    req: Request,
    started: jiff::Timestamp,
    ids: Vec<String>,
    attempts: u32,
    a: &Attempt,
    answer: Answer,
    error: RecordError,
) -> Record {
    let mut record = finish(req, started, ids, attempts, a, Err(error));
    record.output = Some(answer.output.clone());
    keep_answer(&mut record, answer);
    record
}

/// The attempt of a record that has none to show (not sent, or its answer is kept apart).
fn no_attempt() -> Attempt {
    Attempt {
        result: Err(Failure::Timeout),
        generation_id: None,
        latency: Duration::ZERO,
        ttft: None,
        responded: false,
    }
}

/// An error record of an answer that was billed: its usage, finish reason and generation id
/// are kept (`--max-cost` and the audit count it).
fn keep_answer(record: &mut Record, answer: Answer) {
    record.usage = answer.usage;
    record.finish_reason = answer.finish_reason;
    record.generation_id = record.generation_id.take().or(answer.generation_id);
}

/// The record of a request that is not sent (again) because its model's quota is spent:
/// the last failed attempt if there was one, else no attempt at all.
fn unsent(
    req: Request,
    started: jiff::Timestamp,
    ids: Vec<String>,
    attempts: u32,
    last: Option<(Attempt, Failure, Verdict)>,
    error: RecordError,
) -> Record {
    let attempt = last.map(|(a, _, _)| a).unwrap_or_else(no_attempt);
    finish(req, started, ids, attempts, &attempt, Err(error))
}

/// The record's `error` for a spent daily quota: the plain explanation, then the server's.
fn quota_error(f: &Failure, verdict: Verdict) -> RecordError {
    let mut error = record_error(f, verdict);
    error.message = format!("{DAILY_QUOTA_MESSAGE} ({})", error.message);
    error
}

/// The record's `error` for a failure.
fn record_error(f: &Failure, verdict: Verdict) -> RecordError {
    let (status, code) = match f {
        Failure::Http { status, error, .. } => {
            (Some(*status), error.as_deref().and_then(error_code))
        }
        Failure::InBody { error } => (Some(200), error_code(error)),
        _ => (None, None),
    };
    RecordError {
        kind: verdict.kind,
        status,
        code,
        message: describe(f),
    }
}

/// The most specific code an error carries: its `error_type`, else `error.code`.
fn error_code(e: &crate::api::error::ApiError) -> Option<serde_json::Value> {
    e.error_type
        .clone()
        .map(serde_json::Value::String)
        .or_else(|| e.code.clone())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
