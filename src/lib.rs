//! trtllm-minitron: NVIDIA Minitron (Hugging Face `NemotronForCausalLM`) to TensorRT-LLM.
//!
//! The library holds everything the CLI does; `main.rs` only parses arguments,
//! adds context to errors and prints.

pub mod build;
pub mod cancel;
pub mod check;
pub mod convert;
pub mod dtype;
pub mod error;
pub mod executor;
pub mod hf;
pub mod inspect;
pub mod manifest;
pub mod progress;
pub mod run;
pub mod runtime;
pub mod safetensors_file;
pub mod staging;
pub mod tokenizer;
pub mod trtllm;

pub use dtype::DType;
pub use error::{Error, Result};
