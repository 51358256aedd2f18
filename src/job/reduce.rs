//! The reduce stage of a chunked document input, as a [`RowSource`]: the documents are read
//! (and chunked) again, and for every (document, model) whose chunk records `ID#1…ID#k` in the
//! output are all ok, one row: the document's fields (`id` = the document's id), `model`,
//! `chunks` (the chunk answers, in order), `parts` (their ids) and `stage` = `reduce`. The
//! reduce template renders it; the answer's body holds the chunk answers, so its fingerprint
//! changes (and resume sends it again) whenever a chunk's answer does.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::files::DocsSource;
use super::source::{Item, RowSource};
use crate::output::record::{Stage, Status};

/// The last chunk record of a (chunk id, model): ok, and where it starts.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    ok: bool,
    offset: u64,
}

/// The few fields of a record the index needs.
#[derive(Deserialize)]
struct Head {
    id: String,
    model: String,
    status: Status,
    #[serde(default)]
    stage: Option<Stage>,
}

#[derive(Deserialize)]
struct Answer {
    output: Option<String>,
}

pub(crate) struct ReduceSource {
    docs: DocsSource,
    models: Vec<String>,
    output: PathBuf,
    chunks: HashMap<(String, String), Chunk>,
    reader: Option<BufReader<File>>,
    /// The first row of the next document, read ahead.
    carry: Option<Item>,
    pending: VecDeque<Item>,
    rows: u64,
}

impl ReduceSource {
    /// Index the chunk records of `output` (the last record of each key counts).
    pub(crate) fn new(docs: DocsSource, models: &[String], output: &Path) -> ReduceSource {
        let mut chunks = HashMap::new();
        if let Ok(file) = File::open(output) {
            let mut reader = BufReader::new(file);
            let mut line = Vec::new();
            let mut offset = 0u64;
            while let Ok(n) = reader.read_until(b'\n', &mut line) {
                if n == 0 {
                    break;
                }
                // A line being written (or torn) is not a record yet.
                if let Ok(head) = serde_json::from_slice::<Head>(line.trim_ascii())
                    && head.stage == Some(Stage::Map)
                {
                    chunks.insert(
                        (head.id, head.model),
                        Chunk {
                            ok: head.status == Status::Ok,
                            offset,
                        },
                    );
                }
                offset += n as u64;
                line.clear();
            }
        }
        ReduceSource {
            docs,
            models: models.to_vec(),
            output: output.to_path_buf(),
            chunks,
            reader: None,
            carry: None,
            pending: VecDeque::new(),
            rows: 0,
        }
    }

    /// The answer of the chunk record at `offset`.
    fn answer(&mut self, offset: u64) -> Option<String> {
        if self.reader.is_none() {
            self.reader = File::open(&self.output).ok().map(BufReader::new);
        }
        let reader = self.reader.as_mut()?;
        reader.seek(SeekFrom::Start(offset)).ok()?;
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line).ok()?;
        serde_json::from_slice::<Answer>(line.trim_ascii())
            .ok()?
            .output
    }

    /// The next document's chunk rows (problems pass through as they are).
    fn next_document(&mut self) -> Option<Result<Vec<Map<String, Value>>, Item>> {
        let first = self.carry.take().or_else(|| self.docs.next_item())?;
        let first = match first {
            Item::Row { fields: Ok(f), .. } => f,
            other => return Some(Err(other)),
        };
        let document = first.get("document").cloned();
        let mut rows = vec![first];
        loop {
            match self.docs.next_item() {
                Some(Item::Row { fields: Ok(f), .. }) if f.get("document") == document.as_ref() => {
                    rows.push(f)
                }
                Some(other) => {
                    self.carry = Some(other);
                    break;
                }
                None => break,
            }
        }
        Some(Ok(rows))
    }

    /// The reduce rows of one document: one per model whose every chunk is answered.
    fn reduce_rows(&mut self, rows: Vec<Map<String, Value>>) {
        if rows.len() < 2 {
            return;
        }
        let ids: Vec<String> = rows
            .iter()
            .filter_map(|r| r.get("id").and_then(Value::as_str).map(str::to_owned))
            .collect();
        let Some(mut base) = rows.into_iter().next() else {
            return;
        };
        for key in ["chunk", "chunk_index", "stage"] {
            base.remove(key);
        }
        if let Some(document) = base.get("document").cloned() {
            base.insert("id".into(), document);
        }
        for model in self.models.clone() {
            let mut answers = Vec::with_capacity(ids.len());
            for id in &ids {
                match self.chunks.get(&(id.clone(), model.clone())).copied() {
                    Some(Chunk { ok: true, offset }) => match self.answer(offset) {
                        Some(a) => answers.push(Value::String(a)),
                        None => break,
                    },
                    _ => break,
                }
            }
            if answers.len() != ids.len() {
                continue;
            }
            let mut fields = base.clone();
            fields.insert("model".into(), Value::String(model));
            fields.insert("chunks".into(), Value::Array(answers));
            fields.insert(
                "parts".into(),
                Value::Array(ids.iter().cloned().map(Value::String).collect()),
            );
            fields.insert("stage".into(), Value::String("reduce".into()));
            self.rows += 1;
            self.pending.push_back(Item::Row {
                line: self.rows,
                fields: Ok(fields),
            });
        }
    }
}

impl RowSource for ReduceSource {
    fn next_item(&mut self) -> Option<Item> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            match self.next_document()? {
                Ok(rows) => self.reduce_rows(rows),
                Err(problem) => return Some(problem),
            }
        }
    }

    // The chunk stage already said which files it skipped.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}
