//! The generation interface both runtimes implement.

pub mod stop;
