//! Reading Hugging Face checkpoints: config, weight files, hub cache.

pub mod config;
pub mod layout;
pub mod source;
pub mod torch_bin;
pub mod weights;
