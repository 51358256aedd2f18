//! JSON answers for requests that carry a JSON Schema (`response_format` / `text.format`):
//! a minimal instance of the schema (required properties with type-appropriate values, an
//! enum's first value), or one of the ways models break it — invalid JSON, a required field
//! missing, a code fence, prose around the JSON — by directive or by rate.
//!
//! Directives: `[[mock:json-MODE[*N]]]` with MODE one of `valid`, `invalid`, `missing`,
//! `fenced`, `prose`; `*N` covers the first N asks of the conversation (an ask is the
//! original request, then each re-ask: the number of assistant turns sent plus one), so
//! `[[mock:json-invalid*1]]` answers invalid JSON once and fixes it when re-asked.
//!
//! A model whose id contains `no-structured` has no endpoint that supports structured
//! output: with `provider.require_parameters` it gets OpenRouter's 404, without it the schema
//! is ignored and the answer is prose (as real endpoints that accept and ignore it).

use serde_json::{Map, Value};

use super::state::Shared;
use crate::endpoint::Endpoint;

/// A model id with this in it has no endpoint that honours a schema.
pub const NO_STRUCTURED: &str = "no-structured";

/// OpenRouter's 404 when `require_parameters` leaves no endpoint.
pub const NO_ENDPOINT_MESSAGE: &str =
    "No endpoints found that can handle the requested parameters.";

/// How a JSON answer comes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Valid,
    /// Not JSON: the valid text cut before its last character.
    Invalid,
    /// JSON without the root object's first required property.
    Missing,
    /// The valid JSON in a ```` ```json ```` fence.
    Fenced,
    /// The valid JSON between two sentences.
    Prose,
}

impl Mode {
    fn from_name(name: &str) -> Option<Mode> {
        Some(match name {
            "valid" => Mode::Valid,
            "invalid" => Mode::Invalid,
            "missing" => Mode::Missing,
            "fenced" => Mode::Fenced,
            "prose" => Mode::Prose,
            _ => return None,
        })
    }
}

/// The schema a request body asks the answer to fit, if any.
pub fn requested(endpoint: Endpoint, body: &Value) -> Option<Value> {
    let format = match endpoint {
        Endpoint::Chat => body.get("response_format")?,
        Endpoint::Responses => body.pointer("/text/format")?,
    };
    if format.get("type")?.as_str()? != "json_schema" {
        return None;
    }
    let schema = match endpoint {
        Endpoint::Chat => format.pointer("/json_schema/schema")?,
        Endpoint::Responses => format.get("schema")?,
    };
    Some(schema.clone())
}

/// The mode of ask number `ask` (1-based): the prompt's directives first, then the
/// `--rate-json-*` knobs, else valid.
pub fn mode(state: &Shared, prompt: &str, ask: u64) -> Mode {
    let directives = parse_all(prompt);
    if !directives.is_empty() {
        let mut covered = 0u64;
        for (mode, times) in directives {
            match times {
                None => return mode,
                Some(n) => {
                    covered = covered.saturating_add(n);
                    if ask <= covered {
                        return mode;
                    }
                }
            }
        }
        return Mode::Valid;
    }
    let c = &state.config;
    let rates = [
        (c.rate_json_invalid, Mode::Invalid),
        (c.rate_json_missing, Mode::Missing),
        (c.rate_json_fenced, Mode::Fenced),
        (c.rate_json_prose, Mode::Prose),
    ];
    if rates.iter().all(|(r, _)| *r <= 0.0) {
        return Mode::Valid;
    }
    let (u, _) = state.draw(1);
    let mut edge = 0.0;
    for (rate, mode) in rates {
        edge += rate;
        if u < edge {
            return mode;
        }
    }
    Mode::Valid
}

/// Every `[[mock:json-MODE[*N]]]` in `prompt`, in order.
fn parse_all(prompt: &str) -> Vec<(Mode, Option<u64>)> {
    let mut out = Vec::new();
    let mut rest = prompt;
    while let Some(start) = rest.find("[[mock:json-") {
        let after = &rest[start + "[[mock:json-".len()..];
        let Some(end) = after.find("]]") else { break };
        let spec = after[..end].trim();
        let parsed = match spec.split_once('*') {
            Some((name, n)) => Mode::from_name(name).zip(n.parse().ok().map(Some)),
            None => Mode::from_name(spec).map(|m| (m, None)),
        };
        out.extend(parsed);
        rest = &after[end + 2..];
    }
    out
}

/// The answer's words (joined with single spaces they are the text; newlines stay inside
/// words), for `schema` in `mode`; `seed` picks the string values.
pub fn words(schema: &Value, mode: Mode, seed: u64) -> Vec<String> {
    let mut value = instance(schema, schema, seed, 0);
    if mode == Mode::Missing {
        let first = required(schema).and_then(|r| r.first().cloned());
        if let (Some(Value::String(key)), Some(obj)) = (first, value.as_object_mut()) {
            obj.remove(&key);
        }
    }
    let json = spaced(&value);
    let text = match mode {
        Mode::Valid | Mode::Missing => json,
        Mode::Invalid => {
            let mut t = json;
            t.pop();
            t
        }
        Mode::Fenced => format!("```json\n{json}\n```"),
        Mode::Prose => {
            format!("Here is the JSON you asked for:\n{json}\nLet me know if you need more.")
        }
    };
    text.split(' ').map(str::to_owned).collect()
}

