//! Input rows → requests: reading JSONL/CSV/TSV (or stdin), recognising row shapes, templates,
//! ids, fan-out over models, `--limit`/`--shard`, and the validation pass that finds every bad
//! row before anything is sent.
//!
//! Reading is streaming in two passes over the same source (stdin is spooled to a temp file in
//! the first pass), so memory does not grow with the number of rows.

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::endpoint::Endpoint;

/// Where rows come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSource {
    Path(PathBuf),
    Stdin,
}

/// How rows are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    Jsonl,
    Csv,
    Tsv,
    /// A folder, a glob or a file of documents (`.md`, `.txt`, `.html`, `.pdf`): a row per file.
    Documents,
}

/// `--shard K/N`: keep rows whose stable id hash mod `count` == `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

/// Everything the reader needs, already validated by `config`.
#[derive(Debug, Clone)]
pub struct InputConfig {
    pub source: InputSource,
    pub format: InputFormat,
    /// `-m` / job `models`; a row's own `model` overrides; may be empty if every row has one.
    pub models: Vec<String>,
    /// Default endpoint (`--endpoint`); an OpenAI Batch line's `url` overrides it.
    pub endpoint: Endpoint,
    /// minijinja template source (from `--template` or the contents of `--template-file`).
    pub template: Option<String>,
    /// `--system`: a system message (chat) or `instructions` (responses).
    pub system: Option<String>,
    /// `--id-field`; `None` means `id`, then `custom_id`, else the 1-based row number.
    pub id_field: Option<String>,
    /// Job `[params]` then `-p` flags, merged into every body (a row's `params` win).
    pub params: Map<String, Value>,
    /// `--keep-fields`: copy the row's other fields into the record's `meta`.
    pub keep_fields: bool,
    /// `--schema`: written into every body (and so into the fingerprint).
    pub schema: Option<std::sync::Arc<crate::schema::Schema>>,
    /// `--limit N`: only the first N rows of the input.
    pub limit: Option<u64>,
    pub shard: Option<Shard>,
    /// `--hidden`: a document input also reads hidden and `.gitignore`d files.
    pub hidden: bool,
    /// The catalogue to hold each request against its model's context (set by `run` and
    /// `plan` once `/models` answered; see [`crate::fit`]).
    pub context: Option<Arc<crate::catalog::Catalog>>,
    /// `--chunk-tokens`/`--chunk-overlap`: a document input splits long texts into chunk rows.
    pub chunk: Option<crate::docs::Chunking>,
    /// The reduce stage of a chunked document input: instead of the chunks, a row per
    /// (document, model) whose every chunk record in this output is ok (see `reduce.rs`).
    pub reduce_from: Option<PathBuf>,
}

impl InputConfig {
    /// The input's name in messages: the path as given, or `<stdin>`.
    pub fn display_name(&self) -> String {
        match &self.source {
            InputSource::Path(p) => p.display().to_string(),
            InputSource::Stdin => STDIN_NAME.to_owned(),
        }
    }

    /// The config of commands that read the rows back without sending them (`score`,
    /// `export`): the whole input, ids as `run` gave them.
    pub fn rows_only(source: InputSource, format: InputFormat, id_field: Option<String>) -> Self {
        InputConfig {
            source,
            format,
            models: Vec::new(),
            endpoint: Endpoint::Chat,
            template: None,
            system: None,
            id_field,
            params: Map::new(),
            keep_fields: false,
            schema: None,
            limit: None,
            shard: None,
            hidden: false,
            context: None,
            chunk: None,
            reduce_from: None,
        }
    }
}

