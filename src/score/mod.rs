//! Scoring answers against expected values: the scorer kinds of `--scorer KIND[:OPTS]` (and
//! the job file's `[score]` table), each a pure function of (answer, expected) that says what
//! it extracted, so a wrong score can be checked by eye.

mod choice;
pub mod command;
pub mod job;
pub mod judge;
mod number;
mod spec;
pub mod stats;

#[cfg(test)]
mod tests;

use serde_json::Value;

pub use spec::{NumberPick, Scorer};

/// What one scorer made of one answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// 0..=1 (1 or 0 for every scorer but `judge`).
    pub score: f64,
    pub passed: bool,
    /// What was compared with the expected value (`None`: nothing could be extracted).
    pub extracted: Option<String>,
}

impl Score {
    fn of(passed: bool, extracted: Option<String>) -> Score {
        Score {
            score: if passed { 1.0 } else { 0.0 },
            passed,
            extracted,
        }
    }
}

impl Scorer {
    /// Score `answer` against `expected` (the row's expected field, as written in the input).
    pub fn score(&self, answer: &str, expected: &str) -> Score {
        match self {
            Scorer::Exact(n) => {
                let got = n.apply(answer);
                Score::of(got == n.apply(expected), Some(got))
            }
            Scorer::Contains(n) => {
                let want = n.apply(expected);
                let got = n.apply(answer);
                let passed = !want.is_empty() && got.contains(&want);
                Score::of(passed, passed.then_some(want))
            }
            Scorer::Regex { re, normalize } => {
                let Some(caps) = re.captures(answer) else {
                    return Score::of(false, None);
                };
                let m = caps
                    .name("answer")
                    .or_else(|| caps.get(1))
                    .or_else(|| caps.get(0));
                let got = m.map(|m| normalize.apply(m.as_str()));
                let passed = got.as_deref() == Some(normalize.apply(expected).as_str());
                Score::of(passed, got)
            }
            Scorer::Number { abs, rel, pick } => {
                let got = number::pick(answer, *pick);
                let want = number::pick(expected, NumberPick::First);
                let passed = match (got, want) {
                    (Some(g), Some(w)) => number::close(g.value, w.value, *abs, *rel),
                    _ => false,
                };
                Score::of(passed, got.map(|g| g.text.to_owned()))
            }
            Scorer::Choice(chooser) => {
                let got = chooser.chosen(answer);
                let passed = got.as_ref().is_some_and(|c| chooser.matches(c, expected));
                let shown = got.map(|c| match c.text {
                    Some(t) => format!("{}) {t}", c.letter),
                    None => c.letter.to_string(),
                });
                Score::of(passed, shown)
            }
            Scorer::Json { pointer } => json_score(answer, expected, pointer),
            // A judge's verdict comes from its requests ([`judge`]), never from here: the
            // scoring of an output looks verdicts up instead of calling this.
            Scorer::Judge { .. } => Score::of(false, None),
        }
    }
}

/// `json:/pointer`: the answer parsed as JSON (inside one code fence, if fenced), the value at
/// the pointer compared with the expected value (itself read as JSON when it parses, else as
/// a string); numbers compare by value (`1` equals `1.0`).
fn json_score(answer: &str, expected: &str, pointer: &str) -> Score {
    let Ok(doc) = serde_json::from_str::<Value>(unfence(answer)) else {
        return Score::of(false, None);
    };
    let Some(got) = doc.pointer(pointer) else {
        return Score::of(false, None);
    };
    let want = serde_json::from_str::<Value>(expected.trim())
        .unwrap_or_else(|_| Value::String(expected.to_owned()));
    let passed = json_equal(got, &want)
        // An expected `Paris` (not JSON) against the string "Paris".
        || matches!((got, &want), (Value::String(g), Value::String(w)) if g.trim() == w.trim());
    let shown = match got {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Score::of(passed, Some(shown))
}

/// JSON equality where numbers compare as numbers.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// The text inside one surrounding Markdown code fence (```json … ```), else the text.
fn unfence(text: &str) -> &str {
    let t = text.trim();
    let Some(rest) = t.strip_prefix("```") else {
        return t;
    };
    let Some(body) = rest.strip_suffix("```") else {
        return t;
    };
    // Drop the info string (`json`) on the opening line.
    match body.split_once('\n') {
        Some((_info, inner)) => inner.trim(),
        None => body.trim(),
    }
}
