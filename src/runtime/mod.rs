//! The pure-Rust CPU reference runtime: generation over a TensorRT-LLM checkpoint.

pub mod checkpoint;
pub mod kernels;
pub mod model;
