//! The pure-Rust CPU reference runtime: generation over a TensorRT-LLM checkpoint.

pub mod attention_kernels;
pub mod backend;
pub mod checkpoint;
pub mod dot_order;
pub mod free_memory;
pub mod gemm;
pub mod generate;
pub mod kernels;
pub mod model;
pub mod pool;
pub mod sampling;
pub mod service;
pub mod settings;
