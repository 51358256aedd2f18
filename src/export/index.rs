//! Where the last record of every (id, model) is (file and byte offset), what all of its
//! records cost, and its score: built in one pass over the outputs and their sidecars.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::output::record::{InlineCost, Record};
use crate::report::Generations;
use crate::report::read::{self, ReadError};

/// What is known of one (id, model) across the outputs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Located {
    /// Which output file holds the last record, and where it starts.
    pub file: usize,
    pub offset: u64,
    /// `usage.cost` over every record of the key (every attempt was paid for).
    pub inline: f64,
    /// Answers of the key that carry no `usage.cost`.
    pub uncosted: u64,
    /// `/generation` cost over every generation id, when the sidecars know all of them.
    pub exact: Option<f64>,
    pub score: Option<f64>,
    pub passed: Option<bool>,
}

/// The keys of the outputs.
#[derive(Debug, Default)]
pub struct Index {
    pub files: Vec<PathBuf>,
    /// Models in name order.
    pub models: Vec<String>,
    /// The top-level fields of every `output_json` (`--schema` answers), in name order:
    /// flattened into `json.FIELD` columns.
    pub json_fields: std::collections::BTreeSet<String>,
    keys: HashMap<(String, usize), Located>,
}

impl Index {
    /// Read every output (and its sidecars) once.
    pub fn build(outputs: &[PathBuf], warnings: &mut Vec<String>) -> Result<Index, ReadError> {
        for out in outputs {
            read::open(out)?;
        }
        let mut generations = Generations::default();
        let mut any_sidecar = false;
        for out in outputs {
            any_sidecar |= read::sidecar(out, &mut generations, warnings)?.is_some();
        }
        let mut index = Index {
            files: outputs.to_vec(),
            ..Index::default()
        };
        for (file, out) in outputs.iter().enumerate() {
            index.read_output(file, out, any_sidecar.then_some(&generations), warnings)?;
        }
        index.sort_models();
        for out in outputs {
            if let Some((_, lines)) = read::score_lines(out, warnings)? {
                for l in lines {
                    if let Some(m) = index.models.iter().position(|m| *m == l.model)
                        && let Some(k) = index.keys.get_mut(&(l.id, m))
                    {
                        k.score = Some(l.score);
                        k.passed = Some(l.passed);
                    }
                }
            }
        }
        Ok(index)
    }

    fn read_output(
        &mut self,
        file: usize,
        path: &Path,
        generations: Option<&Generations>,
        warnings: &mut Vec<String>,
    ) -> Result<(), ReadError> {
        let io = |source| ReadError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut reader = BufReader::new(File::open(path).map_err(io)?);
        let mut buf = Vec::new();
        let mut offset = 0u64;
        let mut bad = 0u64;
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            let at = offset;
            offset += n as u64;
            let line = buf.trim_ascii();
            if line.is_empty() {
                continue;
            }
            let Ok(r) = serde_json::from_slice::<Record>(line) else {
                bad += 1;
                continue;
            };
            let model = match self.models.iter().position(|m| *m == r.model) {
                Some(m) => m,
                None => {
                    self.models.push(r.model.clone());
                    self.models.len() - 1
                }
            };
            let k = self.keys.entry((r.id.clone(), model)).or_insert(Located {
                exact: generations.map(|_| 0.0),
                ..Located::default()
            });
            k.file = file;
            k.offset = at;
            if let Some(serde_json::Value::Object(fields)) = &r.output_json {
                for key in fields.keys() {
                    if !self.json_fields.contains(key) {
                        self.json_fields.insert(key.clone());
                    }
                }
            }
            match r.inline_cost() {
                InlineCost::Known(c) => k.inline += c,
                InlineCost::Free => {}
                InlineCost::Unknown => k.uncosted += 1,
            }
            k.exact = match (k.exact, generations) {
                (Some(sum), Some(g)) => r
                    .generation_ids
                    .iter()
                    .try_fold(sum, |acc, id| g.cost_of(id).map(|c| acc + c)),
                _ => None,
            };
        }
        if bad > 0 {
            warnings.push(format!(
                "{}: {bad} lines are not records; skipped",
                path.display()
            ));
        }
        Ok(())
    }

    /// Models in name order, whatever order their records were written in (columns and
    /// lines must not depend on which answer came back first).
    fn sort_models(&mut self) {
        let mut order: Vec<usize> = (0..self.models.len()).collect();
        order.sort_by(|&a, &b| self.models[a].cmp(&self.models[b]));
        let mut new_index = vec![0; order.len()];
        for (new, &old) in order.iter().enumerate() {
            new_index[old] = new;
        }
        self.models = order.iter().map(|&i| self.models[i].clone()).collect();
        self.keys = std::mem::take(&mut self.keys)
            .into_iter()
            .map(|((id, m), v)| ((id, new_index[m]), v))
            .collect();
    }

    /// Every key, by id then model: `(id, model index, where)`.
    pub fn entries(&self) -> Vec<(&str, usize, &Located)> {
        let mut all: Vec<(&str, usize, &Located)> = self
            .keys
            .iter()
            .map(|((id, m), at)| (id.as_str(), *m, at))
            .collect();
        all.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        all
    }

    /// The key `(id, model index)`, if any output has a record of it.
    pub fn get(&self, id: &str, model: usize) -> Option<&Located> {
        self.keys.get(&(id.to_owned(), model))
    }

    /// How many keys have an id outside `known`.
    pub fn count_unknown(&self, known: &dyn Fn(&str) -> bool) -> usize {
        self.keys.keys().filter(|(id, _)| !known(id)).count()
    }
}

/// Reads records again where the index says they are, from files opened once.
pub struct Reader {
    files: Vec<Option<BufReader<File>>>,
    paths: Vec<PathBuf>,
    line: Vec<u8>,
}

impl Reader {
    pub fn new(paths: &[PathBuf]) -> Reader {
        Reader {
            files: paths.iter().map(|_| None).collect(),
            paths: paths.to_vec(),
            line: Vec::new(),
        }
    }

    /// The record where `at` says it is.
    pub fn record(&mut self, at: &Located) -> Result<Record, ReadError> {
        let path = &self.paths[at.file];
        let io = |source| ReadError::Io {
            path: path.display().to_string(),
            source,
        };
        let slot = &mut self.files[at.file];
        let reader = match slot {
            Some(r) => r,
            None => slot.insert(BufReader::new(File::open(path).map_err(io)?)),
        };
        reader.seek(SeekFrom::Start(at.offset)).map_err(io)?;
        self.line.clear();
        // A record is at most a 10 MB prompt's answer; do not follow a file that grew
        // a line without end.
        reader
            .by_ref()
            .take(64 << 20)
            .read_until(b'\n', &mut self.line)
            .map_err(io)?;
        serde_json::from_slice(self.line.trim_ascii()).map_err(|e| {
            io(std::io::Error::other(format!(
                "the record at byte {} changed while exporting: {e}",
                at.offset
            )))
        })
    }
}
