//! The batch lane's driver: takes the feeder's requests in place of the pool, groups them per
//! (model, endpoint) into batches and submits them (manifest first); `poll` then polls with
//! backoff and turns result lines into ordinary records. Requests that do not go by batch
//! (`--lane auto` for a model without a `:batch` variant, `--fallback sync`) are handed to the
//! live pool.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::state::{Entry, Event as StateEvent, Known, StateFile};
use super::wire::{self, Batch, Body};
use super::{Fallback, Lane, MAX_BYTES, MAX_REQUESTS, Settings};

mod poll;
use crate::api::Answer;
use crate::catalog::Catalog;
use crate::client::{Client, GetResponse};
use crate::endpoint::Endpoint;
use crate::job::Request;
use crate::output::record::{ErrorKind, Record, RecordError, timestamp};
use crate::output::writer::Event;
use crate::pool::{Pool, StopReason};
use crate::retry::describe;

/// Consecutive 404s tolerated for a batch the server has not shown yet (BATCH.md §3).
const EARLY_404S: u32 = 12;

/// Submits tried for one batch (429, 5xx, unanswered) before its rows are error records.
const SUBMIT_TRIES: u32 = 4;

/// What the lane needs from the run.
pub struct LaneCtx {
    pub client: Client,
    pub settings: Settings,
    pub state: StateFile,
    pub pool: Arc<Pool>,
    /// The run's stop token (Ctrl-C, a fatal error).
    pub stop: CancellationToken,
    pub queue: usize,
    /// `--max-cost` and what earlier runs on this output spent: batches are submitted only
    /// while their worst case at the `:batch` prices fits.
    pub cap: Option<(f64, f64)>,
}

/// What the lane did, for the summary and the state file.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Batches whose records were all sent to the writer: `collected` once written.
    pub collected: Vec<String>,
    /// Batches still running when polling ended (`--wait`, Ctrl-C): what to tell the user.
    pub waiting: Option<String>,
    /// The state file could not be read or written.
    pub failure: Option<String>,
}

/// The first pause between polls; `ORBATCH_BATCH_POLL_MS` sets it (tests poll fast).
fn poll_base() -> Duration {
    std::env::var("ORBATCH_BATCH_POLL_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(Duration::from_secs(5), Duration::from_millis)
}

const POLL_CAP: Duration = Duration::from_secs(60);

/// Requests per batch: [`MAX_REQUESTS`]; `ORBATCH_BATCH_MAX_REQUESTS` lowers it (tests and
/// benchmarks split small inputs into several batches).
fn max_requests() -> usize {
    std::env::var("ORBATCH_BATCH_MAX_REQUESTS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(MAX_REQUESTS, |n| n.clamp(1, MAX_REQUESTS))
}

/// A batch this run polls: submitted now, or found in the state file.
struct Active {
    known: Known,
    /// The requests fed in this run that this batch answers, by custom_id.
    attached: HashMap<String, Request>,
    not_found: u32,
    status: String,
    /// The last progress line's status and counts (a line is written when they change).
    shown: String,
    done: bool,
}

/// Requests waiting to be submitted as one batch.
struct Group {
    body: Body,
    reqs: Vec<(String, Request)>,
}

struct Driver {
    ctx: LaneCtx,
    records: mpsc::Sender<Event>,
    live: Option<mpsc::Sender<Request>>,
    catalog: Option<Catalog>,
    actives: Vec<Active>,
    outcome: Outcome,
    /// Batch ids this output already knows (an ambiguous submit adopts none of them).
    known_ids: HashSet<String>,
    seq: u64,
    /// Worst cases reserved for the rows submitted in this run.
    reserved: f64,
    /// Why rows were held back (`--max-cost`): said once polling is done.
    held: Option<StopReason>,
}

/// Run the lane until the input is drained and every batch is collected, `--wait` passes,
/// or the run stops; the live pool (for rows that do not go by batch) runs alongside.
pub async fn run(
    ctx: LaneCtx,
    mut requests: mpsc::Receiver<Request>,
    records: mpsc::Sender<Event>,
) -> Outcome {
    let (live_tx, live_rx) = mpsc::channel::<Request>(ctx.queue);
    let pool = Arc::clone(&ctx.pool);
    let live_records = records.clone();
    let live = tokio::spawn(async move { pool.run(live_rx, live_records).await });
    let mut d = Driver {
        catalog: None,
        records,
        live: Some(live_tx),
        actives: Vec::new(),
        outcome: Outcome::default(),
        known_ids: HashSet::new(),
        seq: 0,
        reserved: 0.0,
        held: None,
        ctx,
    };
    let index = match d.ctx.state.load() {
        Ok(known) => d.adopt_known(known),
        Err(e) => {
            d.outcome.failure = Some(format!(
                "{}: cannot read the batch state: {e}",
                d.ctx.state.path.display()
            ));
            d.ctx.stop.cancel();
            HashMap::new()
        }
    };
    d.catalog = match crate::catalog::fetch_models(&d.ctx.client).await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(
                "cannot read /models for :batch variants ({e}); submitting <model>:batch"
            );
            None
        }
    };
    d.feed(&mut requests, &index).await;
    d.resolve_ambiguous().await;
    d.poll_all().await;
    if let Some(reason) = d.held.take() {
        d.ctx.pool.stop(reason);
    }
    drop(d.live.take());
    let _ = live.await;
    d.outcome
}

