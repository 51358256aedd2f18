//! orbatch: bulk prompts against OpenRouter with an exact audit of what every row cost.
//!
//! Every subcommand is a library function so that tests can call it in-process; `main.rs`
//! only parses arguments, builds the runtime and maps the outcome to an exit code.

pub mod endpoint;
pub mod hash;
pub mod job;
pub mod mock;
