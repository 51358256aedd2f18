//! Problems found in the input: each one `PATH:LINE: message`, at most [`MAX_PROBLEMS`] kept,
//! the rest only counted.

use std::fmt;

/// How many problems an [`InputError`] lists before it only counts the rest.
pub const MAX_PROBLEMS: usize = 20;

/// One problem with the input, shown as `PATH:LINE: message` (or `PATH: message` without line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputProblem {
    pub line: Option<u64>,
    pub message: String,
}

/// Why the input cannot be used: up to 20 problems, plus how many more there were.
#[derive(Debug, thiserror::Error)]
pub struct InputError {
    /// Display name: the path as given, or `<stdin>` (or `--template` / `--param` for problems
    /// with those flags rather than with the rows).
    pub path: String,
    pub problems: Vec<InputProblem>,
    pub more: u64,
}

impl InputError {
    /// An error with a single problem.
    pub(crate) fn one(path: &str, line: Option<u64>, message: impl Into<String>) -> InputError {
        InputError {
            path: path.to_owned(),
            problems: vec![InputProblem {
                line,
                message: message.into(),
            }],
            more: 0,
        }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match p.line {
                Some(line) => write!(f, "{}:{}: {}", self.path, line, p.message)?,
                None => write!(f, "{}: {}", self.path, p.message)?,
            }
        }
        if self.more > 0 {
            if !self.problems.is_empty() {
                writeln!(f)?;
            }
            let s = if self.more == 1 { "" } else { "s" };
            write!(f, "… and {} more problem{s}", self.more)?;
        }
        Ok(())
    }
}

/// Collects problems during the validation pass.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    list: Vec<InputProblem>,
    more: u64,
}

impl Problems {
    pub(crate) fn push(&mut self, line: Option<u64>, message: impl Into<String>) {
        if self.list.len() < MAX_PROBLEMS {
            self.list.push(InputProblem {
                line,
                message: message.into(),
            });
        } else {
            self.more += 1;
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub(crate) fn into_error(self, path: &str) -> InputError {
        InputError {
            path: path.to_owned(),
            problems: self.list,
            more: self.more,
        }
    }
}