/// One unit of work: a (row × model) request body ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: String,
    /// 1-based data-row number.
    pub row: u64,
    /// Line in the input file (for messages).
    pub line: u64,
    pub model: String,
    pub endpoint: Endpoint,
    /// The exact body, without `stream` (the client adds it).
    pub body: Map<String, Value>,
    /// `fingerprint(endpoint, body)`.
    pub fingerprint: String,
    /// The row's other fields when `--keep-fields`.
    pub meta: Option<Map<String, Value>>,
    /// A chunked document's stage (`map` for a chunk, `reduce` for the document), and a
    /// reduce request's chunk ids: copied into the record.
    pub stage: Option<crate::output::record::Stage>,
    pub parts: Vec<String>,
}

mod csv;
mod files;
mod jsonl;
mod lines;
mod problems;
mod reduce;
pub mod rows;
mod shape;
mod source;
mod template;

/// `a string`, `an array`, … for messages about JSON values.
pub(crate) use source::kind;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

use tempfile::NamedTempFile;

pub(crate) use lines::MAX_LINE as MAX_ROW_BYTES;
pub use problems::InputError;
pub(crate) use problems::Problems;

use crate::hash::{hash64, hash128, key64};
use shape::{RowModel, Shaped, Shaper};
use source::{Item, RowSource};
use template::Template;

/// Compile a template (checked before anything is sent); the top-level variables it reads.
pub fn template_vars(source: &str) -> Result<Vec<String>, InputError> {
    Template::compile(source).map(|t| t.vars().to_vec())
}

/// The display name of standard input in messages.
pub const STDIN_NAME: &str = "<stdin>";

/// The display name of problems with `-p` / the job file's `[params]`.
pub const PARAMS_PATH: &str = "--param";

/// The xxh3-128 hash, as 32 lowercase hex digits, of `endpoint.as_str()`, a newline, and the compact JSON of `body` (body has no
/// `stream` key). `Map` is a `BTreeMap`, so the JSON (and the fingerprint) does not depend on
/// the order in which keys were inserted.
pub fn fingerprint(endpoint: Endpoint, body: &Map<String, Value>) -> String {
    format!("{:032x}", fingerprint128(endpoint, body))
}

