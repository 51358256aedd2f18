//! The exit codes of SPEC §5, decided in one place and turned into a process code only by `main`.

/// How a command ended, from the user's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for succeeded.
    Ok,
    /// The run finished but some rows failed (their error records are in the output).
    RowsFailed,
    /// Usage, configuration or input error; nothing was sent.
    Usage,
    /// Stopped early: out of credit, bad key, or the `--max-cost` budget was reached.
    Stopped,
    /// Interrupted by Ctrl-C / SIGTERM.
    Interrupted,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::RowsFailed => 1,
            Exit::Usage => 2,
            Exit::Stopped => 3,
            Exit::Interrupted => 130,
        }
    }
}

/// An error that ends a command before it does its work: shown to the user, exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl UsageError {
    pub fn new(msg: impl Into<String>) -> Self {
        UsageError(msg.into())
    }
}
