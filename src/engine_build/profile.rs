//! Engine profiles: TOML files under `engines/` describing one engine each
//! (see `engines/README.md` for every key), command-line overrides, and the
//! checks that turn them into the [`BuildSettings`] `trtllm-build` runs with.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{BuildError, BuildResult};
use super::flags;
use crate::DType;
use crate::cli_values::at_least_one;
use crate::hf::config::NemotronConfig;
use crate::trtllm::build_settings::BuildSettings;
use crate::trtllm::gpu::parse_arch;
use crate::trtllm::mapping::Parallelism;

/// The keys of an engine profile (engines/README.md documents each), spelled
/// once: serde reads them from a profile file, clap from `build`'s flags (the
/// keys worth overriding on the command line have one; `#[arg(skip)]` marks
/// the others), and merging and the required-key check go through the
/// serialized form. Every key is optional here, so that a missing required key
/// gets our message (naming the file) rather than serde's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct ProfileKeys {
    #[arg(skip)]
    pub description: Option<String>,
    /// Hub id, model directory or TensorRT-LLM checkpoint [default: the profile's `model`].
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// Engine dtype [default: the model's own].
    #[arg(long)]
    pub dtype: Option<DType>,
    /// Tensor parallel size [profile key `tp`; default 1, or a checkpoint's own].
    #[arg(long = "tp-size", value_name = "N", value_parser = at_least_one, allow_negative_numbers = true)]
    pub tp: Option<usize>,
    /// Pipeline parallel size [profile key `pp`; default 1, or a checkpoint's own].
    #[arg(long = "pp-size", value_name = "N", value_parser = at_least_one, allow_negative_numbers = true)]
    pub pp: Option<usize>,
    /// Ranks trtllm-build builds at once, one GPU each [default: tp*pp].
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true)]
    pub workers: Option<usize>,
    /// GPU architecture the engine is meant for, e.g. sm80 (A100), sm90 (H100).
    #[arg(long, value_name = "SM")]
    pub target_arch: Option<String>,
    /// Requests the engine runs at once (in-flight batching).
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true)]
    pub max_batch_size: Option<usize>,
    /// Longest prompt, in tokens.
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true)]
    pub max_input_len: Option<usize>,
    /// Longest sequence, prompt plus generated tokens (at most max_position_embeddings).
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true)]
    pub max_seq_len: Option<usize>,
    /// Tokens the engine processes in one step, over all requests.
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true)]
    pub max_num_tokens: Option<usize>,
    /// Beams for beam search (1: no beam search).
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true)]
    pub max_beam_width: Option<usize>,
    #[arg(skip)]
    pub gemm_plugin: Option<String>,
    #[arg(skip)]
    pub gpt_attention_plugin: Option<String>,
    #[arg(skip)]
    pub paged_kv_cache: Option<bool>,
    #[arg(skip)]
    pub tokens_per_block: Option<usize>,
    #[arg(skip)]
    pub context_fmha: Option<bool>,
    #[arg(skip)]
    pub paged_context_fmha: Option<bool>,
    #[arg(skip)]
    pub gather_context_logits: Option<bool>,
    #[arg(skip)]
    pub gather_generation_logits: Option<bool>,
    #[arg(skip)]
    pub extra_flags: Option<Vec<String>>,
}

/// Limits a profile must state: their defaults differ between TensorRT-LLM versions.
pub const REQUIRED_KEYS: [&str; 6] = [
    "model",
    "dtype",
    "max_batch_size",
    "max_input_len",
    "max_seq_len",
    "max_num_tokens",
];

