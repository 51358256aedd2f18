//! Pricing a failed attempt after the fact: its reservation stands until `GET /generation`
//! says what the generation cost (FACTS §5: known seconds to minutes after the call), looked
//! up on the growing schedule of `orbatch costs` for at most [`PATIENCE`]. A failure that is
//! never priced stays counted at its reserved worst case.

use std::sync::Arc;
use std::time::Duration;

use super::{Budget, Pending, charge};
use crate::client::Client;
use crate::costs::lookup::{Step, classify, lookup_path};
use crate::costs::wait::Schedule;

/// How long a failed attempt's cost is asked for before its reservation is kept for good.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Look `id` up until it is priced, the patience runs out or the run ends; then settle
/// `pending` with what was found (its reserved amount when nothing was).
pub fn spawn(budget: Arc<Budget>, client: Client, id: String, pending: Pending) {
    let closed = budget.closed.clone();
    tokio::spawn(async move {
        let found = tokio::select! {
            biased;
            _ = closed.cancelled() => None,
            cost = price(&client, &id) => cost,
        };
        budget.resolve(pending, found);
    });
}

/// The cost `/generation` gives for `id`, or `None` when it gave none within [`PATIENCE`].
async fn price(client: &Client, id: &str) -> Option<f64> {
    let schedule = Schedule::from_env();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let path = lookup_path(id);
    for n in 1.. {
        let wait = schedule.pause(n);
        if tokio::time::Instant::now() + wait > deadline {
            break;
        }
        tokio::time::sleep(wait).await;
        match classify(id, client.get(&path).await) {
            Step::Found(data) => return charge::billed_generation(&data),
            Step::NotYet => {}
            Step::Retry { after, .. } => {
                if let Some(after) = after {
                    tokio::time::sleep(after.min(PATIENCE)).await;
                }
            }
            // A bare 404: this server has no `/generation` (not OpenRouter); nothing to wait for.
            Step::NoEndpoint(_) | Step::Refused(_) | Step::Failed(_) => break,
        }
        tracing::debug!(generation = id, lookup = n, "failed attempt not priced yet");
    }
    tracing::debug!(generation = id, "failed attempt stays at its reserved cost");
    None
}
