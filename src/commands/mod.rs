//! The commands: each one's work on top of the library.

pub mod check;
pub mod inspect;
pub mod run;