impl ProfileKeys {
    /// Every key a profile may have.
    pub fn names() -> Vec<String> {
        ProfileKeys::default()
            .to_map()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    /// Whether `key` has a value.
    pub fn is_set(&self, key: &str) -> bool {
        self.to_map().get(key).is_some_and(|v| !v.is_null())
    }

    /// These keys with every key `over` sets replaced, and the names of those keys.
    pub fn overridden_by(&self, over: &ProfileKeys) -> (ProfileKeys, BTreeSet<String>) {
        let mut merged = self.to_map();
        let mut replaced = BTreeSet::new();
        for (key, value) in over.to_map() {
            if !value.is_null() {
                replaced.insert(key.clone());
                merged.insert(key, value);
            }
        }
        let values = serde_json::from_value(Value::Object(merged))
            .expect("ProfileKeys read back from its own JSON form (tested in keys_round_trip)");
        (values, replaced)
    }

    fn to_map(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            other => unreachable!("ProfileKeys serializes to a JSON object, not {other:?}"),
        }
    }
}

/// The command-line flag that overrides a key (`tp` -> `--tp-size`).
pub fn flag_for_key(key: &str) -> String {
    use clap::Args;
    let command = ProfileKeys::augment_args(clap::Command::new("build"));
    let long = command
        .get_arguments()
        .find(|a| a.get_id().as_str() == key)
        .and_then(|a| a.get_long().map(str::to_string));
    format!("--{}", long.unwrap_or_else(|| key.replace('_', "-")))
}

/// A profile file read from disk, before overrides.
#[derive(Debug, Clone)]
pub struct LoadedProfile {
    pub path: PathBuf,
    /// The file stem: names the default output directory.
    pub name: String,
    pub file: ProfileKeys,
}

impl LoadedProfile {
    pub fn read(path: &Path) -> BuildResult<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| BuildError::ProfileSyntax {
            file: path.to_path_buf(),
            problem: format!("cannot read it: {e}"),
        })?;
        let file: ProfileKeys = toml::from_str(&text).map_err(|e| BuildError::ProfileSyntax {
            file: path.to_path_buf(),
            problem: format!(
                "{}\n(every key is documented in engines/README.md)",
                e.to_string().trim_end()
            ),
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "engine".into());
        Ok(LoadedProfile {
            path: path.to_path_buf(),
            name,
            file,
        })
    }

    /// Where a relative `model` path in this file is taken from: the file's directory.
    pub fn base_dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }
}

/// Finds PROFILE: a path to a file, else `engines/NAME.toml` under the current directory.
pub fn find_profile(arg: &str) -> BuildResult<PathBuf> {
    let direct = Path::new(arg);
    if direct.is_file() {
        return Ok(direct.to_path_buf());
    }
    let stem = arg.strip_suffix(".toml").unwrap_or(arg);
    let in_engines = Path::new("engines").join(format!("{stem}.toml"));
    if !arg.contains('/') && in_engines.is_file() {
        return Ok(in_engines);
    }
    let mut known: Vec<String> = std::fs::read_dir("engines")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            (p.extension().is_some_and(|x| x == "toml"))
                .then(|| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .flatten()
        })
        .collect();
    known.sort();
    let hint = if known.is_empty() {
        "pass the path of a profile file (TOML; see engines/README.md), or --model MODEL without a profile"
            .to_string()
    } else {
        format!("profiles in ./engines: {}", known.join(", "))
    };
    Err(BuildError::ProfileNotFound(format!(
        "profile {arg}: no such file, and no engines/{stem}.toml in the current directory; {hint}"
    )))
}

/// The profile file merged with the command line, and which keys the command line set.
#[derive(Debug, Clone)]
pub struct Merged {
    pub values: ProfileKeys,
    pub overridden: BTreeSet<String>,
    /// The profile file, if any (for messages).
    pub file: Option<PathBuf>,
}

impl Merged {
    pub fn new(profile: Option<&LoadedProfile>, overrides: &ProfileKeys) -> Self {
        let file_keys = profile.map(|p| p.file.clone()).unwrap_or_default();
        let (values, overridden) = file_keys.overridden_by(overrides);
        Merged {
            values,
            overridden,
            file: profile.map(|p| p.path.clone()),
        }
    }

