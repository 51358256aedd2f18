//! OpenRouter wire formats: parsing answers and error envelopes leniently (FACTS §2, §4, §7).
//!
//! Everything here is pure: bytes or JSON in, typed answers or typed failures out.

pub mod chat;
pub mod error;
pub mod responses;
pub mod sse;
pub mod stream;

use crate::output::record::Usage;

/// A successful answer, whichever endpoint or transport produced it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    pub output: String,
    pub finish_reason: Option<String>,
    pub generation_id: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub usage: Option<Usage>,
}
