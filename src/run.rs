//! `orbatch run`: validate the input, open (and resume) the output, then feed requests to
//! the pool and records to the writer until the input runs out or the run is stopped.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::budget::Budget;
use crate::client::Client;
use crate::config::{RunConfig, Target};
use crate::connect::{ClientOptions, Connection};
use crate::exit::{Exit, Failure, UsageError};
use crate::hash::hash64;
use crate::job::rows::each_row;
use crate::job::{Input, InputSource, Request, RequestKeys};
use crate::limit::Pacer;
use crate::mock::MockConfig;
use crate::output::resume::{self, Opened, ReadAhead};
use crate::output::writer::{self, Tally};
use crate::pool::{Pool, PoolConfig, StopReason};
use crate::progress::Progress;
use crate::retry::Backoff;
use crate::score::job::expected_text;
use crate::text::usd;
use feed::{Fed, Feeder};

/// What happened, for the summary and the exit code.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub input: String,
    pub output: PathBuf,
    /// Selected rows and (row × model) requests in the input.
    pub rows: u64,
    pub requests: u64,
    /// Answered ok by an earlier run with the same request: skipped.
    pub skipped_done: u64,
    /// Answered before, but the request changed since: sent again.
    pub changed: u64,
    /// Failed before: sent again.
    pub retried_errors: u64,
    /// Failed before and kept as they are (`--no-retry-errors`).
    pub kept_errors: u64,
    /// Records written by this run.
    pub tally: Tally,
    pub wall: Duration,
    pub stopped: Option<StopReason>,
    /// What went wrong after requests were sent (the input changed, the output could not be
    /// written, a task panicked): the run stopped early, yet recorded what was answered.
    pub failure: Option<String>,
    /// Batch lane: batches still running when polling stopped (`--wait`): exit 1, a rerun
    /// continues polling.
    pub waiting: Option<String>,
}

impl RunSummary {
    /// The exit code of SPEC §5.
    pub fn exit(&self) -> Exit {
        if self.failure.is_some() {
            return Exit::Stopped;
        }
        match &self.stopped {
            Some(StopReason::Interrupted) => Exit::Interrupted,
            Some(StopReason::Unusable(alarm)) if alarm.is_config() => Exit::Usage,
            Some(_) => Exit::Stopped,
            None if self.tally.failed + self.kept_errors > 0 || self.waiting.is_some() => {
                Exit::RowsFailed
            }
            None => Exit::Ok,
        }
    }
}

/// Testing seam: environment-controlled backoff base, so tests of retries do not sleep for
/// real. `ORBATCH_BACKOFF_BASE_MS=0` makes retries immediate (Retry-After still applies).
fn backoff_from_env() -> Backoff {
    let mut b = Backoff::default();
    if let Some(ms) = std::env::var("ORBATCH_BACKOFF_BASE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        b.base = Duration::from_millis(ms);
    }
    b
}

/// The pacer; `ORBATCH_FREE_RPM` changes the `:free`-model limit (for tests).
fn pacer_from_env(rate: Option<crate::limit::Rate>) -> Pacer {
    match std::env::var("ORBATCH_FREE_RPM")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|r| *r > 0.0)
    {
        Some(rpm) => Pacer::with_free_rpm(rate, rpm),
        None => Pacer::new(rate),
    }
}

/// The mock server `--mock` runs against: a little latency so the run looks like one. It
/// keeps no generations: nothing can look them up once the run ends, and memory stays flat.
/// One answer in eight to a `--schema` request is not JSON, so the demo shows a re-ask.
fn demo_mock_config() -> MockConfig {
    MockConfig {
        latency_ms: 120,
        jitter_ms: 200,
        keep_generations: 0,
        rate_json_invalid: 0.125,
        ..MockConfig::default()
    }
}

