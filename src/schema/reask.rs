//! The re-ask loop's state for one record: each answer is reviewed against the schema; one
//! that does not fit is asked again (the conversation so far, its answer, and a user turn
//! quoting the validator's first errors) up to `--reask` times. A re-ask is an attempt of
//! the same record, so every answer it paid for is summed into the record's `usage`.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::{Checked, Structured};
use crate::api::Answer;
use crate::endpoint::Endpoint;
use crate::output::record::{ErrorKind, Record, RecordError, Usage, byok_part};

/// What to do with an answer.
#[derive(Debug)]
pub enum Reviewed {
    /// Record it: it fits the schema, or the job has none.
    Answer(Answer),
    /// It does not fit: the request now holds the re-ask; send it as the next attempt.
    Reask,
    /// It does not fit, and no re-ask is left (or it was cut at max_tokens): an
    /// `invalid_output` error (the raw text kept).
    Invalid(Answer, RecordError),
}

/// The structured-output state of one record across its attempts.
#[derive(Debug, Default)]
pub struct Asks {
    structured: Option<Arc<Structured>>,
    reasks: u32,
    /// Usage of the answers that were re-asked (the final attempt's is the record's own).
    earlier: Option<Usage>,
    /// What providers billed to the user's own keys for the re-asked answers (BYOK).
    earlier_byok: f64,
    /// The valid answer's value, and whether `--lenient-json` stripped text around it.
    parsed: Option<(Value, bool)>,
    /// The answer being re-asked, until the next one arrives: the record if the run stops
    /// before the re-ask is sent (its usage is in `earlier`).
    pending: Option<(Answer, RecordError)>,
}

impl Asks {
    pub fn new(structured: Option<Arc<Structured>>) -> Asks {
        Asks {
            structured,
            ..Asks::default()
        }
    }

    /// Re-asks made so far.
    #[cfg(test)]
    pub fn reasks(&self) -> u32 {
        self.reasks
    }

    /// The answer whose re-ask was not sent (the run stopped), as an `invalid_output` error;
    /// its usage and BYOK charge are left out, [`Asks::settle`] adds them.
    pub fn unsent_reask(&mut self) -> Option<(Answer, RecordError)> {
        let (mut answer, mut error) = self.pending.take()?;
        answer.usage = None;
        answer.billing = crate::api::Billing::default();
        self.reasks -= 1;
        error
            .message
            .push_str(" (the run stopped before the re-ask was sent)");
        Some((answer, error))
    }

    /// Review an answer. On [`Reviewed::Reask`], `body` (the request's) is the re-ask.
    pub fn review(
        &mut self,
        endpoint: Endpoint,
        body: &mut Map<String, Value>,
        answer: Answer,
    ) -> Reviewed {
        self.pending = None;
        let Some(s) = &self.structured else {
            return Reviewed::Answer(answer);
        };
        let errors = match s.schema.check(&answer.output, s.lenient) {
            Checked::Valid { value, stripped } => {
                self.parsed = Some((value, stripped));
                return Reviewed::Answer(answer);
            }
            Checked::Invalid { errors } => errors,
        };
        let error = RecordError {
            kind: ErrorKind::InvalidOutput,
            status: Some(200),
            code: None,
            message: invalid_message(self.reasks, &errors),
        };
        // Cut at max_tokens: the same limit would cut a re-ask too (and its prompt is longer).
        if answer.is_cut_at_max_tokens() {
            let error = RecordError {
                message: format!(
                    "the answer was cut at max_tokens (finish_reason: length) and does not fit \
                     the schema: {}; raise max_tokens (not re-asked: the same limit would cut \
                     it again)",
                    errors.join("; ")
                ),
                ..error
            };
            return Reviewed::Invalid(answer, error);
        }
        if self.reasks >= s.reask {
            return Reviewed::Invalid(answer, error);
        }
        self.reasks += 1;
        if let Some(u) = &answer.usage {
            self.earlier = Some(add(self.earlier.as_ref(), u));
        }
        self.earlier_byok += byok_part(answer.billing.is_byok, answer.billing.upstream_cost);
        reask_body(endpoint, body, &answer.output, &errors);
        self.pending = Some((answer, error));
        Reviewed::Reask
    }

