//! The reduce stage of a chunked document input (`--reduce-template`): once the chunks are
//! sent and recorded, the same pipeline runs again over the reduce rows (one per document
//! and model whose every chunk is answered, see `job/reduce.rs`), appending to the same
//! output. Resume needs nothing more: a reduce whose chunk answers are unchanged has the same
//! body, so the same fingerprint, and is skipped.

use super::RunSummary;
use crate::config::RunConfig;
use crate::exit::Failure;
use crate::output::writer::Tally;

/// The configuration of the reduce stage, if the job has one.
pub(super) fn stage(config: &RunConfig) -> Option<RunConfig> {
    let template = config.reduce_template.clone()?;
    let mut reduce = config.clone();
    reduce.input.template = Some(template);
    reduce.input.reduce_from = Some(config.output.clone());
    // The first stage truncated the output if asked to; its chunk records are this stage's
    // input. Every document with answered chunks is reduced, whatever --limit sent.
    reduce.fresh = false;
    reduce.input.limit = None;
    reduce.score = None;
    Some(reduce)
}

/// The two stages as one run. A reduce stage that could not start (its template cannot be
/// rendered for a document) comes after chunks were sent: it stops the run (exit 3), it is
/// not a usage error.
pub(super) fn merge(map: RunSummary, reduced: Result<RunSummary, Failure>) -> RunSummary {
    let reduced = match reduced {
        Ok(r) => r,
        Err(e) => {
            return RunSummary {
                failure: Some(format!("the reduce stage did not start: {e}")),
                ..map
            };
        }
    };
    RunSummary {
        input: map.input,
        output: map.output,
        rows: map.rows,
        requests: map.requests + reduced.requests,
        skipped_done: map.skipped_done + reduced.skipped_done,
        changed: map.changed + reduced.changed,
        retried_errors: map.retried_errors + reduced.retried_errors,
        kept_errors: map.kept_errors + reduced.kept_errors,
        tally: add(map.tally, reduced.tally),
        wall: map.wall + reduced.wall,
        stopped: reduced.stopped,
        failure: reduced.failure,
        waiting: reduced.waiting.or(map.waiting),
    }
}

fn add(mut a: Tally, b: Tally) -> Tally {
    a.ok += b.ok;
    a.failed += b.failed;
    a.attempts += b.attempts;
    a.prompt_tokens += b.prompt_tokens;
    a.completion_tokens += b.completion_tokens;
    a.cost += b.cost;
    a.byok += b.byok;
    a.uncosted += b.uncosted;
    a.costed += b.costed;
    a.interrupted += b.interrupted;
    for (k, v) in b.truncated {
        *a.truncated.entry(k).or_default() += v;
    }
    for (k, v) in b.retried {
        *a.retried.entry(k).or_default() += v;
    }
    for (k, v) in b.errors {
        *a.errors.entry(k).or_default() += v;
    }
    a.examples.extend(b.examples);
    a
}
