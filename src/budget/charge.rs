//! What one attempt cost, as far as orbatch can tell when it ends (the `--max-cost` rules for
//! failed attempts, SPEC §5): an answer costs its `usage.cost`; a failed attempt costs nothing
//! only when the error shows nothing was billed (a 4xx before any generation id, or no answer
//! at all); any other failure may have been billed (a stream cut mid-answer, an error after
//! generation) and keeps its reservation until `GET /generation` prices it.

use serde_json::Value;

use serde::Deserialize;

use crate::api::Answer;
use crate::client::Attempt;
use crate::output::record::byok_part;
use crate::retry::Failure;

/// What an attempt cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Charge {
    /// The server said what it charged (USD).
    Known(f64),
    /// Token counts but no cost (OpenAI-compatible servers): priced from the catalogue.
    Tokens { prompt: u64, completion: u64 },
    /// Nothing was billed.
    Nothing,
    /// Possibly billed, amount unknown: the reservation stands.
    Unknown,
}

/// The USD an answer was charged, from its `usage`: OpenRouter's `cost`, plus the provider's
/// for BYOK. The one place `--max-cost` reads an answer's cost from.
pub fn billed(answer: &Answer) -> Option<f64> {
    let cost = answer.usage.as_ref()?.cost?;
    Some(cost + byok_part(answer.billing.is_byok, answer.billing.upstream_cost))
}

/// The USD a `GET /generation` record says its generation was charged: `total_cost`, plus the
/// provider's `upstream_inference_cost` when `is_byok` (then `total_cost` is only OpenRouter's
/// fee, FACTS §5.1). The one place `--max-cost` reads a looked-up cost from.
pub fn billed_generation(data: &Value) -> Option<f64> {
    let fields = crate::costs::charge::Fields::deserialize(data).ok()?;
    Some(fields.charge()?.total()).filter(|c| c.is_finite())
}

/// What `attempt` cost.
pub fn charge(attempt: &Attempt) -> Charge {
    match &attempt.result {
        Ok(answer) => match (billed(answer), &answer.usage) {
            (Some(cost), _) if cost.is_finite() => Charge::Known(cost),
            (_, Some(u)) => Charge::Tokens {
                prompt: u.prompt_tokens,
                completion: u.completion_tokens,
            },
            (_, None) => Charge::Unknown,
        },
        // A refusal before generation: bad request, key, credit, rate limit (FACTS §7.2).
        Err(Failure::Http { status, .. })
            if (400..500).contains(status) && attempt.generation_id.is_none() =>
        {
            Charge::Nothing
        }
        // Nothing answered: the connection failed, or the body was never sent. A timeout is
        // not in this group: the server may still bill an answer the client gave up on.
        Err(Failure::Connection(_) | Failure::Unusable { .. })
            if !attempt.responded && attempt.generation_id.is_none() =>
        {
            Charge::Nothing
        }
        Err(_) => Charge::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::record::{ErrorKind, Usage};
    use std::time::Duration;

    fn attempt(result: Result<Answer, Failure>, id: Option<&str>, responded: bool) -> Attempt {
        Attempt {
            result,
            generation_id: id.map(str::to_owned),
            latency: Duration::ZERO,
            ttft: None,
            responded,
        }
    }

    fn http(status: u16) -> Result<Answer, Failure> {
        Err(Failure::Http {
            status,
            error: None,
            retry_after: None,
            limit_reset: None,
        })
    }

    #[test]
    fn answers_cost_their_usage_and_refusals_nothing() {
        let usage = |cost| Usage {
            prompt_tokens: 3,
            completion_tokens: 4,
            cost,
            ..Usage::default()
        };
        let answer = |cost| {
            Ok(Answer {
                usage: Some(usage(cost)),
                ..Answer::default()
            })
        };
        assert_eq!(
            charge(&attempt(answer(Some(0.5)), Some("g"), true)),
            Charge::Known(0.5)
        );
        assert_eq!(
            charge(&attempt(answer(None), Some("g"), true)),
            Charge::Tokens {
                prompt: 3,
                completion: 4
            }
        );
        assert_eq!(
            charge(&attempt(Ok(Answer::default()), Some("g"), true)),
            Charge::Unknown,
            "an answer without usage"
        );
        for status in [400, 401, 402, 429] {
            assert_eq!(charge(&attempt(http(status), None, true)), Charge::Nothing);
        }
        assert_eq!(
            charge(&attempt(http(429), Some("g"), true)),
            Charge::Unknown,
            "a generation was issued"
        );
        let refused = Err(Failure::Connection("connection refused".into()));
        assert_eq!(charge(&attempt(refused, None, false)), Charge::Nothing);
        let unsendable = Err(Failure::Unusable {
            kind: ErrorKind::BadRequest,
            retry: false,
            message: "cannot encode".into(),
        });
        assert_eq!(charge(&attempt(unsendable, None, false)), Charge::Nothing);
    }

    #[test]
    fn failures_after_an_answer_began_may_have_been_billed() {
        let broke = Err(Failure::Connection("the response body broke off".into()));
        assert_eq!(charge(&attempt(broke, None, true)), Charge::Unknown);
        assert_eq!(
            charge(&attempt(Err(Failure::Timeout), None, false)),
            Charge::Unknown,
            "the server may bill an answer the client gave up on"
        );
        for status in [500, 502, 503] {
            assert_eq!(charge(&attempt(http(status), None, true)), Charge::Unknown);
        }
        let mid_stream = Err(Failure::InBody {
            error: Box::default(),
        });
        assert_eq!(
            charge(&attempt(mid_stream, Some("g"), true)),
            Charge::Unknown
        );
        let cut = Err(Failure::Truncated("no [DONE]".into()));
        assert_eq!(charge(&attempt(cut, Some("g"), true)), Charge::Unknown);
    }

    #[test]
    fn a_generation_record_gives_its_total_cost() {
        let data = serde_json::json!({"id":"g","total_cost":0.25});
        assert_eq!(billed_generation(&data), Some(0.25));
        assert_eq!(billed_generation(&serde_json::json!({"id":"g"})), None);
        assert_eq!(
            billed_generation(&serde_json::json!({"total_cost":null})),
            None
        );
        // BYOK: OpenRouter's fee, and the provider's charge to the user's own key.
        let byok =
            serde_json::json!({"total_cost":0.05,"is_byok":true,"upstream_inference_cost":1.0});
        assert_eq!(billed_generation(&byok), Some(1.05));
        let not =
            serde_json::json!({"total_cost":0.5,"is_byok":false,"upstream_inference_cost":0.5});
        assert_eq!(billed_generation(&not), Some(0.5), "not BYOK: counted once");
    }
}
