//! The mock's price table and model catalogue: the prices `GET /models` publishes are exactly
//! the ones used to compute `usage.cost`, so tests can check billing against the catalogue.

use axum::Json;
use serde_json::{Value, json};

/// USD per token, as published in `/models` `pricing` (strings there, numbers here).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub prompt: f64,
    pub completion: f64,
}

impl Price {
    /// The cost of a call, in USD.
    pub fn cost(self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        prompt_tokens as f64 * self.prompt + completion_tokens as f64 * self.completion
    }
}

/// The share of the list price OpenRouter charges to the credit balance for a BYOK request
/// (FACTS §2.2); the provider bills the rest to the user's own key.
pub const BYOK_FEE: f64 = 0.05;

/// The tier that serves a request asking for `requested`, as the response reports it, and its
/// price against the standard tier's: `flex` half, `priority` (or its alias `fast`) double.
pub fn tier(requested: Option<&str>) -> (&'static str, f64) {
    match requested {
        Some("flex") => ("flex", 0.5),
        Some("priority" | "fast") => ("priority", 2.0),
        _ => ("standard", 1.0),
    }
}

/// One built-in model: id, display name, price, provider name, reported (dated) model id.
struct Entry {
    id: &'static str,
    name: &'static str,
    price: Price,
    provider: &'static str,
    served_as: &'static str,
    context_length: u64,
}

/// Literal per-token prices, so that the `Display` of the f64 in `/models` parses back to the
/// identical f64 a client would multiply with.
const TABLE: &[Entry] = &[
    Entry {
        id: "openai/gpt-4o-mini",
        name: "OpenAI: GPT-4o-mini",
        price: Price {
            prompt: 0.000_000_15,
            completion: 0.000_000_6,
        },
        provider: "OpenAI",
        served_as: "openai/gpt-4o-mini-2024-07-18",
        context_length: 128_000,
    },
    Entry {
        id: "anthropic/claude-3.5-haiku",
        name: "Anthropic: Claude 3.5 Haiku",
        price: Price {
            prompt: 0.000_000_8,
            completion: 0.000_004,
        },
        provider: "Anthropic",
        served_as: "anthropic/claude-3.5-haiku",
        context_length: 200_000,
    },
    Entry {
        id: "meta-llama/llama-3.1-8b-instruct",
        name: "Meta: Llama 3.1 8B Instruct",
        price: Price {
            prompt: 0.000_000_02,
            completion: 0.000_000_05,
        },
        provider: "DeepInfra",
        served_as: "meta-llama/llama-3.1-8b-instruct",
        context_length: 131_072,
    },
    Entry {
        id: "google/gemini-2.0-flash-001",
        name: "Google: Gemini 2.0 Flash",
        price: Price {
            prompt: 0.000_000_1,
            completion: 0.000_000_4,
        },
        provider: "Google AI Studio",
        served_as: "google/gemini-2.0-flash-001",
        context_length: 1_048_576,
    },
    Entry {
        id: "mock/free:free",
        name: "Mock: Free (free)",
        price: Price {
            prompt: 0.0,
            completion: 0.0,
        },
        provider: "MockAI",
        served_as: "mock/free:free",
        context_length: 32_768,
    },
];

/// Price of any model id not in the table ($1.00 / $2.00 per million tokens).
pub const DEFAULT_PRICE: Price = Price {
    prompt: 0.000_001,
    completion: 0.000_002,
};

/// Provider reported for model ids not in the table.
pub const DEFAULT_PROVIDER: &str = "MockAI";

fn entry(model: &str) -> Option<&'static Entry> {
    TABLE.iter().find(|e| e.id == model)
}

/// The price billed for `model` (the default price for unknown ids).
pub fn price_of(model: &str) -> Price {
    // A `:batch` variant is listed (and billed) at the Batch API's share of the list price.
    if let Some(base) = model.strip_suffix(":batch") {
        let p = price_of(base);
        return Price {
            prompt: p.prompt * super::batch::BATCH_FACTOR,
            completion: p.completion * super::batch::BATCH_FACTOR,
        };
    }
    entry(model).map_or(DEFAULT_PRICE, |e| e.price)
}

/// The provider name reported for `model`.
pub fn provider_of(model: &str) -> &'static str {
    entry(model).map_or(DEFAULT_PROVIDER, |e| e.provider)
}

/// The model id reported in responses (a dated permaslug for `openai/gpt-4o-mini`).
pub fn served_model(model: &str) -> String {
    entry(model).map_or_else(|| model.to_string(), |e| e.served_as.to_string())
}

/// A published limit: the knob's value if set (0 is `null`), else the table's.
fn limit(knob: Option<u64>, table: u64) -> Value {
    match knob {
        Some(0) => Value::Null,
        Some(n) => n.into(),
        None => table.into(),
    }
}

fn model_json(e: &Entry, context: Option<u64>, max_completion: Option<u64>) -> Value {
    let context = limit(context, e.context_length);
    json!({
        "id": e.id,
        "canonical_slug": e.served_as,
        "hugging_face_id": null,
        "name": e.name,
        "created": 1_721_260_800u64,
        "description": format!("{} served by the orbatch mock server.", e.name),
        "context_length": context,
        "architecture": {
            "modality": "text->text",
            "input_modalities": ["text"],
            "output_modalities": ["text"],
            "tokenizer": "Other",
            "instruct_type": null
        },
        "pricing": {
            "prompt": e.price.prompt.to_string(),
            "completion": e.price.completion.to_string(),
            "request": "0",
            "image": "0",
            "web_search": "0",
            "internal_reasoning": "0"
        },
        "top_provider": {
            "context_length": context,
            "max_completion_tokens": limit(max_completion, 16_384),
            "is_moderated": false
        },
        "per_request_limits": null,
        "supported_parameters": [
            "max_tokens", "temperature", "top_p", "stop", "seed", "response_format"
        ],
        "default_parameters": null,
        "expiration_date": null
    })
}

/// `GET /models`: the built-in table (unknown ids are still accepted by inference), with
/// the `--context-length` and `--max-completion-tokens` knobs applied. Batchable models also
/// appear as `<id>:batch`, at the Batch API's price (BATCH.md §4).
pub fn models(context: Option<u64>, max_completion: Option<u64>) -> Json<Value> {
    let mut data: Vec<Value> = TABLE
        .iter()
        .map(|e| model_json(e, context, max_completion))
        .collect();
    for e in TABLE.iter().filter(|e| super::batch::batchable(e.id)) {
        let mut m = model_json(e, context, max_completion);
        m["id"] = json!(format!("{}:batch", e.id));
        m["name"] = json!(format!("{} (batch)", e.name));
        m["pricing"]["prompt"] = json!((e.price.prompt * super::batch::BATCH_FACTOR).to_string());
        m["pricing"]["completion"] =
            json!((e.price.completion * super::batch::BATCH_FACTOR).to_string());
        data.push(m);
    }
    let total = data.len();
    Json(json!({ "data": data, "total_count": total, "links": { "next": null } }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_price_strings_round_trip() {
        for e in TABLE {
            let s = e.price.prompt.to_string();
            assert!(!s.contains('e'), "{s}");
            assert_eq!(s.parse::<f64>().ok(), Some(e.price.prompt));
        }
        assert_eq!(price_of("nobody/knows"), DEFAULT_PRICE);
        assert_eq!(
            served_model("openai/gpt-4o-mini"),
            "openai/gpt-4o-mini-2024-07-18"
        );
    }
}
