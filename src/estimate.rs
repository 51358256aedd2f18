//! Cost estimates before anything is sent: a prompt-token estimate from the request body and
//! a completion bound from its `max_tokens`. Used by `--max-cost` reservations and by `plan`.
//!
//! The token estimate is characters ÷ 4 (rounded up) plus 4 tokens of framing per message —
//! OpenAI's rule of thumb for English; real tokenizers differ per model by roughly ±25 %, some
//! by more (1.6×). `--max-cost` corrects it per model from the answers (`budget::calibration`).

use serde_json::{Map, Value};

use crate::api::chat::content_text;

/// Tokens of framing counted per message (role markers and separators).
pub const TOKENS_PER_MESSAGE: u64 = 4;

/// Estimated prompt tokens of a chat or responses body.
pub fn prompt_tokens(body: &Map<String, Value>) -> u64 {
    let mut chars: u64 = 0;
    let mut messages: u64 = 0;
    let mut add = |text: &str| {
        chars += text.chars().count() as u64;
        messages += 1;
    };
    if let Some(Value::Array(msgs)) = body.get("messages") {
        for m in msgs {
            add(&m.get("content").map(content_text).unwrap_or_default());
        }
    }
    if let Some(Value::String(s)) = body.get("instructions") {
        add(s);
    }
    match body.get("input") {
        Some(Value::String(s)) => add(s),
        Some(Value::Array(items)) => {
            for item in items {
                add(&item.get("content").map(content_text).unwrap_or_default());
            }
        }
        _ => {}
    }
    chars.div_ceil(4) + TOKENS_PER_MESSAGE * messages
}

/// The body's own completion limit (`max_tokens`, `max_completion_tokens` or
/// `max_output_tokens`), if it sets one.
pub fn max_completion(body: &Map<String, Value>) -> Option<u64> {
    ["max_completion_tokens", "max_tokens", "max_output_tokens"]
        .iter()
        .find_map(|k| body.get(*k).and_then(Value::as_u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn counts_messages_input_and_instructions() {
        let chat = map(json!({"model":"m","messages":[
            {"role":"system","content":"abcd"},
            {"role":"user","content":[{"type":"text","text":"abcdefgh"}]}]}));
        assert_eq!(prompt_tokens(&chat), 3 + 2 * TOKENS_PER_MESSAGE);
        let resp = map(json!({"model":"m","instructions":"abcd","input":"abcde"}));
        assert_eq!(prompt_tokens(&resp), 3 + 2 * TOKENS_PER_MESSAGE);
        assert_eq!(max_completion(&map(json!({"max_tokens":64}))), Some(64));
        assert_eq!(
            max_completion(&map(json!({"max_output_tokens":9}))),
            Some(9)
        );
        assert_eq!(max_completion(&map(json!({}))), None);
    }
}
