//! The exit codes of SPEC §5, decided in one place: a command ends with an [`Exit`] or a
//! typed [`Failure`], and [`Failure::exit`] is the only mapping from what went wrong to a code.
//! `main` turns the result into the process code.

/// How a command ended, from the user's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for succeeded.
    Ok,
    /// The command finished but not everything succeeded (rows failed, ids still pending),
    /// or it could not finish (network, server or file error).
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

/// The table of exit codes, as `--help` and the README show it.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    everything asked for succeeded
  1    finished, but some rows failed or ids are still pending; or the command could not
       finish (network, server or file error)
  2    usage, configuration or input error; nothing was sent
  3    stopped early: the API key was refused, credit ran out, or --max-cost was reached
  130  interrupted (Ctrl-C, SIGTERM)";

/// An error that ends a command before it does its work: shown to the user, exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl UsageError {
    pub fn new(msg: impl Into<String>) -> Self {
        UsageError(msg.into())
    }
}

/// Why a command did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Usage, configuration or input: nothing was sent (exit 2).
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// The API refused the key (401/403) or the credit ran out (402): exit 3.
    #[error("{0}")]
    Refused(String),
    /// The command could not finish: network, server or file error (exit 1).
    #[error("{0:#}")]
    Failed(#[from] anyhow::Error),
}

impl Failure {
    /// The exit code for this failure.
    pub fn exit(&self) -> Exit {
        match self {
            Failure::Usage(_) => Exit::Usage,
            Failure::Refused(_) => Exit::Stopped,
            Failure::Failed(_) => Exit::RowsFailed,
        }
    }

    /// A failure that could not finish the command, from a message.
    pub fn failed(msg: impl std::fmt::Display) -> Failure {
        Failure::Failed(anyhow::anyhow!("{msg}"))
    }

    /// Add where the key came from to a refusal (`check $VAR`, `check the key file F`);
    /// `source` is [`crate::config::key_source`]'s.
    pub fn with_key_hint(self, source: &str) -> Failure {
        match self {
            Failure::Refused(m) => Failure::Refused(format!("{m}; check {source}")),
            other => other,
        }
    }
}

impl From<tokio::task::JoinError> for Failure {
    fn from(e: tokio::task::JoinError) -> Failure {
        Failure::Failed(e.into())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::Failed(e.into())
    }
}

/// How a command ended: an exit code, or the failure that decides it.
pub type Outcome = Result<Exit, Failure>;

/// The one place where an outcome becomes an exit code.
pub fn code_of(outcome: &Outcome) -> Exit {
    match outcome {
        Ok(exit) => *exit,
        Err(failure) => failure.exit(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_map_to_the_codes_of_the_table() {
        let usage: Outcome = Err(UsageError::new("x").into());
        let refused: Outcome = Err(Failure::Refused("HTTP 401".into()));
        let network: Outcome = Err(anyhow::anyhow!("connection refused").into());
        assert_eq!(code_of(&usage).code(), 2);
        assert_eq!(code_of(&refused).code(), 3);
        assert_eq!(code_of(&network).code(), 1);
        assert_eq!(code_of(&Ok(Exit::Interrupted)).code(), 130);
        for code in ["0 ", "1 ", "2 ", "3 ", "130 "] {
            assert!(EXIT_CODES_HELP.contains(&format!("\n  {code}")), "{code}");
        }
    }

    #[test]
    fn a_refusal_names_the_variable() {
        let f = Failure::Refused("GET /key: HTTP 401".into()).with_key_hint("$MY_KEY");
        assert_eq!(f.to_string(), "GET /key: HTTP 401; check $MY_KEY");
    }
}
