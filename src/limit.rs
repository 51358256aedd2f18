//! Pacing: one scheduler of sending slots for the `--rps`/`--rpm` ceiling (its bucket starts
//! empty), the rate the server is willing to take (learnt from 429s, AIMD), and OpenRouter's
//! 20 requests/minute for `:free` models; plus the pause gate a `Retry-After` closes for every
//! worker at once.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::inflight::InFlight;

/// A request-rate ceiling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Requests per second (may be fractional: `--rpm 30` is 0.5).
    pub per_second: f64,
    /// How many requests may go at once after an idle spell (`--burst`, default 1).
    pub burst: NonZeroU32,
}

/// OpenRouter's limit for `:free` model variants: 20 requests a minute per account, all free
/// models together (FACTS §7.3).
pub const FREE_MODEL_RPM: f64 = 20.0;

/// Whether `model` is a `:free` variant, which shares the account's free-model limit.
pub fn is_free_model(model: &str) -> bool {
    model.ends_with(":free")
}

/// Sending slots at a steady rate (GCRA as virtual scheduling): each caller *reserves* the
/// next slot and then sleeps until it. A caller that wakes late still had its slot, so timer
/// lateness does not add up (a limiter that admits at wake-up time loses each wake-up's
/// lateness: 9 % at 500/s). Slots never come closer than the rate allows, beyond `tolerance`
/// (the burst).
#[derive(Debug)]
struct Slots {
    /// The theoretical arrival time of the next request.
    tat: Instant,
    /// No slot before this (the end of a `Retry-After` pause).
    not_before: Instant,
}

impl Slots {
    /// Slots whose first one is free now.
    fn open(now: Instant) -> Slots {
        Slots {
            tat: now,
            not_before: now,
        }
    }

    /// Slots that start empty: a full burst is earned first, so the first slot is one period
    /// away.
    fn empty(now: Instant, period: Duration, burst: u32) -> Slots {
        Slots {
            tat: now + period * burst,
            not_before: now,
        }
    }

    fn reserve(&mut self, now: Instant, period: Duration, tolerance: Duration) -> Instant {
        let earliest = self.tat.checked_sub(tolerance).unwrap_or(now);
        let slot = earliest.max(now).max(self.not_before);
        self.tat = self.tat.max(slot) + period;
        slot
    }
}

/// What [`PauseGate::pause_for`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// The gate was open: a new pause (worth telling the user once).
    Began,
    /// A pause was running and now ends later (a burst of 429s: not worth a line each).
    Extended,
    /// A running pause already lasts longer.
    Unchanged,
}

/// A gate every attempt passes before it starts; `pause_for` closes it for everyone.
#[derive(Debug, Default)]
pub struct PauseGate {
    until: Mutex<Option<Instant>>,
}

