//! Checks what `trtllm-build` wrote before it is moved into place: config.json
//! with a `pretrained_config` that is our checkpoint's and a `build_config`
//! that is the profile's, and one `rank{r}.engine` per rank. Each problem
//! names the config key or file and what was expected.

use std::path::Path;

use serde_json::Value;

use crate::trtllm::build_manifest::Toolchain;
use crate::trtllm::build_settings::BuildSettings;
use crate::trtllm::conversion_manifest::FileRecord;

/// The engine files, once valid.
pub fn validate(
    dir: &Path,
    profile: &BuildSettings,
    checkpoint_config: &Value,
    toolchain: &Toolchain,
) -> Result<Vec<FileRecord>, String> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("no readable config.json ({e})"))?;
    let config: Value =
        serde_json::from_str(&text).map_err(|e| format!("config.json is not valid JSON: {e}"))?;
    let pretrained = object(&config, "pretrained_config")?;
    let build = object(&config, "build_config")?;

    if let Some(v) = config.get("version").and_then(Value::as_str)
        && v != toolchain.tensorrt_llm_version
    {
        return Err(format!(
            "config.json version is {v}, but {} reported TensorRT-LLM {}; is another TensorRT-LLM on its path?",
            toolchain.python.display(),
            toolchain.tensorrt_llm_version
        ));
    }

    for key in [
        "architecture",
        "dtype",
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_size",
        "intermediate_size",
    ] {
        let want = checkpoint_config.get(key).unwrap_or(&Value::Null);
        let have = pretrained.get(key).unwrap_or(&Value::Null);
        if !same(want, have) {
            return Err(format!(
                "config.json pretrained_config.{key} is {have}, but the checkpoint's config.json has {want}"
            ));
        }
    }
    let mapping = object(pretrained, "mapping").map_err(|e| format!("pretrained_config: {e}"))?;
    for (key, want) in [
        ("tp_size", profile.tp),
        ("pp_size", profile.pp),
        ("world_size", profile.world_size()),
    ] {
        expect_uint(mapping, key, want, "pretrained_config.mapping", "")?;
    }

    for (key, want, profile_key) in [
        ("max_batch_size", profile.max_batch_size, "max_batch_size"),
        ("max_input_len", profile.max_input_len, "max_input_len"),
        ("max_seq_len", profile.max_seq_len, "max_seq_len"),
        ("max_num_tokens", profile.max_num_tokens, "max_num_tokens"),
        ("max_beam_width", profile.max_beam_width, "max_beam_width"),
    ] {
        expect_uint(build, key, want, "build_config", profile_key)?;
    }
    // Only context logits: trtllm-build 1.2 deprecates --gather_generation_logits
    // (generation logits are a run-time option there), so it may not record it.
    if let Some(have) = build.get("gather_context_logits")
        && truthy(have) != Some(profile.gather_context_logits)
    {
        return Err(format!(
            "config.json build_config.gather_context_logits is {have}, the profile asks for {}",
            profile.gather_context_logits
        ));
    }
    if let Some(kv) = build.get("kv_cache_type").and_then(Value::as_str) {
        let have = kv.rsplit('.').next().unwrap_or(kv).to_ascii_lowercase();
        let want = if profile.paged_kv_cache {
            "paged"
        } else {
            "continuous"
        };
        if have != want {
            return Err(format!(
                "config.json build_config.kv_cache_type is {kv}, the profile asks for {want} (paged_kv_cache = {})",
                profile.paged_kv_cache
            ));
        }
    }
    if let Some(plugins) = build.get("plugin_config") {
        check_plugins(plugins, profile)?;
    }

    let world = profile.world_size();
    let mut files = vec![FileRecord::of(dir, "config.json").map_err(|e| e.to_string())?];
    let mut missing = Vec::new();
    for r in 0..world {
        let name = format!("rank{r}.engine");
        match FileRecord::of(dir, &name) {
            Ok(f) if f.bytes > 0 => files.push(f),
            Ok(_) => return Err(format!("{name} is empty")),
            Err(_) => missing.push(name),
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "{} missing; tp*pp = {world} needs rank0.engine .. rank{}.engine",
            missing.join(", ") + if missing.len() == 1 { " is" } else { " are" },
            world - 1
        ));
    }
    if dir.join(format!("rank{world}.engine")).exists() {
        return Err(format!(
            "rank{world}.engine exists, but tp*pp = {world}: the engine has more ranks than the profile"
        ));
    }
    Ok(files)
}

