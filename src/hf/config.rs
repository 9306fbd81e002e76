//! `config.json` of a Hugging Face `NemotronForCausalLM` checkpoint, in either of the
//! two styles seen in the wild (transformers 4.44 top-level rope keys and
//! `torch_dtype`; transformers 5 `rope_parameters` and `dtype`), normalised into
//! the dimensions the rest of the tool uses.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::DType;
use crate::error::{Error, Result};
use crate::json_file;

/// The model dimensions, validated for internal consistency.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NemotronConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    /// From `head_dim`; hidden/heads only when the key is absent (Minitron-8B: 128, not 4096/48).
    pub head_dim: usize,
    pub max_position_embeddings: usize,
    pub norm_eps: f64,
    pub rope_theta: f64,
    pub partial_rotary_factor: f64,
    pub tie_word_embeddings: bool,
    /// The dtype the config declares, if any (`torch_dtype` or `dtype`).
    pub dtype: Option<DType>,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
}

impl NemotronConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        Self::from_json(&json_file::read(path)?, path)
    }

    /// Parses an already-read config; `path` is only used in error messages.
    pub fn from_json(value: &Value, path: &Path) -> Result<Self> {
        let obj = value.as_object().ok_or_else(|| Error::Config {
            path: path.to_path_buf(),
            problem: "expected a JSON object at the top level".into(),
        })?;
        let f = Fields { obj, path };

        match f.opt_str("model_type")? {
            Some("nemotron") => {}
            Some(other) => {
                return Err(f.field_err(
                    "model_type",
                    format!("is \"{other}\"; this tool converts \"nemotron\" models (NemotronForCausalLM: Minitron, Nemotron-4)"),
                ));
            }
            None => {
                return Err(f.field_err("model_type", "is missing; expected \"nemotron\"".to_string()));
            }
        }
        if let Some(arch) = obj.get("architectures").and_then(Value::as_array)
            && !arch.iter().any(|a| a.as_str() == Some("NemotronForCausalLM"))
        {
            return Err(f.field_err(
                "architectures",
                format!(
                    "is {}; expected [\"NemotronForCausalLM\"]",
                    Value::Array(arch.clone())
                ),
            ));
        }
        let act = f.opt_str("hidden_act")?.unwrap_or("relu2");
        if act != "relu2" {
            return Err(f.field_err(
                "hidden_act",
                format!("is \"{act}\"; Nemotron uses \"relu2\" (squared ReLU)"),
            ));
        }
        for key in ["attention_bias", "mlp_bias"] {
            if f.opt_bool(key)? == Some(true) {
                return Err(f.field_err(
                    key,
                    "is true; linear biases are not supported (Minitron has none)".into(),
                ));
            }
        }

        let hidden_size = f.positive("hidden_size")?;
        let num_attention_heads = f.positive("num_attention_heads")?;
        let num_key_value_heads = match f.opt_usize("num_key_value_heads")? {
            Some(0) => return Err(f.field_err("num_key_value_heads", "must be at least 1".into())),
            Some(n) => n,
            None => num_attention_heads,
        };
        if num_attention_heads % num_key_value_heads != 0 {
            return Err(f.field_err(
                "num_key_value_heads",
                format!(
                    "is {num_key_value_heads}, which does not divide num_attention_heads {num_attention_heads}"
                ),
            ));
        }
        let head_dim = match f.opt_usize("head_dim")? {
            Some(0) => return Err(f.field_err("head_dim", "must be at least 1".into())),
            Some(d) => d,
            None => {
                if hidden_size % num_attention_heads != 0 {
                    return Err(f.field_err(
                        "head_dim",
                        format!(
                            "is missing, and hidden_size {hidden_size} is not a multiple of num_attention_heads {num_attention_heads}"
                        ),
                    ));
                }
                hidden_size / num_attention_heads
            }
        };

        let (rope_theta, partial_rotary_factor) = rope_settings(&f)?;
        let rotary = head_dim as f64 * partial_rotary_factor;
        let rotary_dim = rotary.trunc() as usize;
        if rotary_dim == 0 || !rotary_dim.is_multiple_of(2) {
            return Err(f.field_err(
                "partial_rotary_factor",
                format!(
                    "{partial_rotary_factor} x head_dim {head_dim} gives {rotary_dim} rotary dims; expected an even number >= 2"
                ),
            ));
        }

        let dtype = match (f.opt_str("dtype")?, f.opt_str("torch_dtype")?) {
            (Some(a), Some(b)) if DType::parse(a) != DType::parse(b) => {
                return Err(f.field_err("dtype", format!("is \"{a}\" but torch_dtype is \"{b}\"")));
            }
            (Some(name), _) => Some(parse_dtype(&f, "dtype", name)?),
            (None, Some(name)) => Some(parse_dtype(&f, "torch_dtype", name)?),
            (None, None) => None,
        };

        let norm_eps = f.opt_f64("norm_eps")?.unwrap_or(1e-5);
        if norm_eps.is_nan() || norm_eps <= 0.0 {
            return Err(f.field_err("norm_eps", format!("is {norm_eps}; expected a positive number")));
        }

        Ok(NemotronConfig {
            vocab_size: f.positive("vocab_size")?,
            hidden_size,
            intermediate_size: f.positive("intermediate_size")?,
            num_hidden_layers: f.positive("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            max_position_embeddings: f.positive("max_position_embeddings")?,
            norm_eps,
            rope_theta,
            partial_rotary_factor,
            tie_word_embeddings: f.opt_bool("tie_word_embeddings")?.unwrap_or(false),
            dtype,
            bos_token_id: f.opt_token_id("bos_token_id")?,
            eos_token_id: f.opt_token_id("eos_token_id")?,
        })
    }

    /// A tiny valid config for tests (the shape of the test fixtures: 3 layers,
    /// hidden 48, 4 heads and 2 kv heads of head_dim 16, MLP 96, vocabulary
    /// 256, 128 positions); change what a test needs with struct update syntax.
    #[doc(hidden)]
    pub fn tiny() -> Self {
        NemotronConfig {
            vocab_size: 256,
            hidden_size: 48,
            intermediate_size: 96,
            num_hidden_layers: 3,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 16,
            max_position_embeddings: 128,
            norm_eps: 1e-5,
            rope_theta: 1e4,
            partial_rotary_factor: 0.5,
            tie_word_embeddings: false,
            dtype: None,
            bos_token_id: None,
            eos_token_id: None,
        }
    }

    /// `int(head_dim * partial_rotary_factor)`, as TensorRT-LLM computes it.
    pub fn rotary_dim(&self) -> usize {
        (self.head_dim as f64 * self.partial_rotary_factor).trunc() as usize
    }

    pub fn q_rows(&self) -> usize {
        self.num_attention_heads * self.head_dim
    }

    pub fn kv_rows(&self) -> usize {
        self.num_key_value_heads * self.head_dim
    }

    /// Parameter count of the Hugging Face model (lm_head counted once when tied).
    pub fn parameter_count(&self) -> u64 {
        let h = self.hidden_size as u64;
        let per_layer = (self.q_rows() as u64 + 2 * self.kv_rows() as u64) * h
            + h * self.q_rows() as u64
            + 2 * h * self.intermediate_size as u64
            + 4 * h;
        let embed = self.vocab_size as u64 * h;
        let head = if self.tie_word_embeddings { 0 } else { embed };
        embed + head + per_layer * self.num_hidden_layers as u64 + 2 * h
    }
}

