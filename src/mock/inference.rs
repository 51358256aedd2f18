//! The request pipeline shared by `/chat/completions` and `/responses`: authentication, body
//! parsing, server-side limits, fault selection (directives first, then the seeded knobs), the
//! endpoint-independent fault answers, and the billing of what was produced.
//!
//! Billing rules (what a generation costs):
//! * HTTP errors (4xx/429/5xx, `html502`) and dropped connections issue no generation and cost
//!   nothing, including 5xx "provider errors" (kept simple).
//! * `err200`, `empty200`, `garbage200` and `stall` issue a generation (the `X-Generation-Id`
//!   header is sent) that costs 0 (zero-completion insurance).
//! * Answers bill `prompt_tokens × prompt price + completion_tokens × completion price` where
//!   completion tokens are the words actually produced: a stream cut, failed mid-way or
//!   abandoned by the client bills the words sent so far; a non-streaming answer (also a
//!   truncated body or `choice-error`) bills what it contains, in full.
//! * Only complete answers (full body, or stream up to `[DONE]`) count as `answered`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::answer::{self, Prompted};
use super::config::MidStreamBilling;
use super::directives;
use super::faults::{self, Fault, RANDOM_5XX};
use super::json;
use super::keys::{self, Caller};
use super::pricing::{self, Price};
use super::server::ConnKill;
use super::state::{Flight, Generation, Shared};
use crate::endpoint::Endpoint;

/// An admitted inference request and the fault (if any) chosen for it.
pub struct Ctx {
    pub state: Arc<Shared>,
    pub req: Prompted,
    /// Stable key of (model, prompt).
    pub key: u64,
    pub fault: Option<Fault>,
    pub retry_after: Option<u64>,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
    /// Held while this request is answered (streams: until the stream ends).
    pub flight: Option<Arc<Flight>>,
    /// The created key (`/keys`) the request was made with: what it costs is billed to it.
    pub key_hash: Option<String>,
}

/// How an answer ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Full answer with usage (stream: usage chunk and `[DONE]`).
    Complete,
    /// Provider error after some output (`finish_reason:"error"`).
    Error,
    /// Cut short (stream without usage/[DONE]; non-stream body cut mid-JSON).
    Cut,
    /// A stream cut short that still says `[DONE]` (no finish chunk, no usage).
    Interrupted,
}

/// Everything an endpoint needs to render one answer.
pub struct Plan {
    pub id: String,
    pub created: i64,
    /// Model id reported in the body (may be a dated permaslug).
    pub model: String,
    pub provider: &'static str,
    pub prompt_tokens: u64,
    /// The words produced (the deltas of a stream are these words, space-separated).
    pub words: Vec<String>,
    /// The length of the whole answer (more than `words` when it fails half-way).
    pub planned_tokens: u64,
    pub finish: &'static str,
    pub ending: Ending,
    pub price: Price,
    /// Whether `usage` carries `cost` (OpenRouter) or only tokens (`--no-cost`).
    pub with_cost: bool,
    /// Whether a stream ends with a usage chunk (`--usage-only-if-asked` without
    /// `stream_options.include_usage`: no).
    pub stream_usage: bool,
    /// Served on the user's own provider key (`--byok-rate`).
    pub byok: bool,
    /// The tier reported (`None` for servers that are not OpenRouter: `--no-cost`).
    pub service_tier: Option<&'static str>,
}

impl Plan {
    pub fn text(&self) -> String {
        self.words.join(" ")
    }

    pub fn completion_tokens(&self) -> u64 {
        self.words.len() as u64
    }

    /// What OpenRouter charges to the credit balance (`usage.cost`): the list price, or the
    /// BYOK fee.
    pub fn cost(&self, completion_tokens: u64) -> f64 {
        let list = self.upstream(completion_tokens);
        if self.byok {
            list * pricing::BYOK_FEE
        } else {
            list
        }
    }

    /// What the provider charges (`cost_details.upstream_inference_cost`): the list price.
    pub fn upstream(&self, completion_tokens: u64) -> f64 {
        self.price.cost(self.prompt_tokens, completion_tokens)
    }
}