impl Driver {
    /// Batches of earlier runs not yet collected: an index of their requests by (id, model).
    fn adopt_known(
        &mut self,
        known: Vec<Known>,
    ) -> HashMap<(String, String), (usize, String, String)> {
        let mut index = HashMap::new();
        self.seq = known.len() as u64;
        for k in known {
            if let Some(id) = &k.batch_id {
                self.known_ids.insert(id.clone());
            }
            if k.closed {
                continue;
            }
            let at = self.actives.len();
            let mut k = k;
            for (cid, id, _, fp) in std::mem::take(&mut k.requests) {
                index.insert((id, k.model.clone()), (at, cid, fp));
            }
            self.actives.push(Active {
                known: k,
                attached: HashMap::new(),
                not_found: 0,
                status: String::new(),
                shown: String::new(),
                done: false,
            });
        }
        index
    }

    /// The id to submit `model` as, or `None` for the live lane.
    fn batch_model(&self, model: &str) -> Option<String> {
        if model.ends_with(":batch") {
            return Some(model.to_owned());
        }
        let variant = format!("{model}:batch");
        match (&self.catalog, self.ctx.settings.lane) {
            (Some(c), _) if c.get_exact(&variant).is_some() => Some(variant),
            (_, Lane::Batch) => Some(variant),
            _ => None,
        }
    }

