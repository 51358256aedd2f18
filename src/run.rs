//! `orbatch run`: validate the input, open (and resume) the output, then feed requests to
//! the pool and records to the writer until the input runs out or the run is stopped.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::budget::Budget;
use crate::config::RunConfig;
use crate::connect::{ClientOptions, Connection};
use crate::exit::{Exit, UsageError};
use crate::job::{Input, Request, RequestKeys};
use crate::limit::Pacer;
use crate::mock::MockConfig;
use crate::output::resume::{self, Decision};
use crate::output::writer::{self, Event, Tally};
use crate::pool::{Pool, PoolConfig, StopReason};
use crate::progress::Progress;
use crate::retry::Backoff;

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
    pub warnings: Vec<String>,
}

impl RunSummary {
    /// The exit code of SPEC §5.
    pub fn exit(&self) -> Exit {
        match &self.stopped {
            Some(StopReason::Interrupted) => Exit::Interrupted,
            Some(_) => Exit::Stopped,
            None if self.tally.failed + self.kept_errors > 0 => Exit::RowsFailed,
            None => Exit::Ok,
        }
    }
}

/// Counts from the feeder: what the output file's history decided.
#[derive(Debug, Default)]
struct Fed {
    skipped_done: u64,
    changed: u64,
    retried_errors: u64,
    kept_errors: u64,
}

/// Most queue slots the feeder reserves at once.
const FEED_BATCH: usize = 64;

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
fn demo_mock_config() -> MockConfig {
    MockConfig {
        latency_ms: 120,
        jitter_ms: 200,
        keep_generations: 0,
        ..MockConfig::default()
    }
}