/// For `--mock` with a `[score]` table: each prompt's expected value, keyed as the mock
/// reads prompts, so that the in-process mock answers them right or wrong at a per-model
/// accuracy (the evaluation demo has something to measure). Reads the input twice more; only
/// a file input (stdin cannot be read again).
fn oracle(input: &Input, config: &RunConfig) -> Option<HashMap<u64, String>> {
    let score = config.score.as_ref()?;
    if !matches!(config.target, Target::Mock) || config.input.source == InputSource::Stdin {
        return None;
    }
    let mut expected = HashMap::new();
    each_row(&config.input, |row| {
        if let Some(value) = expected_text(row.fields.get(&score.expected)) {
            expected.insert(row.id.to_owned(), value);
        }
    })
    .ok()?;
    let mut oracle = HashMap::new();
    for req in input.requests().ok()? {
        let Ok(req) = req else { break };
        let Some(value) = expected.get(&req.id) else {
            continue;
        };
        let Ok(body) = serde_json::to_vec(&req.body) else {
            continue;
        };
        if let Ok(prompted) = crate::mock::answer::parse(req.endpoint, &body) {
            oracle.insert(hash64(prompted.prompt.as_bytes()), value.clone());
        }
    }
    Some(oracle)
}

/// Run a job. Problems found before anything is sent (bad input, unusable output, not enough
/// open files) come back as `Err(UsageError)`; once something was sent, every failure (the
/// input changed, the output could not be written, a task panicked) is in the summary, after
/// every answered request was recorded.
pub async fn run(
    config: RunConfig,
    progress: Box<dyn Progress>,
    interrupt: CancellationToken,
) -> Result<RunSummary, Failure> {
    let reduce = reduce::stage(&config);
    let map = run_stage(config, progress, interrupt.clone()).await?;
    match reduce {
        Some(config) if map.stopped.is_none() && map.failure.is_none() => {
            let quiet = config.quiet;
            let reduced = run_stage(config, crate::ui::progress(quiet), interrupt).await;
            Ok(reduce::merge(map, reduced))
        }
        _ => Ok(map),
    }
}

/// One pass of the pipeline over the input: validate, open the output, send, record.
async fn run_stage(
    config: RunConfig,
    progress: Box<dyn Progress>,
    interrupt: CancellationToken,
) -> Result<RunSummary, Failure> {
    let started = Instant::now();
    fds::ensure(config.concurrency, matches!(config.target, Target::Mock))?;
    let mut config = config;
    context_check(&mut config).await;
    let (input, keys, ahead) = validate_input(&config).await?;
    let opened = open_output(&config, ahead).await?;
    let oracle = oracle(&input, &config);
    let connection = connect(&config, oracle).await?;
    let budget = budget(&config, &connection.client, opened.prior.spent).await?;
    let pool = start_pool(&config, connection.client.clone(), budget);
    let on_interrupt = stop_on_interrupt(&pool.pool, interrupt);
    let counts = Counts {
        input: input.display_name().to_owned(),
        rows: input.rows(),
        requests: input.request_count(),
    };
    let drained = feed_and_drain(&config, &pool, input, keys, opened, progress).await;
    on_interrupt.abort();
    connection.close().await;
    summarize(&config, counts, &pool.pool, drained, started.elapsed())
}

/// The longest wait for the catalogue of the context check.
const CATALOG_TIMEOUT: Duration = Duration::from_secs(30);

/// The context check ([`crate::fit`]): the validation pass holds every request against its
/// model's context from `/models`, or the user is told the check was skipped.
async fn context_check(config: &mut RunConfig) {
    let context = crate::fit::fetch(&config.target, config.timeout.min(CATALOG_TIMEOUT)).await;
    if let Some(why) = context.skipped() {
        // The built-in mock has no real contexts: that is worth saying only where long
        // texts are likely.
        let said = config.input.reduce_from.is_some();
        if !said
            && (!matches!(config.target, Target::Mock)
                || config.input.format == crate::job::InputFormat::Documents)
        {
            tracing::warn!("{why}");
        }
    }
    config.input.context = context.catalog();
}