fn required(schema: &Value) -> Option<&Vec<Value>> {
    schema.get("required")?.as_array()
}

const WORDS: &[&str] = &[
    "amber", "basalt", "cedar", "delta", "ember", "fjord", "granite", "harbor",
];

/// A minimal instance of `schema` (`root` resolves local `$ref`s).
pub fn instance(schema: &Value, root: &Value, seed: u64, depth: u32) -> Value {
    let Some(s) = schema.as_object() else {
        return Value::Null;
    };
    if depth > 16 {
        return Value::Null;
    }
    if let Some(v) = s.get("const") {
        return v.clone();
    }
    if let Some(first) = s
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    if let Some(target) = s
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix('#'))
        && let Some(sub) = root.pointer(target)
    {
        return instance(sub, root, seed, depth + 1);
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(first) = s.get(key).and_then(Value::as_array).and_then(|a| a.first()) {
            return instance(first, root, seed, depth + 1);
        }
    }
    let ty = match s.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if s.contains_key("properties") => "object",
        _ if s.contains_key("items") => "array",
        _ => "string",
    };
    match ty {
        "object" => {
            let props = s.get("properties").and_then(Value::as_object);
            let mut out = Map::new();
            for key in required(schema)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                let sub = props.and_then(|p| p.get(key)).unwrap_or(&Value::Null);
                let seed = seed ^ crate::hash::hash64(key.as_bytes());
                out.insert(key.to_owned(), instance(sub, root, seed, depth + 1));
            }
            Value::Object(out)
        }
        "array" => {
            let n = s
                .get("minItems")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                .min(16);
            let items = s.get("items").unwrap_or(&Value::Null);
            Value::Array(
                (0..n)
                    .map(|i| instance(items, root, seed.rotate_left(i as u32 + 1), depth + 1))
                    .collect(),
            )
        }
        "integer" | "number" => {
            let min = s.get("minimum").and_then(Value::as_i64);
            let exclusive = s
                .get("exclusiveMinimum")
                .and_then(Value::as_i64)
                .map(|m| m + 1);
            let n = min
                .or(exclusive)
                .unwrap_or(0)
                .max(exclusive.unwrap_or(i64::MIN));
            let max = s.get("maximum").and_then(Value::as_i64);
            Value::from(max.map_or(n, |m| n.min(m)))
        }
        "boolean" => Value::Bool(false),
        "null" => Value::Null,
        _ => {
            let mut word = WORDS[(seed % WORDS.len() as u64) as usize].to_owned();
            let min = s.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
            while word.chars().count() < min {
                word.push('x');
            }
            if let Some(max) = s.get("maxLength").and_then(Value::as_u64) {
                word = word.chars().take(max as usize).collect();
            }
            Value::String(word)
        }
    }
}

/// Compact JSON with a space after every `,` and `:` between values (so a text splits into
/// several tokens), strings as serde_json escapes them.
fn spaced(v: &Value) -> String {
    match v {
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(spaced).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), spaced(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "required": ["name", "kind", "tags", "n", "below", "ok", "who"],
            "properties": {
                "name": {"type": "string", "minLength": 8},
                "kind": {"enum": ["person", "place"]},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "n": {"type": "integer", "minimum": 3},
                "below": {"type": "integer", "maximum": -2},
                "ok": {"type": ["boolean", "null"]},
                "who": {"$ref": "#/$defs/who"}},
            "$defs": {"who": {"type": "object", "required": ["id"],
                "properties": {"id": {"type": "integer"}}}}})
    }

    #[test]
    fn the_valid_instance_fits_and_the_others_do_not() {
        let s = schema();
        let validator = jsonschema::validator_for(&s).unwrap();
        let text = |m| words(&s, m, 7).join(" ");
        let valid: Value = serde_json::from_str(&text(Mode::Valid)).unwrap();
        assert!(validator.is_valid(&valid), "{valid}");
        assert_eq!(valid["kind"], "person");
        assert!(serde_json::from_str::<Value>(&text(Mode::Invalid)).is_err());
        let missing: Value = serde_json::from_str(&text(Mode::Missing)).unwrap();
        assert!(!validator.is_valid(&missing) && missing.get("name").is_none());
        assert!(text(Mode::Fenced).starts_with("```json\n{"));
        assert!(text(Mode::Prose).contains(":\n{\"below\": -2, "));
        assert!(words(&s, Mode::Valid, 7).len() > 5);
    }

    #[test]
    fn json_directives_cover_asks() {
        assert_eq!(
            parse_all(
                "x [[mock:json-invalid*1]] [[mock:json-fenced]] [[mock:500]] [[mock:json-bogus]]"
            ),
            vec![(Mode::Invalid, Some(1)), (Mode::Fenced, None)]
        );
        let chat = json!({"response_format": {"type": "json_schema",
            "json_schema": {"name": "x", "schema": {"type": "object"}}}});
        assert_eq!(
            requested(Endpoint::Chat, &chat),
            Some(json!({"type": "object"}))
        );
        let resp = json!({"text": {"format": {"type": "json_schema", "name": "x",
            "schema": {"type": "object"}}}});
        assert_eq!(
            requested(Endpoint::Responses, &resp),
            Some(json!({"type": "object"}))
        );
        assert_eq!(requested(Endpoint::Chat, &resp), None);
    }
}
