//! The adaptive in-flight limit. A run starts with at most `START` attempts in flight: the
//! first answer opens the limit to `-j` unless a 429 came first, in which case it grows by one
//! per success (doubling per round trip, TCP's slow start), so that the first burst against a
//! rate-limited server is small. OpenRouter's in-flight-budget 402 says too many paid requests
//! are running at once for the balance, so it shrinks how many attempts may be in flight
//! (to 3/4 of what was in flight), and successes grow the limit back to `-j` (AIMD): one more
//! per round trip up to just under the level the server refused, then one more per
//! `SLOW` round trips, so that the budget is probed rarely (each refusal pauses everyone
//! for its `Retry-After`).

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// Round trips per +1 at and above the level the server last refused, minus one.
const SLOW: usize = 20;

/// Attempts in flight before the first answer is back.
pub const START: usize = 8;

/// A decrease at most this often: one burst of 402s is one signal, not many.
const COOLDOWN: Duration = Duration::from_secs(1);

/// How many attempts may be in flight at once.
#[derive(Debug)]
pub struct InFlight {
    permits: Semaphore,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    limit: usize,
    max: usize,
    /// Permits to forget as they come back (the limit shrank below what was in flight).
    debt: usize,
    /// Successes towards the next +1 (one per `limit` successes: +1 per round trip).
    credit: usize,
    last_decrease: Option<Instant>,
    /// How many were in flight when the server last refused one.
    refused_at: Option<usize>,
    start: Start,
}

/// The start of a run, before the limit first reaches `-j`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// At most `START` in flight until the first answer, which opens the limit to `-j`.
    Opening,
    /// A 429 came before any answer: one more per success up to `-j`.
    Doubling,
    /// At `-j`, or under the in-flight AIMD after a 402.
    Done,
}

/// One attempt in flight; dropping it frees the place (or retires it, after a decrease).
#[derive(Debug)]
pub struct Slot<'a> {
    permit: Option<SemaphorePermit<'a>>,
    owner: &'a InFlight,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            let mut s = self.owner.lock();
            if s.debt > 0 {
                s.debt -= 1;
                permit.forget();
            }
        }
    }
}

impl InFlight {
    /// At most `max` in flight (`-j`; every worker holds one request, so this only bites once
    /// a 402 has lowered it).
    pub fn new(max: usize) -> InFlight {
        InFlight::starting_at(max, max)
    }

    /// At most `max` in flight, starting with `START` until the first answer is back.
    pub fn slow_start(max: usize) -> InFlight {
        InFlight::starting_at(max, START)
    }

