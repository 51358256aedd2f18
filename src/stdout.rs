//! Writing a command's data to stdout, where a closed pipe (`orbatch models | head -1`) means
//! "the reader has what it wanted", not an error. Rust ignores SIGPIPE, so such a write
//! fails with `BrokenPipe`; `print!` would panic on it.

use std::io::{self, Write};

use crate::exit::Failure;

/// Write `bytes` to stdout and flush. A closed pipe ends the output quietly (`Ok`); any other
/// error is a failure to finish the command.
pub fn write(bytes: &[u8]) -> Result<(), Failure> {
    write_to(&mut io::stdout().lock(), bytes)
}

/// As [`write`], to any writer (tests).
pub fn write_to(out: &mut impl Write, bytes: &[u8]) -> Result<(), Failure> {
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(Failure::failed(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Closed(io::ErrorKind);

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(self.0.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_is_done_and_other_errors_fail() {
        assert!(write_to(&mut Closed(io::ErrorKind::BrokenPipe), b"x").is_ok());
        let e = write_to(&mut Closed(io::ErrorKind::StorageFull), b"x").unwrap_err();
        assert_eq!(e.exit().code(), 1);
        let mut v = Vec::new();
        write_to(&mut v, b"rows\n").unwrap();
        assert_eq!(v, b"rows\n");
    }
}
