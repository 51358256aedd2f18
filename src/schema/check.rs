//! One answer's text against the schema: parsed as JSON (with `--lenient-json`, after
//! stripping one code fence or the prose around a single JSON value), then validated; the
//! first errors are what a re-ask quotes and an `invalid_output` record keeps.

use serde_json::Value;

use super::pointer;

/// Errors kept from one check: what the re-ask quotes and the record keeps.
pub const MAX_ERRORS: usize = 3;

/// The longest error message kept (characters).
const MAX_ERROR_CHARS: usize = 200;

/// What checking one answer found.
#[derive(Debug, Clone, PartialEq)]
pub enum Checked {
    /// The answer fits: its parsed value, and whether `--lenient-json` had to strip text
    /// around it.
    Valid { value: Value, stripped: bool },
    /// It does not: the first errors, each `at /pointer: what`.
    Invalid { errors: Vec<String> },
}

/// Check `text` with `validator`.
pub fn check(validator: &jsonschema::Validator, text: &str, lenient: bool) -> Checked {
    let trimmed = text.trim();
    let (value, stripped) = match serde_json::from_str::<Value>(trimmed) {
        Ok(v) => (v, false),
        Err(e) => {
            let found = if lenient { extract(trimmed) } else { None };
            match found {
                Some(v) => (v, true),
                None => {
                    return Checked::Invalid {
                        errors: vec![not_json(trimmed, &e, lenient)],
                    };
                }
            }
        }
    };
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .take(MAX_ERRORS)
        .map(|e| short(&format!("at {}: {e}", pointer(e.instance_path().as_str()))))
        .collect();
    if errors.is_empty() {
        Checked::Valid { value, stripped }
    } else {
        Checked::Invalid { errors }
    }
}

/// Why an answer is not JSON, with the fix when it is only wrapped.
fn not_json(text: &str, e: &serde_json::Error, lenient: bool) -> String {
    let wrapped = text.starts_with("```") || !text.starts_with(['{', '[']);
    let hint = if wrapped && !lenient && text.contains(['{', '[']) {
        " (text around the JSON; --lenient-json strips a code fence or surrounding prose)"
    } else {
        ""
    };
    short(&format!("the answer is not JSON: {e}{hint}"))
}

/// The single JSON value inside a code fence, or inside prose; `None` when there is none, or
/// more than one.
fn extract(text: &str) -> Option<Value> {
    if let Some(inner) = fenced(text)
        && let Ok(v) = serde_json::from_str::<Value>(inner.trim())
    {
        return Some(v);
    }
    let mut found = None;
    let mut rest = 0;
    // Every `{` or `[` is a possible start; the first that parses is the value, and no other
    // may follow it.
    while let Some(offset) = text[rest..].find(['{', '[']) {
        let start = rest + offset;
        let mut values = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
        match values.next() {
            Some(Ok(v)) if v.is_object() || v.is_array() => {
                if found.is_some() {
                    return None;
                }
                found = Some(v);
                rest = start + values.byte_offset();
            }
            _ => rest = start + 1,
        }
    }
    found
}

/// The inside of the first ```` ``` ```` fence (its language tag dropped).
fn fenced(text: &str) -> Option<&str> {
    let open = text.find("```")?;
    let after = &text[open + 3..];
    let body = &after[after.find('\n')? + 1..];
    let close = body.find("```")?;
    Some(&body[..close])
}

fn short(text: &str) -> String {
    if text.chars().count() <= MAX_ERROR_CHARS {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(MAX_ERROR_CHARS).collect();
    out.push('…');
    out
}