    fn starting_at(max: usize, start: usize) -> InFlight {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        let limit = start.clamp(1, max);
        InFlight {
            permits: Semaphore::new(limit),
            state: Mutex::new(State {
                limit,
                max,
                debt: 0,
                credit: 0,
                last_decrease: None,
                refused_at: None,
                start: if limit < max {
                    Start::Opening
                } else {
                    Start::Done
                },
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait for a place for one attempt.
    pub async fn acquire(&self) -> Slot<'_> {
        // The semaphore is never closed; if it were, going on unlimited beats hanging.
        let permit = self.permits.acquire().await.ok();
        Slot {
            permit,
            owner: self,
        }
    }

    /// The limit while a 402 holds it below `-j` (not while a run starts).
    pub fn reduced(&self) -> Option<usize> {
        let s = self.lock();
        (s.start == Start::Done && s.limit < s.max).then_some(s.limit)
    }

    /// Raise the limit by `n` places (`n` ≤ `max - limit`).
    fn grow(&self, s: &mut State, n: usize) {
        s.limit += n;
        let repaid = n.min(s.debt);
        s.debt -= repaid;
        self.permits.add_permits(n - repaid);
    }

    /// A 429 (the server's rate, not its in-flight budget): a start that has not seen an
    /// answer yet goes on one place per success rather than opening to `-j` at once.
    pub fn on_rate_limited(&self) {
        let mut s = self.lock();
        if s.start == Start::Opening {
            s.start = Start::Doubling;
        }
    }

    /// An attempt succeeded: at the start, open to `-j` (or one more place); after a 402, one
    /// more place per `limit` successes, up to `-j`.
    pub fn on_success(&self) {
        let mut s = self.lock();
        match s.start {
            Start::Opening => {
                let n = s.max - s.limit;
                self.grow(&mut s, n);
                s.start = Start::Done;
                return;
            }
            Start::Doubling => {
                self.grow(&mut s, 1);
                if s.limit >= s.max {
                    s.start = Start::Done;
                }
                return;
            }
            Start::Done => {}
        }
        if s.limit >= s.max {
            return;
        }
        s.credit += 1;
        let near = s.refused_at.is_some_and(|r| s.limit + 1 >= r);
        let per_step = if near { s.limit * SLOW } else { s.limit };
        if s.credit >= per_step {
            s.credit = 0;
            self.grow(&mut s, 1);
        }
    }

    /// The server answers one request at a time (it cut a stream short when another came,
    /// as llama.cpp's server does): one in flight from now on, for the rest of the run.
    /// Returns the new limit when it changed.
    pub fn one_at_a_time(&self) -> Option<usize> {
        let mut s = self.lock();
        s.start = Start::Done;
        s.max = 1;
        if s.limit <= 1 {
            return None;
        }
        let cut = s.limit - 1;
        let now_forgotten = self.permits.forget_permits(cut);
        s.debt += cut - now_forgotten;
        s.limit = 1;
        s.credit = 0;
        s.last_decrease = Some(Instant::now());
        Some(1)
    }

    /// The server said too many are in flight: allow 3/4 of what is in flight now (the
    /// attempt that was refused still counts). Returns the new limit when it changed.
    pub fn on_pushback(&self) -> Option<usize> {
        let now = Instant::now();
        let mut s = self.lock();
        if s.last_decrease
            .is_some_and(|t| now.duration_since(t) < COOLDOWN)
        {
            return None;
        }
        s.start = Start::Done;
        let held = (s.limit + s.debt).saturating_sub(self.permits.available_permits());
        s.refused_at = Some(held);
        let new = (held.min(s.limit) * 3 / 4).max(1);
        if new >= s.limit {
            return None;
        }
        let cut = s.limit - new;
        let now_forgotten = self.permits.forget_permits(cut);
        s.debt += cut - now_forgotten;
        s.limit = new;
        s.credit = 0;
        s.last_decrease = Some(now);
        Some(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_pushback_shrinks_to_three_quarters_of_what_was_in_flight() {
        let f = InFlight::new(64);
        assert_eq!(f.reduced(), None);
        let mut held = Vec::new();
        for _ in 0..20 {
            held.push(f.acquire().await);
        }
        // 20 in flight when the 402 comes: 15 from now on.
        assert_eq!(f.on_pushback(), Some(15));
        assert_eq!(f.on_pushback(), None, "one decrease per cooldown");
        // The 20 running attempts finish; only 15 places are left.
        held.clear();
        for _ in 0..15 {
            held.push(f.acquire().await);
        }
        let more = tokio::time::timeout(Duration::from_secs(1), f.acquire()).await;
        assert!(more.is_err(), "a 16th must wait");
        assert_eq!(f.reduced(), Some(15));
    }

    #[tokio::test(start_paused = true)]
    async fn a_one_at_a_time_server_gets_one_for_good() {
        let f = InFlight::new(8);
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(f.acquire().await);
        }
        assert_eq!(f.one_at_a_time(), Some(1));
        assert_eq!(f.one_at_a_time(), None);
        held.clear();
        let one = f.acquire().await;
        let more = tokio::time::timeout(Duration::from_secs(1), f.acquire()).await;
        assert!(more.is_err(), "a second must wait");
        drop(one);
        // Successes never grow it back.
        for _ in 0..100 {
            let s = f.acquire().await;
            f.on_success();
            drop(s);
        }
        let _one = f.acquire().await;
        let more = tokio::time::timeout(Duration::from_secs(1), f.acquire()).await;
        assert!(more.is_err(), "still one at a time");
    }

    #[tokio::test(start_paused = true)]
    async fn successes_grow_the_limit_back_quickly_then_slowly_up_to_j() {
        let f = InFlight::new(8);
        let mut held = Vec::new();
        for _ in 0..8 {
            held.push(f.acquire().await);
        }
        assert_eq!(f.on_pushback(), Some(6));
        held.clear();
        // Six successes (one round trip at 6 in flight): 7 places.
        for _ in 0..6 {
            f.on_success();
        }
        assert_eq!(f.reduced(), Some(7));
        for _ in 0..7 {
            held.push(f.acquire().await);
        }
        let more = tokio::time::timeout(Duration::from_secs(1), f.acquire()).await;
        assert!(more.is_err(), "7, not 8");
        held.clear();
        // 7 is one under the refused 8: from here one more per 20 round trips.
        for _ in 0..7 * SLOW - 1 {
            f.on_success();
        }
        assert_eq!(f.reduced(), Some(7), "slow near the refused level");
        f.on_success();
        assert_eq!(f.reduced(), None, "back to -j");
        for _ in 0..1000 {
            f.on_success();
        }
        for _ in 0..8 {
            held.push(f.acquire().await);
        }
        let more = tokio::time::timeout(Duration::from_secs(1), f.acquire()).await;
        assert!(more.is_err(), "never above -j");
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_answer_opens_the_start_to_j() {
        let f = InFlight::slow_start(64);
        let mut held = Vec::new();
        for _ in 0..START {
            held.push(f.acquire().await);
        }
        let more = tokio::time::timeout(Duration::from_secs(1), f.acquire()).await;
        assert!(more.is_err(), "no more than START before an answer");
        assert_eq!(f.reduced(), None, "a start is not a reduced limit");
        f.on_success();
        for _ in 0..64 - START {
            held.push(f.acquire().await);
        }
        let more = tokio::time::timeout(Duration::from_secs(1), f.acquire()).await;
        assert!(more.is_err(), "never above -j");
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_before_any_answer_makes_the_start_grow_one_per_success() {
        let f = InFlight::slow_start(64);
        f.on_rate_limited();
        let mut held = Vec::new();
        for _ in 0..START {
            held.push(f.acquire().await);
        }
        // Five answers: five more places, no more.
        for _ in 0..5 {
            f.on_success();
        }
        for _ in 0..5 {
            held.push(f.acquire().await);
        }
        let more = tokio::time::timeout(Duration::from_secs(1), f.acquire()).await;
        assert!(more.is_err(), "START + 5");
        for _ in 0..100 {
            f.on_success();
        }
        for _ in 0..64 - START - 5 {
            held.push(f.acquire().await);
        }
        let more = tokio::time::timeout(Duration::from_secs(1), f.acquire()).await;
        assert!(more.is_err(), "never above -j");
    }

    #[test]
    fn a_small_j_has_no_start() {
        let f = InFlight::slow_start(4);
        assert_eq!(f.lock().start, Start::Done);
        assert_eq!(f.lock().limit, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_never_drops_below_one() {
        let f = InFlight::new(4);
        let _one = f.acquire().await;
        assert_eq!(f.on_pushback(), Some(1));
        tokio::time::advance(COOLDOWN).await;
        assert_eq!(f.on_pushback(), None, "already 1");
    }
}
