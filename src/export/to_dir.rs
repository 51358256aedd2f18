//! `orbatch export OUT.jsonl --to-dir DIR`: one file per ok final record (its answer), named
//! by a template (default `{{ stem }}.{{ model_slug }}.md`), plus `DIR/index.csv` (id, model,
//! file, tokens, spend). Every name is checked before anything is written: a name outside DIR
//! (an id or template with `..`, an absolute path, a link out of DIR) or two records on one
//! file refuse the export. Each file is replaced atomically, and only when its content
//! changed; `--dry-run` lists what would be written.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};

use super::index::{Index, Located, Reader};
use crate::job::Problems;
use crate::output::record::{Record, Status};

/// The default `--name`.
pub const DEFAULT_NAME: &str = "{{ stem }}.{{ model_slug }}.md";

/// The index's file name in DIR.
pub const INDEX: &str = "index.csv";

/// What to export where.
#[derive(Debug)]
pub struct ToDir {
    pub outputs: Vec<PathBuf>,
    pub dir: PathBuf,
    pub name: String,
    pub dry_run: bool,
}

/// What happened to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    New,
    Changed,
    Unchanged,
}

impl Change {
    fn word(self) -> &'static str {
        match self {
            Change::New => "new",
            Change::Changed => "changed",
            Change::Unchanged => "unchanged",
        }
    }
}

/// What was (or, with `--dry-run`, would be) written: each file relative to DIR.
#[derive(Debug, Default)]
pub struct ToDirSummary {
    pub files: Vec<(String, Change)>,
    /// Final records that are not ok (no file for them).
    pub not_ok: u64,
    pub warnings: Vec<String>,
}

impl ToDirSummary {
    /// How many answer files (the index left out) had `change`.
    pub fn count(&self, change: Change) -> usize {
        self.files
            .iter()
            .filter(|(f, c)| *c == change && f != INDEX)
            .count()
    }

    /// The `--dry-run` listing: `new  a.openai-gpt-4o-mini.md`, one file a line.
    pub fn listing(&self, dir: &Path) -> String {
        self.files
            .iter()
            .map(|(f, c)| format!("{:<9} {}\n", c.word(), dir.join(f).display()))
            .collect()
    }
}

/// Why the export could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ToDirError {
    /// Nothing was written: these names are refused.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Read(#[from] crate::report::read::ReadError),
    #[error("{path}: cannot write: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// One file to write.
struct Planned {
    rel: String,
    id: String,
    model: String,
    at: Located,
    /// Tokens and spend of the document: a reduce record's chunk records counted in.
    tokens: u64,
    spend: Spend,
}

/// Spend over every attempt of a document's records: exact where `orbatch costs` confirmed
/// every generation id, else usage.cost; unknown when the server gave none.
#[derive(Debug, Clone, Copy)]
struct Spend {
    inline: f64,
    uncosted: u64,
    exact: Option<f64>,
}

impl Spend {
    fn of(at: &Located) -> Spend {
        Spend {
            inline: at.inline,
            uncosted: at.uncosted,
            exact: at.exact,
        }
    }

    fn add(&mut self, at: &Located) {
        self.inline += at.inline;
        self.uncosted += at.uncosted;
        self.exact = self.exact.zip(at.exact).map(|(a, b)| a + b);
    }

    fn cell(&self) -> String {
        match self.exact {
            Some(exact) => dollars(exact),
            None if self.uncosted == 0 => dollars(self.inline),
            None => String::new(),
        }
    }
}

