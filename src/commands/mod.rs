//! The commands, on top of the library: each one's command line (clap
//! arguments) and what it does with it. `main.rs` parses, dispatches to them,
//! prints their reports and picks the exit status.

pub mod build;
pub mod cache;
pub mod check;
pub mod convert;
pub mod inspect;
pub mod run;
pub mod serve;
