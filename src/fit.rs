//! Will it fit? Before anything is sent, each request's prompt estimate (characters ÷ 4, as
//! everywhere in orbatch) plus its completion bound is held against its model's context
//! length from `GET /models`: `plan` lists what does not fit, `run` refuses it (exit 2).
//! Without the catalogue (no network, a server without `/models`, or `--mock`) the check is
//! skipped, and orbatch says so.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::budget::DEFAULT_COMPLETION_BOUND;
use crate::catalog::{Catalog, fetch_models};
use crate::config::Target;
use crate::connect::{ClientOptions, Connection};
use crate::estimate;
use crate::mock::MockConfig;

/// How many requests that do not fit are named (the rest are counted per model).
pub const SHOWN: usize = 20;

/// Whether the check can be made.
#[derive(Debug, Clone)]
pub enum Context {
    /// Against this catalogue.
    Checked(Arc<Catalog>),
    /// Not made, and why (for the user).
    Skipped(String),
}

impl Context {
    /// The catalogue to check against, if any.
    pub fn catalog(&self) -> Option<Arc<Catalog>> {
        match self {
            Context::Checked(c) => Some(Arc::clone(c)),
            Context::Skipped(_) => None,
        }
    }

    /// The line that says the check was skipped, if it was.
    pub fn skipped(&self) -> Option<String> {
        match self {
            Context::Checked(_) => None,
            Context::Skipped(why) => Some(format!(
                "the context check was skipped ({why}): requests longer than a model's context \
                 are only found when the server refuses them"
            )),
        }
    }
}

/// Fetch the catalogue for the check: `--mock` skips it, and so does any failure (the
/// catalogue is public, so a refused key does not stop anything here). `timeout` bounds the
/// one request.
pub async fn fetch(target: &Target, timeout: Duration) -> Context {
    if matches!(target, Target::Mock) {
        return Context::Skipped("--mock".into());
    }
    let options = ClientOptions {
        timeout: Some(timeout),
        ..ClientOptions::default()
    };
    let connection = match Connection::open(target, options, MockConfig::default()).await {
        Ok(c) => c,
        Err(e) => return Context::Skipped(format!("{e:#}")),
    };
    let fetched = fetch_models(&connection.client).await;
    connection.close().await;
    match fetched {
        Ok(catalog) => Context::Checked(Arc::new(catalog)),
        Err(e) => Context::Skipped(format!("{e:#}")),
    }
}

/// A body's estimated prompt tokens and completion bound (`max_tokens`, else the default
/// bound), the same for every model.
pub fn need(body: &Map<String, Value>) -> (u64, u64) {
    (
        estimate::prompt_tokens(body),
        estimate::max_completion(body).unwrap_or(DEFAULT_COMPLETION_BOUND),
    )
}

/// An upper bound of [`estimate::prompt_tokens`] that copies nothing (bytes ≥ characters):
/// most requests are far below any context, and this says so at the cost of a walk over the
/// body's strings.
pub fn prompt_upper_bound(body: &Map<String, Value>) -> u64 {
    fn text_bytes(content: Option<&Value>) -> u64 {
        match content {
            Some(Value::String(s)) => s.len() as u64,
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .map(|t| t.len() as u64)
                .sum(),
            _ => 0,
        }
    }
    let (mut bytes, mut messages) = (0u64, 0u64);
    if let Some(Value::Array(msgs)) = body.get("messages") {
        for m in msgs {
            bytes += text_bytes(m.get("content"));
            messages += 1;
        }
    }
    if let Some(Value::String(s)) = body.get("instructions") {
        bytes += s.len() as u64;
        messages += 1;
    }
    match body.get("input") {
        Some(Value::String(s)) => {
            bytes += s.len() as u64;
            messages += 1;
        }
        Some(Value::Array(items)) => {
            for item in items {
                bytes += text_bytes(item.get("content"));
                messages += 1;
            }
        }
        _ => {}
    }
    bytes.div_ceil(4) + estimate::TOKENS_PER_MESSAGE * messages
}

/// The model's context, if `prompt + bound` does not fit it. The bound is capped by the
/// model's `top_provider.max_completion_tokens` (no provider writes more); a model without a
/// known context length is not checked.
pub fn overflow(catalog: &Catalog, model: &str, (prompt, bound): (u64, u64)) -> Option<(u64, u64)> {
    let info = catalog.get(model)?;
    let context = info.context_length?;
    let bound = info.max_completion_tokens.map_or(bound, |m| bound.min(m));
    (prompt.saturating_add(bound) > context).then_some((context, bound))
}

