//! Floating-point element types that checkpoints store, and exact casts between them.

pub mod cast;

use serde::{Deserialize, Serialize};

/// A tensor element type this tool reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    #[serde(rename = "float16")]
    F16,
    #[serde(rename = "bfloat16")]
    BF16,
    #[serde(rename = "float32")]
    F32,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F16 | DType::BF16 => 2,
            DType::F32 => 4,
        }
    }

    /// The name used by Hugging Face / TensorRT-LLM configs (`"bfloat16"`, ...).
    pub fn config_name(self) -> &'static str {
        match self {
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F32 => "float32",
        }
    }

    /// Parses the spellings found in config.json files and on the command line.
    pub fn parse(name: &str) -> Option<DType> {
        match name.trim().to_ascii_lowercase().as_str() {
            "float16" | "fp16" | "half" | "f16" | "torch.float16" => Some(DType::F16),
            "bfloat16" | "bf16" | "torch.bfloat16" => Some(DType::BF16),
            "float32" | "fp32" | "float" | "f32" | "torch.float32" => Some(DType::F32),
            _ => None,
        }
    }

    /// The element type of a safetensors dtype, if it is one we handle.
    pub fn from_safetensors(dtype: safetensors::Dtype) -> Option<DType> {
        match dtype {
            safetensors::Dtype::F16 => Some(DType::F16),
            safetensors::Dtype::BF16 => Some(DType::BF16),
            safetensors::Dtype::F32 => Some(DType::F32),
            _ => None,
        }
    }

    pub fn to_safetensors(self) -> safetensors::Dtype {
        match self {
            DType::F16 => safetensors::Dtype::F16,
            DType::BF16 => safetensors::Dtype::BF16,
            DType::F32 => safetensors::Dtype::F32,
        }
    }
}

/// On the command line (`--dtype`): the config names only, bfloat16 first.
impl clap::ValueEnum for DType {
    fn value_variants<'a>() -> &'a [Self] {
        &[DType::BF16, DType::F16, DType::F32]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.config_name()))
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.config_name())
    }
}

impl std::str::FromStr for DType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DType::parse(s).ok_or_else(|| format!("unknown dtype '{s}': expected bfloat16, float16 or float32"))
    }
}
