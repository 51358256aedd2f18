//! The batch lane (`run --lane batch|auto`, issue #17): requests go through OpenRouter's Batch
//! API (BATCH.md) at batch prices, and come back as the same records as the live lane's.
//! `wire` is the API's shapes, `state` the durable `OUT.batches.jsonl`, `lane` the driver.

pub mod lane;
pub mod state;
pub mod wire;

use std::time::Duration;

use serde::Deserialize;

/// `--lane`, and `lane` in a job file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lane {
    /// Today's live requests.
    #[default]
    Sync,
    /// Every request through the Batch API.
    Batch,
    /// The Batch API for models `/models` lists a `:batch` variant of, live for the rest.
    Auto,
}

/// `--fallback`, and `fallback` in a job file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    /// Rows the Batch API did not answer are error records a rerun sends again.
    #[default]
    None,
    /// Rows the Batch API did not answer (refused model, failed lines, failed batch) go live.
    Sync,
}

/// How the batch lane runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub lane: Lane,
    pub fallback: Fallback,
    /// How long to poll before exiting 1 (a rerun continues); `None`: until done.
    pub wait: Option<Duration>,
    /// The Batch API's path under the base URL, or a whole URL (`/api/beta/batches`).
    pub path: String,
}

/// The default Batch API path, under the base URL (`…/api/v1`).
pub const DEFAULT_PATH: &str = "/batches";

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lane: Lane::Sync,
            fallback: Fallback::None,
            wait: None,
            path: DEFAULT_PATH.to_owned(),
        }
    }
}

/// At most this many requests in one batch (BATCH.md §2).
pub const MAX_REQUESTS: usize = 5_000;

/// Batches stay under this many bytes of body (the limit is 200 MB).
pub const MAX_BYTES: usize = 190_000_000;