/// Every input problem (and every request too long for its model's context), before
/// anything is sent; meanwhile, on another thread, an existing output is locked and read
/// (not changed) for resume.
async fn validate_input(
    config: &RunConfig,
) -> Result<(Input, RequestKeys, Option<ReadAhead>), Failure> {
    let stop_reading = Arc::new(AtomicBool::new(false));
    let ahead = (!config.fresh).then(|| {
        let out_path = config.output.clone();
        let stop = Arc::clone(&stop_reading);
        tokio::task::spawn_blocking(move || resume::read_ahead(&out_path, &stop))
    });
    let input_config = config.input.clone();
    // A resumed run notes every request's key and fingerprint on the way, so that answered
    // rows need not be shaped again to be skipped. With no earlier records there is nothing to
    // skip, and noting would only shape every row twice (without notes nothing is skipped
    // unparsed; each request is still checked against the output as it is sent).
    let earlier = !config.fresh && std::fs::metadata(&config.output).is_ok_and(|m| m.len() > 0);
    let validated = tokio::task::spawn_blocking(move || {
        if earlier {
            Input::open_noting_keys(input_config)
        } else {
            Input::open(input_config).map(|input| (input, RequestKeys::default()))
        }
    });
    let (input, keys) = match validated.await? {
        Ok(validated) => validated,
        Err(e) => {
            // Release the output (and its lock) before reporting the input's problems.
            stop_reading.store(true, Ordering::Relaxed);
            if let Some(ahead) = ahead {
                let _ = ahead.await;
            }
            return Err(UsageError::new(e.to_string()).into());
        }
    };
    let ahead = match ahead {
        Some(ahead) => ahead.await?,
        None => None,
    };
    for note in input.notes() {
        tracing::warn!("{note}");
    }
    if !input.overflows().is_empty() {
        return Err(UsageError::new(input.overflows().lines().join("\n")).into());
    }
    Ok((input, keys, ahead))
}

/// The output: locked, repaired, and read back for resume.
async fn open_output(config: &RunConfig, ahead: Option<ReadAhead>) -> Result<Opened, Failure> {
    let out_path = config.output.clone();
    let fresh = config.fresh;
    let opened = tokio::task::spawn_blocking(move || resume::open_after(&out_path, fresh, ahead))
        .await?
        .map_err(|e| UsageError::new(e.to_string()))?;
    for w in &opened.warnings {
        tracing::warn!("{w}");
    }
    Ok(opened)
}

/// Where to send: the API, or the in-process mock.
async fn connect(
    config: &RunConfig,
    oracle: Option<HashMap<u64, String>>,
) -> Result<Connection, Failure> {
    let options = ClientOptions {
        timeout: Some(config.timeout),
        app_url: config.app_url.clone(),
        app_title: config.app_title.clone(),
    };
    let mock = MockConfig {
        oracle: oracle.map(Arc::new),
        ..demo_mock_config()
    };
    let connection = Connection::open(&config.target, options, mock)
        .await
        .map_err(|e| UsageError::new(e.to_string()))?;
    Ok(connection)
}

/// Under --max-cost: prices from the catalogue, and what this output already cost.
async fn budget(
    config: &RunConfig,
    client: &Client,
    spent: f64,
) -> Result<Option<Arc<Budget>>, Failure> {
    let Some(cap) = config.max_cost else {
        return Ok(None);
    };
    let catalog = crate::catalog::fetch_models(client)
        .await
        .map_err(|e| match e {
            // A refused key is a refused key (exit 3), whichever request met it first.
            Failure::Refused(m) => Failure::Refused(m).with_key_hint(&config.key_source),
            other => UsageError::new(format!("--max-cost needs model prices: {other:#}")).into(),
        })?;
    Ok(Some(Arc::new(Budget::new(cap, spent, catalog))))
}

/// The pool, with its pacer and the token that stops it.
struct Started {
    pool: Arc<Pool>,
    /// For the batch lane's own calls.
    client: Client,
    pacer: Arc<Pacer>,
    stop: CancellationToken,
}

fn start_pool(config: &RunConfig, client: Client, budget: Option<Arc<Budget>>) -> Started {
    let stop = CancellationToken::new();
    let pacer = Arc::new(pacer_from_env(config.rate).concurrency(config.concurrency));
    let pool = Arc::new(Pool::new(
        client.clone(),
        PoolConfig {
            concurrency: config.concurrency,
            max_attempts: config.max_attempts,
            backoff: backoff_from_env(),
            stream: config.stream,
            truncated_error: config.truncated_error,
            structured: config.structured.clone(),
        },
        Arc::clone(&pacer),
        stop.clone(),
        budget,
    ));
    Started {
        pool,
        client,
        pacer,
        stop,
    }
}

