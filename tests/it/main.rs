//! Integration tests: the `orbatch` binary against the mock server on 127.0.0.1:0.
//! Nothing here needs a key or the network.

mod audit;
mod batch;
mod budget;
mod byok;
mod catalog;
mod compat;
mod costs;
mod docs;
mod exit_codes;
mod export;
mod faults;
mod input_errors;
mod plan;
mod report;
mod resume;
mod retries;
mod run_basic;
mod schema;
mod score;
mod streaming;
mod structured;
mod support;
