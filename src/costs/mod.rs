//! `orbatch costs OUT.jsonl`: the deferred, exact audit of spend. Every generation id in the
//! output (every attempt's, failed ones included) is looked up at `GET /generation` and its
//! record appended to the sidecar `OUT.generations.jsonl`. OpenRouter only knows a generation
//! some seconds to minutes after the call (FACTS §5.2), so 404 means "not yet": ids still
//! unknown when `--wait` runs out stay pending, and a rerun looks up only those.

pub mod charge;
pub mod lookup;
pub mod sidecar;
pub mod source;
pub mod wait;

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::exit::UsageError;

pub use lookup::Tally;
pub use sidecar::sidecar_path;
pub use wait::{Schedule, parse_duration};

/// What `costs` was asked to do, validated.
#[derive(Debug, Clone)]
pub struct CostsConfig {
    pub out: PathBuf,
    /// How long to keep asking for ids that are not known yet.
    pub wait: Duration,
    /// Lookups in flight at most.
    pub concurrency: usize,
    pub schedule: Schedule,
}

/// The outcome of a `costs` run, for the summary and the exit code.
#[derive(Debug)]
pub struct CostsReport {
    pub sidecar: PathBuf,
    /// Distinct generation ids in the output file.
    pub ids: usize,
    /// Of those, already in the sidecar before this run.
    pub already_known: usize,
    pub tally: Tally,
    /// Sum of the sidecar's spend (every id it holds): `total_cost`, plus the provider's
    /// charge for BYOK generations, USD.
    pub sidecar_total: f64,
    /// Of that, what providers billed to the user's own keys (BYOK), USD.
    pub sidecar_byok: f64,
    /// Ids in the sidecar whose record has no `total_cost`.
    pub sidecar_without_cost: u64,
    pub sidecar_ids: usize,
    /// Sum of the output's inline spend (`usage.cost`, plus the provider's charge for BYOK),
    /// USD.
    pub inline_total: f64,
}

impl CostsReport {
    /// Nothing left to look up and nothing failed.
    pub fn complete(&self) -> bool {
        self.tally.pending == 0 && self.tally.failed.is_empty()
    }
}

/// The output read and the sidecar opened: what is left to look up.
#[derive(Debug)]
pub struct Prepared {
    sidecar: sidecar::Sidecar,
    /// Ids not in the sidecar yet, in output order.
    pending: Vec<String>,
    ids: usize,
    inline_costs: Vec<f64>,
}

impl Prepared {
    /// Ids to look up in this run.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Distinct generation ids in the output.
    pub fn ids(&self) -> usize {
        self.ids
    }
}

/// Read the output file and open (lock, repair) its sidecar. Warnings go to the log.
pub fn prepare(config: &CostsConfig) -> Result<Prepared, UsageError> {
    let output = source::read(&config.out)?;
    warn_all(&output.warnings);
    let sidecar = sidecar::Sidecar::open(&sidecar_path(&config.out))
        .map_err(|e| UsageError::new(e.to_string()))?;
    warn_all(&sidecar.warnings);
    let ids = output.ids.len();
    let pending = output
        .ids
        .into_iter()
        .filter(|id| !sidecar.contains(id))
        .collect();
    Ok(Prepared {
        sidecar,
        pending,
        ids,
        inline_costs: output.inline_costs,
    })
}

/// Look the pending ids up against `client`, appending each record to the sidecar.
pub async fn run(
    client: &Client,
    prepared: Prepared,
    config: &CostsConfig,
    interrupt: &CancellationToken,
    watch: impl FnMut(lookup::Status),
) -> anyhow::Result<CostsReport> {
    let Prepared {
        mut sidecar,
        pending,
        ids,
        inline_costs,
    } = prepared;
    let already_known = ids - pending.len();
    let plan = lookup::Plan {
        concurrency: config.concurrency,
        schedule: config.schedule,
        deadline: tokio::time::Instant::now() + config.wait,
        grace: generation_grace(),
    };
    let tally = lookup::look_up_all(
        client,
        pending,
        plan,
        interrupt,
        |data| sidecar.append(data),
        watch,
    )
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "{}: cannot append to the costs file: {e}",
            sidecar.path().display()
        )
    })?;

    Ok(CostsReport {
        sidecar: sidecar.path().to_path_buf(),
        ids,
        already_known,
        tally,
        sidecar_total: exact_sum(sidecar.costs()),
        sidecar_byok: exact_sum(sidecar.byok_costs()),
        sidecar_without_cost: sidecar.without_cost,
        sidecar_ids: sidecar.len(),
        inline_total: exact_sum(&inline_costs),
    })
}

fn warn_all(warnings: &[String]) {
    for w in warnings {
        tracing::warn!("{w}");
    }
}

/// A sum of USD amounts without the drift of naive float addition (Neumaier's compensated
/// summation): the result is the float nearest the true sum for any realistic job.
pub fn exact_sum(values: &[f64]) -> f64 {
    let mut sum = 0.0f64;
    let mut carry = 0.0f64;
    for &v in values {
        let t = sum + v;
        carry += if sum.abs() >= v.abs() {
            (sum - t) + v
        } else {
            (v - t) + sum
        };
        sum = t;
    }
    sum + carry
}

/// How long `costs` takes bare 404s for "not yet" before it says the server may not serve
/// `/generation` (30 s; `ORBATCH_GENERATION_GRACE_MS` changes it, for tests).
pub const GENERATION_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

pub(crate) fn generation_grace() -> std::time::Duration {
    std::env::var("ORBATCH_GENERATION_GRACE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(GENERATION_GRACE, std::time::Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_without_drift() {
        assert_eq!(exact_sum(&[]), 0.0);
        assert_eq!(exact_sum(&[0.1; 10]), 1.0);
        assert_eq!(exact_sum(&[1e16, 1.0, -1e16]), 1.0);
    }
}