/// The first Ctrl-C stops dispatching; requests in flight finish.
fn stop_on_interrupt(pool: &Arc<Pool>, interrupt: CancellationToken) -> JoinHandle<()> {
    let pool = Arc::clone(pool);
    tokio::spawn(async move {
        interrupt.cancelled().await;
        pool.stop(StopReason::Interrupted);
    })
}

/// What the input held, for the summary.
struct Counts {
    input: String,
    rows: u64,
    requests: u64,
}

/// What the feeder and the writer did.
struct Drained {
    fed: Fed,
    tally: Tally,
    /// The writer's failure (or panic), as the summary says it.
    write_failure: Option<String>,
    /// Records received by the writer after a write failure (answered, not recorded).
    unwritten: Tally,
    /// What the batch lane did (`--lane batch|auto`).
    batch: Option<crate::batch::lane::Outcome>,
}

/// Feeder (blocking: reads the input's second pass) → pool → writer, until the input runs
/// out or the run stops; returns once every request sent has reached the writer.
async fn feed_and_drain(
    config: &RunConfig,
    started: &Started,
    input: Input,
    keys: RequestKeys,
    opened: Opened,
    mut progress: Box<dyn Progress>,
) -> Drained {
    progress.start(input.request_count());
    progress.watch_rate(Arc::clone(&started.pacer));
    let spent_before = opened.prior.spent;
    let queue = config.concurrency.saturating_mul(2).max(64);
    let (req_tx, req_rx) = mpsc::channel::<Request>(queue);
    let (rec_tx, rec_rx) = mpsc::channel(queue);
    let writer = writer::spawn(opened.file, rec_rx, progress, started.stop.clone());
    let feeder = Feeder {
        input,
        keys,
        prior: opened.prior,
        retry_errors: config.retry_errors,
        requests: req_tx,
        queue,
        events: rec_tx.clone(),
        stop: started.stop.clone(),
    }
    .spawn();
    // A feeder that stops on a changed input closes the queue: what it queued from the part
    // read before is still sent, and everything sent is recorded before this returns.
    let batch = match config.batch.lane {
        crate::batch::Lane::Sync => {
            Arc::clone(&started.pool).run(req_rx, rec_tx).await;
            None
        }
        _ => Some(batch_lane(config, started, queue, spent_before, req_rx, rec_tx).await),
    };
    let fed = feeder.await.unwrap_or_else(|e| Fed {
        failure: Some(task_failure("the input reader", e)),
        ..Fed::default()
    });
    match writer.await {
        Ok(mut written) => {
            written.progress.finish();
            let (write_failure, unwritten) = match written.failure {
                None => (None, Tally::default()),
                Some(f) => (
                    Some(format!(
                        "{}: cannot write the output file: {}",
                        config.output.display(),
                        f.error
                    )),
                    f.unwritten,
                ),
            };
            let batch = batch.map(|b| collected(config, b, write_failure.is_none()));
            Drained {
                fed,
                tally: written.tally,
                write_failure,
                unwritten,
                batch,
            }
        }
        Err(e) => Drained {
            fed,
            tally: Tally::default(),
            write_failure: Some(task_failure("the output writer", e)),
            unwritten: Tally::default(),
            batch,
        },
    }
}

/// The batch lane in place of the pool (which it feeds the rows that go live).
async fn batch_lane(
    config: &RunConfig,
    started: &Started,
    queue: usize,
    spent_before: f64,
    requests: mpsc::Receiver<Request>,
    records: mpsc::Sender<writer::Event>,
) -> crate::batch::lane::Outcome {
    let ctx = crate::batch::lane::LaneCtx {
        client: started.client.clone(),
        settings: config.batch.clone(),
        state: crate::batch::state::StateFile::beside(&config.output),
        pool: Arc::clone(&started.pool),
        stop: started.stop.clone(),
        queue,
        cap: config.max_cost.map(|cap| (cap, spent_before)),
    };
    crate::batch::lane::run(ctx, requests, records).await
}

