//! The account and audit commands (`costs`, `models`, `key`): argument handling, opening
//! the API, and what they print. The work itself lives in `crate::costs` and
//! `crate::catalog`.

pub mod costs;
pub mod key;
pub mod models;

use std::time::Duration;

use crate::cli::ApiArgs;
use crate::config::{Job, Key, resolve_target};
use crate::connect::{ClientOptions, Connection};
use crate::exit::Failure;
use crate::mock::MockConfig;

/// Per-request timeout of these commands' `GET`s.
const GET_TIMEOUT: Duration = Duration::from_secs(30);

/// Open the API the flags point at (the in-process mock with `--mock`); `key` says whether
/// the command can go on without an API key.
async fn connect(api: &ApiArgs, key: Key) -> Result<Connection, Failure> {
    let target = resolve_target(api, &Job::default(), &|k| std::env::var(k).ok(), key)?;
    let options = ClientOptions {
        timeout: Some(GET_TIMEOUT),
        ..ClientOptions::default()
    };
    Ok(Connection::open(&target, options, MockConfig::default()).await?)
}
