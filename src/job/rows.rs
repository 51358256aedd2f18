//! The input's rows as fields and ids, for commands that join records back to their rows
//! (`score`): the same reading, ids and `--limit` as `run`, without shaping requests.

use serde_json::{Map, Value};

use super::problems::Problems;
use super::shape::Shaper;
use super::{InputConfig, InputError, Walker, document_file, in_shard, source};

/// One input row: its id (as `run` gave it), line, and fields.
pub struct Row<'a> {
    pub id: &'a str,
    pub line: u64,
    pub fields: &'a Map<String, Value>,
}

/// Call `each` for every selected row of the input (after `--limit` and `--shard`), in order.
/// Rows that cannot be read are problems, reported together as for `run`.
pub fn each_row(config: &InputConfig, mut each: impl FnMut(Row<'_>)) -> Result<u64, InputError> {
    let display = config.display_name();
    let shaper = Shaper::new(config, None);
    let (source, _spool) = source::open_first(config, &display, || Box::new(std::io::stdin()))?;
    let mut walker = Walker::new(source, config.limit);
    let mut problems = Problems::default();
    let mut rows = 0u64;
    while let Some(step) = walker.next() {
        match step {
            super::Step::Problem {
                line,
                file,
                message,
            } => problems.push_at(line, file.as_deref(), message),
            super::Step::Row { line, row, fields } => match shaper.id(&fields, row) {
                Ok(id) if in_shard(config, super::shard_id(config, &fields, &id)) => {
                    rows += 1;
                    each(Row {
                        id: &id,
                        line,
                        fields: &fields,
                    });
                }
                Ok(_) => {}
                Err(msg) => problems.push_at(Some(line), document_file(config, &fields), msg),
            },
        }
    }
    if problems.is_empty() {
        Ok(rows)
    } else {
        Err(problems.into_error(&display))
    }
}
