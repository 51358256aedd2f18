//! Reading what `report` aggregates: output files, leniently (a line that is not a record is
//! skipped with a warning, as resume does), and their optional `.generations.jsonl` sidecars
//! (one `/generation` `data` object a line; a torn last line is ignored).

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Generations, Input};
use crate::costs::charge::Fields;
use crate::output::record::Record;

/// Bad lines reported per file; the rest are only counted.
const MAX_LINE_WARNINGS: u64 = 5;

/// A file that cannot be reported on.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: cannot read: {source}")]
    Io { path: String, source: io::Error },
    /// Lines, but none of them a record: some other file was given.
    #[error(
        "{path}: not an orbatch output (none of its {lines} lines is a record); pass the \
         file `orbatch run` wrote (-o, or INPUT.out.jsonl beside the input)"
    )]
    NotAnOutput { path: String, lines: u64 },
}

fn read_error(path: &Path) -> impl FnOnce(io::Error) -> ReadError + '_ {
    move |source| ReadError::Io {
        path: path.display().to_string(),
        source,
    }
}

pub use crate::output::sidecar_path;

/// Open `path` for reading, failing with a message naming it (a folder is refused too).
pub fn open(path: &Path) -> Result<File, ReadError> {
    let file = File::open(path).map_err(read_error(path))?;
    let meta = file.metadata().map_err(read_error(path))?;
    if meta.is_dir() {
        return Err(read_error(path)(io::Error::other(
            "is a folder, not an output file",
        )));
    }
    Ok(file)
}

/// Feed every record of output file `path` to `each`; lines that are not records are
/// skipped with a warning pushed to `warnings`.
pub fn records(
    path: &Path,
    warnings: &mut Vec<String>,
    mut each: impl FnMut(&Record),
) -> Result<Input, ReadError> {
    let shown = path.display().to_string();
    let mut input = Input {
        path: shown.clone(),
        records: 0,
        skipped_lines: 0,
        sidecar: None,
        generations: 0,
    };
    // Whole lines that are not records (a torn last line is a crashed run's, not a sign of
    // another kind of file).
    let mut foreign = 0u64;
    for_each_line(path, |n, line, last| {
        match serde_json::from_slice::<Record>(line) {
            Ok(r) => {
                input.records += 1;
                each(&r);
            }
            Err(e) => {
                input.skipped_lines += 1;
                foreign += u64::from(!last);
                if input.skipped_lines <= MAX_LINE_WARNINGS {
                    warnings.push(bad_line(&shown, n, last, &e));
                }
            }
        }
    })?;
    if input.records == 0 && foreign > 0 {
        return Err(ReadError::NotAnOutput {
            path: shown,
            lines: input.skipped_lines,
        });
    }
    if input.skipped_lines > MAX_LINE_WARNINGS {
        warnings.push(format!(
            "{shown}: {} more lines skipped",
            input.skipped_lines - MAX_LINE_WARNINGS
        ));
    }
    Ok(input)
}

fn bad_line(shown: &str, n: u64, torn: bool, e: &serde_json::Error) -> String {
    if torn {
        format!("{shown}:{n}: skipped a torn last line (a run was cut off while writing it)")
    } else {
        format!("{shown}:{n}: skipped: not an output record ({e})")
    }
}

/// One line of a sidecar: the `/generation` `data` object (or, leniently, the whole
/// `{"data": …}` response).
#[derive(Deserialize)]
#[serde(untagged)]
enum SidecarLine {
    Wrapped { data: Cost },
    Bare(Cost),
}

#[derive(Deserialize)]
struct Cost {
    id: String,
    #[serde(flatten)]
    cost: Fields,
}

/// Read the sidecar of `out` into `generations`, if there is one. Returns its path and the
/// number of costs read; `None` when it does not exist.
pub fn sidecar(
    out: &Path,
    generations: &mut Generations,
    warnings: &mut Vec<String>,
) -> Result<Option<(PathBuf, u64)>, ReadError> {
    let path = sidecar_path(out);
    if !path.exists() {
        return Ok(None);
    }
    let shown = path.display().to_string();
    let (mut read, mut bad) = (0u64, 0u64);
    for_each_line(&path, |n, line, last| {
        let cost = match serde_json::from_slice::<SidecarLine>(line) {
            Ok(SidecarLine::Wrapped { data } | SidecarLine::Bare(data)) => data,
            // A torn last line: `orbatch costs` was cut off; rerunning it repairs that.
            Err(_) if last => return,
            Err(e) => {
                bad += 1;
                if bad <= MAX_LINE_WARNINGS {
                    warnings.push(format!("{shown}:{n}: skipped: not a generation ({e})"));
                }
                return;
            }
        };
        if let Some(charge) = cost.cost.charge() {
            generations.insert(&cost.id, charge);
            read += 1;
        }
    })?;
    Ok(Some((path, read)))
}