    /// Names where a key's value came from: the flag (overriding the file) or the file.
    pub fn origin(&self, key: &str) -> String {
        match (&self.file, self.overridden.contains(key)) {
            (Some(file), true) => format!("{} (overriding {})", flag_for_key(key), file.display()),
            (None, true) => flag_for_key(key),
            (Some(file), false) => format!("profile {}", file.display()),
            (None, false) => "the defaults for --model without a profile".into(),
        }
    }

    pub fn err(&self, key: &str, problem: impl Into<String>) -> BuildError {
        BuildError::ProfileValue {
            origin: self.origin(key),
            key: key.to_string(),
            problem: problem.into(),
            from_flag: self.overridden.contains(key),
        }
    }
}

/// What the profile is checked against: the model's dimensions and dtype.
#[derive(Debug, Clone)]
pub struct ModelFacts {
    pub config: NemotronConfig,
    /// The dtype the weights are stored in (the default `dtype` without a profile).
    pub dtype: DType,
    /// Short name for messages, e.g. `nvidia/Minitron-8B-Base`.
    pub label: String,
    /// A TensorRT-LLM checkpoint's own mapping: the default `tp` and `pp`.
    pub mapping: Option<Parallelism>,
}

const PLUGIN_DTYPES: [&str; 4] = ["auto", "bfloat16", "float16", "float32"];

