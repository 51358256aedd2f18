//! The open-file limit. A run at `-j N` holds about N sockets (2N with `--mock`, whose server
//! end is in the same process); past the soft `RLIMIT_NOFILE` every new connection fails with
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

/// Open files a run at `concurrency` needs, `mock` when its server is in this process.
pub(crate) fn needed(concurrency: usize, mock: bool) -> u64 {
    let per_request = if mock { 2 } else { 1 };
    (concurrency as u64)
        .saturating_mul(per_request)
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
    let per_request = if mock { 2 } else { 1 };
    let fits = limit.saturating_sub(MARGIN) / per_request;
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
        assert_eq!(needed(1024, false), 1024 + MARGIN);
        assert_eq!(needed(1024, true), 2048 + MARGIN);
        assert_eq!(needed(usize::MAX, true), u64::MAX);
    }

    #[test]
    fn the_refusal_says_what_to_run() {
        let msg = refusal(1024, true, needed(1024, true), 512, "the hard limit is").to_string();
        assert_eq!(
            msg,
            "-j 1024 needs up to 2112 open files (--mock holds both ends), but the hard limit \
             is 512; run `ulimit -n 2112` in this shell first (raising the hard limit may need \
             root or /etc/security/limits.conf), or use -j 224 or less"
        );
    }
}