/// The score lines of `out`'s `.scores.jsonl` (from `orbatch score`), if it has one: its path
/// and lines. Lines that are not score lines are skipped with a warning.
pub fn score_lines(
    out: &Path,
    warnings: &mut Vec<String>,
) -> Result<Option<(PathBuf, Vec<super::scores::Line>)>, ReadError> {
    let path = crate::output::scores_path(out);
    if !path.exists() {
        return Ok(None);
    }
    let shown = path.display().to_string();
    let mut lines = Vec::new();
    let mut bad = 0u64;
    for_each_line(&path, |n, line, _| match serde_json::from_slice(line) {
        Ok(l) => lines.push(l),
        Err(e) => {
            bad += 1;
            if bad <= MAX_LINE_WARNINGS {
                warnings.push(format!("{shown}:{n}: skipped: not a score line ({e})"));
            }
        }
    })?;
    Ok(Some((path, lines)))
}

/// Call `f(line_number, line, is_torn_last_line)` for every non-blank line of `path`. A
/// line is "torn" when it is the last one and lacks its newline. Invalid UTF-8 is left to
/// the JSON parser to reject, line by line.
pub(crate) fn for_each_line(
    path: &Path,
    mut f: impl FnMut(u64, &[u8], bool),
) -> Result<(), ReadError> {
    let mut reader = BufReader::new(open(path)?);
    let mut buf = Vec::new();
    let mut n = 0u64;
    loop {
        buf.clear();
        let len = reader
            .read_until(b'\n', &mut buf)
            .map_err(read_error(path))?;
        if len == 0 {
            return Ok(());
        }
        n += 1;
        let torn = !buf.ends_with(b"\n");
        let line = buf.trim_ascii();
        if !line.is_empty() {
            f(n, line, torn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sidecar_sits_beside_the_output() {
        assert_eq!(
            sidecar_path(Path::new("jobs/demo.out.jsonl")),
            PathBuf::from("jobs/demo.out.generations.jsonl")
        );
        assert_eq!(
            sidecar_path(Path::new("out.ndjson")),
            PathBuf::from("out.ndjson.generations.jsonl")
        );
    }

    #[test]
    fn sidecars_take_bare_or_wrapped_lines_and_ignore_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x.jsonl");
        std::fs::write(
            dir.path().join("x.generations.jsonl"),
            "{\"id\":\"g1\",\"total_cost\":0.5}\n\
             {\"data\":{\"id\":\"g2\",\"total_cost\":0.25}}\n\
             {\"id\":\"g3\",\"total_cost\":null}\n\
             {\"id\":\"g4\",\"tot",
        )
        .unwrap();
        let mut g = Generations::default();
        let mut warnings = Vec::new();
        let (_, read) = sidecar(&out, &mut g, &mut warnings).unwrap().unwrap();
        assert_eq!(read, 2);
        assert_eq!(g.len(), 2);
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn a_file_of_lines_none_a_record_is_not_an_output() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x.jsonl");
        std::fs::write(&out, "not json\n\n[1]\n{\"id\":").unwrap();
        let mut warnings = Vec::new();
        let e = records(&out, &mut warnings, |_| panic!("no record")).unwrap_err();
        assert!(matches!(e, ReadError::NotAnOutput { lines: 3, .. }), "{e}");
        assert_eq!(warnings.len(), 3);
        assert!(warnings[0].contains("x.jsonl:1: skipped"), "{warnings:?}");
        assert!(warnings[2].contains(":4: skipped a torn last line"));
        // Only a torn line: a run cut off while writing its first record, reported as empty.
        std::fs::write(&out, "{\"id\":").unwrap();
        let input = records(&out, &mut Vec::new(), |_| panic!("no record")).unwrap();
        assert_eq!((input.records, input.skipped_lines), (0, 1));
    }
}