/// Fills defaults and checks every value, naming the key (or flag) at fault.
pub fn resolve(m: &Merged, model: &ModelFacts) -> BuildResult<BuildSettings> {
    let v = &m.values;
    let has_file = m.file.is_some();
    // With a profile, the limits must be written down; with --model alone they
    // get documented defaults derived from the model.
    if has_file {
        for key in REQUIRED_KEYS {
            if !v.is_set(key) {
                return Err(m.err(
                    key,
                    "is missing; a profile must state it (defaults differ between TensorRT-LLM versions)",
                ));
            }
        }
    }
    let model_spec = v
        .model
        .clone()
        .ok_or_else(|| m.err("model", "is missing: give PROFILE or --model MODEL"))?;
    if model_spec.trim().is_empty() {
        return Err(m.err("model", "is empty; expected a hub id (org/name) or a path"));
    }
    let dtype = v.dtype.unwrap_or(model.dtype);

    let tp = v.tp.or(model.mapping.map(|m| m.tp)).unwrap_or(1);
    let pp = v.pp.or(model.mapping.map(|m| m.pp)).unwrap_or(1);
    for (key, value) in [("tp", tp), ("pp", pp)] {
        if value == 0 {
            return Err(m.err(key, "is 0; expected at least 1"));
        }
    }
    // Validated one at a time so the message names the key that breaks the rule.
    if let Err(e) = (Parallelism { tp, pp: 1 }).validate(&model.config) {
        return Err(m.err(
            "tp",
            format!("is {tp}, which {} does not allow: {}", model.label, e.reason()),
        ));
    }
    if let Err(e) = (Parallelism { tp: 1, pp }).validate(&model.config) {
        return Err(m.err(
            "pp",
            format!("is {pp}, which {} does not allow: {}", model.label, e.reason()),
        ));
    }
    let world = tp * pp;
    let workers = v.workers.unwrap_or(world);
    if workers == 0 || workers > world {
        return Err(m.err(
            "workers",
            format!("is {workers}; expected 1 to tp*pp = {world} (ranks built in parallel, one GPU each)"),
        ));
    }

    let target_arch = match &v.target_arch {
        None => None,
        Some(a) => Some(parse_arch(a).ok_or_else(|| {
            m.err(
                "target_arch",
                format!("is \"{a}\"; expected an SM architecture such as \"sm80\" (A100) or \"sm90\" (H100)"),
            )
        })?),
    };

    let max_pos = model.config.max_position_embeddings;
    let max_seq_len = v.max_seq_len.unwrap_or(max_pos.min(4096));
    let max_input_len = v.max_input_len.unwrap_or((max_seq_len / 2).max(1));
    let max_batch_size = v.max_batch_size.unwrap_or(8);
    let max_beam_width = v.max_beam_width.unwrap_or(1);
    let paged_kv_cache = v.paged_kv_cache.unwrap_or(true);
    let context_fmha = v.context_fmha.unwrap_or(dtype != DType::F32);
    let paged_context_fmha = v.paged_context_fmha.unwrap_or(paged_kv_cache && context_fmha);
    let max_num_tokens = v
        .max_num_tokens
        .unwrap_or_else(|| (max_batch_size * max_input_len).clamp(max_input_len, 8192.max(max_input_len)));
    for (key, value) in [
        ("max_batch_size", max_batch_size),
        ("max_input_len", max_input_len),
        ("max_seq_len", max_seq_len),
        ("max_num_tokens", max_num_tokens),
        ("max_beam_width", max_beam_width),
    ] {
        if value == 0 {
            return Err(m.err(key, "is 0; expected at least 1"));
        }
    }
    if max_seq_len < max_input_len {
        // Blame the value the command line changed, if it changed one of the two.
        let why =
            "max_seq_len counts the prompt and the generated tokens, so it must be at least max_input_len";
        return Err(
            if m.overridden.contains("max_input_len") && !m.overridden.contains("max_seq_len") {
                m.err(
                    "max_input_len",
                    format!("is {max_input_len}, more than max_seq_len {max_seq_len}; {why}"),
                )
            } else {
                m.err(
                    "max_seq_len",
                    format!("is {max_seq_len}, less than max_input_len {max_input_len}; {why}"),
                )
            },
        );
    }
    if max_seq_len > max_pos {
        return Err(m.err(
            "max_seq_len",
            format!(
                "is {max_seq_len}, more than {}'s max_position_embeddings {max_pos}; positions past it were never trained",
                model.label
            ),
        ));
    }
    if max_num_tokens > max_batch_size * max_seq_len {
        return Err(m.err(
            "max_num_tokens",
            format!(
                "is {max_num_tokens}, more than max_batch_size * max_seq_len = {}; trtllm-build would lower it, so the engine would not match the profile",
                max_batch_size * max_seq_len
            ),
        ));
    }
    if max_num_tokens < max_input_len && !paged_context_fmha {
        return Err(m.err(
            "max_num_tokens",
            format!(
                "is {max_num_tokens}, less than max_input_len {max_input_len}: a full prompt would not fit in one step; raise it or set paged_context_fmha = true (chunked context)"
            ),
        ));
    }

    let tokens_per_block = v.tokens_per_block.unwrap_or(32);
    if !tokens_per_block.is_power_of_two() || tokens_per_block > 1024 {
        return Err(m.err(
            "tokens_per_block",
            format!("is {tokens_per_block}; expected a power of two up to 1024 (e.g. 32, 64, 128)"),
        ));
    }

    let gemm_plugin = v.gemm_plugin.clone().unwrap_or_else(|| "auto".into());
    let gpt_attention_plugin = v.gpt_attention_plugin.clone().unwrap_or_else(|| "auto".into());
    check_plugin(m, "gemm_plugin", &gemm_plugin, dtype, true)?;
    check_plugin(m, "gpt_attention_plugin", &gpt_attention_plugin, dtype, false)?;

    if context_fmha && dtype == DType::F32 {
        return Err(m.err(
            "context_fmha",
            "is true, but fused attention needs bfloat16 or float16 (dtype is float32); set context_fmha = false",
        ));
    }
    if paged_context_fmha && !(context_fmha && paged_kv_cache) {
        return Err(m.err(
            "paged_context_fmha",
            "is true, but it needs context_fmha = true and paged_kv_cache = true",
        ));
    }

    let extra_flags = v.extra_flags.clone().unwrap_or_default();
    flags::check_extra(&extra_flags).map_err(|problem| m.err("extra_flags", problem))?;

    Ok(BuildSettings {
        model: model_spec,
        dtype,
        tp,
        pp,
        workers,
        target_arch,
        max_batch_size,
        max_input_len,
        max_seq_len,
        max_num_tokens,
        max_beam_width,
        gemm_plugin,
        gpt_attention_plugin,
        paged_kv_cache,
        tokens_per_block,
        context_fmha,
        paged_context_fmha,
        gather_context_logits: v.gather_context_logits.unwrap_or(false),
        gather_generation_logits: v.gather_generation_logits.unwrap_or(false),
        extra_flags,
    })
}

