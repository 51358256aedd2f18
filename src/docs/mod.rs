//! Documents as input: a folder, a glob or a file of Markdown, text, HTML and PDF, one row
//! per file (fields `id`, `path`, `name`, `stem`, `ext`, `bytes`, `text`), read one file at a
//! time so that memory does not grow with the number or size of the documents.

pub(crate) mod chunk;
pub(crate) mod extract;
#[doc(hidden)]
pub mod fixture;
pub(crate) mod select;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

pub use chunk::Chunking;
pub(crate) use select::{Files, Selection, is_documents};

/// The fields a template can use, for messages.
pub const FIELDS: &str = "id, path, name, stem, ext, bytes, text";

/// The fields of a reduce row (the reduce template's variables).
pub const REDUCE_FIELDS: [&str; 12] = [
    "chunks",
    "parts",
    "chunk_count",
    "id",
    "document",
    "path",
    "name",
    "stem",
    "ext",
    "bytes",
    "model",
    "stage",
];

/// The row of a document: its fields, or what is wrong with the file.
pub(crate) fn row(
    selection: &Selection,
    found: &select::Found,
) -> Result<Map<String, Value>, String> {
    let (bytes, text) = extract::read(&found.path)?;
    let rel = Path::new(&found.id);
    let name = rel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = rel
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = rel
        .extension()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut fields = Map::new();
    fields.insert("id".into(), Value::String(found.id.clone()));
    fields.insert("path".into(), Value::String(selection.shown(&found.id)));
    fields.insert("name".into(), Value::String(name));
    fields.insert("stem".into(), Value::String(stem));
    fields.insert("ext".into(), Value::String(ext));
    fields.insert("bytes".into(), Value::from(bytes));
    fields.insert("text".into(), Value::String(text));
    Ok(fields)
}

/// The rows of a document: one, or with `chunking` one per chunk when its text is longer
/// (ids `ID#1…ID#k`, fields `chunk`, `chunk_index`, `chunk_count`, `document` = the
/// document's id and `stage` = `map`, no `text`). With chunking, a document that fits is one
/// row with `chunk` = its text, `chunk_index` = `chunk_count` = 1.
pub(crate) fn rows(
    selection: &Selection,
    found: &select::Found,
    chunking: Option<Chunking>,
) -> Result<Vec<Map<String, Value>>, String> {
    let mut fields = row(selection, found)?;
    let Some(chunking) = chunking else {
        return Ok(vec![fields]);
    };
    let text = match fields.remove("text") {
        Some(Value::String(t)) => t,
        _ => String::new(),
    };
    fields.insert("document".into(), Value::String(found.id.clone()));
    let pieces = chunking.split(&text);
    let count = pieces.len();
    if count == 1 {
        fields.insert("chunk".into(), Value::String(text.clone()));
        fields.insert("chunk_index".into(), Value::from(1));
        fields.insert("chunk_count".into(), Value::from(1));
        fields.insert("text".into(), Value::String(text));
        return Ok(vec![fields]);
    }
    Ok(pieces
        .into_iter()
        .enumerate()
        .map(|(i, (_, piece))| {
            let mut f = fields.clone();
            f.insert("id".into(), Value::String(chunk_id(&found.id, i + 1)));
            f.insert("chunk".into(), Value::String(piece.to_owned()));
            f.insert("chunk_index".into(), Value::from(i + 1));
            f.insert("chunk_count".into(), Value::from(count));
            f.insert("stage".into(), Value::String("map".into()));
            f
        })
        .collect())
}

/// The id of a document's chunk `k` (1-based): `ID#k`.
pub fn chunk_id(document: &str, k: usize) -> String {
    format!("{document}#{k}")
}

/// The document a record belongs to: its own id, or for a chunk (`stage: map`, id `ID#k`)
/// the id before `#k`.
pub fn document_of(id: &str, stage: Option<crate::output::record::Stage>) -> &str {
    if stage != Some(crate::output::record::Stage::Map) {
        return id;
    }
    match id.rsplit_once('#') {
        Some((doc, k)) if !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()) => doc,
        _ => id,
    }
}

/// The default output of a document input: `<root>.out.jsonl` beside its root folder
/// (`docs/` → `docs.out.jsonl`, `docs/**/*.md` → `docs.out.jsonl`, `a/b.md` → `a/b.out.jsonl`).
pub(crate) fn default_output(arg: &str) -> PathBuf {
    let path = Path::new(arg);
    if path.is_file() {
        return crate::config::default_output(path);
    }
    let root = match Selection::parse(arg) {
        Ok(s) => s.root,
        Err(_) => path.to_path_buf(),
    };
    let name = std::fs::canonicalize(&root)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| root.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "documents".to_owned());
    let beside = match (root.file_name(), root.parent()) {
        (Some(_), Some(p)) => p.to_path_buf(),
        // `.` or `/`: beside the documents, inside the folder.
        (None, _) => root.clone(),
        (Some(_), None) => PathBuf::new(),
    };
    beside.join(format!("{name}.out.jsonl"))
}