/// Authenticate, parse and police one inference request; `Err` is the answer to send now.
pub async fn admit(
    state: Arc<Shared>,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: &[u8],
    kill: Option<ConnKill>,
) -> Result<Ctx, Response> {
    state.count_request();
    let ctx = match police(&state, endpoint, headers, body) {
        Ok(ctx) => ctx,
        Err(resp) => return Err(counted(&state, resp)),
    };
    let Some(fault) = ctx.fault.clone() else {
        return Ok(ctx);
    };
    if let Some(resp) = generic_fault(&ctx, &fault, kill).await {
        return Err(counted(&state, resp));
    }
    Ok(ctx)
}

// The error is the (rare) answer to send; boxing it would only add an allocation.
#[allow(clippy::result_large_err)]
fn police(
    state: &Arc<Shared>,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Ctx, Response> {
    let key_hash = who(state, headers)?;
    let req = answer::parse(endpoint, body).map_err(|m| faults::bad_request(&m))?;
    if req.model.contains("invalid") {
        return Err(faults::bad_request(&format!(
            "{} is not a valid model ID",
            req.model
        )));
    }
    if req.schema.is_some() && req.require_parameters && req.model.contains(json::NO_STRUCTURED) {
        return Err(faults::envelope(
            404,
            serde_json::json!({"code": 404, "message": json::NO_ENDPOINT_MESSAGE}),
        ));
    }
    if let Some(rps) = state.config.rate_limit
        && !state.admit(rps)
    {
        return Err(rate_limited());
    }
    if let Some(bucket) = state.config.rate_limit_bucket
        && !state.take_token(bucket)
    {
        return Err(faults::status_response(429, state.config.retry_after));
    }
    let flight = match state.config.max_in_flight {
        Some(max) => match state.take_off(max) {
            Some(f) => Some(Arc::new(f)),
            None => return Err(faults::inflight_402(1)),
        },
        None => None,
    };
    if let Some(limit) = state.config.credit_limit
        && state.billed() >= limit
    {
        return Err(faults::status_response(402, None));
    }
    let key = crate::hash::key64(&req.prompt, &req.model);
    let (fault, retry_after) = choose_fault(state, &req, key);
    Ok(Ctx {
        state: state.clone(),
        key,
        fault,
        retry_after,
        referer: header_string(headers, "http-referer"),
        user_agent: header_string(headers, "user-agent"),
        flight,
        key_hash,
        req,
    })
}

/// Authenticate: a key created through `/keys` (refused once disabled, expired or at its
/// limit; it is billed for what it uses), or the account's key (`--require-key`, else any).
/// The management key cannot make completions.
#[allow(clippy::result_large_err)]
pub(super) fn who(state: &Shared, headers: &HeaderMap) -> Result<Option<String>, Response> {
    if !has_header(state.config.require_header.as_deref(), headers) {
        return Err(faults::unauthorized());
    }
    let token = keys::bearer(headers);
    match state
        .keys
        .caller(state.config.management_key.as_deref(), token)
    {
        Caller::Management => Err(keys::management_key_used_for_inference()),
        Caller::Created(hash) => match state.keys.admit(&hash, jiff::Timestamp::now()) {
            Ok(()) => Ok(Some(hash)),
            Err(refusal) => Err(keys::refused(refusal, state.config.key_limit_status)),
        },
        Caller::Nobody | Caller::Other if authorized(&state.config.require_key, headers) => {
            Ok(None)
        }
        _ => Err(faults::unauthorized()),
    }
}

fn header_string(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Whether `headers` has `required` ('Name: value'), or nothing is required.
fn has_header(required: Option<&str>, headers: &HeaderMap) -> bool {
    let Some((name, value)) = required.and_then(|r| r.split_once(':')) else {
        return true;
    };
    headers
        .get(name.trim())
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == value.trim())
}

/// `Authorization: Bearer <non-empty>`, equal to `require_key` when that is set.
fn authorized(require_key: &Option<String>, headers: &HeaderMap) -> bool {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    match require_key {
        _ if token.is_empty() => false,
        Some(key) => token == key,
        None => true,
    }
}

/// The 429 of the server-side limiter.
fn rate_limited() -> Response {
    let error = serde_json::json!({
        "code": 429,
        "message": "Rate limit exceeded: too many requests per second",
        "metadata": { "error_type": "rate_limit_exceeded", "retry_after_seconds": 1 }
    });
    let mut resp = faults::envelope(429, error);
    faults::set_retry_after(&mut resp, Some(1));
    resp
}

/// Directives in the prompt win; otherwise the probabilistic knobs decide.
fn choose_fault(state: &Shared, req: &Prompted, key: u64) -> (Option<Fault>, Option<u64>) {
    let default_retry = state.config.retry_after;
    let found = directives::parse_all(&req.prompt);
    if !found.is_empty() {
        let attempt = state.next_attempt(key);
        return match directives::select(&found, attempt) {
            Some(d) => {
                let retry = d.retry_after.or(retry_default_for(&d.fault, default_retry));
                (Some(d.fault.clone()), retry)
            }
            None => (None, None),
        };
    }
    let fault = random_fault(state, req.stream);
    let retry = fault
        .as_ref()
        .and_then(|f| retry_default_for(f, default_retry));
    (fault, retry)
}

/// `--retry-after` applies to 429s and 503s.
fn retry_default_for(fault: &Fault, default: Option<u64>) -> Option<u64> {
    matches!(fault, Fault::Status(429) | Fault::Status(503))
        .then_some(default)
        .flatten()
}

fn random_fault(state: &Shared, stream: bool) -> Option<Fault> {
    let c = &state.config;
    let mid = if stream { c.rate_mid_stream_error } else { 0.0 };
    let total = c.rate_429 + c.rate_5xx + c.rate_drop + c.rate_200_error + mid + c.rate_truncate;
    if total <= 0.0 {
        return None;
    }
    let (u, pick) = state.draw(RANDOM_5XX.len());
    let mut edge = c.rate_429;
    if u < edge {
        return Some(Fault::Status(429));
    }
    edge += c.rate_5xx;
    if u < edge {
        return Some(Fault::Status(RANDOM_5XX[pick]));
    }
    edge += c.rate_drop;
    if u < edge {
        return Some(Fault::Drop);
    }
    edge += c.rate_200_error;
    if u < edge {
        return Some(if state.flip() {
            Fault::Err200
        } else {
            Fault::ChoiceError
        });
    }
    edge += mid;
    if u < edge {
        return Some(Fault::MidStreamError);
    }
    (u < edge + c.rate_truncate).then_some(Fault::Truncate)
}

/// Answer the faults that look the same on both endpoints; `None` = the endpoint renders it.
async fn generic_fault(ctx: &Ctx, fault: &Fault, kill: Option<ConnKill>) -> Option<Response> {
    let state = &ctx.state;
    let resp = match fault {
        Fault::Status(code) => faults::status_response(*code, ctx.retry_after),
        Fault::Inflight402 => faults::inflight_402(ctx.retry_after.unwrap_or(1)),
        Fault::FreeDaily429 => faults::free_daily_429(jiff::Timestamp::now()),
        Fault::Html502 => faults::html_502(),
        Fault::Drop => {
            sleep(state.latency()).await;
            state.count_status(0);
            return Some(drop_connection(kill).await);
        }
        Fault::Err200 | Fault::Empty200 | Fault::Garbage200 | Fault::Stall => {
            zero_cost_200(ctx, fault)
        }
        _ => return None,
    };
    if !matches!(fault, Fault::Stall) {
        sleep(state.latency()).await;
    }
    Some(resp)
}

/// Close the connection without sending anything: the per-connection kill switch makes the
/// server drop the connection's future (and socket); this handler then never completes.
/// Without a kill switch (not served by `server.rs`), fall back to a body that fails at once,
/// which makes hyper abort the connection.
async fn drop_connection(kill: Option<ConnKill>) -> Response {
    match kill {
        Some(kill) => {
            kill.fire();
            std::future::pending::<()>().await;
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        None => {
            let failing = futures::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::other("mock drop"))
            });
            Response::new(Body::from_stream(failing))
        }
    }
}