fn check_plugin(m: &Merged, key: &str, value: &str, dtype: DType, may_disable: bool) -> BuildResult<()> {
    if may_disable && value == "disable" {
        return Ok(());
    }
    if !PLUGIN_DTYPES.contains(&value) {
        let choices = if may_disable {
            "\"auto\", \"bfloat16\", \"float16\", \"float32\" or \"disable\""
        } else {
            // The attention plugin carries the paged KV cache: it cannot be turned off here.
            "\"auto\", \"bfloat16\", \"float16\" or \"float32\""
        };
        return Err(m.err(key, format!("is \"{value}\"; expected {choices}")));
    }
    if value != "auto" && value != dtype.config_name() {
        return Err(m.err(
            key,
            format!(
                "is \"{value}\" but dtype is \"{dtype}\"; TensorRT-LLM builds strongly typed networks, so use \"auto\" or \"{dtype}\""
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn tiny() -> ModelFacts {
        ModelFacts {
            config: NemotronConfig {
                dtype: Some(DType::BF16),
                ..NemotronConfig::tiny()
            },
            dtype: DType::BF16,
            label: "tiny".into(),
            mapping: None,
        }
    }

    fn parse(text: &str) -> BuildResult<BuildSettings> {
        let file: ProfileKeys = toml::from_str(text).map_err(|e| BuildError::ProfileSyntax {
            file: "p.toml".into(),
            problem: e.to_string(),
        })?;
        let loaded = LoadedProfile {
            path: "p.toml".into(),
            name: "p".into(),
            file,
        };
        resolve(&Merged::new(Some(&loaded), &ProfileKeys::default()), &tiny())
    }

    const BASE: &str = "model = \"m\"\ndtype = \"bfloat16\"\nmax_batch_size = 2\nmax_input_len = 32\nmax_seq_len = 64\nmax_num_tokens = 64\n";

    #[test]
    fn a_minimal_profile_gets_documented_defaults() {
        let p = parse(BASE).unwrap();
        assert_eq!((p.tp, p.pp, p.workers, p.max_beam_width), (1, 1, 1, 1));
        assert_eq!((p.gemm_plugin.as_str(), p.tokens_per_block), ("auto", 32));
        assert!(p.paged_kv_cache && p.context_fmha && p.paged_context_fmha);
    }

    #[test]
    fn impossible_values_name_the_key() {
        for (extra, key, words) in [
            ("max_seq_len = 16\n", "`max_seq_len`", "less than max_input_len"),
            (
                "max_seq_len = 256\n",
                "`max_seq_len`",
                "max_position_embeddings 128",
            ),
            ("tp = 3\n", "`tp`", "Allowed tp sizes: 1, 2, 4"),
            ("pp = 4\n", "`pp`", "3 layers"),
            ("tp = 2\nworkers = 3\n", "`workers`", "tp*pp = 2"),
            (
                "gemm_plugin = \"float16\"\n",
                "`gemm_plugin`",
                "dtype is \"bfloat16\"",
            ),
            (
                "gpt_attention_plugin = \"disable\"\n",
                "`gpt_attention_plugin`",
                "expected",
            ),
            ("tokens_per_block = 48\n", "`tokens_per_block`", "power of two"),
            ("target_arch = \"ampere\"\n", "`target_arch`", "sm80"),
            (
                "paged_kv_cache = false\npaged_context_fmha = true\n",
                "`paged_context_fmha`",
                "paged_kv_cache = true",
            ),
            (
                "extra_flags = [\"--max_batch_size\", \"4\"]\n",
                "`extra_flags`",
                "max_batch_size",
            ),
            (
                "max_num_tokens = 1000\n",
                "`max_num_tokens`",
                "max_batch_size * max_seq_len",
            ),
        ] {
            // Later keys win in our test by replacing the base line when repeated.
            let text = merge(BASE, extra);
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(words), "{extra}: {e}");
            assert!(e.contains("p.toml"), "{e}");
        }
    }

    #[test]
    fn unknown_and_missing_keys_are_errors() {
        let e = parse(&format!("{BASE}max_seqlen = 3\n")).unwrap_err().to_string();
        assert!(e.contains("max_seqlen"), "{e}");
        let e = parse("model = \"m\"\ndtype = \"bfloat16\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`max_batch_size` is missing"), "{e}");
    }

    #[test]
    fn overrides_are_named_by_their_flag() {
        let file: ProfileKeys = toml::from_str(BASE).unwrap();
        let loaded = LoadedProfile {
            path: "p.toml".into(),
            name: "p".into(),
            file,
        };
        let o = ProfileKeys {
            max_input_len: Some(100),
            ..Default::default()
        };
        let e = resolve(&Merged::new(Some(&loaded), &o), &tiny())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--max-input-len (overriding p.toml)"), "{e}");
    }

    /// A profile setting every key: numbers to `number`, switches to `switch`.
    fn every_key(number: u32, switch: bool, dtype: &str, extra_flags: &str) -> String {
        ProfileKeys::names()
            .iter()
            .map(|k| match k.as_str() {
                "extra_flags" => format!("{k} = {extra_flags}\n"),
                "dtype" => format!("{k} = \"{dtype}\"\n"),
                "paged_kv_cache"
                | "context_fmha"
                | "paged_context_fmha"
                | "gather_context_logits"
                | "gather_generation_logits" => format!("{k} = {switch}\n"),
                "tp" | "pp" | "workers" | "max_batch_size" | "max_input_len" | "max_seq_len"
                | "max_num_tokens" | "max_beam_width" | "tokens_per_block" => format!("{k} = {number}\n"),
                _ => format!("{k} = \"x\"\n"),
            })
            .collect()
    }

    #[test]
    fn every_listed_key_is_accepted() {
        let file: ProfileKeys = toml::from_str(&every_key(1, true, "bfloat16", "[]")).unwrap();
        assert_eq!(file.extra_flags, Some(vec![]));
    }

    #[test]
    fn keys_round_trip_and_overrides_name_what_they_replaced() {
        let text = every_key(2, false, "float16", "[\"--strip_plan\"]");
        let full: ProfileKeys = toml::from_str(&text).unwrap();
        let (same, replaced) = ProfileKeys::default().overridden_by(&full);
        assert_eq!(same, full);
        assert_eq!(replaced.len(), ProfileKeys::names().len());
        let over = ProfileKeys {
            tp: Some(4),
            dtype: Some(DType::BF16),
            ..Default::default()
        };
        let (merged, replaced) = full.overridden_by(&over);
        assert_eq!(
            (merged.tp, merged.dtype, merged.pp),
            (Some(4), Some(DType::BF16), Some(2))
        );
        assert_eq!(replaced.into_iter().collect::<Vec<_>>(), ["dtype", "tp"]);
    }

    #[test]
    fn flags_come_from_the_key_definitions() {
        assert_eq!(flag_for_key("tp"), "--tp-size");
        assert_eq!(flag_for_key("pp"), "--pp-size");
        assert_eq!(flag_for_key("max_input_len"), "--max-input-len");
        assert_eq!(flag_for_key("target_arch"), "--target-arch");
    }

    /// BASE with `extra`'s keys replacing BASE's lines of the same key.
    fn merge(base: &str, extra: &str) -> String {
        let keys: Vec<&str> = extra
            .lines()
            .filter_map(|l| l.split('=').next())
            .map(str::trim)
            .collect();
        let mut out: String = base
            .lines()
            .filter(|l| !keys.contains(&l.split('=').next().unwrap_or("").trim()))
            .map(|l| format!("{l}\n"))
            .collect();
        out.push_str(extra);
        out
    }
}
