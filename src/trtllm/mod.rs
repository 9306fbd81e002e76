//! The TensorRT-LLM side: checkpoint config, parallel mapping, and the
//! per-rank tensor plan (described in docs/checkpoint-format.md).

pub mod build_manifest;
pub mod build_settings;
pub mod config;
pub mod conversion_manifest;
pub mod fingerprint;
pub mod gpu;
pub mod mapping;
pub mod plan;
