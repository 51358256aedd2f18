//! A document input (folder, glob or file) as a [`RowSource`]: one row per file, its text read
//! only when the row is needed (a resumed run skips answered files without reading them).

use std::collections::VecDeque;

use serde_json::{Map, Value};

use super::source::{Item, RowSource};
use crate::docs::{self, Chunking, Files, Selection};

pub(crate) struct DocsSource {
    files: Files,
    /// What the root is called in messages.
    shown_root: String,
    rows: u64,
    chunking: Option<Chunking>,
    /// The chunk rows of the current document not yet returned.
    pending: VecDeque<Map<String, Value>>,
}

impl DocsSource {
    pub(crate) fn new(
        selection: Selection,
        hidden: bool,
        shown_root: &str,
        chunking: Option<Chunking>,
    ) -> DocsSource {
        DocsSource {
            files: Files::new(selection, hidden),
            shown_root: shown_root.to_owned(),
            rows: 0,
            chunking,
            pending: VecDeque::new(),
        }
    }

    fn item(&mut self, read: bool) -> Option<Item> {
        if let Some(fields) = self.pending.pop_front() {
            self.rows += 1;
            return Some(Item::Row {
                line: self.rows,
                fields: Ok(fields),
            });
        }
        // A chunked document is as many rows as it has chunks: only its text tells.
        let read = read || self.chunking.is_some();
        let found = match self.files.next_file()? {
            Ok(found) => found,
            Err(problem) => {
                return Some(Item::Bad {
                    file: problem.at,
                    message: problem.message,
                    row: false,
                });
            }
        };
        let selection = self.files.selection();
        if !read {
            self.rows += 1;
            return Some(Item::Row {
                line: self.rows,
                fields: Ok(serde_json::Map::new()),
            });
        }
        match docs::rows(selection, &found, self.chunking) {
            Ok(rows) => {
                self.pending = rows.into();
                self.item(true)
            }
            Err(message) => {
                self.rows += 1;
                Some(Item::Bad {
                    file: selection.shown(&found.id),
                    message,
                    row: true,
                })
            }
        }
    }
}

impl RowSource for DocsSource {
    fn next_item(&mut self) -> Option<Item> {
        self.item(true)
    }

    fn skip_item(&mut self) -> Option<Item> {
        self.item(false)
    }

    fn notes(&self) -> Vec<String> {
        let mut notes: Vec<String> = self
            .files
            .walked
            .note(&self.shown_root)
            .into_iter()
            .collect();
        if self.rows == 0 {
            notes.push(format!(
                "{}: no documents to read (orbatch reads {}; --hidden adds hidden and \
                 .gitignored files)",
                self.shown_root,
                crate::docs::select::READ_LIST
            ));
        }
        notes
    }
}