    async fn feed(
        &mut self,
        requests: &mut mpsc::Receiver<Request>,
        index: &HashMap<(String, String), (usize, String, String)>,
    ) {
        let mut groups: HashMap<(String, Endpoint), Group> = HashMap::new();
        let max_requests = max_requests();
        loop {
            let req = tokio::select! {
                biased;
                _ = self.ctx.stop.cancelled() => break,
                r = requests.recv() => match r {
                    Some(r) => r,
                    None => break,
                },
            };
            if let Some((at, cid, fp)) = index.get(&(req.id.clone(), req.model.clone()))
                && *fp == req.fingerprint
            {
                // Submitted by an earlier run: polled, never submitted again.
                let mut req = req;
                if self.actives[*at].known.batch_id.is_some()
                    && self.ctx.settings.fallback != Fallback::Sync
                {
                    req.body = serde_json::Map::new();
                }
                self.actives[*at].attached.insert(cid.clone(), req);
                continue;
            }
            let Some(batch_model) = self.batch_model(&req.model) else {
                self.go_live(req).await;
                continue;
            };
            if self.held.is_some() || !self.fits(&req, &batch_model) {
                // Over --max-cost: not submitted, not recorded; a rerun with a higher cap
                // sends it. What was submitted is still polled and collected.
                continue;
            }
            let cid = wire::custom_id(&req);
            let line = Body::line_bytes(&cid, &req.body);
            let key = (req.model.clone(), req.endpoint);
            let endpoint = req.endpoint;
            let group = groups.entry(key.clone()).or_insert_with(|| Group {
                body: Body::new(endpoint, &batch_model),
                reqs: Vec::new(),
            });
            if !group.body.is_empty()
                && (group.body.count() >= max_requests
                    || group.body.len() + line.len() + 1 > MAX_BYTES)
            {
                let full = std::mem::replace(
                    group,
                    Group {
                        body: Body::new(endpoint, &batch_model),
                        reqs: Vec::new(),
                    },
                );
                self.submit(&key.0, endpoint, &batch_model, full).await;
            }
            let group = groups.entry(key).or_insert_with(|| Group {
                body: Body::new(endpoint, &batch_model),
                reqs: Vec::new(),
            });
            group.body.push(&line);
            group.reqs.push((cid, req));
        }
        let mut rest: Vec<_> = groups.into_iter().collect();
        rest.sort_by(|a, b| a.0.0.cmp(&b.0.0));
        for ((model, endpoint), group) in rest {
            if self.ctx.stop.is_cancelled() {
                break;
            }
            if let Some(batch_model) = self.batch_model(&model) {
                self.submit(&model, endpoint, &batch_model, group).await;
            }
        }
    }

    /// Under `--max-cost`: whether `req`'s worst case at `batch_model`'s prices fits, and if
    /// so reserve it. Batches are paid once they finish, so nothing is released in the run.
    fn fits(&mut self, req: &Request, batch_model: &str) -> bool {
        let Some((cap, spent)) = self.ctx.cap else {
            return true;
        };
        let price = self
            .catalog
            .as_ref()
            .and_then(|c| c.get_exact(batch_model))
            .and_then(|m| m.pricing);
        let Some(price) = price else {
            self.held = Some(StopReason::Unpriced(format!(
                "--max-cost: /models has no price for {batch_model}, so its cost cannot be bounded"
            )));
            return false;
        };
        let bound = crate::estimate::max_completion(&req.body)
            .unwrap_or(crate::budget::DEFAULT_COMPLETION_BOUND);
        let worst = price.cost(crate::estimate::prompt_tokens(&req.body), bound);
        if spent + self.reserved + worst > cap {
            self.held = Some(StopReason::Budget(format!(
                "--max-cost {} reached: {} spent before, {} reserved for the batches \
                 submitted (at {batch_model}'s prices), and the next row could cost up to {}",
                crate::text::usd(cap),
                crate::text::usd(spent),
                crate::text::usd(self.reserved),
                crate::text::usd(worst)
            )));
            return false;
        }
        self.reserved += worst;
        true
    }

    async fn go_live(&mut self, req: Request) {
        if let Some(live) = &self.live {
            let _ = live.send(req).await;
        }
    }

    fn state_append(&mut self, events: &[StateEvent]) -> bool {
        match self.ctx.state.append(events) {
            Ok(()) => true,
            Err(e) => {
                self.outcome.failure = Some(format!(
                    "{}: cannot write the batch state: {e}",
                    self.ctx.state.path.display()
                ));
                self.ctx.stop.cancel();
                false
            }
        }
    }

