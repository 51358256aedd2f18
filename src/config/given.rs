//! The low stage of config: each setting as it was given — its value and where it came from
//! (flag `--x`, key `x` in a job file, an environment variable, or the default) — and the
//! range checks, so every error names exactly what the user has to change.

use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::exit::UsageError;

/// Most requests in flight (`-j`): far above any provider's limit, and small enough that
/// queue sizes derived from it (`2 × N`) and a semaphore of `N` permits cannot overflow.
pub const MAX_CONCURRENCY: u64 = 65_536;
/// Most requests that may start together after an idle spell (`--burst`).
pub const MAX_BURST: u64 = 10_000;
/// Most attempts per request (`--max-attempts`).
pub const MAX_ATTEMPTS: u64 = 100;
/// Shortest and longest attempt (`--timeout`, seconds): a millisecond to a day.
pub const TIMEOUT_SECS: RangeInclusive<f64> = 0.001..=86_400.0;
/// Slowest and fastest pace (`--rps`): one request per 1,000 minutes to a million a second.
pub const RPS: RangeInclusive<f64> = (0.001 / 60.0)..=1e6;
/// The same pace per minute (`--rpm`).
pub const RPM: RangeInclusive<f64> = 0.001..=6e7;
/// Largest `--max-cost`, USD.
pub const MAX_COST_USD: f64 = 1e6;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag, e.g. `--timeout`.
    Flag(&'static str),
    /// A key of a job file.
    Job { key: &'static str, file: PathBuf },
    /// An environment variable.
    Env(&'static str),
    /// Nobody set it.
    Default,
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Given<T> {
    pub value: T,
    pub from: Origin,
}

impl<T> Given<T> {
    pub fn new(value: T, from: Origin) -> Given<T> {
        Given { value, from }
    }

    /// The setting as the user wrote it: `--timeout 1e20`, `timeout = 1e20 in jobs/a.toml`.
    pub fn describe(&self, shown: impl fmt::Display) -> String {
        match &self.from {
            Origin::Flag(flag) => format!("{flag} {shown}"),
            Origin::Job { key, file } => format!("{key} = {shown} in {}", file.display()),
            Origin::Env(var) => format!("{var}={shown}"),
            Origin::Default => format!("the default {shown}"),
        }
    }

    /// A usage error about this setting.
    pub fn error(&self, shown: impl fmt::Display, problem: &str) -> UsageError {
        UsageError::new(format!("{}: {problem}", self.describe(shown)))
    }
}

/// The flag's value if given, else the job file's, each with its origin.
pub fn pick<T>(
    flag: Option<T>,
    flag_name: &'static str,
    job: Option<T>,
    key: &'static str,
    file: &Path,
) -> Option<Given<T>> {
    match (flag, job) {
        (Some(v), _) => Some(Given::new(v, Origin::Flag(flag_name))),
        (None, Some(v)) => Some(Given::new(
            v,
            Origin::Job {
                key,
                file: file.to_path_buf(),
            },
        )),
        (None, None) => None,
    }
}

/// A whole number within `range`.
pub fn whole(given: &Given<i128>, range: RangeInclusive<u64>) -> Result<u64, UsageError> {
    let (lo, hi) = (*range.start(), *range.end());
    u64::try_from(given.value)
        .ok()
        .filter(|v| range.contains(v))
        .ok_or_else(|| {
            given.error(
                given.value,
                &format!("must be a whole number from {lo} to {hi}"),
            )
        })
}

/// A finite number within `range`; `unit` says what it counts.
pub fn number(
    given: &Given<f64>,
    range: RangeInclusive<f64>,
    unit: &str,
) -> Result<f64, UsageError> {
    let x = given.value;
    if x.is_finite() && range.contains(&x) {
        Ok(x)
    } else {
        Err(given.error(
            show(x),
            &format!(
                "must be a number from {} to {} ({unit})",
                show(*range.start()),
                show(*range.end())
            ),
        ))
    }
}

/// A number of seconds within [`TIMEOUT_SECS`] as a duration.
pub fn seconds(given: &Given<f64>) -> Result<Duration, UsageError> {
    let secs = number(given, TIMEOUT_SECS, "seconds")?;
    // In range, so this cannot fail; the fallback only keeps the code free of panics.
    Duration::try_from_secs_f64(secs).map_err(|e| given.error(show(secs), &e.to_string()))
}

/// A float for a message: plain when it reads well, else in scientific notation (`1e-300`,
/// not three hundred zeros).
pub fn show(x: f64) -> String {
    if x == 0.0 || !x.is_finite() || (1e-6..1e15).contains(&x.abs()) {
        let plain = format!("{x}");
        // 0.001 / 60 → 0.0000166…: keep a few significant digits.
        if plain.len() > 12 && x.is_finite() {
            format!("{x:.3e}")
        } else {
            plain
        }
    } else {
        format!("{x:e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag<T>(v: T) -> Given<T> {
        Given::new(v, Origin::Flag("--x"))
    }

    #[test]
    fn errors_name_the_flag_or_the_key_and_file() {
        let e = whole(&flag(-4), 1..=10).unwrap_err().to_string();
        assert_eq!(e, "--x -4: must be a whole number from 1 to 10");
        let job = Given::new(
            -4,
            Origin::Job {
                key: "concurrency",
                file: "jobs/a.toml".into(),
            },
        );
        let e = whole(&job, 1..=10).unwrap_err().to_string();
        assert_eq!(
            e,
            "concurrency = -4 in jobs/a.toml: must be a whole number from 1 to 10"
        );
    }

    #[test]
    fn numbers_outside_the_range_or_not_finite_are_refused() {
        for bad in [f64::NAN, f64::INFINITY, -1.0, 1e-300, 2e6] {
            assert!(number(&flag(bad), RPS, "per second").is_err(), "{bad}");
        }
        assert_eq!(number(&flag(5.0), RPS, "per second").unwrap(), 5.0);
        let e = number(&flag(1e-300), RPS, "requests per second").unwrap_err();
        assert_eq!(
            e.to_string(),
            "--x 1e-300: must be a number from 1.667e-5 to 1000000 (requests per second)"
        );
        assert!(seconds(&flag(1e20)).is_err());
        assert_eq!(seconds(&flag(2.5)).unwrap(), Duration::from_millis(2500));
    }
}