/// [`fingerprint`] as a number.
fn fingerprint128(endpoint: Endpoint, body: &Map<String, Value>) -> u128 {
    thread_local! {
        /// The bytes hashed, kept between calls (this runs once or twice for every request).
        static BYTES: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BYTES.with_borrow_mut(|bytes| {
        bytes.clear();
        bytes.extend_from_slice(endpoint.as_str().as_bytes());
        bytes.push(b'\n');
        // Serialising a `Map<String, Value>` cannot fail (keys are strings, numbers are finite).
        if serde_json::to_writer(&mut *bytes, body).is_err() {
            bytes.truncate(endpoint.as_str().len() + 1);
        }
        let hash = hash128(bytes);
        // Do not keep an unusually large body's buffer.
        if bytes.capacity() > 1 << 16 {
            *bytes = Vec::new();
        }
        hash
    })
}

/// A validated input: every row within `--limit` has been checked, and [`Input::requests`]
/// streams the requests of the selected rows.
#[derive(Debug)]
pub struct Input {
    shared: Arc<Shared>,
    rows: u64,
    requests: u64,
    /// What the reader said that is not a problem (document files it skipped).
    notes: Vec<String>,
    /// Requests that do not fit their model's context (when `context` was given).
    overflows: crate::fit::Overflows,
}

#[derive(Debug)]
struct Shared {
    config: InputConfig,
    display: String,
    shaper: Shaper,
    /// Stdin's bytes, spooled during the validation pass.
    spool: Option<Arc<NamedTempFile>>,
}

impl Input {
    /// Validation pass (streaming, first pass over the whole selected input): finds every
    /// problem before anything is sent. Stdin is spooled to a temporary file during this pass.
    pub fn open(config: InputConfig) -> Result<Input, InputError> {
        Ok(Input::open_with(config, || Box::new(std::io::stdin()), None)?.0)
    }

    /// [`Input::open`], also noting the key and fingerprint of every request, so that a
    /// resumed run can skip the rows already answered without shaping them again (see
    /// [`RequestKeys::resolve`] and [`Input::requests_skipping`]).
    pub fn open_noting_keys(config: InputConfig) -> Result<(Input, RequestKeys), InputError> {
        let (input, keys) = Input::open_with(
            config,
            || Box::new(std::io::stdin()),
            Some(RequestKeys::default()),
        )?;
        Ok((input, keys.unwrap_or_default()))
    }

    /// [`Input::open`] with `stdin` standing in for standard input (for tests), noting request
    /// keys into `keys` if given.
    fn open_with(
        config: InputConfig,
        stdin: impl FnOnce() -> Box<dyn std::io::Read + Send>,
        mut keys: Option<RequestKeys>,
    ) -> Result<(Input, Option<RequestKeys>), InputError> {
        let display = config.display_name();
        if let Some(msg) = shape::check_params(&config.params) {
            return Err(InputError::one(PARAMS_PATH, None, msg));
        }
        let template = config
            .template
            .as_deref()
            .map(Template::compile)
            .transpose()?;
        let shaper = Shaper::new(&config, template);
        let (source, spool) = source::open_first(&config, &display, stdin)?;
        let mut ids = Ids::Hashes(Vec::new());
        let walker = Walker::new(source, config.limit);
        let mut pass = validate(&config, &shaper, walker, &mut ids, keys.as_mut());
        if ids.any_duplicate() {
            // Rare: read the input again, this time noting where each id was first seen, so
            // that every duplicate is reported at its place among the other problems.
            let source = source::open_again(&config, &display, spool.as_deref())?;
            let walker = Walker::new(source, config.limit);
            pass = validate(
                &config,
                &shaper,
                walker,
                &mut Ids::Lines(HashMap::new()),
                None,
            );
        }
        drop(ids);
        let Pass {
            problems,
            rows,
            requests,
            notes,
            overflows,
        } = pass;
        if !problems.is_empty() {
            return Err(problems.into_error(&display));
        }
        if let Some(keys) = &mut keys {
            keys.requests.shrink_to_fit();
            keys.per_row.shrink_to_fit();
        }
        let input = Input {
            shared: Arc::new(Shared {
                config,
                display,
                shaper,
                spool,
            }),
            rows,
            requests,
            notes,
            overflows,
        };
        Ok((input, keys))
    }

    /// Warnings about the input that do not stop it (files of a folder it does not read).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The requests that do not fit their model's context (empty when not checked).
    pub fn overflows(&self) -> &crate::fit::Overflows {
        &self.overflows
    }

    /// Data rows selected (after `--limit` and `--shard`).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Requests = selected rows × models (a row with its own `model` counts once).
    pub fn request_count(&self) -> u64 {
        self.requests
    }

    /// The display name used in messages: the path as given, or `<stdin>`.
    pub fn display_name(&self) -> &str {
        &self.shared.display
    }

    /// Second pass: stream the requests in input order (for each row, its models in order).
    pub fn requests(&self) -> Result<Requests, InputError> {
        self.requests_skipping(Skips::default())
    }

    /// [`Input::requests`] without the rows `skips` marks as answered: those are not parsed
    /// or shaped again, only counted (see [`Requests::take_skipped`]).
    pub fn requests_skipping(&self, skips: Skips) -> Result<Requests, InputError> {
        let source = source::open_again(
            &self.shared.config,
            &self.shared.display,
            self.shared.spool.as_deref(),
        )?;
        Ok(Requests {
            shared: Arc::clone(&self.shared),
            walker: Walker::new(source, self.shared.config.limit),
            current: None,
            done: false,
            skips,
            skipped: 0,
        })
    }
}

/// The key and fingerprint of every request, noted by the validation pass for a resumed
/// run: 16 bytes a request and one a row.
#[derive(Debug, Default)]
pub struct RequestKeys {
    /// `(key64(id, model), low 64 bits of the fingerprint)` of each noted request, in order.
    requests: Vec<(u64, u64)>,
    /// For each data row, in input order: how many of `requests` are its own (0 when the row
    /// is not selected, or has `u8::MAX` requests or more and is not noted).
    per_row: Vec<u8>,
}

impl RequestKeys {
    /// Note the requests of a selected row; how many were noted.
    fn note(&mut self, id: &str, shaped: Shaped, models: &[String]) -> u8 {
        let Shaped {
            endpoint,
            model,
            mut body,
            ..
        } = shaped;
        let own;
        let models = match model {
            RowModel::Own(m) => {
                own = [m];
                &own[..]
            }
            RowModel::Config => models,
        };
        let count = match u8::try_from(models.len()) {
            Ok(n) if n < u8::MAX => n,
            _ => return 0,
        };
        for model in models {
            body.insert("model".into(), Value::String(model.clone()));
            let fingerprint = fingerprint128(endpoint, &body) as u64;
            self.requests.push((key64(id, model), fingerprint));
        }
        count
    }

    /// The rows whose every request `done(key, fingerprint)` says was answered: those a
    /// resumed run skips.
    pub fn resolve(self, done: impl Fn(u64, u64) -> bool) -> Skips {
        let mut per_row = self.per_row;
        let mut requests = self.requests.into_iter();
        for count in &mut per_row {
            let mut all = *count > 0;
            for _ in 0..*count {
                all &= requests.next().is_some_and(|(key, fp)| done(key, fp));
            }
            if !all {
                *count = 0;
            }
        }
        Skips { per_row }
    }
}

/// For each data row, in input order: how many requests to skip it with (0: do not skip).
#[derive(Debug, Default)]
pub struct Skips {
    per_row: Vec<u8>,
}

impl Skips {
    /// How many requests data row `row` (1-based) is skipped with; 0 if it is not skipped.
    fn get(&self, row: u64) -> u8 {
        usize::try_from(row)
            .ok()
            .and_then(|r| r.checked_sub(1))
            .and_then(|i| self.per_row.get(i))
            .copied()
            .unwrap_or(0)
    }
}

/// What one validation pass found.
struct Pass {
    problems: Problems,
    rows: u64,
    requests: u64,
    notes: Vec<String>,
    overflows: crate::fit::Overflows,
}

/// The ids seen by a validation pass.
enum Ids {
    /// The hash of every id, in input order: 8 bytes a row, sorted and checked for a repeat
    /// at the end of the pass.
    Hashes(Vec<u64>),
    /// The line where each id hash was first seen, to name it in a duplicate's message.
    Lines(HashMap<u64, u64>),
}

impl Ids {
    /// Note the id hash `hash`, seen on `line`; the line where it was first seen, if it is a
    /// duplicate and that is known yet.
    fn note(&mut self, hash: u64, line: u64) -> Option<u64> {
        match self {
            Ids::Hashes(hashes) => {
                hashes.push(hash);
                None
            }
            Ids::Lines(first) => match first.entry(hash) {
                std::collections::hash_map::Entry::Occupied(seen) => Some(*seen.get()),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(line);
                    None
                }
            },
        }
    }

    /// Whether any id hash was noted twice (sorts the hashes).
    fn any_duplicate(&mut self) -> bool {
        match self {
            Ids::Hashes(hashes) => {
                hashes.sort_unstable();
                hashes.windows(2).any(|w| w[0] == w[1])
            }
            Ids::Lines(_) => false,
        }
    }
}

