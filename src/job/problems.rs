//! Problems found in the input: each one `PATH:LINE: message`, at most [`MAX_PROBLEMS`] kept,
//! the rest only counted. The same message on many lines is one problem with a line range
//! (`bad.jsonl:4–180: … (177 lines)`), so one systematic mistake does not hide the others.

use std::fmt;

/// How many problems an [`InputError`] lists before it only counts the rest.
pub const MAX_PROBLEMS: usize = 20;

/// One problem with the input, shown as `PATH:LINE: message` (or `PATH: message` without line),
/// or `PATH:FIRST–LAST: message (N lines)` when the same message came from several lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputProblem {
    /// The first line with this problem.
    pub line: Option<u64>,
    /// The last line with this problem (the same as `line` when there is one).
    pub last_line: Option<u64>,
    /// How many lines had it.
    pub lines: u64,
    pub message: String,
    /// The file of a document input the problem is about (then shown instead of the input's
    /// path and line: `docs/a.pdf: …`).
    pub file: Option<String>,
}

impl InputProblem {
    fn new(line: Option<u64>, message: String) -> InputProblem {
        InputProblem {
            line,
            last_line: line,
            lines: 1,
            message,
            file: None,
        }
    }
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
            problems: vec![InputProblem::new(line, message.into())],
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
            if let Some(file) = &p.file {
                write!(f, "{file}: {}", p.message)?;
                continue;
            }
            match (p.line, p.last_line) {
                (Some(first), Some(last)) if p.lines > 1 => write!(
                    f,
                    "{}:{first}\u{2013}{last}: {} ({} lines)",
                    self.path, p.message, p.lines
                )?,
                (Some(line), _) => write!(f, "{}:{}: {}", self.path, line, p.message)?,
                (None, _) if p.lines > 1 => {
                    write!(f, "{}: {} ({} times)", self.path, p.message, p.lines)?
                }
                (None, _) => write!(f, "{}: {}", self.path, p.message)?,
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
        let message = message.into();
        // At most MAX_PROBLEMS entries: a linear search is cheaper than hashing the message.
        if let Some(seen) = self
            .list
            .iter_mut()
            .find(|p| p.file.is_none() && p.message == message)
        {
            seen.lines += 1;
            if line.is_some() {
                seen.line = seen.line.or(line);
                seen.last_line = line;
            }
        } else if self.list.len() < MAX_PROBLEMS {
            self.list.push(InputProblem::new(line, message));
        } else {
            self.more += 1;
        }
    }

    /// A problem with one file of a document input: each file is named on its own line.
    pub(crate) fn push_file(&mut self, file: &str, message: impl Into<String>) {
        let message = message.into();
        if self.list.len() < MAX_PROBLEMS {
            let mut problem = InputProblem::new(None, message);
            problem.file = Some(file.to_owned());
            self.list.push(problem);
        } else {
            self.more += 1;
        }
    }

    /// [`Problems::push`], or [`Problems::push_file`] when `file` names the row's file.
    pub(crate) fn push_at(
        &mut self,
        line: Option<u64>,
        file: Option<&str>,
        message: impl Into<String>,
    ) {
        match file {
            Some(file) => self.push_file(file, message),
            None => self.push(line, message),
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
