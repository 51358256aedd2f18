//! `--max-cost`: spend never goes past the cap. Each request reserves its worst-case cost
//! before it starts (prompt estimate × prompt price + completion bound × completion price);
//! when it ends, its real `usage.cost` replaces the reservation (SPEC §5).
//!
//! The completion bound is the request's `max_tokens` when set, else the largest completion
//! seen so far for that model in this run (1024 tokens before any is seen). With `max_tokens`
//! the cap holds up to the prompt estimate's error; without it, up to completions that run
//! longer than any seen before.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::catalog::Catalog;
use crate::estimate;
use crate::job::Request;
use crate::text::usd;

/// The completion bound before any completion of a model has been seen.
pub const DEFAULT_COMPLETION_BOUND: u64 = 1024;

/// A request's claim on the budget, released by [`Budget::settle`].
#[derive(Debug)]
#[must_use = "a reservation must be settled"]
pub struct Reservation {
    amount: f64,
}

/// Why a request may not start.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BudgetStop {
    #[error(
        "--max-cost {} reached: {} spent, and the next request could cost up to {}",
        usd(*cap), usd(*spent), usd(*next)
    )]
    Reached { cap: f64, spent: f64, next: f64 },
    #[error("--max-cost: /models has no price for {0}, so its cost cannot be bounded")]
    NoPrice(String),
}

#[derive(Debug, Default)]
struct State {
    /// Real cost recorded (earlier runs' records plus this run's finished requests).
    spent: f64,
    /// Open reservations.
    reserved: f64,
    open: u64,
    /// Largest completion seen per model in this run.
    longest: HashMap<String, u64>,
}

/// The spend cap of a run.
#[derive(Debug)]
pub struct Budget {
    cap: f64,
    catalog: Catalog,
    state: Mutex<State>,
    settled: Notify,
}

impl Budget {
    /// A cap of `cap` USD of which `already_spent` is used by earlier runs on this output.
    pub fn new(cap: f64, already_spent: f64, catalog: Catalog) -> Budget {
        Budget {
            cap,
            catalog,
            state: Mutex::new(State {
                spent: already_spent,
                ..State::default()
            }),
            settled: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The worst-case cost of `req` now; `None` when its model has no known price.
    fn estimate(&self, req: &Request, state: &State) -> Option<f64> {
        let price = self.catalog.get(&req.model)?.pricing?;
        let bound = estimate::max_completion(&req.body).unwrap_or_else(|| {
            state
                .longest
                .get(&req.model)
                .copied()
                .unwrap_or(DEFAULT_COMPLETION_BOUND)
        });
        Some(price.cost(estimate::prompt_tokens(&req.body), bound))
    }

    /// Reserve the worst-case cost of `req`, waiting for open reservations to settle when it
    /// does not fit yet. Fails when it cannot fit even with nothing else open.
    pub async fn reserve(&self, req: &Request) -> Result<Reservation, BudgetStop> {
        loop {
            // Register interest before checking, so a settle in between is not missed.
            let settled = self.settled.notified();
            {
                let mut s = self.lock();
                let amount = self
                    .estimate(req, &s)
                    .ok_or_else(|| BudgetStop::NoPrice(req.model.clone()))?;
                if s.spent + s.reserved + amount <= self.cap {
                    s.reserved += amount;
                    s.open += 1;
                    return Ok(Reservation { amount });
                }
                if s.open == 0 {
                    return Err(BudgetStop::Reached {
                        cap: self.cap,
                        spent: s.spent,
                        next: amount,
                    });
                }
            }
            settled.await;
        }
    }

    /// Replace a reservation with what the request really cost.
    pub fn settle(
        &self,
        reservation: Reservation,
        model: &str,
        cost: f64,
        completion_tokens: Option<u64>,
    ) {
        {
            let mut s = self.lock();
            s.reserved = (s.reserved - reservation.amount).max(0.0);
            s.open = s.open.saturating_sub(1);
            s.spent += cost;
            if let Some(n) = completion_tokens {
                let longest = s.longest.entry(model.to_owned()).or_default();
                *longest = (*longest).max(n);
            }
        }
        self.settled.notify_waiters();
    }
}

#[cfg(test)]
impl Budget {
    /// Spend recorded so far (earlier runs included).
    fn spent(&self) -> f64 {
        self.lock().spent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;
    use std::time::Duration;

    fn req(max_tokens: Option<u64>) -> Request {
        crate::job::test_request("m", max_tokens)
    }

    fn budget(cap: f64, spent: f64) -> Budget {
        let catalog = Catalog::from_json(&json!({"data":[
            {"id":"m","pricing":{"prompt":"1","completion":"1"}},
            {"id":"free","pricing":{"prompt":"-1","completion":"-1"}}]}))
        .unwrap();
        Budget::new(cap, spent, catalog)
    }

    #[tokio::test]
    async fn reserves_the_worst_case_and_settles_to_the_real_cost() {
        // Prompt estimate: 2 + 4 = 6 tokens; bound 10 → 16 USD at 1 USD/token.
        let b = budget(40.0, 0.0);
        let r1 = b.reserve(&req(Some(10))).await.unwrap();
        let r2 = b.reserve(&req(Some(10))).await.unwrap();
        assert_eq!(b.lock().reserved, 32.0);
        b.settle(r1, "m", 2.0, Some(3));
        b.settle(r2, "m", 2.0, Some(3));
        assert_eq!(b.spent(), 4.0);
        // 4 + 16 + 16 = 36 ≤ 40, a third would be 52.
        let a = b.reserve(&req(Some(10))).await.unwrap();
        let c = b.reserve(&req(Some(10))).await.unwrap();
        b.settle(a, "m", 15.0, None);
        b.settle(c, "m", 15.0, None);
        let err = b.reserve(&req(Some(10))).await.unwrap_err();
        assert!(
            matches!(err, BudgetStop::Reached { spent: 34.0, .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn the_bound_without_max_tokens_is_the_longest_seen() {
        let b = budget(2000.0, 0.0);
        let r = b.reserve(&req(None)).await.unwrap();
        assert_eq!(b.lock().reserved, 6.0 + DEFAULT_COMPLETION_BOUND as f64);
        b.settle(r, "m", 1.0, Some(50));
        let r = b.reserve(&req(None)).await.unwrap();
        assert_eq!(b.lock().reserved, 56.0);
        b.settle(r, "m", 1.0, Some(10));
    }

    #[tokio::test]
    async fn a_request_that_does_not_fit_waits_for_open_ones() {
        let b = Arc::new(budget(20.0, 0.0));
        let first = b.reserve(&req(Some(10))).await.unwrap();
        let waiter = {
            let b = Arc::clone(&b);
            tokio::spawn(async move { b.reserve(&req(Some(10))).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "must wait while the first is open");
        b.settle(first, "m", 1.0, Some(1));
        let second = waiter.await.unwrap().unwrap();
        b.settle(second, "m", 1.0, None);
    }

    #[tokio::test]
    async fn a_model_without_a_price_cannot_be_bounded() {
        let b = budget(20.0, 0.0);
        let mut r = req(Some(1));
        r.model = "free".into();
        assert_eq!(
            b.reserve(&r).await.unwrap_err(),
            BudgetStop::NoPrice("free".into())
        );
        r.model = "unknown".into();
        assert!(b.reserve(&r).await.is_err());
    }

    #[tokio::test]
    async fn earlier_spend_counts() {
        let b = budget(20.0, 10.0);
        assert!(b.reserve(&req(Some(10))).await.is_err());
    }
}
