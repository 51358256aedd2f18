//! Which files a document input names: a folder, a glob (`docs/**/*.{md,txt}`) or one file,
//! walked as ripgrep walks (the `ignore` crate: `.gitignore`d and hidden files skipped unless
//! `--hidden`), in a deterministic order (by file name, depth first), so that ids, `--limit`
//! and `--shard` are the same on every machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};

/// The extensions orbatch reads, lowercase, and what it reads them as.
pub(crate) const READ: [&str; 6] = ["md", "markdown", "txt", "html", "htm", "pdf"];

/// The readable extensions, for messages.
pub(crate) const READ_LIST: &str = ".md, .markdown, .txt, .html, .htm and .pdf";

/// Whether `path` has an extension orbatch reads (case-insensitively).
pub(crate) fn readable(path: &Path) -> bool {
    ext_of(path).is_some_and(|e| READ.contains(&e.as_str()))
}

/// The lowercase extension of `path`.
pub(crate) fn ext_of(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
}

/// Whether `arg` (a `-i` value) is a document input: a folder, a glob, or a file with a
/// readable extension.
pub(crate) fn is_documents(arg: &str) -> bool {
    let path = Path::new(arg);
    path.is_dir() || has_glob(arg) || (readable(path) && !path.is_dir())
}

fn has_glob(arg: &str) -> bool {
    arg.contains(['*', '?', '[', '{'])
}

/// What a document input selects.
#[derive(Debug)]
pub(crate) struct Selection {
    /// Ids are paths relative to this folder.
    pub root: PathBuf,
    /// Only files whose relative path matches (a glob input).
    pub glob: Option<GlobMatcher>,
    /// Exactly this file (relative to `root`), named on the command line.
    pub single: Option<PathBuf>,
}

impl Selection {
    /// Parse a `-i` value. Errors say what to pass instead.
    pub(crate) fn parse(arg: &str) -> Result<Selection, String> {
        let path = Path::new(arg);
        if path.is_dir() {
            return Ok(Selection {
                root: path.to_path_buf(),
                glob: None,
                single: None,
            });
        }
        if path.is_file() {
            if !readable(path) {
                return Err(format!("orbatch reads {READ_LIST} files"));
            }
            let root = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let name = path.file_name().map(PathBuf::from).unwrap_or_default();
            return Ok(Selection {
                root,
                glob: None,
                single: Some(name),
            });
        }
        if !has_glob(arg) {
            return Err("no such file or folder".into());
        }
        // The folders before the first component with a wildcard are the root.
        let parts: Vec<&str> = arg.split('/').collect();
        let first_glob = parts.iter().position(|p| has_glob(p)).unwrap_or(0);
        let root = parts[..first_glob].join("/");
        let pattern = parts[first_glob..].join("/");
        check_named_extensions(&pattern)?;
        let glob = GlobBuilder::new(&pattern)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| format!("not a valid glob: {}", e.kind()))?
            .compile_matcher();
        let root = match root.as_str() {
            "" if arg.starts_with('/') => PathBuf::from("/"),
            "" => PathBuf::from("."),
            r => PathBuf::from(r),
        };
        if !root.is_dir() {
            return Err(format!("no such folder {}", root.display()));
        }
        Ok(Selection {
            root,
            glob: Some(glob),
            single: None,
        })
    }

    /// The path shown for a file `rel` (relative to the root): the root joined to it, or
    /// `rel` alone when the root is the current folder.
    pub(crate) fn shown(&self, rel: &str) -> String {
        if self.root == Path::new(".") {
            rel.to_owned()
        } else {
            self.root.join(rel).display().to_string()
        }
    }
}

/// A glob whose last component names an extension (`*.docx`, `*.{md,docx}`) that orbatch
/// cannot read is refused: the user asked for those files by name.
fn check_named_extensions(pattern: &str) -> Result<(), String> {
    let last = pattern.rsplit('/').next().unwrap_or(pattern);
    let Some((_, ext)) = last.rsplit_once('.') else {
        return Ok(());
    };
    let alternatives: Vec<&str> = match ext.strip_prefix('{').and_then(|e| e.strip_suffix('}')) {
        Some(inner) => inner.split(',').collect(),
        None => vec![ext],
    };
    for alt in alternatives {
        let plain = !alt.is_empty() && alt.chars().all(|c| c.is_ascii_alphanumeric());
        if plain && !READ.contains(&alt.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "names .{alt} files, which orbatch cannot read (it reads {READ_LIST})"
            ));
        }
    }
    Ok(())
}

/// One selected file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    /// The path relative to the root, `/`-separated: the row's id.
    pub id: String,
    /// The path to open.
    pub path: PathBuf,
}

/// What the walk met that is not a file to read.
#[derive(Debug, Default)]
pub(crate) struct Walked {
    /// Files skipped for their extension, by extension (`""` for none).
    pub skipped: BTreeMap<String, u64>,
}

impl Walked {
    /// The note for the skipped files, if any: `skipped 3 files that are not .md, …: 2 .png, 1 .docx`.
    pub(crate) fn note(&self, shown_root: &str) -> Option<String> {
        let total: u64 = self.skipped.values().sum();
        if total == 0 {
            return None;
        }
        let mut kinds: Vec<(&String, &u64)> = self.skipped.iter().collect();
        kinds.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let kinds: Vec<String> = kinds
            .iter()
            .map(|(ext, n)| match ext.as_str() {
                "" => format!("{n} without extension"),
                e => format!("{n} .{e}"),
            })
            .collect();
        let s = if total == 1 { "" } else { "s" };
        Some(format!(
            "{shown_root}: skipped {total} file{s} orbatch does not read ({}); it reads {READ_LIST}",
            kinds.join(", ")
        ))
    }
}

