//! `--scorer KIND[:OPTS]` parsed into a [`Scorer`]: `exact:ignore_case,strip_punct`,
//! `number:rel=0.01,pick=first`, `regex:Answer: (\w+)`, `choice:letters=ABCDE`, `json:/a/0`.

use regex::Regex;

use super::choice::Chooser;

/// A scorer spec that cannot be used; the message names the spec and says what would do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--scorer {spec:?}: {message}")]
pub struct SpecError {
    pub spec: String,
    pub message: String,
}

/// How texts are made comparable before `exact`, `contains` and `regex` compare them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Normalize {
    pub trim: bool,
    pub ignore_case: bool,
    pub collapse_whitespace: bool,
    pub strip_punctuation: bool,
}

impl Default for Normalize {
    /// Trim only: `" Paris\n"` is `Paris`, but `paris` is not.
    fn default() -> Normalize {
        Normalize {
            trim: true,
            ignore_case: false,
            collapse_whitespace: false,
            strip_punctuation: false,
        }
    }
}

impl Normalize {
    pub fn apply(&self, text: &str) -> String {
        let mut s: String = if self.strip_punctuation {
            text.chars().filter(|c| !c.is_ascii_punctuation()).collect()
        } else {
            text.to_owned()
        };
        if self.ignore_case {
            s = s.to_lowercase();
        }
        if self.collapse_whitespace {
            s = s.split_whitespace().collect::<Vec<_>>().join(" ");
        } else if self.trim {
            s = s.trim().to_owned();
        }
        s
    }
}

/// Which number of the answer `number` compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberPick {
    First,
    /// The default: models reason first and conclude last.
    Last,
}

/// One way to score an answer.
#[derive(Debug, Clone)]
pub enum Scorer {
    Exact(Normalize),
    Contains(Normalize),
    /// The first capture group (or the group named `answer`, or the whole match) compared,
    /// normalised, with the expected value.
    Regex {
        re: Regex,
        normalize: Normalize,
    },
    Number {
        abs: f64,
        rel: f64,
        pick: NumberPick,
    },
    /// Multiple choice among the chooser's letters.
    Choice(Chooser),
    /// A JSON pointer (`""` is the whole document).
    Json {
        pointer: String,
    },
    /// An LLM grades the answer with a rubric ([`super::judge`]); `model` from
    /// `judge:model=…`, else `--judge-model`.
    Judge {
        model: Option<String>,
    },
}

