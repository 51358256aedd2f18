//! Pacing: the request-rate ceiling (`--rps`/`--rpm`, a governor GCRA whose bucket starts
//! empty), the pause gate that a `Retry-After` closes for every worker at once, and the
//! adaptive rate that 429s shrink and successes grow back (AIMD).

use std::collections::VecDeque;
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

/// Over how long the accepted rate is measured when a 429 arrives.
const WINDOW: Duration = Duration::from_secs(2);
/// How long answers must have been coming back before a 429 can set the first rate.
const EVIDENCE: Duration = Duration::from_secs(1);
/// The slowest the adaptive rate goes (one request every 10 s).
const MIN_RATE: f64 = 0.1;
/// After a 429 the rate drops to this share of the rate that met it.
const DECREASE: f64 = 0.9;
/// A decrease at most this often: one burst of 429s is one signal, not many.
const COOLDOWN: Duration = Duration::from_secs(1);

/// The sending rate the server is willing to take, learnt from its answers: unlimited until
/// the first 429 that follows a success; then the rate of accepted requests just before it, times 0.9; each later
/// 429 takes 10 % off the current rate (multiplicative decrease). Successes grow it back
/// (additive increase): quickly — about 5 % a second — while well below the rate of the last
/// 429, slowly — 0.25 % a second — near
/// and above it, so that the limit is probed rarely (each probe that fails costs a
/// `Retry-After` pause for everyone). Never above the `--rps` ceiling.
#[derive(Debug)]
pub struct Adaptive {
    ceiling: Option<f64>,
    state: Mutex<AdaptiveState>,
}

#[derive(Debug)]
struct AdaptiveState {
    /// Requests per second; `None` while no 429 has been seen.
    rate: Option<f64>,
    /// The next free sending slot.
    next: Instant,
    last_decrease: Option<Instant>,
    /// The rate at which the last 429 came.
    last_limit: Option<f64>,
    /// When recent successes happened (within `WINDOW`).
    successes: VecDeque<Instant>,
}

impl Adaptive {
    pub fn new(ceiling: Option<f64>) -> Adaptive {
        Adaptive {
            ceiling,
            state: Mutex::new(AdaptiveState {
                rate: None,
                next: Instant::now(),
                last_decrease: None,
                last_limit: None,
                successes: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AdaptiveState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current adaptive rate (`None`: not limited).
    pub fn rate(&self) -> Option<f64> {
        self.lock().rate
    }

    /// Wait for a sending slot at the current rate.
    pub async fn ready(&self) {
        let slot = {
            let mut s = self.lock();
            let Some(rate) = s.rate else { return };
            let now = Instant::now();
            let slot = s.next.max(now);
            s.next = slot + Duration::from_secs_f64(1.0 / rate);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// A request was answered: remember it, and grow the rate back.
    pub fn on_success(&self) {
        let now = Instant::now();
        let mut s = self.lock();
        s.successes.push_back(now);
        while s
            .successes
            .front()
            .is_some_and(|t| now.duration_since(*t) > WINDOW)
        {
            s.successes.pop_front();
        }
        if let Some(rate) = s.rate {
            // Per success `step / rate`, so about `step` per second at this rate.
            let near_limit = s.last_limit.is_some_and(|l| rate >= 0.95 * l);
            let step = if near_limit {
                rate * 0.0025
            } else {
                (rate * 0.05).max(0.5)
            };
            let grown = rate + step / rate;
            s.rate = Some(match self.ceiling {
                Some(c) => grown.min(c),
                None => grown,
            });
        }
    }

    /// The server said 429: slow down to below what it was accepting. Returns the new rate
    /// when it changed.
    pub fn on_rate_limited(&self) -> Option<f64> {
        let now = Instant::now();
        let mut s = self.lock();
        if s.last_decrease
            .is_some_and(|t| now.duration_since(t) < COOLDOWN)
        {
            return None;
        }
        while s
            .successes
            .front()
            .is_some_and(|t| now.duration_since(*t) > WINDOW)
        {
            s.successes.pop_front();
        }
        // The first 429 sets the rate from what the server accepted (over the window, or
        // since the first success in it); later ones scale the current rate down. A 429
        // with less than `EVIDENCE` of answers behind it says nothing about the rate the
        // server takes (the first burst of a run meets the limit before its answers come
        // back; one answer in 50 ms is not 20/s nor 1/s): a guess would pin the run to it,
        // so leave the rate alone and let backoff and Retry-After act meanwhile.
        let base = match s.rate {
            Some(r) => r,
            None => {
                let first = s.successes.front().copied()?;
                let span = now.duration_since(first);
                if span < EVIDENCE {
                    return None;
                }
                s.successes.len() as f64 / span.as_secs_f64()
            }
        };
        s.last_limit = Some(base);
        let rate = (base * DECREASE).max(MIN_RATE);
        s.rate = Some(match self.ceiling {
            Some(c) => rate.min(c),
            None => rate,
        });
        s.last_decrease = Some(now);
        s.rate
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

    #[tokio::test(start_paused = true)]
    async fn adaptive_rate_halves_below_the_accepted_rate_and_grows_back() {
        let a = Adaptive::new(Some(60.0));
        assert_eq!(a.rate(), None, "unlimited until a 429");
        // 40 successes in the last 2 s (well, 1 s): 40/s accepted.
        for _ in 0..40 {
            a.on_success();
            tokio::time::advance(Duration::from_millis(25)).await;
        }
        let r = a.on_rate_limited().unwrap();
        assert!((r - 40.0 * DECREASE).abs() < 1.0, "{r}");
        assert_eq!(a.on_rate_limited(), None, "one decrease per cooldown");
        // Slots are spaced 1/rate apart.
        let t0 = Instant::now();
        for _ in 0..5 {
            a.ready().await;
        }
        let spacing = t0.elapsed().as_secs_f64() / 4.0;
        assert!((spacing - 1.0 / r).abs() < 0.01, "{spacing}");
        // Quick growth up to 95 % of the last limit (36 → 38 within 80 successes), slow after.
        for _ in 0..80 {
            a.on_success();
        }
        let grown = a.rate().unwrap();
        assert!(grown > r + 1.9 && grown < 39.0, "{r} → {grown}");
        for _ in 0..100 {
            a.on_success();
        }
        assert!(a.rate().unwrap() - grown < 1.0, "slow near the last limit");
        // Never above the ceiling.
        for _ in 0..100_000 {
            a.on_success();
        }
        assert_eq!(a.rate(), Some(60.0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_before_any_success_sets_no_rate() {
        let a = Adaptive::new(None);
        assert_eq!(a.on_rate_limited(), None);
        assert_eq!(a.rate(), None, "no evidence of the accepted rate yet");
        a.on_success();
        tokio::time::advance(Duration::from_millis(50)).await;
        assert_eq!(
            a.on_rate_limited(),
            None,
            "one answer 50 ms ago is no evidence"
        );
        // Once answers come back, the next 429 measures the rate from them (30 in 1 s).
        for _ in 0..29 {
            a.on_success();
            tokio::time::advance(Duration::from_millis(33)).await;
        }
        let r = a.on_rate_limited().unwrap();
        assert!((r - 30.0 * DECREASE).abs() < 1.5, "{r}");
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
