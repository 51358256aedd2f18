//! The open-file limit. A run at `-j N` holds about N sockets (measured at `-j 1024`: 1,222
//! descriptors at most, and 2,779 with `--mock`, whose server ends are in the same process and
//! whose connections close later); past the soft `RLIMIT_NOFILE` every new connection fails with
//! "too many open files", which would be retried as a connection error until the run gave
//! up. So it is checked once, before anything is sent: the soft limit is raised (up to the
//! hard one) when needed, or the run is refused with what to do. Unix only.

use crate::exit::UsageError;

/// Files a run holds besides its connections: the standard streams, input, output, spool,
/// the runtime's own, and connections being replaced.
const MARGIN: u64 = 64;

/// What the limit needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// The soft limit is enough.
    Enough,
    /// Raise the soft limit to this (at most the hard limit).
    Raise(u64),
    /// Even the hard limit is too low.
    Refuse,
}

/// Descriptors a request in flight may need, in quarters: a connection and a quarter more
/// for connections being replaced; with `--mock` three (both ends, and closing ones).
fn quarters_per_request(mock: bool) -> u64 {
    if mock { 12 } else { 5 }
}

/// Open files a run at `concurrency` needs, `mock` when its server is in this process.
pub(crate) fn needed(concurrency: usize, mock: bool) -> u64 {
    (concurrency as u64)
        .saturating_mul(quarters_per_request(mock))
        .div_ceil(4)
        .saturating_add(MARGIN)
}

/// The decision, from what is `needed` and the `soft` and `hard` limits.
pub(crate) fn plan(needed: u64, soft: u64, hard: u64) -> Plan {
    if needed <= soft {
        Plan::Enough
    } else if needed <= hard {
        Plan::Raise(needed)
    } else {
        Plan::Refuse
    }
}

/// The refusal: how many files, the limit, and what to run.
fn refusal(concurrency: usize, mock: bool, needed: u64, limit: u64, why: &str) -> UsageError {
    let fits = limit.saturating_sub(MARGIN).saturating_mul(4) / quarters_per_request(mock);
    UsageError::new(format!(
        "-j {concurrency} needs up to {needed} open files{}, but {why} {limit}; run \
         `ulimit -n {needed}` in this shell first (raising the hard limit may need root or \
         /etc/security/limits.conf), or use -j {fits} or less",
        if mock {
            " (--mock holds both ends)"
        } else {
            ""
        },
    ))
}

/// Make sure a run at `concurrency` can open its connections: raise the soft limit when
/// needed, or refuse. Reads of the limit that fail are let through (nothing to decide).
#[cfg(unix)]
pub(crate) fn ensure(concurrency: usize, mock: bool) -> Result<(), UsageError> {
    use rlimit::Resource;
    let needed = needed(concurrency, mock);
    let Ok((soft, hard)) = Resource::NOFILE.get() else {
        return Ok(());
    };
    match plan(needed, soft, hard) {
        Plan::Enough => Ok(()),
        Plan::Raise(to) => match Resource::NOFILE.set(to, hard) {
            Ok(()) => {
                tracing::info!("open-file limit raised from {soft} to {to} for -j {concurrency}");
                Ok(())
            }
            Err(e) => Err(refusal(
                concurrency,
                mock,
                needed,
                soft,
                &format!("it could not be raised ({e}) above"),
            )),
        },
        Plan::Refuse => Err(refusal(
            concurrency,
            mock,
            needed,
            hard,
            "the hard limit (`ulimit -Hn`) is",
        )),
    }
}

/// Elsewhere there is no such limit to check.
#[cfg(not(unix))]
pub(crate) fn ensure(_concurrency: usize, _mock: bool) -> Result<(), UsageError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_up_to_the_hard_one_or_the_run_refused() {
        assert_eq!(plan(100, 1024, 4096), Plan::Enough);
        assert_eq!(plan(1024, 1024, 4096), Plan::Enough);
        assert_eq!(plan(2112, 256, 1 << 20), Plan::Raise(2112));
        assert_eq!(plan(2112, 256, 2112), Plan::Raise(2112));
        assert_eq!(plan(2112, 256, 512), Plan::Refuse);
        assert_eq!(plan(u64::MAX, 256, u64::MAX), Plan::Raise(u64::MAX));
    }

    #[test]
    fn the_mock_needs_both_ends_and_huge_values_saturate() {
        assert_eq!(needed(1024, false), 1280 + MARGIN);
        assert_eq!(needed(1024, true), 3072 + MARGIN);
        assert_eq!(needed(1, false), 2 + MARGIN);
        assert_eq!(needed(usize::MAX, true), u64::MAX / 4 + 1 + MARGIN);
    }

    #[test]
    fn the_refusal_says_what_to_run() {
        let msg = refusal(1024, true, needed(1024, true), 512, "the hard limit is").to_string();
        assert_eq!(
            msg,
            "-j 1024 needs up to 3136 open files (--mock holds both ends), but the hard limit \
             is 512; run `ulimit -n 3136` in this shell first (raising the hard limit may need \
             root or /etc/security/limits.conf), or use -j 149 or less"
        );
    }
}