/// One validation pass over `walker`: every problem, and the selected rows and requests.
fn validate(
    config: &InputConfig,
    shaper: &Shaper,
    mut walker: Walker,
    ids: &mut Ids,
    mut keys: Option<&mut RequestKeys>,
) -> Pass {
    let mut problems = Problems::default();
    let (mut rows, mut requests) = (0u64, 0u64);
    let mut overflows = crate::fit::Overflows::default();
    let display = config.display_name();
    while let Some(step) = walker.next() {
        let (line, row, fields) = match step {
            Step::Problem {
                line,
                file,
                message,
            } => {
                problems.push_at(line, file.as_deref(), message);
                continue;
            }
            Step::Row { line, row, fields } => (line, row, fields),
        };
        let file = document_file(config, &fields);
        let id = match shaper.id(&fields, row) {
            Ok(id) => {
                // The reduce stage has a row per (document, model): the pair is the key.
                let key = match (&config.reduce_from, fields.get("model")) {
                    (Some(_), Some(Value::String(m))) => hash64(format!("{id}\n{m}").as_bytes()),
                    _ => hash64(id.as_bytes()),
                };
                if let Some(first) = ids.note(key, line) {
                    problems.push(
                        Some(line),
                        format!("duplicate id \"{id}\" (first seen on line {first})"),
                    );
                }
                Some(id)
            }
            Err(msg) => {
                problems.push_at(Some(line), file, msg);
                None
            }
        };
        match shaper.shape(&fields) {
            Ok(shaped) => {
                let mut noted = 0;
                if let Some(id) = id
                    && problems.is_empty()
                    && in_shard(config, shard_id(config, &fields, &id))
                {
                    rows += 1;
                    requests += match shaped.model {
                        RowModel::Own(_) => 1,
                        RowModel::Config => config.models.len() as u64,
                    };
                    if let Some(catalog) = &config.context {
                        let at = || match file {
                            Some(f) => f.to_owned(),
                            None => format!("{display}:{line}"),
                        };
                        check_context(catalog, &shaped, &config.models, at, &mut overflows);
                    }
                    if let Some(keys) = keys.as_deref_mut() {
                        noted = keys.note(&id, shaped, &config.models);
                    }
                }
                if let Some(keys) = keys.as_deref_mut() {
                    keys.per_row.push(noted);
                }
            }
            Err(msgs) => {
                for msg in msgs {
                    problems.push_at(Some(line), file, msg);
                }
            }
        }
    }
    Pass {
        problems,
        rows,
        requests,
        notes: walker.source.notes(),
        overflows,
    }
}

