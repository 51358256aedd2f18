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

    /// Whether the gate is closed now.
    pub fn is_closed(&self) -> bool {
        let until = *self.until.lock().unwrap_or_else(|e| e.into_inner());
        until.is_some_and(|u| u > Instant::now())
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
const EVIDENCE: Duration = Duration::from_millis(500);
/// The slowest the adaptive rate goes (one request every 10 s).
const MIN_RATE: f64 = 0.1;
/// After a 429 the rate drops to this share of the rate that met it.
const DECREASE: f64 = 0.9;
/// A decrease at most this often: one burst of 429s is one signal, not many.
const COOLDOWN: Duration = Duration::from_secs(1);

/// The sending rate the server is willing to take, learnt from its answers: unlimited until
/// the first 429 that follows a success; then the rate of accepted requests just before it,
/// times 0.9 (growing back quickly, as that first measure is low); each later
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
    /// A 429 came before there was evidence to set a rate: set it as soon as there is.
    unmeasured_429: bool,
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
                unmeasured_429: false,
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
            let now = Instant::now();
            // A 429 of the first burst could not set a rate; the answers that came back
            // since can, before the burst repeats after the pause.
            if s.rate.is_none()
                && s.unmeasured_429
                && let Some(r) = s.decrease(now, self.ceiling)
            {
                tracing::info!("rate limited: slowing down to {r:.1} requests/s");
            }
            let Some(rate) = s.rate else { return };
            let slot = s.next.max(now);
            s.next = slot + Duration::from_secs_f64(1.0 / rate);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// Nothing is sent before `t` (a `Retry-After` pause): the first slot after it starts
    /// the spacing again, so the requests held by the pause leave at the rate, not at once.
    pub fn hold_until(&self, t: Instant) {
        let mut s = self.lock();
        s.next = s.next.max(t);
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
        s.unmeasured_429 = true;
        s.decrease(now, self.ceiling)
    }
}

impl AdaptiveState {
    /// The multiplicative decrease; `None` when there is no evidence for a first rate yet.
    fn decrease(&mut self, now: Instant, ceiling: Option<f64>) -> Option<f64> {
        while self
            .successes
            .front()
            .is_some_and(|t| now.duration_since(*t) > WINDOW)
        {
            self.successes.pop_front();
        }
        // The first 429 sets the rate from what the server accepted (over the window, or
        // since the first success in it); later ones scale the current rate down. A 429
        // with less than `EVIDENCE` of answers behind it says nothing about the rate the
        // server takes (the first burst of a run meets the limit before its answers come
        // back; one answer in 50 ms is not 20/s nor 1/s): a guess would pin the run to it.
        let base = match self.rate {
            Some(r) => r,
            None => {
                let first = self.successes.front().copied()?;
                let span = now.duration_since(first);
                if span < EVIDENCE {
                    return None;
                }
                self.successes.len() as f64 / span.as_secs_f64()
            }
        };
        // The first rate is measured over a burst and the pause it caused, so it is low:
        // grow back quickly until a 429 at a known rate marks the real limit (else the slow
        // growth near the "limit" would keep the run below it for minutes).
        self.last_limit = self.rate.map(|_| base);
        let rate = (base * DECREASE).max(MIN_RATE);
        self.rate = Some(match ceiling {
            Some(c) => rate.min(c),
            None => rate,
        });
        self.last_decrease = Some(now);
        self.rate
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
        // The first limit is only an estimate: growth stays quick past it (36 → 42).
        for _ in 0..120 {
            a.on_success();
        }
        let probed = a.rate().unwrap();
        assert!(probed > 41.0, "{r} → {probed}");
        // A 429 at a known rate marks the limit: quick growth up to 95 % of it (37.8 → 39.9
        // within 80 successes), slow after.
        tokio::time::advance(COOLDOWN).await;
        let r = a.on_rate_limited().unwrap();
        assert!((r - probed * DECREASE).abs() < 0.01, "{r}");
        for _ in 0..80 {
            a.on_success();
        }
        let grown = a.rate().unwrap();
        assert!(grown > r + 1.9 && grown < 40.5, "{r} → {grown}");
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

    #[tokio::test(start_paused = true)]
    async fn an_early_429_sets_the_rate_once_answers_are_back() {
        let a = Adaptive::new(None);
        a.on_success();
        assert_eq!(a.on_rate_limited(), None, "no evidence yet");
        // 20 more answers over the next second, no 429: the next slot sets the rate.
        for _ in 0..20 {
            tokio::time::advance(Duration::from_millis(50)).await;
            a.on_success();
        }
        a.ready().await;
        let r = a.rate().unwrap();
        assert!((r - 21.0 * DECREASE).abs() < 1.0, "{r}");
    }

    #[tokio::test(start_paused = true)]
    async fn slots_are_spaced_from_the_end_of_a_pause() {
        let a = Adaptive::new(None);
        for _ in 0..20 {
            a.on_success();
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        let r = a.on_rate_limited().unwrap();
        let t0 = Instant::now();
        a.hold_until(t0 + Duration::from_secs(1));
        a.ready().await;
        assert!(
            t0.elapsed() >= Duration::from_secs(1),
            "no slot inside the pause"
        );
        for _ in 0..4 {
            a.ready().await;
        }
        let spacing = (t0.elapsed().as_secs_f64() - 1.0) / 4.0;
        assert!((spacing - 1.0 / r).abs() < 0.01, "{spacing} vs {r}");
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
