//! Reading an inference request body (chat or responses) and computing the mock's
//! deterministic answer: the text and token counts are pure functions of (model, prompt), the
//! same for both endpoints and both transports.

use serde_json::Value;

use crate::endpoint::Endpoint;

/// Model used when a request names none (OpenRouter uses the account default).
pub const DEFAULT_MODEL: &str = "openai/gpt-4o-mini";

/// What the mock needs from a request body.
#[derive(Debug, Clone)]
pub struct Prompted {
    pub model: String,
    /// All message / input texts, joined with `\n` (system/instructions first, as sent).
    pub prompt: String,
    /// Number of messages (chat) or input items plus instructions (responses).
    pub segments: u64,
    pub max_tokens: Option<u64>,
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// `service_tier` as requested.
    pub service_tier: Option<String>,
    /// The JSON Schema the answer must fit (`response_format` / `text.format`).
    pub schema: Option<Value>,
    /// `provider.require_parameters`.
    pub require_parameters: bool,
    /// 1 + the assistant turns in the conversation (a re-ask is ask 2).
    pub ask: u64,
}

/// Parse a request body for `endpoint`; `Err` is the message of a 400.
pub fn parse(endpoint: Endpoint, body: &[u8]) -> Result<Prompted, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("Invalid JSON body: {e}"))?;
    if !value.is_object() {
        return Err("Request body must be a JSON object".into());
    }
    let model = match value.get("model") {
        None | Some(Value::Null) => DEFAULT_MODEL.to_string(),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err("model must be a non-empty string".into()),
    };
    let (texts, max_keys): (Vec<String>, &[&str]) = match endpoint {
        Endpoint::Chat => (
            chat_texts(&value)?,
            &["max_completion_tokens", "max_tokens"],
        ),
        Endpoint::Responses => (responses_texts(&value)?, &["max_output_tokens"]),
    };
    let max_tokens = max_keys
        .iter()
        .find_map(|k| value.get(*k).and_then(Value::as_u64));
    let stream = value
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let include_usage = value
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let turns = match endpoint {
        Endpoint::Chat => value.get("messages"),
        Endpoint::Responses => value.get("input"),
    };
    let assistant_turns = turns.and_then(Value::as_array).map_or(0, |t| {
        t.iter()
            .filter(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))
            .count() as u64
    });
    Ok(Prompted {
        schema: super::json::requested(endpoint, &value),
        require_parameters: value
            .pointer("/provider/require_parameters")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        ask: assistant_turns + 1,
        model,
        segments: texts.len() as u64,
        prompt: texts.join("\n"),
        max_tokens,
        stream,
        include_usage,
        service_tier: value
            .get("service_tier")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

fn chat_texts(value: &Value) -> Result<Vec<String>, String> {
    let messages = value
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or("messages: a non-empty array is required")?;
    Ok(messages
        .iter()
        .map(|m| content_text(m.get("content")))
        .collect())
}

fn responses_texts(value: &Value) -> Result<Vec<String>, String> {
    let mut texts = Vec::new();
    if let Some(s) = value.get("instructions").and_then(Value::as_str) {
        texts.push(s.to_string());
    }
    match value.get("input") {
        Some(Value::String(s)) => texts.push(s.clone()),
        Some(Value::Array(items)) if !items.is_empty() => {
            texts.extend(items.iter().map(|item| content_text(item.get("content"))));
        }
        _ => return Err("input: a string or a non-empty array is required".into()),
    }
    Ok(texts)
}

/// Text of a `content` field: a string, or the `text` of every part of an array.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// Prompt tokens: ceil(chars / 4) + 4 per message.
pub fn prompt_tokens(p: &Prompted) -> u64 {
    (p.prompt.chars().count() as u64).div_ceil(4) + 4 * p.segments
}

const VOCAB: &[&str] = &[
    "alpha", "bravo", "cobalt", "delta", "ember", "fjord", "granite", "harbor", "indigo",
    "juniper", "kelp", "lumen", "meadow", "nebula", "onyx", "prism", "quartz", "river", "saffron",
    "tundra", "umber", "vortex", "willow", "xenon", "yarrow", "zephyr", "amber", "basalt", "cedar",
    "dune", "echo", "flint",
];

/// The full answer for (model, prompt), as words (completion tokens = number of words).
/// How often `model` gives the expected answer of an oracle prompt: 0.50 to 0.95, a fixed
/// function of the id (so two models differ, and every run agrees).
pub fn accuracy(model: &str) -> f64 {
    0.5 + 0.45 * (crate::hash::hash64(model.as_bytes()) % 1000) as f64 / 1000.0
}

/// The answer to an oracle prompt whose expected value is `expected`: that value, or a wrong
/// one, decided by a hash of (model, prompt) against [`accuracy`].
pub fn oracle_words(model: &str, prompt: &str, expected: &str) -> Vec<String> {
    let draw = (crate::hash::key64(prompt, model) % 10_000) as f64 / 10_000.0;
    let text = if draw < accuracy(model) {
        expected.to_owned()
    } else {
        "I am not sure.".to_owned()
    };
    text.split_whitespace().map(str::to_owned).collect()
}

/// `[[mock:expect=VALUE]]` in a prompt: the mock answers VALUE, or a wrong answer, at the
/// model's [`accuracy`] (what `run --mock` does for a job with a `[score]` table, for any
/// client of `orbatch mock-server`).
pub fn expected_directive(prompt: &str) -> Option<String> {
    const OPEN: &str = "[[mock:expect=";
    let start = prompt.find(OPEN)? + OPEN.len();
    let end = prompt[start..].find("]]")?;
    Some(prompt[start..start + end].to_owned())
}

/// The mock as a judge: a prompt laid out as orbatch's rubric lays it out (`Expected
/// answer:` and `Answer to grade:` sections) is answered CORRECT when the graded answer
/// contains the expected one (case, punctuation and spacing aside), else INCORRECT. `None`
/// for any other prompt.
pub fn judge_words(prompt: &str) -> Option<Vec<String>> {
    let section = |name: &str| -> Option<String> {
        let start = prompt.find(name)? + name.len();
        let rest = &prompt[start..];
        let end = rest.find("\n\n").unwrap_or(rest.len());
        Some(norm(&rest[..end]))
    };
    fn norm(s: &str) -> String {
        let kept: String = s
            .chars()
            .map(|c| {
                if c.is_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    ' '
                }
            })
            .collect();
        kept.split_whitespace().collect::<Vec<_>>().join(" ")
    }
    let expected = section("Expected answer:")?;
    let answer = section("Answer to grade:")?;
    let correct = !expected.is_empty() && format!(" {answer} ").contains(&format!(" {expected} "));
    Some(vec![
        if correct { "CORRECT" } else { "INCORRECT" }.to_owned(),
    ])
}

pub fn answer_words(model: &str, prompt: &str) -> Vec<String> {
    let hash = crate::hash::key64(prompt, model);
    let mut words = vec![
        "mock".to_string(),
        "answer".to_string(),
        format!("({model}):"),
    ];
    let count = 3 + (hash % 6) as usize;
    words.extend((0..count).map(|i| {
        let idx = (hash >> (8 + 5 * i)) as usize % VOCAB.len();
        VOCAB[idx].to_string()
    }));
    // Echo the end of the prompt: the user's message comes last (the system prompt first).
    words.push("echo:".to_string());
    let all: Vec<&str> = prompt.split_whitespace().collect();
    words.extend(
        all[all.len().saturating_sub(6)..]
            .iter()
            .map(|w| w.chars().take(24).collect::<String>()),
    );
    words
}

/// `--token-factor`: the prompt tokens a tokenizer counting `factor` × the estimate gives.
pub fn counted(estimate: u64, factor: f64) -> u64 {
    if factor == 1.0 {
        return estimate;
    }
    (estimate as f64 * factor).ceil() as u64
}

/// `--completion-spread`: the answer for (model, prompt), made exactly as many words long as
/// the spread picks for it (cut, or padded with words drawn from the vocabulary).
pub fn spread_words(model: &str, prompt: &str, spread: super::config::Spread) -> Vec<String> {
    let hash = crate::hash::key64(prompt, model);
    // Mixed so that the length does not follow the vocabulary picks of `answer_words`.
    let len = spread.pick(hash.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15) as usize;
    let mut words = answer_words(model, prompt);
    words.truncate(len);
    let mut state = hash;
    while words.len() < len {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        words.push(VOCAB[(state >> 33) as usize % VOCAB.len()].to_string());
    }
    words
}

/// The words actually produced under `max_tokens`, and whether the limit cut them.
pub fn limited(words: Vec<String>, max_tokens: Option<u64>) -> (Vec<String>, bool) {
    match max_tokens {
        Some(max) if (words.len() as u64) > max => {
            (words.into_iter().take(max as usize).collect(), true)
        }
        _ => (words, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_prompt_same_tokens_on_both_endpoints() {
        let chat = br#"{"model":"m","messages":[{"role":"system","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"hello there"}]}]}"#;
        let resp = br#"{"model":"m","instructions":"be brief","input":"hello there"}"#;
        let a = parse(Endpoint::Chat, chat).unwrap();
        let b = parse(Endpoint::Responses, resp).unwrap();
        assert_eq!(a.prompt, b.prompt);
        assert_eq!(prompt_tokens(&a), prompt_tokens(&b));
        assert_eq!(answer_words("m", &a.prompt), answer_words("m", &b.prompt));
    }

    #[test]
    fn bad_bodies_are_errors() {
        assert!(parse(Endpoint::Chat, b"{").is_err());
        assert!(parse(Endpoint::Chat, b"{\"messages\":[]}").is_err());
        assert!(parse(Endpoint::Responses, b"{\"model\":\"m\"}").is_err());
        assert!(parse(Endpoint::Chat, b"[1]").is_err());
    }

    #[test]
    fn token_factor_and_spread() {
        assert_eq!(counted(10, 1.0), 10);
        assert_eq!(counted(10, 1.6), 16);
        assert_eq!(counted(10, 0.7), 7);
        assert_eq!(counted(11, 0.7), 8, "rounded up");
        let spread = super::super::config::Spread { min: 20, max: 600 };
        let lens: Vec<usize> = (0..200)
            .map(|i| spread_words("m", &format!("question {i}"), spread).len())
            .collect();
        assert!(lens.iter().all(|n| (20..=600).contains(n)));
        assert!(lens.iter().any(|&n| n < 100) && lens.iter().any(|&n| n > 500));
        assert_eq!(
            spread_words("m", "q", spread),
            spread_words("m", "q", spread),
            "deterministic"
        );
    }

    #[test]
    fn max_tokens_cuts() {
        let words = answer_words("m", "x");
        let (cut, hit) = limited(words.clone(), Some(2));
        assert_eq!((cut.len(), hit), (2, true));
        assert_eq!(limited(words.clone(), Some(1000)).0, words);
    }
}