/// Note each request of a row that does not fit its model's context.
fn check_context(
    catalog: &crate::catalog::Catalog,
    shaped: &Shaped,
    models: &[String],
    at: impl Fn() -> String,
    overflows: &mut crate::fit::Overflows,
) {
    let (upper, bound) = (
        crate::fit::prompt_upper_bound(&shaped.body),
        crate::estimate::max_completion(&shaped.body)
            .unwrap_or(crate::budget::DEFAULT_COMPLETION_BOUND),
    );
    let mut need = None;
    let own;
    let models = match &shaped.model {
        RowModel::Own(m) => {
            own = [m.clone()];
            &own[..]
        }
        RowModel::Config => models,
    };
    for model in models {
        // Far below the context: no need to count characters.
        if crate::fit::overflow(catalog, model, (upper, bound)).is_none() {
            continue;
        }
        let need = *need.get_or_insert_with(|| crate::fit::need(&shaped.body));
        if let Some(over) = crate::fit::overflow(catalog, model, need) {
            overflows.push(&at(), model, need.0, over);
        }
    }
}

/// The file a row of a document input came from (its problems name it); `None` for rows of
/// other inputs (their problems name the line).
fn document_file<'a>(config: &InputConfig, fields: &'a Map<String, Value>) -> Option<&'a str> {
    (config.format == InputFormat::Documents)
        .then(|| fields.get("path").and_then(Value::as_str))
        .flatten()
}

/// The id a row's shard is decided by: a chunk's document, so that every chunk of a
/// document (and its reduce) lands in the same shard; else the row's own id.
fn shard_id<'a>(config: &InputConfig, fields: &'a Map<String, Value>, id: &'a str) -> &'a str {
    match config.format {
        InputFormat::Documents => fields.get("document").and_then(Value::as_str).unwrap_or(id),
        _ => id,
    }
}

