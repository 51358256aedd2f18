//! Pacing: the request-rate ceiling (`--rps`/`--rpm`, a governor GCRA whose bucket starts
//! empty) and the pause gate that a `Retry-After` closes for every worker at once.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

/// A request-rate ceiling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Requests per second (may be fractional: `--rpm 30` is 0.5).
    pub per_second: f64,
    /// How many requests may go at once after an idle spell (`--burst`, default 1).
    pub burst: NonZeroU32,
}

/// Paces attempts to at most `Rate`. Without a rate it lets everything through.
pub struct Pacer {
    limiter: Option<DefaultDirectRateLimiter>,
}

impl Pacer {
    pub fn new(rate: Option<Rate>) -> Pacer {
        let limiter = rate.and_then(|r| {
            let period = Duration::from_secs_f64(1.0 / r.per_second);
            let quota = Quota::with_period(period)?.allow_burst(r.burst);
            let limiter = RateLimiter::direct(quota);
            // governor starts with a full bucket; SPEC §1 says it starts empty, so the first
            // second of a run cannot exceed the rate.
            let _ = limiter.check_n(r.burst);
            Some(limiter)
        });
        Pacer { limiter }
    }

    /// Wait until one more request may start.
    pub async fn ready(&self) {
        if let Some(l) = &self.limiter {
            l.until_ready().await;
        }
    }
}

/// A gate every attempt passes before it starts; `pause_for` closes it for everyone.
#[derive(Debug, Default)]
pub struct PauseGate {
    until: Mutex<Option<Instant>>,
}

impl PauseGate {
    /// Keep every worker from starting an attempt for `d` (extends, never shortens, a pause).
    /// Returns true if this call extended the pause.
    pub fn pause_for(&self, d: Duration) -> bool {
        let target = Instant::now() + d;
        let mut until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        if until.is_none_or(|u| u < target) {
            *until = Some(target);
            true
        } else {
            false
        }
    }

    /// Wait while the gate is closed.
    pub async fn wait(&self) {
        loop {
            let until = *self.until.lock().unwrap_or_else(|e| e.into_inner());
            match until {
                Some(u) if u > Instant::now() => tokio::time::sleep_until(u).await,
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pause_gate_holds_everyone_until_the_latest_deadline() {
        let gate = PauseGate::default();
        let t0 = Instant::now();
        gate.wait().await;
        assert_eq!(t0.elapsed(), Duration::ZERO);
        assert!(gate.pause_for(Duration::from_secs(2)));
        assert!(
            !gate.pause_for(Duration::from_secs(1)),
            "a shorter pause must not shorten it"
        );
        gate.wait().await;
        assert!(t0.elapsed() >= Duration::from_secs(2));
    }

    #[tokio::test]
    async fn pacer_starts_empty_and_keeps_the_rate() {
        let pacer = Pacer::new(Some(Rate {
            per_second: 50.0,
            burst: NonZeroU32::MIN,
        }));
        let t0 = std::time::Instant::now();
        for _ in 0..5 {
            pacer.ready().await;
        }
        // Five requests at 50/s from an empty bucket take at least 5 × 20 ms (minus slack).
        assert!(
            t0.elapsed() >= Duration::from_millis(90),
            "{:?}",
            t0.elapsed()
        );
    }
}
