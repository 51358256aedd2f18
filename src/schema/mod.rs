//! Structured output (#15): a job's JSON Schema, loaded and checked before anything is sent,
//! written into every request body (chat `response_format`, responses `text.format`, plus
//! `provider.require_parameters`), and checked against every answer; an answer that does not
//! fit is re-asked with the validator's first errors ([`reask`]).

pub mod check;
pub mod reask;

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::endpoint::Endpoint;
use crate::exit::UsageError;
use crate::job::kind;

pub use check::Checked;
pub use reask::{Asks, Reviewed};

/// `json_schema.name` must be a-z A-Z 0-9 `_` `-`, at most 64 characters (FACTS §2.1).
const MAX_NAME: usize = 64;

/// The longest `--reask`.
pub const MAX_REASK: u64 = 10;

/// A loaded, valid JSON Schema and the name it is sent under.
pub struct Schema {
    name: String,
    value: Value,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema").field("name", &self.name).finish()
    }
}

/// How answers are checked: the schema, how many re-asks, whether prose may be stripped.
#[derive(Debug)]
pub struct Structured {
    pub schema: std::sync::Arc<Schema>,
    /// `--reask N`: re-asks after an answer that does not fit (0: none).
    pub reask: u32,
    /// `--lenient-json`: strip one code fence or the prose around a single JSON value.
    pub lenient: bool,
}

impl Schema {
    /// Read the schema file at `path`; `name` is `schema_name` (else the file's stem). Errors
    /// name the file and say what to fix (exit 2, nothing sent).
    pub fn load(path: &Path, name: Option<&str>) -> Result<Schema, UsageError> {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| UsageError::new(format!("{shown}: cannot read the schema file: {e}")))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            UsageError::new(format!(
                "{shown}:{}:{}: the schema is not valid JSON: {e}",
                e.line(),
                e.column()
            ))
        })?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let stem = stem.strip_suffix(".schema").unwrap_or(stem);
        let name = match name {
            Some(n) => {
                checked_name(n).map_err(|e| UsageError::new(format!("schema_name {n:?}: {e}")))?
            }
            None => name_from(stem),
        };
        Schema::new(name, value).map_err(|e| UsageError::new(format!("{shown}: {e}")))
    }

    /// A schema from its JSON; `Err` says why it is not a usable JSON Schema.
    pub fn new(name: String, value: Value) -> Result<Schema, String> {
        if !value.is_object() {
            return Err(format!(
                "a schema must be a JSON object (as {{\"type\": \"object\", \"properties\": …}}), found {}",
                kind(&value)
            ));
        }
        if let Err(e) = jsonschema::meta::validate(&value) {
            return Err(format!(
                "not a valid JSON Schema: at {}: {e}",
                pointer(e.instance_path().as_str())
            ));
        }
        let validator = jsonschema::validator_for(&value).map_err(|e| {
            format!(
                "not a usable JSON Schema (orbatch resolves only references inside the file): {e}"
            )
        })?;
        Ok(Schema {
            name,
            value,
            validator,
        })
    }

    #[cfg(test)]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Check an answer's text against the schema.
    pub fn check(&self, text: &str, lenient: bool) -> Checked {
        check::check(&self.validator, text, lenient)
    }

    /// Write the schema into a request body: chat `response_format`, responses `text.format`
    /// (kept beside the user's other `text` settings), and `provider.require_parameters: true`
    /// unless the user's `provider` says otherwise, so that only endpoints that honour the
    /// schema serve the row. `Err` when the body already asks for an answer format.
    pub fn apply(&self, endpoint: Endpoint, body: &mut Map<String, Value>) -> Result<(), String> {
        match endpoint {
            Endpoint::Chat => {
                if body.contains_key("response_format") {
                    return Err(conflict("response_format"));
                }
                body.insert(
                    "response_format".into(),
                    json!({"type": "json_schema", "json_schema": {
                        "name": self.name, "strict": true, "schema": self.value,
                    }}),
                );
            }
            Endpoint::Responses => {
                let format = json!({"type": "json_schema", "name": self.name,
                    "strict": true, "schema": self.value});
                match body.get_mut("text") {
                    None => {
                        body.insert("text".into(), json!({ "format": format }));
                    }
                    Some(Value::Object(text)) if !text.contains_key("format") => {
                        text.insert("format".into(), format);
                    }
                    Some(_) => return Err(conflict("text.format")),
                }
            }
        }
        match body.get_mut("provider") {
            None => {
                body.insert("provider".into(), json!({"require_parameters": true}));
            }
            Some(Value::Object(p)) => {
                p.entry("require_parameters").or_insert(Value::Bool(true));
            }
            // Not an object: OpenRouter will refuse it; leave the user's value as given.
            Some(_) => {}
        }
        Ok(())
    }
}

fn conflict(key: &str) -> String {
    format!("\"{key}\" is set by --schema (the job's schema); remove it from the params")
}

/// `name` if it is a valid `json_schema.name`.
fn checked_name(name: &str) -> Result<String, String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "use 1 to {MAX_NAME} of the characters a-z A-Z 0-9 _ -"
        ))
    }
}

/// A valid `json_schema.name` made from a file stem.
fn name_from(stem: &str) -> String {
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(MAX_NAME)
        .collect();
    if name.is_empty() {
        "schema".to_owned()
    } else {
        name
    }
}

/// A JSON pointer as messages show it: `/` for the root.
pub(crate) fn pointer(p: &str) -> &str {
    if p.is_empty() { "/" } else { p }
}

#[cfg(test)]
mod tests;