    /// Write the manifest, then submit; the batch id is written the moment the server
    /// answers. A submit whose answer never came is looked for before it is sent again.
    async fn submit(&mut self, model: &str, endpoint: Endpoint, batch_model: &str, group: Group) {
        self.seq += 1;
        let at = jiff::Timestamp::now().as_second();
        let r#ref = format!("b{}-{at}", self.seq);
        let requests: Vec<Entry> = group
            .reqs
            .iter()
            .map(|(cid, r)| (cid.clone(), r.id.clone(), r.row, r.fingerprint.clone()))
            .collect();
        let known = Known {
            r#ref: r#ref.clone(),
            endpoint,
            model: model.to_owned(),
            batch_model: batch_model.to_owned(),
            at,
            requests: Vec::new(),
            count: requests.len(),
            batch_id: None,
            closed: false,
        };
        if !self.state_append(&[StateEvent::Manifest {
            r#ref: r#ref.clone(),
            endpoint,
            model: model.to_owned(),
            batch_model: batch_model.to_owned(),
            at,
            requests,
        }]) {
            return;
        }
        let count = group.reqs.len();
        let attached: HashMap<String, Request> = group.reqs.into_iter().collect();
        let bytes = group.body.finish();
        let mut active = Active {
            known,
            attached,
            not_found: 0,
            status: "validating".into(),
            shown: String::new(),
            done: false,
        };
        let mut delay = poll_base();
        for attempt in 1..=SUBMIT_TRIES {
            let answer = self
                .ctx
                .client
                .call_bytes(Method::POST, &self.ctx.settings.path, Some(bytes.clone()))
                .await;
            let resp = match answer {
                Ok(resp) if (200..300).contains(&resp.status) => resp,
                Ok(resp) if resp.status == 429 => {
                    self.pause(delay).await;
                    delay = (delay * 2).min(POLL_CAP);
                    continue;
                }
                Ok(resp) if resp.status != 408 && resp.status < 500 => {
                    self.refused(active, &resp).await;
                    return;
                }
                // Unanswered, timed out or a 5xx: the batch may exist. Look before resending.
                other => {
                    let why = match other {
                        Ok(r) => format!("HTTP {}", r.status),
                        Err(f) => describe(&f),
                    };
                    tracing::warn!(
                        "{model}: the submit of {count} requests got no answer ({why}); \
                         looking for the batch before sending it again"
                    );
                    self.pause(delay).await;
                    delay = (delay * 2).min(POLL_CAP);
                    if let Some(found) = self.find_submitted(&active.known).await {
                        self.submitted(&mut active, found);
                        self.actives.push(active);
                        return;
                    }
                    if attempt == SUBMIT_TRIES {
                        let error = RecordError {
                            kind: ErrorKind::Transient,
                            status: None,
                            code: None,
                            message: format!(
                                "the Batch API did not take the batch ({why}); a rerun sends it again"
                            ),
                        };
                        let _ = self.state_append(&[StateEvent::Refused {
                            r#ref: active.known.r#ref.clone(),
                            message: error.message.clone(),
                        }]);
                        self.fail_all(&mut active, None, error, true).await;
                        return;
                    }
                    continue;
                }
            };
            match Batch::from_json(&resp.body) {
                Some(b) => {
                    self.submitted(&mut active, b.id.clone());
                    tracing::info!(
                        target: crate::ui::PROGRESS,
                        "batch {} ({model}, {count} requests): submitted, {}",
                        b.id,
                        if b.status.is_empty() {
                            "validating"
                        } else {
                            &b.status
                        }
                    );
                    self.actives.push(active);
                }
                None => {
                    // A 2xx without a batch id: created or not, nobody can tell; look for it.
                    if let Some(found) = self.find_submitted(&active.known).await {
                        self.submitted(&mut active, found);
                    }
                    self.actives.push(active);
                }
            }
            return;
        }
        // Every try was a 429.
        let error = RecordError {
            kind: ErrorKind::RateLimited,
            status: Some(429),
            code: None,
            message: "the Batch API kept answering 429; a rerun sends these rows again".into(),
        };
        let _ = self.state_append(&[StateEvent::Refused {
            r#ref: active.known.r#ref.clone(),
            message: error.message.clone(),
        }]);
        self.fail_all(&mut active, None, error, true).await;
    }