impl PauseGate {
    /// Keep every worker from starting an attempt for `d` (extends, never shortens, a pause).
    /// Says whether this call began a pause, extended one, or changed nothing.
    pub fn pause_for(&self, d: Duration) -> Pause {
        let now = Instant::now();
        let target = now + d;
        let mut until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        match *until {
            Some(u) if u >= target => Pause::Unchanged,
            Some(u) if u > now => {
                *until = Some(target);
                Pause::Extended
            }
            _ => {
                *until = Some(target);
                Pause::Began
            }
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

/// How many sending slots may be reserved ahead (each waiter sleeping until its own): enough
/// that a waiter waking late keeps the rate, few enough that a new rate applies at once.
const AHEAD: usize = 4;

/// Over how long the accepted rate is measured when a 429 arrives (sends minus 429s).
const WINDOW: Duration = Duration::from_secs(1);
/// The fewest sends in the window that measure the accepted rate.
const MIN_SAMPLE: usize = 8;
/// The slowest the learnt rate goes (one request every 10 s).
const MIN_RATE: f64 = 0.1;
/// After a 429 the rate drops to this share of the rate that met it.
const DECREASE: f64 = 0.9;
/// Growth is slow from this share of the rate of the last 429 …
const NEAR_BELOW: f64 = 0.97;
/// … up to this share: above it, that limit has evidently moved, and growth is quick again.
const NEAR_ABOVE: f64 = 1.05;
/// Slow growth, a share of the rate per second (quick growth is 5 %).
const SLOW_GROWTH: f64 = 0.001;
/// A decrease at most this often: one burst of 429s is one signal, not many.
const COOLDOWN: Duration = Duration::from_secs(1);
/// While the first rate is provisional, it grows this many times a second …
const RAMP: f64 = 4.0;
/// … or this many times when the 429s carried a pause (each one that the ramp meets costs a
/// pause for everyone, not one request).
const RAMP_PAUSED: f64 = 2.0;

/// Hands out sending slots: at most the `--rps` ceiling, at most the rate the server is
/// willing to take, and `:free` models at most 20 a minute.
///
/// The server's rate is learnt from its answers: unlimited until the first 429; then the rate
/// it accepted over the last second (requests sent minus 429s). A 429 within the first second
/// of sending (the first burst meets a limit before there is a second of evidence) makes that
/// rate *provisional*: a lower bound that grows quickly (4× a second, 2× when 429s carry a
/// pause) until a 429 at that rate shows where the limit is; then 0.9 × what was accepted.
/// A 429 after a full second sets 0.9 × the accepted rate at once. That first measure is
/// low, so it grows back quickly (about 5 % a second); each later 429 takes 10 % off the
/// current rate (multiplicative decrease). Successes grow it back (additive increase):
/// quickly while below 97 % of the rate of the last 429, slowly — 0.1 % a second — from there
/// to 5 % above it, so that the limit is probed rarely (each probe that fails costs a 429, or
/// a `Retry-After` pause for everyone), and quickly again beyond (the limit moved). Never
/// above the `--rps` ceiling.
#[derive(Debug)]
pub struct Pacer {
    ceiling: Option<Rate>,
    free_period: Duration,
    state: Mutex<State>,
    free: Mutex<Slots>,
    /// Slots reserved ahead of time: `AHEAD`, or the burst if larger.
    ahead: tokio::sync::Semaphore,
    /// How many attempts may be in flight (`-j`, lowered by in-flight-budget 402s).
    in_flight: InFlight,
    /// Whether the user was told about the free-model spacing.
    free_noted: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
struct State {
    slots: Slots,
    /// The server's rate in requests per second; `None` while no 429 has been seen.
    learnt: Option<f64>,
    last_decrease: Option<Instant>,
    /// The rate at which the last 429 came.
    last_limit: Option<f64>,
    /// When the requests of the last `WINDOW` were sent …
    sent: VecDeque<Instant>,
    /// … and when the 429s of the last `WINDOW` came.
    refused: VecDeque<Instant>,
    /// When the first request was sent.
    first_send: Option<Instant>,
    /// The learnt rate is a lower bound from the first second, growing at `RAMP`.
    provisional: bool,
    /// The last 429 carried a pause (`Retry-After`).
    paused: bool,
}

impl Pacer {
    pub fn new(ceiling: Option<Rate>) -> Pacer {
        Pacer::with_free_rpm(ceiling, FREE_MODEL_RPM)
    }

    /// `free_rpm` other than 20 is for tests (`ORBATCH_FREE_RPM`).
    pub fn with_free_rpm(ceiling: Option<Rate>, free_rpm: f64) -> Pacer {
        let now = Instant::now();
        let slots = match ceiling {
            Some(c) => Slots::empty(now, period(under_ceiling(c.per_second)), c.burst.get()),
            None => Slots::open(now),
        };
        Pacer {
            ceiling,
            free_period: period(free_rpm / 60.0),
            state: Mutex::new(State {
                slots,
                learnt: None,
                last_decrease: None,
                last_limit: None,
                sent: VecDeque::new(),
                refused: VecDeque::new(),
                first_send: None,
                provisional: false,
                paused: false,
            }),
            // The free limit is a per-minute count on the server: the first one may go at once.
            free: Mutex::new(Slots::open(now)),
            free_noted: std::sync::atomic::AtomicBool::new(false),
            in_flight: InFlight::new(tokio::sync::Semaphore::MAX_PERMITS),
            ahead: tokio::sync::Semaphore::new(
                ceiling.map_or(AHEAD, |c| AHEAD.max(c.burst.get() as usize)),
            ),
        }
    }

    /// At most `n` attempts in flight at once (`-j`), after a slow start.
    pub fn concurrency(mut self, n: usize) -> Pacer {
        self.in_flight = InFlight::slow_start(n);
        self
    }

    /// The in-flight limit, which 402s for the in-flight budget lower and successes raise.
    pub fn in_flight(&self) -> &InFlight {
        &self.in_flight
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The rate learnt from the server's 429s (`None`: not limited by the server).
    pub fn rate(&self) -> Option<f64> {
        self.lock().learnt
    }

    /// Wait for a sending slot for a request to `model`.
    pub async fn ready(&self, model: &str) {
        if is_free_model(model) {
            if !self
                .free_noted
                .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                tracing::warn!(
                    "`:free` models share OpenRouter's limit of {:.0} requests a minute: \
                     their requests go {:.1} s apart",
                    60.0 / self.free_period.as_secs_f64(),
                    self.free_period.as_secs_f64()
                );
            }
            let slot = {
                let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
                free.reserve(Instant::now(), self.free_period, Duration::ZERO)
            };
            tokio::time::sleep_until(slot).await;
        }
        if self.ceiling.is_none() && self.lock().learnt.is_none() {
            return;
        }
        // Only the first few waiters hold a reservation, so a new rate applies within a few
        // slots rather than after every worker's (the semaphore is never closed).
        let _turn = self.ahead.acquire().await;
        let slot = {
            let mut s = self.lock();
            let now = Instant::now();
            let (rate, tolerance) = match (s.learnt, self.ceiling) {
                (None, None) => return,
                // The burst is the user's allowance under their own ceiling; once the server
                // has pushed back, requests go evenly spaced.
                (None, Some(c)) => (under_ceiling(c.per_second), tolerance(c)),
                (Some(l), None) => (l, Duration::ZERO),
                (Some(l), Some(c)) => (l.min(under_ceiling(c.per_second)), Duration::ZERO),
            };
            s.slots.reserve(now, period(rate), tolerance)
        };
        tokio::time::sleep_until(slot).await;
    }

    /// Nothing is sent before `t` (a `Retry-After` pause): the first slot after it starts
    /// the spacing again, so the requests held by the pause leave at the rate, not at once.
    pub fn hold_until(&self, t: Instant) {
        let mut s = self.lock();
        s.slots.tat = s.slots.tat.max(t);
        s.slots.not_before = s.slots.not_before.max(t);
    }

    /// An attempt is being sent (after its slot): counted for the accepted rate.
    pub fn on_send(&self) {
        let now = Instant::now();
        let mut s = self.lock();
        s.first_send.get_or_insert(now);
        s.sent.push_back(now);
        keep_window(&mut s.sent, now);
    }

    /// A request was answered: grow the rate back.
    pub fn on_success(&self) {
        self.in_flight.on_success();
        let mut s = self.lock();
        let Some(rate) = s.learnt else {
            return;
        };
        let grown = if s.provisional {
            // Per success `ln(RAMP)`, so `RAMP` times a second at this rate.
            rate + if s.paused { RAMP_PAUSED } else { RAMP }.ln()
        } else {
            // Per success `step / rate`, so about `step` per second at this rate.
            let near_limit = s
                .last_limit
                .is_some_and(|l| (NEAR_BELOW * l..=NEAR_ABOVE * l).contains(&rate));
            let step = if near_limit {
                rate * SLOW_GROWTH
            } else {
                (rate * 0.05).max(0.5)
            };
            rate + step / rate
        };
        s.learnt = Some(capped(grown, self.ceiling));
    }

    /// The server said 429 (`paused`: with a `Retry-After`): slow down to below what it was
    /// accepting. Returns the new rate when it changed.
    pub fn on_rate_limited(&self, paused: bool) -> Option<f64> {
        self.in_flight.on_rate_limited();
        let now = Instant::now();
        let mut s = self.lock();
        s.refused.push_back(now);
        keep_window(&mut s.refused, now);
        s.paused = paused;
        if s.last_decrease
            .is_some_and(|t| now.duration_since(t) < COOLDOWN)
        {
            return None;
        }
        s.decrease(now, self.ceiling)
    }
}

/// Keep only the instants of the last `WINDOW`.
fn keep_window(times: &mut VecDeque<Instant>, now: Instant) {
    while times
        .front()
        .is_some_and(|t| now.duration_since(*t) > WINDOW)
    {
        times.pop_front();
    }
}

/// How late a send may leave after its slot (a busy machine wakes tasks late) without
/// making any 1 s window hold more than the ceiling plus the burst.
const LATENESS: f64 = 0.005;

/// The spacing rate for a `--rps` ceiling. Slots exactly `1/rate` apart leave room for one
/// send in any 1 s window; at high rates that room is less than `LATENESS`, so the slots are
/// spaced a little wider there: 500/s is paced at 498.5/s, 5000/s at 4975/s (at most 0.5 %
/// under), and 200/s or less exactly.
fn under_ceiling(per_second: f64) -> f64 {
    per_second.min((per_second + 1.0) / (1.0 + LATENESS))
}

/// The burst allowance as slot tolerance.
fn tolerance(c: Rate) -> Duration {
    period(under_ceiling(c.per_second)) * (c.burst.get() - 1)
}

/// A learnt rate never goes above the `--rps` ceiling.
fn capped(rate: f64, ceiling: Option<Rate>) -> f64 {
    ceiling.map_or(rate, |c| rate.min(c.per_second))
}

fn period(per_second: f64) -> Duration {
    Duration::try_from_secs_f64(1.0 / per_second).unwrap_or(Duration::from_secs(3600))
}

impl State {
    /// Requests the server accepted over the last `WINDOW`: those sent minus the 429s (a
    /// 429 comes back quickly, so what is still in flight was accepted). Unlike answers
    /// counted as they come back, this does not lag by the latency.
    fn accepted(&mut self, now: Instant) -> f64 {
        keep_window(&mut self.sent, now);
        keep_window(&mut self.refused, now);
        self.sent.len().saturating_sub(self.refused.len()) as f64 / WINDOW.as_secs_f64()
    }

    /// The multiplicative decrease.
    fn decrease(&mut self, now: Instant, ceiling: Option<Rate>) -> Option<f64> {
        let accepted = self.accepted(now);
        // The accepted rate measures the server only when the window holds enough sends: a
        // pause that held them back leaves one send, which read as 0.1/s after a 1 s
        // `Retry-After` (a 16-row job took 58 s). Over a window that a pause took part of, the
        // count is still what a window limit counts (25 in any second is 25/s, pause or not).
        let measured = (self.sent.len() >= MIN_SAMPLE).then_some(accepted);
        let rate = match self.learnt {
            None => {
                // The first 429: within the first second of sending, what was accepted is
                // only a lower bound of the server's rate (a bucket's burst, or part of a
                // window), so it is where the provisional ramp starts; after a full second
                // it is the rate, and the run goes on just below it.
                let young = self
                    .first_send
                    .is_none_or(|t| now.duration_since(t) < WINDOW);
                self.last_limit = None;
                match measured {
                    Some(measured) if !young => {
                        self.provisional = false;
                        measured * DECREASE
                    }
                    // Young, or mostly paused: a lower bound to ramp up from.
                    _ => {
                        self.provisional = true;
                        accepted.max(1.0)
                    }
                }
            }
            // The ramp met the limit: just below what the server accepted (the ramp's rate
            // may be well above it). The measure is still rough (a bucket's burst is in it):
            // growth stays quick until a 429 at a known rate marks the limit.
            Some(r) if self.provisional => {
                self.provisional = false;
                self.last_limit = None;
                match measured {
                    Some(accepted) => r.min(accepted) * DECREASE,
                    None => r * DECREASE,
                }
            }
            Some(r) => {
                self.last_limit = Some(r);
                r * DECREASE
            }
        };
        self.learnt = Some(capped(rate.max(MIN_RATE), ceiling));
        self.last_decrease = Some(now);
        self.learnt
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
        assert_eq!(gate.pause_for(Duration::from_secs(2)), Pause::Began);
        assert_eq!(
            gate.pause_for(Duration::from_secs(1)),
            Pause::Unchanged,
            "a shorter pause must not shorten it"
        );
        assert_eq!(gate.pause_for(Duration::from_secs(3)), Pause::Extended);
        gate.wait().await;
        assert!(t0.elapsed() >= Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn adaptive_rate_drops_below_the_accepted_rate_and_grows_back() {
        let a = Pacer::new(ceiling(60.0, 1));
        assert_eq!(a.rate(), None, "unlimited until a 429");
        // 40 sent over the last second, all accepted until this 429: 39/s accepted.
        for _ in 0..40 {
            a.on_send();
            a.on_success();
            tokio::time::advance(Duration::from_millis(25)).await;
        }
        let r = a.on_rate_limited(false).unwrap();
        assert!((r - 39.0 * DECREASE).abs() < 1e-9, "{r}");
        assert_eq!(a.on_rate_limited(false), None, "one decrease per cooldown");
        // Slots are spaced 1/rate apart.
        let t0 = Instant::now();
        for _ in 0..5 {
            a.ready("a/b").await;
        }
        let spacing = t0.elapsed().as_secs_f64() / 4.0;
        assert!((spacing - 1.0 / r).abs() < 0.01, "{spacing}");
        // The first limit is only an estimate: growth stays quick past it (35 → 42).
        for _ in 0..140 {
            a.on_success();
        }
        let probed = a.rate().unwrap();
        assert!(probed > 42.0, "{r} → {probed}");
        // A 429 at a known rate marks the limit: quick growth up to 97 % of it (37.9 → 40.8
        // within 80 successes), slow after.
        tokio::time::advance(COOLDOWN).await;
        let r = a.on_rate_limited(false).unwrap();
        assert!((r - probed * DECREASE).abs() < 0.01, "{r}");
        for _ in 0..80 {
            a.on_success();
        }
        let grown = a.rate().unwrap();
        assert!(
            grown > NEAR_BELOW * probed && grown < NEAR_BELOW * probed + 0.1,
            "{r} → {grown}"
        );
        for _ in 0..100 {
            a.on_success();
        }
        assert!(a.rate().unwrap() - grown < 0.2, "slow near the last limit");
        // 5 % above the last limit without a 429: the limit moved, growth is quick again.
        for _ in 0..3300 {
            a.on_success();
        }
        let beyond = a.rate().unwrap();
        assert!(beyond > NEAR_ABOVE * probed, "{beyond}");
        for _ in 0..100 {
            a.on_success();
        }
        assert!(
            a.rate().unwrap() - beyond > 4.0,
            "quick beyond the old limit"
        );
        // Never above the ceiling.
        for _ in 0..100_000 {
            a.on_success();
        }
        assert_eq!(a.rate(), Some(60.0));
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_burst_sets_a_provisional_rate_that_ramps_up() {
        // A server with a bucket of 5: 8 leave at once, 3 come back 429 before any answer.
        let a = Pacer::new(None);
        for _ in 0..8 {
            a.on_send();
        }
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            a.on_rate_limited(false),
            Some(7.0),
            "sent minus refused, per second: a lower bound"
        );
        assert_eq!(a.on_rate_limited(false), None, "one decrease per cooldown");
        assert_eq!(a.on_rate_limited(false), None);
        // The lower bound grows 4× a second: ln 4 per success.
        for _ in 0..10 {
            a.on_success();
        }
        let ramped = a.rate().unwrap();
        assert!((ramped - (7.0 + 10.0 * 4f64.ln())).abs() < 1e-9, "{ramped}");
        // A 429 of the ramp: just below what the server accepted over the last second (19 of
        // 20; the burst's 429s are older), and from now on the usual quick growth.
        tokio::time::advance(COOLDOWN).await;
        for _ in 0..20 {
            a.on_send();
            tokio::time::advance(Duration::from_millis(40)).await;
        }
        let r = a.on_rate_limited(false).unwrap();
        assert!((r - 19.0 * DECREASE).abs() < 1e-9, "{r}");
        a.on_success();
        let step = a.rate().unwrap() - r;
        assert!((step - 0.05).abs() < 1e-9, "5 % a second: {step}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_ramp_that_costs_pauses_is_slower() {
        let a = Pacer::new(None);
        for _ in 0..8 {
            a.on_send();
        }
        assert_eq!(a.on_rate_limited(true), Some(7.0));
        for _ in 0..10 {
            a.on_success();
        }
        let ramped = a.rate().unwrap();
        assert!((ramped - (7.0 + 10.0 * 2f64.ln())).abs() < 1e-9, "{ramped}");
    }

    /// A pause for everyone (Retry-After) holds the sends back: the 429 that ends the ramp
    /// right after it must not read the pause as the server's rate (it read 0 sends in the
    /// last second and set 0.1/s: a 16-row job took 58 s instead of 8).
    #[tokio::test(start_paused = true)]
    async fn a_pause_is_not_read_as_the_servers_rate() {
        let a = Pacer::new(None);
        for _ in 0..8 {
            a.on_send();
        }
        assert_eq!(a.on_rate_limited(true), Some(7.0));
        a.hold_until(Instant::now() + Duration::from_secs(1));
        for _ in 0..3 {
            a.on_success();
        }
        let ramped = a.rate().unwrap();
        // The pause ends; the first sends after it meet another 429 at once.
        tokio::time::advance(Duration::from_millis(1010)).await;
        a.on_send();
        let r = a.on_rate_limited(true).unwrap();
        assert!((r - ramped * DECREASE).abs() < 1e-9, "{ramped} → {r}");
        // With enough sends in the window, the accepted rate is measured again.
        tokio::time::advance(COOLDOWN).await;
        a.hold_until(Instant::now());
        for _ in 0..10 {
            tokio::time::advance(Duration::from_millis(50)).await;
            a.on_send();
        }
        assert!(a.rate().unwrap() > 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_after_a_full_second_sets_the_rate_below_what_was_accepted() {
        let a = Pacer::new(None);
        // 30 a second for 2 s; 5 of the last second's were refused.
        for _ in 0..60 {
            a.on_send();
            tokio::time::advance(Duration::from_millis(33)).await;
        }
        for _ in 0..4 {
            a.on_rate_limited(false);
        }
        let r = a.on_rate_limited(false);
        assert_eq!(r, None, "in the cooldown of the first");
        let r = a.rate().unwrap();
        // The first of the five 429s set it: 30 sent in the last second, 1 refused.
        assert!((r - 29.0 * DECREASE).abs() < 1e-9, "{r}");
    }

    #[tokio::test(start_paused = true)]
    async fn slots_are_spaced_from_the_end_of_a_pause() {
        let a = Pacer::new(None);
        for _ in 0..20 {
            a.on_send();
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        let r = a.on_rate_limited(false).unwrap();
        let t0 = Instant::now();
        a.hold_until(t0 + Duration::from_secs(1));
        a.ready("a/b").await;
        assert!(
            t0.elapsed() >= Duration::from_secs(1),
            "no slot inside the pause"
        );
        for _ in 0..4 {
            a.ready("a/b").await;
        }
        let spacing = (t0.elapsed().as_secs_f64() - 1.0) / 4.0;
        assert!((spacing - 1.0 / r).abs() < 0.01, "{spacing} vs {r}");
    }

    fn ceiling(per_second: f64, burst: u32) -> Option<Rate> {
        Some(Rate {
            per_second,
            burst: NonZeroU32::new(burst).unwrap(),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn the_ceiling_starts_empty_and_keeps_the_rate() {
        let pacer = Pacer::new(ceiling(50.0, 1));
        let t0 = Instant::now();
        for _ in 0..5 {
            pacer.ready("a/b").await;
        }
        // Five requests at 50/s from an empty bucket: the first after 20 ms, the fifth at 100.
        assert_eq!(t0.elapsed(), Duration::from_millis(100));
    }

    #[test]
    fn high_ceilings_leave_room_for_late_sends() {
        assert_eq!(under_ceiling(40.0), 40.0);
        assert_eq!(under_ceiling(200.0), 200.0);
        for rate in [500.0, 1000.0, 5000.0] {
            let paced = under_ceiling(rate);
            assert!(paced < rate && paced >= rate * 0.995, "{rate} → {paced}");
            // Slots from 1 s + LATENESS can land in a 1 s window: still at most rate + 1.
            assert!(((1.0 + LATENESS) * paced).ceil() <= rate + 1.0);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_rate_applies_within_a_few_slots_however_many_wait() {
        let a = std::sync::Arc::new(Pacer::new(None));
        a.lock().learnt = Some(40.0);
        let t0 = Instant::now();
        let sent = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (a, sent) = (a.clone(), sent.clone());
            tasks.push(tokio::spawn(async move {
                a.ready("a/b").await;
                sent.lock().unwrap().push(Instant::now());
            }));
        }
        // 64 workers wait; after 0.5 s the server says the rate is 2/s.
        tokio::time::sleep(Duration::from_millis(500)).await;
        a.lock().learnt = Some(2.0);
        for t in tasks {
            t.await.unwrap();
        }
        let sent = sent.lock().unwrap();
        let quick = sent
            .iter()
            .filter(|t| **t > t0 + Duration::from_millis(500))
            .filter(|t| **t <= t0 + Duration::from_millis(1500))
            .count();
        // Slots reserved before the change (at most AHEAD), then one every 0.5 s.
        assert!(
            quick <= 4 + 2,
            "{quick} sends in the second after the change"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_learnt_rate_at_a_high_ceiling_keeps_the_room_for_late_sends() {
        // The server's rate grew up to the ceiling: the spacing is still the ceiling's, a
        // little under 1000/s, not exactly 1000/s.
        let a = Pacer::new(ceiling(1000.0, 1));
        a.lock().learnt = Some(1000.0);
        a.ready("a/b").await;
        let t0 = Instant::now();
        // Tokio's timer has 1 ms ticks: enough sends that one tick is noise.
        for _ in 0..5000 {
            a.ready("a/b").await;
        }
        let paced = 5000.0 / t0.elapsed().as_secs_f64();
        assert!((paced - under_ceiling(1000.0)).abs() < 0.5, "{paced}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_earned_first_then_spent_at_once() {
        let pacer = Pacer::new(ceiling(10.0, 3));
        let t0 = Instant::now();
        pacer.ready("a/b").await;
        assert_eq!(t0.elapsed(), Duration::from_millis(100), "starts empty");
        // Idle long enough to earn the whole burst: three go at once, the fourth waits.
        tokio::time::advance(Duration::from_secs(1)).await;
        let t1 = Instant::now();
        for _ in 0..3 {
            pacer.ready("a/b").await;
        }
        assert_eq!(t1.elapsed(), Duration::ZERO);
        pacer.ready("a/b").await;
        assert_eq!(t1.elapsed(), Duration::from_millis(100));
    }

    #[test]
    fn late_callers_keep_their_slots() {
        // Callers queue up ahead of time (reserve, then sleep) and each wakes up late: the
        // slots stay exactly one period apart, so the rate is kept, not lost to lateness.
        let t0 = Instant::now();
        let period = Duration::from_millis(2);
        let mut slots = Slots::empty(t0, period, 1);
        let mut now = t0;
        let mut last = None;
        for k in 0..1000u32 {
            let slot = slots.reserve(now, period, Duration::ZERO);
            assert_eq!(slot, t0 + period * (k + 1));
            if let Some(prev) = last {
                // The next caller asks while the previous one is still sleeping, or just
                // after it woke up 0.7 ms late.
                now = std::cmp::max(now, prev + Duration::from_micros(700));
            }
            last = Some(slot);
        }
    }

    #[test]
    fn no_window_holds_more_than_the_rate_plus_the_burst() {
        use proptest::prelude::*;
        proptest!(|(gaps in proptest::collection::vec(0u64..40, 1..400),
                    burst in 1u32..5, per_ms in 1u64..20)| {
            // `per_ms` ms between slots; callers arrive after random gaps.
            let period = Duration::from_millis(per_ms);
            let tolerance = period * (burst - 1);
            let t0 = Instant::now();
            let mut slots = Slots::empty(t0, period, burst);
            let mut now = t0;
            let mut times = Vec::new();
            for g in gaps {
                now += Duration::from_millis(g);
                let slot = slots.reserve(now, period, tolerance);
                prop_assert!(slot >= now);
                times.push(slot);
            }
            let window = Duration::from_millis(100);
            let allowed = (window.as_millis() as u64).div_ceil(per_ms) as usize + burst as usize - 1;
            for (i, t) in times.iter().enumerate() {
                let inside = times[i..].iter().take_while(|u| **u < *t + window).count();
                prop_assert!(inside <= allowed, "{inside} > {allowed}");
            }
        });
    }

    #[tokio::test(start_paused = true)]
    async fn free_models_share_twenty_a_minute_and_others_do_not_wait() {
        let pacer = Pacer::new(None);
        let t0 = Instant::now();
        pacer.ready("x/a:free").await;
        pacer.ready("x/b:free").await;
        pacer.ready("x/a:free").await;
        assert_eq!(
            t0.elapsed(),
            Duration::from_secs(6),
            "3 s apart, across free models"
        );
        let t1 = Instant::now();
        for _ in 0..100 {
            pacer.ready("x/a").await;
        }
        assert_eq!(t1.elapsed(), Duration::ZERO, "paid models are not held");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_the_burst_too() {
        let pacer = Pacer::new(ceiling(10.0, 5));
        tokio::time::advance(Duration::from_secs(2)).await;
        let t0 = Instant::now();
        pacer.hold_until(t0 + Duration::from_secs(1));
        pacer.ready("a/b").await;
        assert_eq!(
            t0.elapsed(),
            Duration::from_secs(1),
            "no slot inside the pause"
        );
    }
}