fn parse_dtype(f: &Fields<'_>, key: &str, name: &str) -> Result<DType> {
    DType::parse(name).ok_or_else(|| {
        f.field_err(
            key,
            format!("is \"{name}\"; expected bfloat16, float16 or float32"),
        )
    })
}

/// rope_theta and partial_rotary_factor from either config style; both styles
/// present and disagreeing is an error rather than a silent choice.
fn rope_settings(f: &Fields<'_>) -> Result<(f64, f64)> {
    if let Some(scaling) = f.obj.get("rope_scaling")
        && !scaling.is_null()
    {
        return Err(f.field_err(
            "rope_scaling",
            format!("is {scaling}; RoPE scaling is not supported"),
        ));
    }
    let top_theta = f.opt_f64("rope_theta")?;
    let top_pct = f.opt_f64("partial_rotary_factor")?;
    let (mut theta, mut pct) = (top_theta, top_pct);
    if let Some(params) = f.obj.get("rope_parameters").filter(|v| !v.is_null()) {
        let params = params
            .as_object()
            .ok_or_else(|| f.field_err("rope_parameters", "expected an object".into()))?;
        let nested = Fields {
            obj: params,
            path: f.path,
        };
        if let Some(kind) = nested.opt_str("rope_type")?
            && kind != "default"
        {
            return Err(f.field_err(
                "rope_parameters.rope_type",
                format!("is \"{kind}\"; only \"default\" RoPE is supported"),
            ));
        }
        for (key, top, slot) in [
            ("rope_theta", top_theta, &mut theta),
            ("partial_rotary_factor", top_pct, &mut pct),
        ] {
            if let Some(v) = nested.opt_f64(key)? {
                if let Some(t) = top
                    && t != v
                {
                    return Err(f.field_err(
                        &format!("rope_parameters.{key}"),
                        format!("is {v} but the top-level {key} is {t}"),
                    ));
                }
                *slot = Some(v);
            }
        }
    }
    let theta = theta.unwrap_or(10000.0);
    // NemotronConfig's own default.
    let pct = pct.unwrap_or(0.5);
    if theta.is_nan() || theta <= 0.0 {
        return Err(f.field_err("rope_theta", format!("is {theta}; expected a positive number")));
    }
    if pct.is_nan() || pct <= 0.0 || pct > 1.0 {
        return Err(f.field_err(
            "partial_rotary_factor",
            format!("is {pct}; expected a value in (0, 1]"),
        ));
    }
    Ok((theta, pct))
}