/// The requests that do not fit: the first [`SHOWN`] named, all counted per model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overflows {
    pub per_model: BTreeMap<String, u64>,
    pub shown: Vec<String>,
}

impl Overflows {
    /// Note a request at `at` (a file, or `PATH:LINE`) that does not fit `model`.
    pub fn push(&mut self, at: &str, model: &str, prompt: u64, (context, bound): (u64, u64)) {
        *self.per_model.entry(model.to_owned()).or_default() += 1;
        if self.shown.len() < SHOWN {
            self.shown.push(format!(
                "{at} → {model}: ~{prompt} prompt tokens + {bound} for the answer > its context \
                 of {context}"
            ));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.per_model.is_empty()
    }

    pub fn count(&self) -> u64 {
        self.per_model.values().sum()
    }

    /// Every line to show: those named, how many more, and what to do.
    pub fn lines(&self) -> Vec<String> {
        let mut out = self.shown.clone();
        let more = self.count() - self.shown.len() as u64;
        if more > 0 {
            out.push(format!("… and {more} more"));
        }
        let per_model: Vec<String> = self
            .per_model
            .iter()
            .map(|(m, n)| format!("{m}: {n}"))
            .collect();
        let n = self.count();
        let (requests, fit) = if n == 1 {
            ("request does", "its")
        } else {
            ("requests do", "their")
        };
        out.push(format!(
            "{n} {requests} not fit {fit} model's context ({}); prompts are estimated at \
             characters ÷ 4 (real tokenizers differ by about 25 %), answers at max_tokens (else \
             {DEFAULT_COMPLETION_BOUND}); split long documents with --chunk-tokens N, lower \
             max_tokens, or pick a model with a longer context (`orbatch models`)",
            per_model.join(", ")
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prompt_plus_bound_against_the_context() {
        let catalog = Catalog::from_json(&json!({"data":[
            {"id":"small","context_length":100,"top_provider":{"max_completion_tokens":10}},
            {"id":"big","context_length":100000},
            {"id":"unknown-context","context_length":null}
        ]}))
        .unwrap();
        let body = |chars: usize, max: Option<u64>| {
            let mut b = json!({"messages":[{"role":"user","content":"x".repeat(chars)}]});
            if let Some(m) = max {
                b["max_tokens"] = json!(m);
            }
            b.as_object().cloned().unwrap()
        };
        // 344 chars → 86 + 4 tokens; the default bound 1024 is capped at 10: 100 fits.
        let fits = need(&body(344, None));
        assert_eq!(fits, (90, DEFAULT_COMPLETION_BOUND));
        // The quick bound counts bytes: the same for ASCII, more for other scripts.
        assert_eq!(prompt_upper_bound(&body(344, None)), 90);
        let mut wide = body(0, None);
        wide["messages"][0]["content"] = json!("é".repeat(100));
        assert_eq!((need(&wide).0, prompt_upper_bound(&wide)), (29, 54));
        assert_eq!(overflow(&catalog, "small", fits), None);
        let over = need(&body(348, None));
        assert_eq!(overflow(&catalog, "small", over), Some((100, 10)));
        assert_eq!(overflow(&catalog, "big", need(&body(348, Some(500)))), None);
        assert_eq!(
            overflow(&catalog, "big", need(&body(40_000, Some(90_000)))),
            Some((100_000, 90_000))
        );
        assert_eq!(overflow(&catalog, "unknown-context", over), None);
        assert_eq!(overflow(&catalog, "not-listed", over), None);
        let mut o = Overflows::default();
        for i in 0..25 {
            o.push(&format!("f{i}.md"), "small", 91, (100, 10));
        }
        let lines = o.lines();
        assert_eq!(lines.len(), SHOWN + 2);
        assert!(
            lines[0].starts_with("f0.md → small: ~91 prompt tokens"),
            "{lines:?}"
        );
        assert_eq!(lines[SHOWN], "… and 5 more");
        assert!(lines[SHOWN + 1].contains("25 requests") && lines[SHOWN + 1].contains("small: 25"));
    }
}
