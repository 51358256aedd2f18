//! The output file: the wire record, the single writer that appends to it, and reading it
//! back to resume; plus what output and sidecar files share (locked appending, names).

pub mod record;
pub mod resume;
pub mod writer;

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// Why a file could not be opened for appending by this run alone.
#[derive(Debug)]
pub enum AppendError {
    Io(io::Error),
    /// Another process holds the lock.
    Locked,
}

/// Open `path` for reading and appending (creating it) and take an exclusive lock on it,
/// without waiting: a second orbatch on the same file is refused, not interleaved.
pub fn open_append_locked(path: &Path) -> Result<File, AppendError> {
    lock_for_append(path, true)
}

/// [`open_append_locked`], creating the file only if `create`.
fn lock_for_append(path: &Path, create: bool) -> Result<File, AppendError> {
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(create)
        .open(path)
        .map_err(AppendError::Io)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(AppendError::Locked),
        Err(std::fs::TryLockError::Error(e)) => Err(AppendError::Io(e)),
    }
}

/// The `/generation` sidecar of an output file: `demo.out.jsonl` → `demo.out.generations.jsonl`
/// in the same folder; a name that does not end in `.jsonl` gets `.generations.jsonl` appended.
pub fn sidecar_path(out: &Path) -> PathBuf {
    beside(out, "generations")
}

/// `OUT.jsonl` → `OUT.scores.jsonl`: what `orbatch score` wrote for that output.
pub fn scores_path(out: &Path) -> PathBuf {
    beside(out, "scores")
}

/// `OUT.jsonl` → `OUT.<what>.jsonl`, beside it (`out.ndjson` → `out.ndjson.<what>.jsonl`).
fn beside(out: &Path, what: &str) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".jsonl").unwrap_or(&name);
    out.with_file_name(format!("{stem}.{what}.jsonl"))
}