impl Scorer {
    /// The kind's name, as written in `OUT.scores.jsonl`'s `scorer` field.
    pub fn kind(&self) -> &'static str {
        match self {
            Scorer::Exact(_) => "exact",
            Scorer::Contains(_) => "contains",
            Scorer::Regex { .. } => "regex",
            Scorer::Number { .. } => "number",
            Scorer::Choice(_) => "choice",
            Scorer::Json { .. } => "json",
            Scorer::Judge { .. } => "judge",
        }
    }

    /// Parse `KIND[:OPTS]`.
    pub fn parse(spec: &str) -> Result<Scorer, SpecError> {
        let err = |message: String| SpecError {
            spec: spec.to_owned(),
            message,
        };
        let (kind, opts) = match spec.split_once(':') {
            Some((k, o)) => (k.trim(), Some(o)),
            None => (spec.trim(), None),
        };
        match kind {
            "exact" | "contains" => {
                let n = normalize(opts.unwrap_or(""), &err)?;
                Ok(if kind == "exact" {
                    Scorer::Exact(n)
                } else {
                    Scorer::Contains(n)
                })
            }
            "regex" => {
                let pattern = opts.filter(|p| !p.is_empty()).ok_or_else(|| {
                    err("give the pattern after the colon, e.g. regex:Answer: (\\w+)".into())
                })?;
                // The whole rest is the pattern (it may hold commas); flags go inline, as
                // `(?i)`.
                let re = regex::RegexBuilder::new(pattern)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| err(format!("the pattern does not compile: {e}")))?;
                Ok(Scorer::Regex {
                    re,
                    normalize: Normalize::default(),
                })
            }
            "number" => {
                let (mut abs, mut rel, mut pick) = (0.0, 0.0, NumberPick::Last);
                for (key, value) in options(opts.unwrap_or("")) {
                    let v = value.unwrap_or("");
                    match key {
                        "abs" | "rel" => {
                            let x: f64 = v
                                .parse()
                                .ok()
                                .filter(|x: &f64| x.is_finite() && *x >= 0.0)
                                .ok_or_else(|| {
                                    err(format!(
                                        "{key}={v:?}: expected a tolerance ≥ 0, e.g. {key}=0.01"
                                    ))
                                })?;
                            if key == "abs" {
                                abs = x;
                            } else {
                                rel = x;
                            }
                        }
                        "pick" => {
                            pick = match v {
                                "first" => NumberPick::First,
                                "last" => NumberPick::Last,
                                _ => {
                                    return Err(err(format!(
                                        "pick={v:?}: use pick=first or pick=last"
                                    )));
                                }
                            }
                        }
                        other => {
                            return Err(err(format!(
                                "unknown option {other:?}; number takes abs=X, rel=X, pick=first|last"
                            )));
                        }
                    }
                }
                Ok(Scorer::Number { abs, rel, pick })
            }
            "choice" => {
                let mut letters: Vec<char> = ('A'..='J').collect();
                for (key, value) in options(opts.unwrap_or("")) {
                    match (key, value) {
                        ("letters", Some(v))
                            if !v.is_empty() && v.chars().all(|c| c.is_ascii_alphabetic()) =>
                        {
                            letters = v.chars().map(|c| c.to_ascii_uppercase()).collect();
                        }
                        ("letters", v) => {
                            return Err(err(format!(
                                "letters={:?}: give the option letters, e.g. letters=ABCD",
                                v.unwrap_or("")
                            )));
                        }
                        (other, _) => {
                            return Err(err(format!(
                                "unknown option {other:?}; choice takes letters=ABCD"
                            )));
                        }
                    }
                }
                let chooser = Chooser::new(letters)
                    .map_err(|e| err(format!("cannot build the letter patterns: {e}")))?;
                Ok(Scorer::Choice(chooser))
            }
            "json" => {
                let pointer = opts.unwrap_or("").trim().to_owned();
                if !(pointer.is_empty() || pointer.starts_with('/')) {
                    return Err(err(format!(
                        "{pointer:?} is not a JSON pointer: start it with /, e.g. json:/answer"
                    )));
                }
                Ok(Scorer::Json { pointer })
            }
            "judge" => {
                let mut model = None;
                for (key, value) in options(opts.unwrap_or("")) {
                    match (key, value) {
                        ("model", Some(m)) if !m.is_empty() => model = Some(m.to_owned()),
                        (other, _) => {
                            return Err(err(format!(
                                "unknown option {other:?}; judge takes model=ID, e.g. \
                                 judge:model=openai/gpt-4o"
                            )));
                        }
                    }
                }
                Ok(Scorer::Judge { model })
            }
            other => Err(err(format!(
                "unknown scorer {other:?}; use exact, contains, regex, number, choice, json or \
                 judge"
            ))),
        }
    }
}

/// `a,b=c` → `[("a", None), ("b", Some("c"))]`, blanks dropped.
fn options(opts: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    opts.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|o| match o.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (o, None),
        })
}

/// The options of `exact` and `contains`: each a flag (`ignore_case`) or `flag=true|false`.
fn normalize(opts: &str, err: &dyn Fn(String) -> SpecError) -> Result<Normalize, SpecError> {
    let mut n = Normalize::default();
    for (key, value) in options(opts) {
        let on = match value {
            None | Some("true") => true,
            Some("false") => false,
            Some(v) => return Err(err(format!("{key}={v:?}: use {key}=true or {key}=false"))),
        };
        match key {
            "trim" => n.trim = on,
            "ignore_case" | "i" => n.ignore_case = on,
            "collapse_whitespace" | "ws" => n.collapse_whitespace = on,
            "strip_punctuation" | "punct" => n.strip_punctuation = on,
            other => {
                return Err(err(format!(
                    "unknown option {other:?}; use trim, ignore_case, collapse_whitespace, \
                     strip_punctuation"
                )));
            }
        }
    }
    Ok(n)
}