/// Once the writer has written every record: the batches they came from are collected (a
/// rerun does not poll them again). Not after a write failure: a rerun polls them again.
fn collected(
    config: &RunConfig,
    mut outcome: crate::batch::lane::Outcome,
    written: bool,
) -> crate::batch::lane::Outcome {
    if !written || outcome.collected.is_empty() {
        return outcome;
    }
    let events: Vec<_> = outcome
        .collected
        .iter()
        .map(|r| crate::batch::state::Event::Collected { r#ref: r.clone() })
        .collect();
    let state = crate::batch::state::StateFile::beside(&config.output);
    if let Err(e) = state.append(&events) {
        outcome.failure.get_or_insert(format!(
            "{}: cannot write the batch state: {e} (a rerun collects those batches again, \
             at no cost)",
            state.path.display()
        ));
    }
    outcome
}

/// A task that ended without its result: what to tell the user.
fn task_failure(task: &str, e: tokio::task::JoinError) -> String {
    let why = match e.try_into_panic() {
        Ok(panic) => panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_owned()),
        Err(_) => "cancelled".to_owned(),
    };
    format!("internal error: {task} stopped ({why}); please report it")
}

/// The summary, or a usage error when the input changed before anything was sent.
fn summarize(
    config: &RunConfig,
    counts: Counts,
    pool: &Pool,
    drained: Drained,
    wall: Duration,
) -> Result<RunSummary, Failure> {
    let Drained {
        fed,
        tally,
        write_failure,
        unwritten,
        batch,
    } = drained;
    let (waiting, batch_failure) = batch.map_or((None, None), |b| (b.waiting, b.failure));
    let sent = tally.attempts + unwritten.attempts > 0 || unwritten.written() > 0;
    if let (false, None, Some(failure)) = (sent, &write_failure, &fed.failure) {
        return Err(UsageError::new(failure.clone()).into());
    }
    let mut failures: Vec<String> = write_failure.into_iter().collect();
    if unwritten.written() > 0 {
        let n = unwritten.written();
        let (noun, them) = if n == 1 {
            ("request", "it")
        } else {
            ("requests", "them")
        };
        failures.push(format!(
            "{n} answered {noun} ({} spent) could not be recorded; a rerun sends {them} again",
            usd(unwritten.cost)
        ));
    }
    failures.extend(fed.failure);
    failures.extend(batch_failure);
    Ok(RunSummary {
        input: counts.input,
        output: config.output.clone(),
        rows: counts.rows,
        requests: counts.requests,
        skipped_done: fed.skipped_done,
        changed: fed.changed,
        retried_errors: fed.retried_errors,
        kept_errors: fed.kept_errors,
        tally,
        wall,
        stopped: pool.stop_reason(),
        failure: (!failures.is_empty()).then(|| failures.join("; ")),
        waiting,
    })
}

mod fds;
mod feed;
mod reduce;

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(stopped: Option<StopReason>, failed: u64, failure: Option<&str>) -> RunSummary {
        RunSummary {
            input: "in.jsonl".into(),
            output: "out.jsonl".into(),
            rows: 2,
            requests: 2,
            skipped_done: 0,
            changed: 0,
            retried_errors: 0,
            kept_errors: 0,
            tally: Tally {
                ok: 1,
                failed,
                ..Tally::default()
            },
            wall: Duration::from_secs(1),
            stopped,
            failure: failure.map(str::to_owned),
            waiting: None,
        }
    }

    /// A failure after sending is "stopped early" (3), whatever else happened: never 2.
    #[test]
    fn a_failure_after_sending_exits_3() {
        assert_eq!(summary(None, 0, None).exit(), Exit::Ok);
        assert_eq!(summary(None, 1, None).exit(), Exit::RowsFailed);
        assert_eq!(summary(None, 1, Some("x")).exit(), Exit::Stopped);
        assert_eq!(
            summary(Some(StopReason::Interrupted), 0, Some("x")).exit(),
            Exit::Stopped
        );
        assert_eq!(
            summary(Some(StopReason::Interrupted), 0, None).exit(),
            Exit::Interrupted
        );
    }
}
