//! A document input (folder, glob or file) as a [`RowSource`]: one row per file, its text read
//! only when the row is needed (a resumed run skips answered files without reading them).

use super::source::{Item, RowSource};
use crate::docs::{self, Files, Selection};

pub(crate) struct DocsSource {
    files: Files,
    /// What the root is called in messages.
    shown_root: String,
    rows: u64,
}

impl DocsSource {
    pub(crate) fn new(selection: Selection, hidden: bool, shown_root: &str) -> DocsSource {
        DocsSource {
            files: Files::new(selection, hidden),
            shown_root: shown_root.to_owned(),
            rows: 0,
        }
    }

    fn item(&mut self, read: bool) -> Option<Item> {
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
        self.rows += 1;
        let selection = self.files.selection();
        if !read {
            return Some(Item::Row {
                line: self.rows,
                fields: Ok(serde_json::Map::new()),
            });
        }
        Some(match docs::row(selection, &found) {
            Ok(fields) => Item::Row {
                line: self.rows,
                fields: Ok(fields),
            },
            Err(message) => Item::Bad {
                file: selection.shown(&found.id),
                message,
                row: true,
            },
        })
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
        self.files
            .walked
            .note(&self.shown_root)
            .into_iter()
            .collect()
    }
}