    /// Put what the re-asks did into the final record: `reasks`, the parsed value, and the
    /// usage of every answered attempt summed.
    pub fn settle(self, record: &mut Record) {
        record.reasks = self.reasks;
        if let Some((value, stripped)) = self.parsed
            && record.error.is_none()
        {
            record.output_json = Some(value);
            record.lenient_json = stripped;
        }
        if let Some(earlier) = self.earlier {
            record.usage = Some(match &record.usage {
                Some(last) => add(Some(&earlier), last),
                None => earlier,
            });
        }
        // The providers' BYOK charges of every answer: the record's spend is its summed
        // `usage.cost` plus these (an answer not on BYOK is all in `usage.cost`).
        if self.earlier_byok > 0.0 {
            record.upstream_cost = Some(record.byok_cost() + self.earlier_byok);
            record.is_byok = Some(true);
        }
    }
}

/// The record's message for an answer still invalid after `reasks` re-asks.
fn invalid_message(reasks: u32, errors: &[String]) -> String {
    let after = match reasks {
        0 => String::new(),
        1 => " after 1 re-ask".to_owned(),
        n => format!(" after {n} re-asks"),
    };
    format!(
        "the answer does not fit the schema{after}: {} (raise --reask, or try --lenient-json \
         if the JSON is wrapped in prose)",
        errors.join("; ")
    )
}

/// The user turn of a re-ask.
fn reask_text(errors: &[String]) -> String {
    let mut text = String::from("Your answer does not match the required JSON schema:\n");
    for e in errors {
        text.push_str("- ");
        text.push_str(e);
        text.push('\n');
    }
    text.push_str("Answer again with only the corrected JSON value, and no other text.");
    text
}

/// `body` + the answer as the assistant's turn + a user turn quoting `errors`.
fn reask_body(endpoint: Endpoint, body: &mut Map<String, Value>, answer: &str, errors: &[String]) {
    let text = reask_text(errors);
    match endpoint {
        Endpoint::Chat => {
            let turns = [
                json!({"role": "assistant", "content": answer}),
                json!({"role": "user", "content": text}),
            ];
            match body.get_mut("messages") {
                Some(Value::Array(messages)) => messages.extend(turns),
                _ => {
                    body.insert("messages".into(), Value::Array(turns.to_vec()));
                }
            }
        }
        Endpoint::Responses => {
            let mut items = match body.remove("input") {
                Some(Value::Array(items)) => items,
                Some(Value::String(s)) => {
                    vec![json!({"type": "message", "role": "user", "content": s})]
                }
                Some(other) => vec![other],
                None => Vec::new(),
            };
            items.push(json!({"type": "message", "role": "assistant", "content": answer}));
            items.push(json!({"type": "message", "role": "user", "content": text}));
            body.insert("input".into(), Value::Array(items));
        }
    }
}

/// Two attempts' usage together. The cost is known when either is (a lower bound then: an
/// answer without a cost only happens off OpenRouter).
pub fn add(a: Option<&Usage>, b: &Usage) -> Usage {
    let Some(a) = a else { return b.clone() };
    Usage {
        prompt_tokens: a.prompt_tokens + b.prompt_tokens,
        completion_tokens: a.completion_tokens + b.completion_tokens,
        total_tokens: a.total_tokens + b.total_tokens,
        reasoning_tokens: a.reasoning_tokens + b.reasoning_tokens,
        cached_tokens: a.cached_tokens + b.cached_tokens,
        cost: match (a.cost, b.cost) {
            (None, None) => None,
            (x, y) => Some(x.unwrap_or(0.0) + y.unwrap_or(0.0)),
        },
    }
}
