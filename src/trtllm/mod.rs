//! The TensorRT-LLM side: checkpoint config, parallel mapping, and the
//! per-rank tensor plan (described in docs/checkpoint-format.md).

pub mod config;
pub mod mapping;
pub mod plan;