fn check_plugins(plugins: &Value, p: &BuildSettings) -> Result<(), String> {
    let dtype = p.dtype.config_name();
    for (key, want) in [
        ("gemm_plugin", &p.gemm_plugin),
        ("gpt_attention_plugin", &p.gpt_attention_plugin),
    ] {
        let Some(have) = plugins.get(key) else { continue };
        // "auto" may be stored as is or resolved to the model dtype.
        let ok = if want == "disable" {
            have.is_null() || have == "disable"
        } else {
            have == "auto" || have == dtype
        };
        if !ok {
            return Err(format!(
                "config.json build_config.plugin_config.{key} is {have}, the profile asks for \"{want}\" (dtype {dtype})"
            ));
        }
    }
    for (key, want) in [
        ("context_fmha", p.context_fmha),
        ("use_paged_context_fmha", p.paged_context_fmha),
        ("paged_kv_cache", p.paged_kv_cache),
        ("remove_input_padding", true),
    ] {
        if let Some(have) = plugins.get(key)
            && !have.is_null()
            && truthy(have) != Some(want)
        {
            return Err(format!(
                "config.json build_config.plugin_config.{key} is {have}, expected {want}"
            ));
        }
    }
    if p.paged_kv_cache
        && let Some(have) = plugins.get("tokens_per_block")
        && have.as_u64() != Some(p.tokens_per_block as u64)
    {
        return Err(format!(
            "config.json build_config.plugin_config.tokens_per_block is {have}, the profile asks for {}",
            p.tokens_per_block
        ));
    }
    Ok(())
}

fn object<'a>(v: &'a Value, key: &str) -> Result<&'a Value, String> {
    match v.get(key) {
        Some(o) if o.is_object() => Ok(o),
        Some(other) => Err(format!("config.json {key} is {other}, expected an object")),
        None => Err(format!("config.json has no {key}")),
    }
}

fn expect_uint(obj: &Value, key: &str, want: usize, at: &str, profile_key: &str) -> Result<(), String> {
    let have = obj.get(key);
    if have.and_then(Value::as_u64) == Some(want as u64) {
        return Ok(());
    }
    let shown = have.map(Value::to_string).unwrap_or_else(|| "missing".into());
    let asked = if profile_key.is_empty() {
        String::new()
    } else {
        format!(" (profile key `{profile_key}`)")
    };
    Err(format!(
        "config.json {at}.{key} is {shown}, expected {want}{asked}"
    ))
}

