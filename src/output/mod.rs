//! The output file: the wire record, the single writer that appends to it, and reading it
//! back to resume.

pub mod record;
pub mod resume;
pub mod writer;
