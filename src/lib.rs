//! trtllm-minitron: NVIDIA Minitron (Hugging Face `NemotronForCausalLM`) to TensorRT-LLM.
//!
//! The library holds everything the CLI does; `main.rs` only parses arguments,
//! adds context to errors and prints.

pub mod cancel;
pub mod cli_values;
pub mod commands;
pub mod convert;
pub mod dtype;
pub mod engine_build;
pub mod error;
pub mod executor;
pub mod generation;
pub mod hf;
pub mod json_file;
pub mod progress;
pub mod runtime;
pub mod safetensors_file;
pub mod staging;
pub mod target;
pub mod tokenizer;
pub mod trtllm;

pub use dtype::DType;
pub use error::{Error, Result};
