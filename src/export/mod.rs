//! `orbatch export`: the input rows joined back to their records by id, every input column
//! kept, plus per model the output, status, error kind, tokens, spend (exact where every
//! generation id is confirmed) and score. `long`: one line per (row, model); `wide`: one line
//! per row with a group of columns per model. CSV cells a spreadsheet would run as formulas
//! are neutralised unless `--raw`.
//!
//! Memory is bounded by the index of the outputs' keys (a few dozen bytes per (id, model)),
//! not by the outputs' size: each record is read again from its file when its row comes.

pub mod command;
mod index;
pub mod to_dir;
mod write;

pub use write::{ExportError, ExportJob, ExportSummary, Format, Shape, export};
