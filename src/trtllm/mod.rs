//! The TensorRT-LLM side: checkpoint config, parallel mapping, and the
//! per-rank tensor plan (see shared/spec/trtllm-checkpoint.md).

pub mod config;
pub mod mapping;
pub mod plan;