/// A document row's stage and parts (`None` and empty for every other input).
fn stage_of(
    config: &InputConfig,
    fields: &Map<String, Value>,
) -> (Option<crate::output::record::Stage>, Vec<String>) {
    use crate::output::record::Stage;
    if config.format != InputFormat::Documents {
        return (None, Vec::new());
    }
    let stage = match fields.get("stage").and_then(Value::as_str) {
        Some("map") => Some(Stage::Map),
        Some("reduce") => Some(Stage::Reduce),
        _ => None,
    };
    let parts = match fields.get("parts") {
        Some(Value::Array(ids)) => ids
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    (stage, parts)
}

fn in_shard(config: &InputConfig, id: &str) -> bool {
    match config.shard {
        Some(Shard { index, count }) if count > 0 => hash64(id.as_bytes()) % count == index,
        _ => true,
    }
}

/// The requests of the selected rows, in input order. `Send + 'static`: made to be drained
/// inside `tokio::task::spawn_blocking`. Yields an error (and then ends) only if the input
/// changed since [`Input::open`] validated it.
pub struct Requests {
    shared: Arc<Shared>,
    walker: Walker,
    current: Option<Current>,
    done: bool,
    skips: Skips,
    /// Requests of skipped rows not yet taken by [`Requests::take_skipped`].
    skipped: u64,
}

impl std::fmt::Debug for Requests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requests")
            .field("input", &self.shared.display)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// The row whose requests are being emitted.
struct Current {
    id: String,
    row: u64,
    line: u64,
    endpoint: Endpoint,
    body: Map<String, Value>,
    meta: Option<Map<String, Value>>,
    model: RowModel,
    next: usize,
    stage: Option<crate::output::record::Stage>,
    parts: Vec<String>,
}

impl Current {
    fn next_request(&mut self, models: &[String]) -> Option<Request> {
        let (model, last) = match &self.model {
            RowModel::Own(m) if self.next == 0 => (m.clone(), true),
            RowModel::Own(_) => return None,
            RowModel::Config => (
                models.get(self.next)?.clone(),
                self.next + 1 == models.len(),
            ),
        };
        self.next += 1;
        let mut body = if last {
            std::mem::take(&mut self.body)
        } else {
            self.body.clone()
        };
        body.insert("model".into(), Value::String(model.clone()));
        let meta = if last {
            self.meta.take()
        } else {
            self.meta.clone()
        };
        Some(Request {
            id: self.id.clone(),
            row: self.row,
            line: self.line,
            fingerprint: fingerprint(self.endpoint, &body),
            model,
            endpoint: self.endpoint,
            body,
            meta,
            stage: self.stage,
            parts: self.parts.clone(),
        })
    }
}

impl Requests {
    /// The number of requests in rows skipped (as [`Input::requests_skipping`] was told) since
    /// the last call.
    pub fn take_skipped(&mut self) -> u64 {
        std::mem::take(&mut self.skipped)
    }

    fn fail(&mut self, line: Option<u64>, message: String) -> Option<Result<Request, InputError>> {
        self.done = true;
        Some(Err(InputError::one(
            &self.shared.display,
            line,
            format!("{message} (the input changed after it was validated)"),
        )))
    }
}

impl Iterator for Requests {
    type Item = Result<Request, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(current) = &mut self.current {
                if let Some(request) = current.next_request(&self.shared.config.models) {
                    return Some(Ok(request));
                }
                self.current = None;
            }
            if self.done {
                return None;
            }
            let skip = self.skips.get(self.walker.rows + 1);
            let step = if skip > 0 {
                self.walker.skip()
            } else {
                self.walker.next()
            };
            let (line, row, fields) = match step {
                None => {
                    self.done = true;
                    return None;
                }
                Some(Step::Row { .. }) if skip > 0 => {
                    self.skipped += u64::from(skip);
                    continue;
                }
                Some(Step::Problem {
                    file: Some(file),
                    message,
                    ..
                }) => return self.fail(None, format!("{file}: {message}")),
                Some(Step::Problem { line, message, .. }) => return self.fail(line, message),
                Some(Step::Row { line, row, fields }) => (line, row, fields),
            };
            let id = match self.shared.shaper.id(&fields, row) {
                Ok(id) => id,
                Err(msg) => return self.fail(Some(line), msg),
            };
            if !in_shard(
                &self.shared.config,
                shard_id(&self.shared.config, &fields, &id),
            ) {
                continue;
            }
            match self.shared.shaper.shape(&fields) {
                Ok(shaped) => {
                    let (stage, parts) = stage_of(&self.shared.config, &fields);
                    self.current = Some(Current {
                        stage,
                        parts,
                        id: id.into_owned(),
                        row,
                        line,
                        endpoint: shaped.endpoint,
                        body: shaped.body,
                        meta: shaped.meta,
                        model: shaped.model,
                        next: 0,
                    });
                }
                Err(msgs) => return self.fail(Some(line), msgs.join("; ")),
            }
        }
    }
}