/// Typed access to JSON fields with errors that name the field.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    path: &'a Path,
}

impl Fields<'_> {
    fn field_err(&self, field: &str, problem: String) -> Error {
        Error::ConfigField {
            path: PathBuf::from(self.path),
            field: field.to_string(),
            problem,
        }
    }

    fn present(&self, key: &str) -> Option<&Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        match self.present(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.field_err(key, format!("is {v}; expected a string"))),
        }
    }

    fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.present(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.field_err(key, format!("is {v}; expected true or false"))),
        }
    }

    fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.present(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.field_err(key, format!("is {v}; expected a number"))),
        }
    }

    fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.present(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| self.field_err(key, format!("is {v}; expected a non-negative integer"))),
        }
    }

    fn positive(&self, key: &str) -> Result<usize> {
        match self.opt_usize(key)? {
            None => Err(self.field_err(key, "is missing; expected a positive integer".into())),
            Some(0) => Err(self.field_err(key, "is 0; expected a positive integer".into())),
            Some(n) => Ok(n),
        }
    }

    /// Token ids; transformers also allows a list for eos, of which we keep the first.
    fn opt_token_id(&self, key: &str) -> Result<Option<u32>> {
        let v = match self.present(key) {
            None => return Ok(None),
            Some(Value::Array(items)) => match items.first() {
                None => return Ok(None),
                Some(first) => first,
            },
            Some(v) => v,
        };
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| self.field_err(key, format!("is {v}; expected a token id")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minitron_8b() -> Value {
        json!({
            "architectures": ["NemotronForCausalLM"], "model_type": "nemotron",
            "hidden_act": "relu2", "hidden_size": 4096, "intermediate_size": 16384,
            "num_hidden_layers": 32, "num_attention_heads": 48, "num_key_value_heads": 8,
            "head_dim": 128, "kv_channels": 128, "max_position_embeddings": 4096,
            "norm_eps": 1e-5, "rope_theta": 10000, "partial_rotary_factor": 0.5,
            "tie_word_embeddings": false, "torch_dtype": "bfloat16", "vocab_size": 256000,
            "bos_token_id": 2, "eos_token_id": 3, "rope_scaling": null
        })
    }

    fn parse(v: &Value) -> Result<NemotronConfig> {
        NemotronConfig::from_json(v, Path::new("config.json"))
    }

    #[test]
    fn minitron_8b_head_dim_is_not_hidden_over_heads() {
        let c = parse(&minitron_8b()).unwrap();
        assert_eq!(c.head_dim, 128);
        assert_eq!(c.q_rows(), 6144);
        assert_eq!(c.rotary_dim(), 64);
        assert_eq!(c.dtype, Some(DType::BF16));
        // The model card's 8.27e9 parameters.
        assert!((8.2e9..8.3e9).contains(&(c.parameter_count() as f64)));
    }

    #[test]
    fn transformers5_style_is_equivalent() {
        let mut v = minitron_8b();
        let o = v.as_object_mut().unwrap();
        o.remove("rope_theta");
        o.remove("partial_rotary_factor");
        o.remove("torch_dtype");
        o.insert("dtype".into(), json!("bfloat16"));
        o.insert(
            "rope_parameters".into(),
            json!({"rope_theta": 10000.0, "partial_rotary_factor": 0.5, "rope_type": "default"}),
        );
        assert_eq!(parse(&v).unwrap(), parse(&minitron_8b()).unwrap());
    }

    #[test]
    fn conflicting_rope_styles_are_refused() {
        let mut v = minitron_8b();
        v["rope_parameters"] = json!({"rope_theta": 500000.0});
        let e = parse(&v).unwrap_err().to_string();
        assert!(e.contains("rope_parameters.rope_theta"), "{e}");
    }

    #[test]
    fn errors_name_the_field() {
        let cases: Vec<(&str, Value, &str)> = vec![
            ("model_type", json!("llama"), "\"llama\""),
            ("num_key_value_heads", json!(7), "does not divide"),
            ("hidden_size", json!(-3), "non-negative integer"),
            ("hidden_act", json!("silu"), "relu2"),
            ("partial_rotary_factor", json!(1.5), "(0, 1]"),
            ("torch_dtype", json!("int8"), "bfloat16, float16 or float32"),
        ];
        for (key, value, needle) in cases {
            let mut v = minitron_8b();
            v[key] = value;
            let e = parse(&v).unwrap_err().to_string();
            assert!(
                e.contains(&format!("field `{key}`")) && e.contains(needle),
                "{key}: {e}"
            );
        }
        let mut v = minitron_8b();
        v.as_object_mut().unwrap().remove("vocab_size");
        assert!(
            parse(&v)
                .unwrap_err()
                .to_string()
                .contains("`vocab_size`: is missing")
        );
    }

    #[test]
    fn defaults_when_keys_are_absent() {
        let mut v = minitron_8b();
        let o = v.as_object_mut().unwrap();
        for k in [
            "num_key_value_heads",
            "head_dim",
            "rope_theta",
            "partial_rotary_factor",
            "torch_dtype",
        ] {
            o.remove(k);
        }
        o.insert("num_attention_heads".into(), json!(32));
        let c = parse(&v).unwrap();
        assert_eq!((c.num_key_value_heads, c.head_dim), (32, 128));
        assert_eq!(
            (c.rope_theta, c.partial_rotary_factor, c.dtype),
            (10000.0, 0.5, None)
        );
    }
}