    fn submitted(&mut self, active: &mut Active, batch_id: String) {
        self.known_ids.insert(batch_id.clone());
        let _ = self.state_append(&[StateEvent::Submitted {
            r#ref: active.known.r#ref.clone(),
            batch_id: batch_id.clone(),
        }]);
        active.known.batch_id = Some(batch_id);
        self.drop_bodies(active);
    }

    /// Once a batch exists, its rows' bodies are needed again only to send them live
    /// (`--fallback sync`): otherwise they are dropped (a quarter of the lane's memory).
    fn drop_bodies(&self, active: &mut Active) {
        if self.ctx.settings.fallback != Fallback::Sync {
            for req in active.attached.values_mut() {
                req.body = serde_json::Map::new();
            }
        }
    }

    /// A submit the server refused (nothing was created).
    async fn refused(&mut self, mut active: Active, resp: &GetResponse) {
        let message = resp
            .error()
            .map(|e| crate::text::sanitize(&e.message))
            .unwrap_or_else(|| format!("HTTP {}", resp.status));
        let _ = self.state_append(&[StateEvent::Refused {
            r#ref: active.known.r#ref.clone(),
            message: message.clone(),
        }]);
        let model = active.known.model.clone();
        match resp.status {
            401 | 403 => {
                self.ctx.pool.stop(StopReason::Auth(format!(
                    "the Batch API refused the key: {message}"
                )));
            }
            402 => {
                self.ctx.pool.stop(StopReason::Credits(format!(
                    "the Batch API refused the submit: {message}"
                )));
            }
            // Too large for the server: the same rows as two batches of half the size.
            413 if active.attached.len() > 1 => {
                let known = active.known.clone();
                let mut reqs: Vec<(String, Request)> = active.attached.drain().collect();
                reqs.sort_by_key(|(_, r)| r.row);
                let second = reqs.split_off(reqs.len() / 2);
                tracing::warn!(
                    "{model}: a batch of {} requests was too large ({message}); sending it as \
                     two of {} and {}",
                    reqs.len() + second.len(),
                    reqs.len(),
                    second.len()
                );
                for half in [reqs, second] {
                    let mut group = Group {
                        body: Body::new(known.endpoint, &known.batch_model),
                        reqs: Vec::new(),
                    };
                    for (cid, req) in half {
                        group.body.push(&Body::line_bytes(&cid, &req.body));
                        group.reqs.push((cid, req));
                    }
                    Box::pin(self.submit(&known.model, known.endpoint, &known.batch_model, group))
                        .await;
                }
            }
            _ => {
                let no_batch = message.contains(":batch endpoint");
                let hint = if no_batch {
                    "; --lane auto sends such models live, or --fallback sync"
                } else {
                    ""
                };
                if no_batch {
                    tracing::warn!("{model}: {message}");
                }
                let error = RecordError {
                    kind: if resp.status == 413 {
                        ErrorKind::BadRequest
                    } else {
                        crate::retry::classify(&crate::retry::Failure::Http {
                            status: resp.status,
                            error: resp.error().map(Box::new),
                            retry_after: None,
                            limit_reset: None,
                        })
                        .kind
                    },
                    status: Some(resp.status),
                    code: resp.error().and_then(|e| e.code),
                    message: format!("the Batch API refused the batch: {message}{hint}"),
                };
                let live_ok = no_batch;
                self.fail_all(&mut active, None, error, live_ok).await;
            }
        }
    }

    /// Look for a batch created by an unanswered submit: same model and request count,
    /// created since the manifest was written, not known to this output.
    async fn find_submitted(&self, known: &Known) -> Option<String> {
        let path = format!(
            "{}?limit=100&created_after={}",
            self.ctx.settings.path,
            known.at - 120
        );
        let resp = self.ctx.client.get(&path).await.ok()?;
        if resp.status != 200 {
            return None;
        }
        let data = resp.body.get("data")?.as_array()?;
        let mut found: Vec<Batch> = data
            .iter()
            .filter_map(Batch::from_json)
            .filter(|b| {
                b.model == known.batch_model
                    && b.total == known.count as u64
                    && !self.known_ids.contains(&b.id)
            })
            .collect();
        // Oldest first: the list is newest first.
        found.reverse();
        found.into_iter().next().map(|b| b.id)
    }