/// What the [`Walker`] found.
enum Step {
    Row {
        line: u64,
        row: u64,
        fields: Map<String, Value>,
    },
    Problem {
        line: Option<u64>,
        /// The file of a document input it is about.
        file: Option<String>,
        message: String,
    },
}

/// Numbers rows and applies `--limit` over a [`RowSource`].
struct Walker {
    source: Box<dyn RowSource>,
    limit: Option<u64>,
    rows: u64,
    done: bool,
}

impl Walker {
    fn new(source: Box<dyn RowSource>, limit: Option<u64>) -> Walker {
        Walker {
            source,
            limit,
            rows: 0,
            done: false,
        }
    }

    fn next(&mut self) -> Option<Step> {
        self.step(true)
    }

    /// [`Walker::next`] for a row whose fields are not needed (see [`RowSource::skip_item`]).
    fn skip(&mut self) -> Option<Step> {
        self.step(false)
    }

    fn step(&mut self, parse: bool) -> Option<Step> {
        if self.done {
            return None;
        }
        if self.limit.is_some_and(|limit| self.rows >= limit) {
            self.done = true;
            return None;
        }
        let item = if parse {
            self.source.next_item()
        } else {
            self.source.skip_item()
        };
        match item {
            None => {
                self.done = true;
                None
            }
            Some(Item::Note { line, message }) => Some(Step::Problem {
                line,
                file: None,
                message,
            }),
            Some(Item::Bad { file, message, row }) => {
                if row {
                    self.rows += 1;
                }
                Some(Step::Problem {
                    line: None,
                    file: Some(file),
                    message,
                })
            }
            Some(Item::Row { line, fields }) => {
                self.rows += 1;
                Some(match fields {
                    Ok(fields) => Step::Row {
                        line,
                        row: self.rows,
                        fields,
                    },
                    Err(message) => Step::Problem {
                        line: Some(line),
                        file: None,
                        message,
                    },
                })
            }
        }
    }
}

/// A chat request for unit tests elsewhere in the crate: one short user message.
#[cfg(test)]
pub(crate) fn test_request(model: &str, max_tokens: Option<u64>) -> Request {
    let mut body =
        serde_json::json!({"model": model, "messages": [{"role": "user", "content": "abcdefgh"}]})
            .as_object()
            .cloned()
            .unwrap_or_default();
    if let Some(n) = max_tokens {
        body.insert("max_tokens".into(), n.into());
    }
    Request {
        id: "1".into(),
        row: 1,
        line: 1,
        model: model.into(),
        endpoint: Endpoint::Chat,
        fingerprint: fingerprint(Endpoint::Chat, &body),
        body,
        meta: None,
        stage: None,
        parts: Vec::new(),
    }
}