/// The files of a selection, in order, streamed from the walk (a folder's entries are
/// sorted by name, so memory holds one folder's names at a time, never the texts).
pub(crate) struct Files {
    selection: Selection,
    walk: Option<ignore::Walk>,
    single_done: bool,
    pub walked: Walked,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files")
            .field("root", &self.selection.root)
            .finish_non_exhaustive()
    }
}

/// A walk error (an unreadable folder, a broken `.gitignore`): where, and what.
#[derive(Debug)]
pub(crate) struct WalkProblem {
    pub at: String,
    pub message: String,
}

impl Files {
    pub(crate) fn new(selection: Selection, hidden: bool) -> Files {
        let walk = selection.single.is_none().then(|| {
            ignore::WalkBuilder::new(&selection.root)
                .standard_filters(!hidden)
                // A `.gitignore` counts outside a git checkout too (a folder of documents
                // is rarely a repository).
                .require_git(false)
                .follow_links(false)
                .sort_by_file_name(|a, b| a.cmp(b))
                .build()
        });
        Files {
            selection,
            walk,
            single_done: false,
            walked: Walked::default(),
        }
    }

    pub(crate) fn selection(&self) -> &Selection {
        &self.selection
    }

    /// The next file to read, or a problem met on the way.
    pub(crate) fn next_file(&mut self) -> Option<Result<Found, WalkProblem>> {
        if let Some(single) = &self.selection.single {
            if self.single_done {
                return None;
            }
            self.single_done = true;
            let id = single.to_string_lossy().into_owned();
            return Some(Ok(Found {
                path: self.selection.root.join(single),
                id,
            }));
        }
        let walk = self.walk.as_mut()?;
        loop {
            let entry = match walk.next()? {
                Ok(entry) => entry,
                Err(e) => {
                    let at = match &e {
                        ignore::Error::WithPath { path, .. } => path.display().to_string(),
                        _ => self.selection.root.display().to_string(),
                    };
                    return Some(Err(WalkProblem {
                        at,
                        message: format!("cannot read: {}", strip_path(&e)),
                    }));
                }
            };
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            let Ok(rel) = entry.path().strip_prefix(&self.selection.root) else {
                continue;
            };
            let id = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            if let Some(glob) = &self.selection.glob
                && !glob.is_match(&id)
            {
                continue;
            }
            if !readable(entry.path()) {
                *self
                    .walked
                    .skipped
                    .entry(ext_of(entry.path()).unwrap_or_default())
                    .or_default() += 1;
                continue;
            }
            return Some(Ok(Found {
                id,
                path: entry.path().to_path_buf(),
            }));
        }
    }
}

/// An `ignore` error's message without the path it already names.
fn strip_path(e: &ignore::Error) -> String {
    match e {
        ignore::Error::WithPath { err, .. } => strip_path(err),
        ignore::Error::WithDepth { err, .. } => strip_path(err),
        ignore::Error::WithLineNumber { line, err } => format!("line {line}: {}", strip_path(err)),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(arg: &str, hidden: bool) -> Vec<String> {
        let mut files = Files::new(Selection::parse(arg).expect("selection"), hidden);
        let mut out = Vec::new();
        while let Some(f) = files.next_file() {
            out.push(f.expect("file").id);
        }
        out
    }

    #[test]
    fn walks_in_name_order_skipping_hidden_and_ignored_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (name, body) in [
            ("b.md", "b"),
            ("a.txt", "a"),
            ("sub/c.html", "c"),
            ("sub/z/d.pdf", "d"),
            (".hidden.md", "h"),
            ("ignored.md", "i"),
            ("pic.png", "p"),
            ("README", "r"),
            (".gitignore", "ignored.md\n"),
        ] {
            let p = root.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        let arg = root.to_str().unwrap();
        assert_eq!(
            ids(arg, false),
            ["a.txt", "b.md", "sub/c.html", "sub/z/d.pdf"]
        );
        assert_eq!(
            ids(arg, true),
            [
                ".hidden.md",
                "a.txt",
                "b.md",
                "ignored.md",
                "sub/c.html",
                "sub/z/d.pdf"
            ]
        );
        let glob = format!("{arg}/**/*.{{md,html}}");
        assert_eq!(ids(&glob, false), ["b.md", "sub/c.html"]);
        assert_eq!(ids(&format!("{arg}/*.md"), false), ["b.md"]);
        let mut files = Files::new(Selection::parse(arg).unwrap(), false);
        while files.next_file().is_some() {}
        let note = files.walked.note("docs").unwrap();
        assert!(
            note.contains("skipped 2 files") && note.contains("1 .png"),
            "{note}"
        );
        // One file named on its own; an unreadable kind named by glob or by name is refused.
        assert_eq!(ids(root.join("b.md").to_str().unwrap(), false), ["b.md"]);
        let e = Selection::parse(&format!("{arg}/*.docx")).unwrap_err();
        assert!(e.contains(".docx") && e.contains(".pdf"), "{e}");
        let e = Selection::parse(root.join("pic.png").to_str().unwrap()).unwrap_err();
        assert!(e.contains("reads .md"), "{e}");
        assert!(Selection::parse(&format!("{arg}/nope/*.md")).is_err());
    }
}