/// USD as a plain number to the 1e-12 (sums of float costs carry noise below it):
/// `0.00002286`, not `0.000022859999999999998`.
fn dollars(x: f64) -> String {
    let s = format!("{x:.12}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

/// Export `job`: check every name first, then write what changed.
pub fn export(job: &ToDir) -> Result<ToDirSummary, ToDirError> {
    let mut summary = ToDirSummary::default();
    let index = Index::build(&job.outputs, &mut summary.warnings)?;
    let names = Names::new(&job.name)?;
    let mut reader = Reader::new(&index.files);
    let mut problems = Problems::default();
    let mut planned = Vec::new();
    let mut taken: HashMap<String, (String, String)> = HashMap::new();
    for (id, m, at) in index.entries() {
        let model = &index.models[m];
        let record = reader.record(at)?;
        if !is_final(&record) {
            continue;
        }
        if record.status != Status::Ok || record.output.is_none() {
            summary.not_ok += 1;
            continue;
        }
        let rel = match names.render(id, model).and_then(|n| inside(&n)) {
            Ok(rel) => rel,
            Err(why) => {
                problems.push(None, format!("id {id:?} ({model}): {why}"));
                continue;
            }
        };
        if let Some((other, other_model)) = taken.get(&rel) {
            problems.push(
                None,
                format!(
                    "id {id:?} ({model}) and id {other:?} ({other_model}) would both be {rel}: \
                     add what tells them apart to --name, e.g. --name \
                     '{{{{ id_stem }}}}.{{{{ model_slug }}}}.md'"
                ),
            );
            continue;
        }
        taken.insert(rel.clone(), (id.to_owned(), model.clone()));
        let mut tokens = record.usage.as_ref().map_or(0, |u| u.total_tokens);
        let mut spend = Spend::of(at);
        // A reduce's document also cost its chunks.
        for part in &record.parts {
            if let Some(part_at) = index.get(part, m) {
                spend.add(part_at);
                tokens += reader.record(part_at)?.usage.map_or(0, |u| u.total_tokens);
            }
        }
        planned.push(Planned {
            rel,
            id: id.to_owned(),
            model: model.clone(),
            at: *at,
            tokens,
            spend,
        });
    }
    if !problems.is_empty() {
        return Err(ToDirError::Refused(
            problems.into_error("--to-dir").to_string(),
        ));
    }
    let write_err = |path: &Path| {
        let path = path.display().to_string();
        move |source| ToDirError::Write {
            path: path.clone(),
            source,
        }
    };
    if !job.dry_run {
        std::fs::create_dir_all(&job.dir).map_err(write_err(&job.dir))?;
    }
    let root = std::fs::canonicalize(&job.dir).ok();
    for p in &planned {
        let record = reader.record(&p.at)?;
        let mut content = record.output.unwrap_or_default();
        if !content.ends_with('\n') {
            content.push('\n');
        }
        let dest = job.dir.join(&p.rel);
        if let Some(root) = &root {
            refuse_links_out(root, &job.dir, &p.rel)?;
        }
        let change = put(&dest, content.as_bytes(), job.dry_run)?;
        summary.files.push((p.rel.clone(), change));
    }
    let index_csv = index_csv(&planned)?;
    let change = put(&job.dir.join(INDEX), &index_csv, job.dry_run)?;
    summary.files.push((INDEX.to_owned(), change));
    Ok(summary)
}

/// Whether a record is a document's final answer (not one chunk of a chunked document).
fn is_final(record: &Record) -> bool {
    record.stage != Some(crate::output::record::Stage::Map)
}

/// Write `content` at `dest` unless it already holds exactly that.
fn put(dest: &Path, content: &[u8], dry_run: bool) -> Result<Change, ToDirError> {
    let change = match std::fs::read(dest) {
        Ok(old) if old == content => return Ok(Change::Unchanged),
        Ok(_) => Change::Changed,
        Err(_) => Change::New,
    };
    if dry_run {
        return Ok(change);
    }
    let err = |source| ToDirError::Write {
        path: dest.display().to_string(),
        source,
    };
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    crate::output::replace_file(dest, |w| w.write_all(content).map_err(err), err)?;
    Ok(change)
}

/// A folder of `rel` inside DIR that is a link elsewhere would take the file out of DIR.
fn refuse_links_out(root: &Path, dir: &Path, rel: &str) -> Result<(), ToDirError> {
    let Some(parent) = Path::new(rel).parent() else {
        return Ok(());
    };
    match std::fs::canonicalize(dir.join(parent)) {
        Ok(real) if !real.starts_with(root) => Err(ToDirError::Refused(format!(
            "--to-dir: {} leads outside {} (a link): refusing to write {rel}",
            dir.join(parent).display(),
            dir.display()
        ))),
        _ => Ok(()),
    }
}

/// `index.csv`: one line per file written, `id, model, file, tokens, spend`.
fn index_csv(planned: &[Planned]) -> Result<Vec<u8>, ToDirError> {
    let err = |e: csv::Error| ToDirError::Write {
        path: INDEX.to_owned(),
        source: std::io::Error::other(e.to_string()),
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["id", "model", "file", "tokens", "spend"])
        .map_err(err)?;
    for p in planned {
        let spend = p.spend.cell();
        w.write_record([
            p.id.as_str(),
            p.model.as_str(),
            p.rel.as_str(),
            &p.tokens.to_string(),
            &spend,
        ])
        .map_err(err)?;
    }
    w.into_inner().map_err(|e| ToDirError::Write {
        path: INDEX.to_owned(),
        source: std::io::Error::other(e.to_string()),
    })
}

/// The `--name` template, compiled once.
struct Names {
    env: Environment<'static>,
}

impl Names {
    fn new(source: &str) -> Result<Names, ToDirError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.add_template_owned("name", source.to_owned())
            .map_err(|e| ToDirError::Refused(format!("--name {source:?}: {e}")))?;
        Ok(Names { env })
    }

    /// The file name of `(id, model)`. Its variables: `id`, `model`, `model_slug`, `name`
    /// (the id's last part), `stem` (without its extension), `ext`, `id_stem` (the id
    /// without its extension) and `dir` (the id's folder).
    fn render(&self, id: &str, model: &str) -> Result<String, String> {
        let unsafe_id = id.starts_with('/')
            || id.split(['/', '\\']).any(|c| c == "..")
            || Path::new(id).is_absolute();
        if unsafe_id {
            return Err(
                "the id is an absolute path or has .. in it: refusing to write it \
                        outside --to-dir"
                    .into(),
            );
        }
        let name = id.rsplit('/').next().unwrap_or(id);
        let (stem, ext) = match name.rsplit_once('.') {
            Some((s, e)) if !s.is_empty() => (s, e),
            _ => (name, ""),
        };
        let id_stem = match id.rsplit_once('.') {
            Some((s, e)) if !s.is_empty() && !e.contains('/') => s,
            _ => id,
        };
        let dir = id.rsplit_once('/').map_or("", |(d, _)| d);
        let ctx = minijinja::context! {
            id, model, model_slug => model_slug(model), name, stem, ext, id_stem, dir,
        };
        self.env
            .get_template("name")
            .and_then(|t| t.render(ctx))
            .map_err(|e| format!("--name: {e}"))
    }
}

/// A model id made safe for a file name: `openai/gpt-4o-mini` → `openai-gpt-4o-mini`,
/// `x/y:free` → `x-y-free`.
pub fn model_slug(model: &str) -> String {
    model
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// A rendered name as a path inside DIR (`/`-separated), or why it is refused.
fn inside(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("--name gave an empty file name".into());
    }
    let path = Path::new(name);
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "the name {name:?} leads outside --to-dir: refusing to write it"
                ));
            }
        }
    }
    let rel = parts.join("/");
    if rel.is_empty() || name.ends_with('/') {
        return Err(format!("the name {name:?} is a folder, not a file"));
    }
    if rel == INDEX {
        return Err(format!("the name {name:?} is the index orbatch writes"));
    }
    Ok(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside_the_folder() {
        let names = Names::new(DEFAULT_NAME).unwrap();
        assert_eq!(
            names.render("notes/a.md", "openai/gpt-4o-mini").unwrap(),
            "a.openai-gpt-4o-mini.md"
        );
        assert_eq!(model_slug("x/y:free"), "x-y-free");
        assert!(names.render("../etc/passwd", "m").is_err());
        assert!(names.render("/etc/passwd", "m").is_err());
        let keep = Names::new("{{ id_stem }}/{{ model_slug }}.md").unwrap();
        assert_eq!(keep.render("a/b.v2.md", "m/x").unwrap(), "a/b.v2/m-x.md");
        assert_eq!(keep.render("q01", "m").unwrap(), "q01/m.md");
        assert_eq!(inside("a/./b.md").unwrap(), "a/b.md");
        for bad in ["../x", "/abs", "a/../../x", "", "index.csv", "a/"] {
            assert!(inside(bad).is_err(), "{bad}");
        }
        let e = Names::new("{{ nope }}")
            .unwrap()
            .render("a", "m")
            .unwrap_err();
        assert!(e.contains("--name"), "{e}");
    }
}
