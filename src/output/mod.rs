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

/// Write `dest` whole or not at all: `write` fills a temporary file beside it, which is
/// synced and then renamed over it, so a crash leaves the old file or the new one, never half
/// of one. `io_error` turns a failure of the file itself into the caller's error.
pub fn replace_file<T, E>(
    dest: &Path,
    write: impl FnOnce(&mut dyn std::io::Write) -> Result<T, E>,
    io_error: impl Fn(std::io::Error) -> E,
) -> Result<T, E> {
    use std::io::Write as _;
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(&io_error)?;
    let value = {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        let value = write(&mut w)?;
        w.flush().map_err(&io_error)?;
        value
    };
    tmp.as_file().sync_all().map_err(&io_error)?;
    tmp.persist(dest).map_err(|e| io_error(e.error))?;
    Ok(value)
}

/// Replace `dest` with `items`, one JSON object a line, whole or not at all.
pub fn replace_jsonl<T: serde::Serialize>(dest: &Path, items: &[T]) -> io::Result<()> {
    replace_file(
        dest,
        |w| {
            for item in items {
                serde_json::to_writer(&mut *w, item)?;
                w.write_all(b"\n")?;
            }
            Ok(())
        },
        |e| e,
    )
}

/// `OUT.jsonl` → `OUT.<what>.jsonl`, beside it (`out.ndjson` → `out.ndjson.<what>.jsonl`).
pub(crate) fn beside(out: &Path, what: &str) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".jsonl").unwrap_or(&name);
    out.with_file_name(format!("{stem}.{what}.jsonl"))
}