/// Run a job. Usage errors (bad input, unusable output) come back as `Err` before anything
/// is sent; everything after that is in the summary.
pub async fn run(
    config: RunConfig,
    progress: Box<dyn Progress>,
    interrupt: CancellationToken,
) -> anyhow::Result<RunSummary> {
    let started = Instant::now();
    // 1. Every input problem, before anything is sent; meanwhile, on another thread, an
    //    existing output is locked and read (not changed) for resume.
    let fresh = config.fresh;
    let stop_reading = Arc::new(AtomicBool::new(false));
    let ahead = (!fresh).then(|| {
        let out_path = config.output.clone();
        let stop = Arc::clone(&stop_reading);
        tokio::task::spawn_blocking(move || resume::read_ahead(&out_path, &stop))
    });
    let input_config = config.input.clone();
    // A resumed run notes every request's key and fingerprint on the way, so that answered
    // rows need not be shaped again to be skipped. With no earlier records there is nothing to
    // skip, and noting would only shape every row twice (without notes nothing is skipped
    // unparsed; each request is still checked against the output as it is sent).
    let earlier = !fresh && std::fs::metadata(&config.output).is_ok_and(|m| m.len() > 0);
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
    // 2. The output: locked, repaired, and read back for resume.
    let out_path = config.output.clone();
    let opened = tokio::task::spawn_blocking(move || resume::open_after(&out_path, fresh, ahead))
        .await?
        .map_err(|e| UsageError::new(e.to_string()))?;
    for w in &opened.warnings {
        tracing::warn!("{w}");
    }
    // 3. Where to send.
    let connection = Connection::open(
        &config.target,
        ClientOptions {
            timeout: Some(config.timeout),
            app_url: config.app_url.clone(),
            app_title: config.app_title.clone(),
        },
        demo_mock_config(),
    )
    .await
    .map_err(|e| UsageError::new(e.to_string()))?;
    let client = connection.client.clone();

    // 4. Under --max-cost: prices from the catalogue, and what this output already cost.
    let budget = match config.max_cost {
        None => None,
        Some(cap) => {
            let catalog = crate::catalog::fetch_models(&client)
                .await
                .map_err(|e| UsageError::new(format!("--max-cost needs model prices: {e:#}")))?;
            Some(Arc::new(Budget::new(cap, opened.prior.spent, catalog)))
        }
    };

    let stop = CancellationToken::new();
    let pacer = Arc::new(pacer_from_env(config.rate).concurrency(config.concurrency));
    let pool = Arc::new(Pool::new(
        client,
        PoolConfig {
            concurrency: config.concurrency,
            max_attempts: config.max_attempts,
            backoff: backoff_from_env(),
            stream: config.stream,
        },
        Arc::clone(&pacer),
        stop.clone(),
        budget,
    ));
    let on_interrupt = {
        let pool = Arc::clone(&pool);
        let interrupt = interrupt.clone();
        tokio::spawn(async move {
            interrupt.cancelled().await;
            pool.stop(StopReason::Interrupted);
        })
    };

    let rows = input.rows();
    let input_name = input.display_name().to_owned();
    let requests = input.request_count();
    let mut progress = progress;
    progress.start(requests);
    progress.watch_rate(pacer);

    // 5. Feeder (blocking: reads the input's second pass) → pool → writer.
    let queue = config.concurrency.saturating_mul(2).max(64);
    let (req_tx, req_rx) = mpsc::channel::<Request>(queue);
    let (rec_tx, rec_rx) = mpsc::channel(queue);
    let writer = writer::spawn(opened.file, rec_rx, progress, stop.clone());
    let prior = opened.prior;
    let retry_errors = config.retry_errors;
    let feeder_stop = stop.clone();
    let skip_tx = rec_tx.clone();
    let handle = tokio::runtime::Handle::current();
    let feeder = tokio::task::spawn_blocking(move || -> anyhow::Result<Fed> {
        let mut fed = Fed::default();
        // Queue slots are reserved `FEED_BATCH` at a time: the feeder sleeps until that many
        // are free, not until one is (which would wake this thread once per request). A row
        // is still queued as soon as it is read: nothing waits for a batch to fill.
        let batch = (queue / 4).clamp(1, FEED_BATCH);
        let mut slots = None;
        // Skips are reported to the progress display in batches.
        let mut unreported: u64 = 0;
        let report = |n: &mut u64| {
            if *n > 0 {
                let _ = skip_tx.blocking_send(Event::Skipped(std::mem::take(n)));
            }
        };
        // Rows whose every request is answered are skipped without being shaped again.
        let skips = keys.resolve(|key, fingerprint| prior.is_done(key, fingerprint));
        let mut requests = input
            .requests_skipping(skips)
            .map_err(|e| UsageError::new(e.to_string()))?;
        loop {
            let next = requests.next();
            let skipped = requests.take_skipped();
            if skipped > 0 {
                fed.skipped_done += skipped;
                unreported += skipped;
                if unreported >= 4096 {
                    report(&mut unreported);
                }
            }
            let Some(req) = next else { break };
            let req = req.map_err(|e| UsageError::new(e.to_string()))?;
            match prior.decide(&req.id, &req.model, &req.fingerprint, retry_errors) {
                Decision::Done => {
                    fed.skipped_done += 1;
                    unreported += 1;
                    if unreported >= 4096 {
                        report(&mut unreported);
                    }
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
            report(&mut unreported);
            if feeder_stop.is_cancelled() {
                break;
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
            let Some(slot) = slot else { break };
            slot.send(req);
        }
        report(&mut unreported);
        Ok(fed)
    });
    Arc::clone(&pool).run(req_rx, rec_tx).await;
    let fed = feeder.await??;
    let (tally, mut progress) = writer.await?;
    progress.finish();
    let tally = tally.map_err(|e| {
        anyhow::anyhow!(
            "{}: cannot write the output file: {e}",
            config.output.display()
        )
    })?;
    on_interrupt.abort();
    connection.close().await;
    Ok(RunSummary {
        input: input_name,
        output: config.output.clone(),
        rows,
        requests,
        skipped_done: fed.skipped_done,
        changed: fed.changed,
        retried_errors: fed.retried_errors,
        kept_errors: fed.kept_errors,
        tally,
        wall: started.elapsed(),
        stopped: pool.stop_reason(),
        warnings: opened.warnings,
    })
}