fn truthy(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_i64().map(|n| n != 0),
        Value::String(s) => match s.as_str() {
            "enable" | "true" | "True" => Some(true),
            "disable" | "false" | "False" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// JSON equality that treats 4096 and 4096.0 as the same number.
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::DType;

    fn profile() -> BuildSettings {
        BuildSettings {
            model: "m".into(),
            dtype: DType::BF16,
            tp: 2,
            pp: 1,
            workers: 2,
            target_arch: None,
            max_batch_size: 4,
            max_input_len: 32,
            max_seq_len: 64,
            max_num_tokens: 128,
            max_beam_width: 1,
            gemm_plugin: "auto".into(),
            gpt_attention_plugin: "bfloat16".into(),
            paged_kv_cache: true,
            tokens_per_block: 32,
            context_fmha: true,
            paged_context_fmha: true,
            gather_context_logits: false,
            gather_generation_logits: false,
            extra_flags: vec![],
        }
    }

    fn toolchain() -> Toolchain {
        Toolchain {
            trtllm_build: "/x/trtllm-build".into(),
            python: "/x/python3".into(),
            tensorrt_llm_version: "1.2.0".into(),
            tensorrt_version: "10.13.3.9".into(),
            tensorrt_llm_location: None,
        }
    }

    fn checkpoint() -> Value {
        json!({"architecture": "NemotronForCausalLM", "dtype": "bfloat16", "vocab_size": 256,
               "hidden_size": 48, "num_hidden_layers": 3, "num_attention_heads": 4,
               "num_key_value_heads": 2, "head_size": 16, "intermediate_size": 96,
               "mapping": {"world_size": 2, "tp_size": 2, "pp_size": 1}})
    }

    /// An engine directory as trtllm-build 1.2 lays it out, after `edit`.
    fn engine(edit: impl FnOnce(&mut Value)) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut pretrained = checkpoint();
        pretrained["mapping"]["gpus_per_node"] = json!(8);
        let mut config = json!({
            "version": "1.2.0",
            "pretrained_config": pretrained,
            "build_config": {
                "max_batch_size": 4, "max_input_len": 32, "max_seq_len": 64, "max_num_tokens": 128,
                "max_beam_width": 1, "kv_cache_type": "PAGED", "gather_context_logits": false,
                "gather_generation_logits": false,
                "plugin_config": {"gemm_plugin": "bfloat16", "gpt_attention_plugin": "auto",
                                  "context_fmha": true, "use_paged_context_fmha": true,
                                  "paged_kv_cache": null, "remove_input_padding": true,
                                  "tokens_per_block": 32}
            }
        });
        edit(&mut config);
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        for r in 0..2 {
            std::fs::write(dir.path().join(format!("rank{r}.engine")), "x").unwrap();
        }
        dir
    }

    fn check(dir: &tempfile::TempDir) -> Result<Vec<FileRecord>, String> {
        validate(dir.path(), &profile(), &checkpoint(), &toolchain())
    }

    #[test]
    fn a_matching_engine_passes() {
        let files = check(&engine(|_| {})).unwrap();
        assert_eq!(files.len(), 3);
    }

    #[test]
    fn each_mismatch_names_the_key() {
        for (edit, words) in [
            (
                Box::new(|c: &mut Value| c["pretrained_config"]["head_size"] = json!(12))
                    as Box<dyn FnOnce(&mut Value)>,
                "pretrained_config.head_size is 12",
            ),
            (
                Box::new(|c: &mut Value| c["pretrained_config"]["mapping"]["tp_size"] = json!(1)),
                "pretrained_config.mapping.tp_size is 1, expected 2",
            ),
            (
                Box::new(|c: &mut Value| c["build_config"]["max_seq_len"] = json!(128)),
                "build_config.max_seq_len is 128, expected 64 (profile key `max_seq_len`)",
            ),
            (
                Box::new(|c: &mut Value| c["build_config"]["kv_cache_type"] = json!("CONTINUOUS")),
                "kv_cache_type is CONTINUOUS",
            ),
            (
                Box::new(|c: &mut Value| {
                    c["build_config"]["plugin_config"]["gemm_plugin"] = json!("float16")
                }),
                "plugin_config.gemm_plugin is \"float16\"",
            ),
            (
                Box::new(|c: &mut Value| c["build_config"]["plugin_config"]["context_fmha"] = json!(false)),
                "plugin_config.context_fmha is false",
            ),
            (
                Box::new(|c: &mut Value| c["version"] = json!("1.1.0")),
                "version is 1.1.0",
            ),
            (
                Box::new(|c: &mut Value| {
                    c.as_object_mut().unwrap().remove("build_config");
                }),
                "config.json has no build_config",
            ),
        ] {
            let e = check(&engine(edit)).unwrap_err();
            assert!(e.contains(words), "{words}: {e}");
        }
    }

    #[test]
    fn rank_files_must_match_the_mapping() {
        let dir = engine(|_| {});
        std::fs::remove_file(dir.path().join("rank1.engine")).unwrap();
        assert!(check(&dir).unwrap_err().contains("rank1.engine is missing"));
        let dir = engine(|_| {});
        std::fs::write(dir.path().join("rank2.engine"), "x").unwrap();
        assert!(check(&dir).unwrap_err().contains("more ranks than the profile"));
    }
}
