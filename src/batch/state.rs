//! `OUT.batches.jsonl`: the batch lane's durable state, appended line by line. A batch's
//! manifest (custom_id → row id, model, fingerprint) is written before it is submitted, its
//! id the moment the server answers, and `collected` once its records are in the output; a
//! rerun polls what was submitted and not collected instead of submitting those rows again.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::endpoint::Endpoint;

/// One request of a manifest: `[custom_id, row id, row, fingerprint]`.
pub type Entry = (String, String, u64, String);

/// One line of the state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Written before a submit.
    Manifest {
        r#ref: String,
        endpoint: Endpoint,
        /// The model the rows asked for.
        model: String,
        /// The id submitted (`…:batch`).
        batch_model: String,
        /// Unix seconds when the submit was sent.
        at: i64,
        requests: Vec<Entry>,
    },
    /// The server created the batch.
    Submitted { r#ref: String, batch_id: String },
    /// The server refused the submit: nothing was created.
    Refused { r#ref: String, message: String },
    /// Its records are written: nothing more to poll.
    Collected { r#ref: String },
}

/// A manifest and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Known {
    pub r#ref: String,
    pub endpoint: Endpoint,
    pub model: String,
    pub batch_model: String,
    pub at: i64,
    /// The manifest's requests (emptied once indexed; `count` keeps how many).
    pub requests: Vec<Entry>,
    pub count: usize,
    pub batch_id: Option<String>,
    /// Refused or collected: done with.
    pub closed: bool,
}

/// The state file beside an output file.
#[derive(Debug, Clone)]
pub struct StateFile {
    pub path: PathBuf,
}

impl StateFile {
    pub fn beside(output: &Path) -> StateFile {
        let mut name = output.file_name().unwrap_or_default().to_os_string();
        let stem = Path::new(&name)
            .file_stem()
            .map(|s| s.to_os_string())
            .unwrap_or_default();
        if Path::new(&name).extension().is_some_and(|e| e == "jsonl") {
            name = stem;
        }
        name.push(".batches.jsonl");
        StateFile {
            path: output.with_file_name(name),
        }
    }

    /// Every manifest, in order, with its fate. A torn last line (kill -9) is skipped.
    pub fn load(&self) -> std::io::Result<Vec<Known>> {
        let file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut known: Vec<Known> = Vec::new();
        let mut at: HashMap<String, usize> = HashMap::new();
        for line in BufReader::new(file).lines() {
            let line = line?;
            let Ok(event) = serde_json::from_str::<Event>(&line) else {
                continue;
            };
            match event {
                Event::Manifest {
                    r#ref,
                    endpoint,
                    model,
                    batch_model,
                    at: when,
                    requests,
                } => {
                    at.insert(r#ref.clone(), known.len());
                    known.push(Known {
                        r#ref,
                        endpoint,
                        model,
                        batch_model,
                        at: when,
                        count: requests.len(),
                        requests,
                        batch_id: None,
                        closed: false,
                    });
                }
                Event::Submitted { r#ref, batch_id } => {
                    if let Some(&i) = at.get(&r#ref) {
                        known[i].batch_id = Some(batch_id);
                    }
                }
                Event::Refused { r#ref, .. } | Event::Collected { r#ref } => {
                    if let Some(&i) = at.get(&r#ref) {
                        known[i].closed = true;
                    }
                }
            }
        }
        Ok(known)
    }

    /// Append events and flush them to disk before returning.
    pub fn append(&self, events: &[Event]) -> std::io::Result<()> {
        let mut bytes = Vec::new();
        for e in events {
            serde_json::to_writer(&mut bytes, e)?;
            bytes.push(b'\n');
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&self.path)?;
        // After a torn last line (kill -9 mid-write), start on a line of its own.
        if ends_torn(&mut f)? {
            bytes.insert(0, b'\n');
        }
        f.write_all(&bytes)?;
        f.sync_data()
    }
}

/// Whether the file's last byte is not a newline (an empty file is not torn).
fn ends_torn(f: &mut std::fs::File) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    f.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    f.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_ids_and_collection_round_trip_past_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateFile::beside(&dir.path().join("out.jsonl"));
        assert!(state.path.ends_with("out.batches.jsonl"));
        let manifest = |r: &str| Event::Manifest {
            r#ref: r.into(),
            endpoint: Endpoint::Chat,
            model: "m".into(),
            batch_model: "m:batch".into(),
            at: 1,
            requests: vec![("r1-a".into(), "1".into(), 1, "f".into())],
        };
        state
            .append(&[
                manifest("a"),
                Event::Submitted {
                    r#ref: "a".into(),
                    batch_id: "batch-1".into(),
                },
                manifest("b"),
                manifest("c"),
                Event::Collected { r#ref: "c".into() },
            ])
            .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&state.path)
            .unwrap()
            .write_all(b"{\"event\":\"submitted\",\"ref\":\"b\",\"bat")
            .unwrap();
        state
            .append(&[Event::Submitted {
                r#ref: "b".into(),
                batch_id: "batch-2".into(),
            }])
            .unwrap();
        let known = state.load().unwrap();
        assert_eq!(known.len(), 3);
        assert_eq!(known[1].batch_id.as_deref(), Some("batch-2"));
        assert_eq!(known[0].batch_id.as_deref(), Some("batch-1"));
        assert!(!known[1].closed);
        assert!(known[2].closed);
    }
}
