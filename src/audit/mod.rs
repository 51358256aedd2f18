//! A key per job and the audit of its spend (issue #13 §4): the management API client
//! (`manage`), the three figures of a job's spend and their reconciliation (`figures`), and
//! `orbatch audit` (`command`).

pub mod command;
pub mod figures;
pub mod manage;
