//! `--max-cost`: billed spend never goes past the cap, whatever the server's tokenizer and
//! however attempts fail (SPEC §5, issue #13 §3).
//!
//! Every *attempt* (a retry too) reserves its worst case before it is sent: the prompt
//! estimate (characters ÷ 4) × the model's calibrated ratio of real to estimated prompt tokens
//! × prompt price, + a completion bound × completion price, where the bound is `max_tokens`
//! when set, else the longest completion seen with a margin ([`calibration`]; 2× and 1024
//! tokens until a model has answered a few times). An attempt is sent only if recorded
//! spend + open reservations + its own fit under the cap, else it waits for open ones, and
//! the run stops when even nothing open leaves room. When it ends, the reservation becomes
//! what the attempt cost ([`charge`]): an answer's `usage.cost`; nothing for a refusal before
//! any generation (4xx) or no answer at all; otherwise the reservation stands, because a
//! failed attempt may have been billed, until `GET /generation` prices it ([`lookup`]).

mod calibration;
mod charge;
mod lookup;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, Pricing};
use crate::client::{Attempt, Client};
use crate::estimate;
use crate::job::Request;
use crate::text::usd;

use calibration::Calibration;
use charge::Charge;

/// The completion bound before any completion of a model has been seen.
pub const DEFAULT_COMPLETION_BOUND: u64 = 1024;

/// One attempt's claim on the budget. Settled with what the attempt cost by
/// [`Claim::settle`]; dropped unsettled (the attempt was never sent), it is released.
#[derive(Debug)]
#[must_use = "a claim is settled after its attempt, or dropped if it is not sent"]
pub struct Claim {
    budget: Arc<Budget>,
    reservation: Option<Reservation>,
}

#[derive(Debug)]
struct Reservation {
    amount: f64,
    model: String,
    /// The prompt-token estimate it was made with (to calibrate from the answer).
    estimate: u64,
    price: Pricing,
}

/// A failed attempt's reservation, kept open until `/generation` prices it.
#[derive(Debug)]
pub struct Pending {
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
    /// Cost counted so far (earlier runs' records plus this run's settled attempts).
    spent: f64,
    /// Open reservations, including failed attempts waiting for `/generation`.
    reserved: f64,
    open: u64,
    models: HashMap<String, Calibration>,
}

/// The spend cap of a run.
#[derive(Debug)]
pub struct Budget {
    cap: f64,
    catalog: Catalog,
    state: Mutex<State>,
    settled: Notify,
    /// Cancelled when the run is over: `/generation` lookups stop.
    closed: CancellationToken,
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
            closed: CancellationToken::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The worst case of one attempt of `req` now; `None` when its model has no price.
    fn worst_case(&self, req: &Request, state: &State) -> Option<Reservation> {
        let price = self.catalog.get(&req.model)?.pricing?;
        let calibration = state.models.get(&req.model).cloned().unwrap_or_default();
        let estimate = estimate::prompt_tokens(&req.body);
        let prompt = calibration.prompt_bound(estimate);
        let completion = calibration.completion_bound(estimate::max_completion(&req.body));
        let prior = match req.body.get("service_tier").and_then(|t| t.as_str()) {
            Some("priority" | "fast") => calibration::PRIOR_PRIORITY_RATIO,
            _ => calibration::PRIOR_PRICE_RATIO,
        };
        Some(Reservation {
            amount: price.cost(prompt, completion) * calibration.price_ratio(prior),
            model: req.model.clone(),
            estimate,
            price,
        })
    }

    /// Reserve the worst case of one attempt of `req`, waiting for open reservations to
    /// settle when it does not fit yet. Fails when it cannot fit even with nothing open.
    pub async fn reserve(self: &Arc<Self>, req: &Request) -> Result<Claim, BudgetStop> {
        loop {
            // Register interest before checking, so a settle in between is not missed.
            let settled = self.settled.notified();
            {
                let mut s = self.lock();
                let r = self
                    .worst_case(req, &s)
                    .ok_or_else(|| BudgetStop::NoPrice(req.model.clone()))?;
                if s.spent + s.reserved + r.amount <= self.cap {
                    s.reserved += r.amount;
                    s.open += 1;
                    return Ok(Claim {
                        budget: Arc::clone(self),
                        reservation: Some(r),
                    });
                }
                if s.open == 0 {
                    return Err(BudgetStop::Reached {
                        cap: self.cap,
                        spent: s.spent,
                        next: r.amount,
                    });
                }
            }
            settled.await;
        }
    }

    /// Close `amount` of open reservation, counting `cost` as spent.
    fn close(&self, amount: f64, cost: f64) {
        {
            let mut s = self.lock();
            s.reserved = (s.reserved - amount).max(0.0);
            s.open = s.open.saturating_sub(1);
            s.spent += cost;
        }
        self.settled.notify_waiters();
    }

    /// Settle a pending failure with its looked-up cost, or its reserved amount.
    fn resolve(&self, pending: Pending, cost: Option<f64>) {
        self.close(pending.amount, cost.unwrap_or(pending.amount));
    }

    /// The run is over: stop pricing failed attempts (they stay at their reserved cost).
    pub fn finish(&self) {
        self.closed.cancel();
    }
}

impl Claim {
    /// The attempt ended: count what it cost, and learn from its answer. A failure that may
    /// have been billed keeps its reservation; with a generation id, `/generation` is asked
    /// (through `client`) what it really cost. Returns what is counted now (for a failure
    /// still being priced, its reserved amount: at most what it will count).
    pub fn settle(mut self, attempt: &Attempt, client: &Client) -> f64 {
        let Some(r) = self.reservation.take() else {
            return 0.0;
        };
        let budget = &self.budget;
        let cost = match charge::charge(attempt) {
            Charge::Known(cost) => cost,
            Charge::Tokens { prompt, completion } => r.price.cost(prompt, completion),
            Charge::Nothing => 0.0,
            Charge::Unknown => match &attempt.generation_id {
                Some(id) => {
                    let pending = Pending { amount: r.amount };
                    lookup::spawn(Arc::clone(budget), client.clone(), id.clone(), pending);
                    return r.amount;
                }
                None => r.amount,
            },
        };
        if let Ok(answer) = &attempt.result
            && let Some(u) = &answer.usage
        {
            let mut s = budget.lock();
            let c = s.models.entry(r.model.clone()).or_default();
            c.observe(r.estimate, u.prompt_tokens, u.completion_tokens);
            c.observe_price(cost, r.price.cost(u.prompt_tokens, u.completion_tokens));
        }
        budget.close(r.amount, cost);
        cost
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(r) = self.reservation.take() {
            self.budget.close(r.amount, 0.0);
        }
    }
}

#[cfg(test)]
impl Budget {
    /// Spend counted so far (earlier runs included).
    fn spent(&self) -> f64 {
        self.lock().spent
    }
}

#[cfg(test)]
mod tests;