    /// Manifests of earlier runs without a batch id: found by listing, or sent again.
    async fn resolve_ambiguous(&mut self) {
        for i in 0..self.actives.len() {
            if self.ctx.stop.is_cancelled() {
                return;
            }
            let a = &self.actives[i];
            if a.known.batch_id.is_some() || a.attached.is_empty() || a.done {
                continue;
            }
            let known = a.known.clone();
            if let Some(id) = self.find_submitted(&known).await {
                tracing::warn!("batch {id}: found on the server (its submit was not answered)");
                let mut active = std::mem::replace(
                    &mut self.actives[i],
                    Active {
                        known: known.clone(),
                        attached: HashMap::new(),
                        not_found: 0,
                        status: String::new(),
                        shown: String::new(),
                        done: true,
                    },
                );
                self.submitted(&mut active, id);
                self.actives[i] = active;
                continue;
            }
            // Not created: send its rows again, as a new batch.
            let _ = self.state_append(&[StateEvent::Refused {
                r#ref: known.r#ref.clone(),
                message: "not found on the server after an unanswered submit".into(),
            }]);
            self.actives[i].done = true;
            let attached = std::mem::take(&mut self.actives[i].attached);
            let mut group = Group {
                body: Body::new(known.endpoint, &known.batch_model),
                reqs: Vec::new(),
            };
            let mut reqs: Vec<(String, Request)> = attached.into_iter().collect();
            reqs.sort_by_key(|(_, r)| r.row);
            for (cid, req) in reqs {
                group.body.push(&Body::line_bytes(&cid, &req.body));
                group.reqs.push((cid, req));
            }
            self.submit(&known.model, known.endpoint, &known.batch_model, group)
                .await;
        }
    }

    async fn pause(&self, d: Duration) {
        tokio::select! {
            _ = self.ctx.stop.cancelled() => {}
            _ = tokio::time::sleep(d) => {}
        }
    }

    /// Every row still attached to `a` fails with `error` (or goes live, `--fallback sync`).
    async fn fail_all(
        &mut self,
        a: &mut Active,
        id: Option<&str>,
        error: RecordError,
        live_ok: bool,
    ) {
        let mut rest: Vec<Request> = a.attached.drain().map(|(_, r)| r).collect();
        rest.sort_by_key(|r| r.row);
        for req in rest {
            self.fail_row(req, id, error.clone(), live_ok).await;
        }
    }

    async fn fail_row(
        &mut self,
        req: Request,
        id: Option<&str>,
        error: RecordError,
        live_ok: bool,
    ) {
        let live = live_ok
            && (self.ctx.settings.fallback == Fallback::Sync
                || (self.ctx.settings.lane == Lane::Auto && id.is_none()));
        if live {
            self.go_live(req).await;
            return;
        }
        let started = timestamp(jiff::Timestamp::now());
        let mut record = record(req, id.unwrap_or_default(), &started, Err(error));
        if id.is_none() {
            record.batch_id = None;
        }
        let _ = self.records.send(Event::Record(Box::new(record))).await;
    }
}

/// The record of one batch row: as the live lane's, with `lane: "batch"` and the batch id.
fn record(
    req: Request,
    batch_id: &str,
    started: &str,
    outcome: Result<Answer, RecordError>,
) -> Record {
    let made = crate::pool::Made {
        generation_id: None,
        generation_ids: outcome
            .as_ref()
            .ok()
            .and_then(|a| a.generation_id.clone())
            .into_iter()
            .collect(),
        attempts: 1,
        latency_ms: None,
        ttft_ms: None,
        started_at: started.to_owned(),
    };
    let mut record = crate::pool::record_of(req, outcome, made);
    record.lane = Some("batch".into());
    record.batch_id = Some(batch_id.to_owned());
    record
}
