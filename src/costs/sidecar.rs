//! The sidecar `OUT.generations.jsonl`: one `/generation` `data` object per line, beside the
//! output file. It is what makes `orbatch costs` resumable (ids in it are never looked up
//! again) and the exact audit of spend. Opened locked, its torn last line repaired, appended
//! one whole line per write.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::charge::Fields;
use crate::output::{AppendError, open_append_locked};
use serde_json::Value;

pub use crate::output::sidecar_path;

/// Why the sidecar cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error("{path}: cannot open the costs file: {source}")]
    Io { path: String, source: io::Error },
    #[error(
        "{path} is being written by another `orbatch costs` (it holds a lock on it); wait for \
         it to finish, then rerun"
    )]
    Locked { path: String },
}

/// The opened, locked sidecar and what it already holds.
#[derive(Debug)]
pub struct Sidecar {
    file: File,
    path: PathBuf,
    known: HashSet<String>,
    /// Spend of each known id (`total_cost` + BYOK), in file order (so the total is
    /// reproducible).
    costs: Vec<f64>,
    /// The BYOK part of each known id's spend that has one, in file order.
    byok: Vec<f64>,
    /// Known ids whose line has no numeric `total_cost`.
    pub without_cost: u64,
    /// Messages for the user (torn line repaired, unreadable lines).
    pub warnings: Vec<String>,
}

/// What the sidecar needs of a record: its id and cost. Anything else in `total_cost` than a
/// number (null, a string) counts as "no cost", never as a broken line.
#[derive(Deserialize)]
struct Line {
    id: String,
    #[serde(flatten)]
    cost: Fields,
}

impl Sidecar {
    /// Open (creating) and lock the sidecar, repair a torn last line, read the ids it holds.
    pub fn open(path: &Path) -> Result<Sidecar, SidecarError> {
        let shown = path.display().to_string();
        let io_err = |source| SidecarError::Io {
            path: shown.clone(),
            source,
        };
        let file = open_append_locked(path).map_err(|e| match e {
            AppendError::Io(source) => io_err(source),
            AppendError::Locked => SidecarError::Locked {
                path: shown.clone(),
            },
        })?;
        let mut sidecar = Sidecar {
            file,
            path: path.to_path_buf(),
            known: HashSet::new(),
            costs: Vec::new(),
            byok: Vec::new(),
            without_cost: 0,
            warnings: Vec::new(),
        };
        sidecar.scan(&shown).map_err(io_err)?;
        Ok(sidecar)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `id` has been looked up already.
    pub fn contains(&self, id: &str) -> bool {
        self.known.contains(id)
    }

    /// Number of distinct ids recorded.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// The spend of every recorded id (`total_cost`, plus the provider's charge for BYOK),
    /// in file order.
    pub fn costs(&self) -> &[f64] {
        &self.costs
    }

    /// The BYOK part of those (what providers billed to the user's own keys).
    pub fn byok_costs(&self) -> &[f64] {
        &self.byok
    }

    /// Append one `/generation` `data` object as a line, in one write. It must carry the
    /// `id` it was looked up by.
    pub fn append(&mut self, data: &Value) -> io::Result<()> {
        let line = Line::deserialize(data)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let mut bytes = serde_json::to_vec(data)?;
        bytes.push(b'\n');
        self.file.write_all(&bytes)?;
        self.file.flush()?;
        self.note(line);
        Ok(())
    }

    fn note(&mut self, line: Line) {
        if self.known.insert(line.id) {
            match line.cost.charge() {
                Some(c) => {
                    self.costs.push(c.total());
                    if c.byok != 0.0 {
                        self.byok.push(c.byok);
                    }
                }
                None => self.without_cost += 1,
            }
        }
    }

    /// Read every line; drop a last line cut off by a crash, finish one missing its newline.
    fn scan(&mut self, shown: &str) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(0))?;
        let mut reader = BufReader::new(&self.file);
        let mut found = Vec::new();
        let mut bad_lines = Vec::new();
        let mut torn = None;
        let mut offset = 0u64;
        let mut line_no = 0u64;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf)?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let complete = buf.last() == Some(&b'\n');
            let text = buf.trim_ascii();
            let parsed = serde_json::from_slice::<Line>(text).ok();
            if !complete {
                torn = Some((offset, parsed.is_some()));
            }
            match parsed {
                Some(line) => found.push(line),
                None if text.is_empty() || !complete => {}
                None => bad_lines.push(line_no),
            }
            offset += n as u64;
        }
        drop(reader);
        for line in found {
            self.note(line);
        }
        if let Some(&first) = bad_lines.first() {
            self.warnings.push(format!(
                "{shown}:{first}: {} line(s) are not /generation records; ignored",
                bad_lines.len()
            ));
        }
        match torn {
            Some((_, true)) => self.file.write_all(b"\n")?,
            Some((start, false)) => {
                let len = self.file.metadata()?.len();
                self.file.set_len(start)?;
                self.warnings.push(format!(
                    "{shown}:{line_no}: the last line was cut off (by a crash?); removed its {} \
                     bytes, that id will be looked up again",
                    len - start
                ));
            }
            None => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sidecar_sits_beside_the_output() {
        let p = |s: &str| sidecar_path(Path::new(s));
        assert_eq!(
            p("/a/b/demo.out.jsonl"),
            Path::new("/a/b/demo.out.generations.jsonl")
        );
        assert_eq!(p("out.jsonl"), Path::new("out.generations.jsonl"));
        assert_eq!(p("dir/results"), Path::new("dir/results.generations.jsonl"));
        assert_eq!(p("x.ndjson"), Path::new("x.ndjson.generations.jsonl"));
    }

    #[test]
    fn torn_line_is_removed_and_known_ids_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.generations.jsonl");
        let whole = "{\"id\":\"gen-1\",\"total_cost\":0.5}\n";
        std::fs::write(&path, format!("{whole}{{\"id\":\"gen-2\",\"tot")).unwrap();
        let mut s = Sidecar::open(&path).unwrap();
        assert!(s.contains("gen-1") && !s.contains("gen-2"));
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        s.append(&json!({"id": "gen-2", "total_cost": 0.25}))
            .unwrap();
        assert_eq!(s.costs(), [0.5, 0.25]);
        s.append(&json!({"id": "gen-3", "total_cost": "odd"}))
            .unwrap();
        assert_eq!((s.len(), s.without_cost), (3, 1));
        drop(s);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.starts_with(whole) && text.ends_with('\n'));
    }

    #[test]
    fn whole_last_line_without_newline_is_kept_and_duplicates_count_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.generations.jsonl");
        let line = "{\"id\":\"gen-1\",\"total_cost\":0.5}";
        std::fs::write(&path, format!("{line}\nnot json\n{line}")).unwrap();
        let s = Sidecar::open(&path).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s.costs(), [0.5]);
        assert!(s.warnings[0].contains(":2:"), "{:?}", s.warnings);
        assert!(matches!(
            Sidecar::open(&path),
            Err(SidecarError::Locked { .. })
        ));
        drop(s);
        assert!(std::fs::read_to_string(&path).unwrap().ends_with("}\n"));
    }
}