/// The 200s that carry no answer: a generation is issued (header) and billed at 0.
fn zero_cost_200(ctx: &Ctx, fault: &Fault) -> Response {
    let plan = plan(ctx, None);
    Bill::new(ctx, &plan, ctx.req.stream).settle_free("error");
    let content_type = if ctx.req.stream {
        "text/event-stream"
    } else {
        "application/json"
    };
    let body = match fault {
        Fault::Err200 => {
            let error = faults::provider_error(plan.provider);
            let json = serde_json::json!({ "error": error, "user_id": "user_mock" });
            if ctx.req.stream {
                Body::from(format!("data: {json}\n\n"))
            } else {
                Body::from(json.to_string())
            }
        }
        Fault::Garbage200 => Body::from("not json"),
        Fault::Stall => delayed_body(Duration::from_secs(3600), Bytes::new()),
        _ => Body::empty(),
    };
    ok_response(&plan.id, content_type, body)
}

/// A 200 with `X-Generation-Id` and `content_type`.
pub fn ok_response(id: &str, content_type: &'static str, body: Body) -> Response {
    let mut resp = Response::new(body);
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if content_type == "text/event-stream" {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    if let Ok(v) = HeaderValue::from_str(id) {
        headers.insert("x-generation-id", v);
    }
    resp
}

/// A body that sends nothing for `delay`, then `bytes`.
pub fn delayed_body(delay: Duration, bytes: Bytes) -> Body {
    let stream = futures::stream::once(async move {
        tokio::time::sleep(delay).await;
        Ok::<Bytes, std::io::Error>(bytes)
    });
    Body::from_stream(stream)
}

/// A non-streaming 200 body, after `--stall-ms` if set.
pub fn json_body(state: &Shared, bytes: Bytes) -> Body {
    match state.config.stall_ms {
        0 => Body::from(bytes),
        ms => delayed_body(Duration::from_millis(ms), bytes),
    }
}

/// Count the status of an inference answer, pass it through.
pub fn counted(state: &Shared, resp: Response) -> Response {
    state.count_status(resp.status().as_u16());
    resp
}

pub async fn sleep(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

/// Decide what the answer contains for `ctx` (issues the generation id).
pub fn plan(ctx: &Ctx, fault: Option<&Fault>) -> Plan {
    let req = &ctx.req;
    let expected = answer::expected_directive(&req.prompt);
    let oracle = expected.as_ref().or_else(|| {
        ctx.state
            .config
            .oracle
            .as_ref()
            .and_then(|o| o.get(&crate::hash::hash64(req.prompt.as_bytes())))
    });
    let schema = req
        .schema
        .as_ref()
        .filter(|_| !req.model.contains(json::NO_STRUCTURED));
    let full = match (schema, oracle, ctx.state.config.completion_spread) {
        (Some(schema), _, _) => {
            let mode = json::mode(&ctx.state, &req.prompt, req.ask);
            json::words(schema, mode, ctx.key)
        }
        (None, Some(expected), _) => answer::oracle_words(&req.model, &req.prompt, expected),
        (None, None, spread) => answer::judge_words(&req.prompt).unwrap_or_else(|| match spread {
            Some(spread) => answer::spread_words(&req.model, &req.prompt, spread),
            None => answer::answer_words(&req.model, &req.prompt),
        }),
    };
    let (words, hit_limit) = answer::limited(full, req.max_tokens);
    let planned_tokens = words.len() as u64;
    let normal = if hit_limit { "length" } else { "stop" };
    let half = |w: Vec<String>| {
        let keep = (w.len() / 2).max(1).min(w.len());
        w.into_iter().take(keep).collect::<Vec<_>>()
    };
    let (words, finish, ending) = match fault {
        Some(Fault::LengthEmpty) => (Vec::new(), "length", Ending::Complete),
        Some(Fault::ContentFilter) => (Vec::new(), "content_filter", Ending::Complete),
        Some(Fault::ChoiceError | Fault::MidStreamError) => (half(words), "error", Ending::Error),
        Some(Fault::Truncate) if req.stream => (half(words), normal, Ending::Cut),
        Some(Fault::Truncate) => (words, normal, Ending::Cut),
        Some(Fault::Interrupted) if req.stream => (half(words), normal, Ending::Interrupted),
        Some(Fault::Interrupted) => (words, normal, Ending::Cut),
        _ => (words, normal, Ending::Complete),
    };
    let (tier, factor) = pricing::tier(req.service_tier.as_deref());
    let list = pricing::price_of(&req.model);
    let byok_rate = ctx.state.config.byok_rate;
    let byok = byok_rate > 0.0 && {
        let h = crate::hash::hash64(format!("{}\n{}", req.model, req.prompt).as_bytes());
        (h as f64 / u64::MAX as f64) < byok_rate
    };
    Plan {
        id: ctx.state.new_generation_id(),
        created: jiff::Timestamp::now().as_second(),
        model: pricing::served_model(&req.model),
        provider: pricing::provider_of(&req.model),
        prompt_tokens: answer::counted(answer::prompt_tokens(req), ctx.state.config.token_factor),
        words,
        planned_tokens,
        finish,
        ending,
        price: Price {
            prompt: list.prompt * factor,
            completion: list.completion * factor,
        },
        with_cost: !ctx.state.config.no_cost,
        byok,
        service_tier: (!ctx.state.config.no_cost).then_some(tier),
        stream_usage: req.include_usage || !ctx.state.config.usage_only_if_asked,
    }
}

/// Records the generation of one answer exactly once. If dropped unsettled (the client went
/// away mid-stream), it bills the words sent so far as a cancelled generation.
pub struct Bill {
    state: Arc<Shared>,
    /// The request stays in flight until its bill is settled (or the stream is dropped).
    _flight: Option<Arc<Flight>>,
    generation: Option<Generation>,
    key: u64,
    started: std::time::Instant,
    price: Price,
    byok: bool,
    /// The created key to bill, if the request used one.
    key_hash: Option<String>,
}

impl Bill {
    pub fn new(ctx: &Ctx, plan: &Plan, streamed: bool) -> Bill {
        let generation = Generation {
            id: plan.id.clone(),
            model: plan.model.clone(),
            provider: plan.provider,
            prompt_tokens: plan.prompt_tokens,
            completion_tokens: 0,
            cost: plan.cost(0),
            upstream_cost: plan.upstream(0),
            is_byok: plan.byok,
            service_tier: plan.service_tier,
            finish_reason: plan.finish,
            streamed,
            cancelled: false,
            latency_ms: 0,
            created_at: jiff::Timestamp::now(),
            http_referer: ctx.referer.clone(),
            user_agent: ctx.user_agent.clone(),
            recorded: std::time::Instant::now(),
        };
        Bill {
            state: ctx.state.clone(),
            _flight: ctx.flight.clone(),
            generation: Some(generation),
            key: ctx.key,
            started: std::time::Instant::now(),
            price: plan.price,
            byok: plan.byok,
            key_hash: ctx.key_hash.clone(),
        }
    }

    /// Note that `completion_tokens` words have been sent so far.
    pub fn sent(&mut self, completion_tokens: u64) {
        if let Some(g) = self.generation.as_mut() {
            g.completion_tokens = completion_tokens;
            g.upstream_cost = self.price.cost(g.prompt_tokens, completion_tokens);
            g.cost = if self.byok {
                g.upstream_cost * pricing::BYOK_FEE
            } else {
                g.upstream_cost
            };
        }
    }

    /// Record with the plan's figures; `answered` counts a complete answer.
    pub fn settle(mut self, completion_tokens: u64, answered: bool) {
        self.sent(completion_tokens);
        self.record(None, answered, false);
    }

    /// The completion tokens a stream that failed after `sent` is billed for
    /// (`--mid-stream-billing`); `None`: nothing at all.
    pub fn failed_stream_tokens(&self, sent: u64, planned: u64) -> Option<u64> {
        match self.state.config.mid_stream_billing {
            MidStreamBilling::Sent => Some(sent),
            MidStreamBilling::Full => Some(planned.max(sent)),
            MidStreamBilling::None => None,
        }
    }

    /// Bill a stream that failed mid-answer after `sent` tokens, as `--mid-stream-billing` says.
    pub fn settle_failed_stream(self, sent: u64, planned: u64) {
        match self.failed_stream_tokens(sent, planned) {
            Some(n) => self.settle(n, false),
            None => self.settle_free("error"),
        }
    }

    /// Record a generation that produced no answer: no tokens, cost 0.
    pub fn settle_free(mut self, finish: &'static str) {
        if let Some(g) = self.generation.as_mut() {
            g.cost = 0.0;
            g.upstream_cost = 0.0;
        }
        self.record(Some(finish), false, false);
    }

    fn record(&mut self, finish: Option<&'static str>, answered: bool, cancelled: bool) {
        if let Some(mut g) = self.generation.take() {
            if let Some(f) = finish {
                g.finish_reason = f;
            }
            g.cancelled = cancelled;
            g.latency_ms = self.started.elapsed().as_millis() as u64;
            g.recorded = std::time::Instant::now();
            if let Some(hash) = &self.key_hash {
                let byok = if g.is_byok { g.upstream_cost } else { 0.0 };
                self.state.keys.bill(hash, g.cost, byok);
            }
            self.state.record(g, answered.then_some(self.key));
        }
    }
}

impl Drop for Bill {
    fn drop(&mut self) {
        self.record(None, false, true);
    }
}
