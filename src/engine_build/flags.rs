//! The `trtllm-build` command: the flags TensorRT-LLM 1.2's `trtllm-build`
//! accepts (its argparse parser: `tensorrt_llm/commands/build.py` plus the
//! plugin options of `tensorrt_llm/plugin/plugin.py`), and the command line
//! for a profile with every limit explicit.

use std::path::Path;

use crate::trtllm::build_settings::BuildSettings;

/// How a flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arity {
    /// `store_true`: no value.
    Switch,
    /// One value from a fixed list.
    Choice(&'static [&'static str]),
    Int,
    /// One free-form value (a path, a name).
    Text,
    /// One or more values (`nargs="+"`).
    Many,
}

/// Who may set a flag through `extra_flags`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Owner {
    /// Free to pass through `extra_flags`.
    Extra,
    /// Set from the named profile key; refused in `extra_flags` so the two cannot disagree.
    Key(&'static str),
    /// Refused: it would bypass the checkpoint, the limits or the engine itself.
    Never(&'static str),
}

pub struct FlagSpec {
    pub name: &'static str,
    pub arity: Arity,
    pub owner: Owner,
}

const ENABLE: &[&str] = &["enable", "disable"];
const PLUGIN: &[&str] = &["auto", "float16", "float32", "bfloat16", "int32", "disable"];

const fn f(name: &'static str, arity: Arity, owner: Owner) -> FlagSpec {
    FlagSpec { name, arity, owner }
}

use Arity::*;
use Owner::*;

/// Every flag of `trtllm-build` 1.2 (argparse also accepts unambiguous
/// abbreviations; `extra_flags` requires full names so a profile keeps its
/// meaning when a later version adds a flag with the same prefix).
pub const TRTLLM_BUILD_1_2: &[FlagSpec] = &[
    f("--checkpoint_dir", Text, Key("model")),
    f(
        "--model_config",
        Text,
        Never("it builds from a config without our checkpoint"),
    ),
    f(
        "--build_config",
        Text,
        Never("it replaces the profile's limits with a file"),
    ),
    f(
        "--model_cls_file",
        Text,
        Never("it swaps the model implementation"),
    ),
    f(
        "--model_cls_name",
        Text,
        Never("it swaps the model implementation"),
    ),
    f(
        "--output_dir",
        Text,
        Never("the output is staged and validated by trtllm-minitron (use --output)"),
    ),
    f("--max_batch_size", Int, Key("max_batch_size")),
    f("--max_input_len", Int, Key("max_input_len")),
    f("--max_seq_len", Int, Key("max_seq_len")),
    f("--max_decoder_seq_len", Int, Key("max_seq_len")),
    f("--max_beam_width", Int, Key("max_beam_width")),
    f("--max_num_tokens", Int, Key("max_num_tokens")),
    f("--opt_num_tokens", Int, Extra),
    f("--max_encoder_input_len", Int, Extra),
    f("--max_prompt_embedding_table_size", Int, Extra),
    f("--max_multimodal_len", Int, Extra),
    f(
        "--kv_cache_type",
        Choice(&["continuous", "paged", "disabled"]),
        Key("paged_kv_cache"),
    ),
    f("--paged_kv_cache", Text, Key("paged_kv_cache")),
    f("--input_timing_cache", Text, Extra),
    f("--output_timing_cache", Text, Extra),
    f(
        "--profiling_verbosity",
        Choice(&["layer_names_only", "detailed", "none"]),
        Extra,
    ),
    f("--strip_plan", Switch, Extra),
    f("--weight_sparsity", Switch, Extra),
    f("--weight_streaming", Switch, Extra),
    f("--fast_build", Switch, Extra),
    f("--workers", Int, Key("workers")),
    f(
        "--log_level",
        Choice(&[
            "internal_error",
            "error",
            "warning",
            "info",
            "verbose",
            "debug",
            "trace",
        ]),
        Never("progress is read from its info-level log"),
    ),
    f("--enable_debug_output", Switch, Extra),
    f("--visualize_network", Text, Extra),
    f("--dry_run", Switch, Never("it writes no engine")),
    f("--monitor_memory", Switch, Extra),
    f("--logits_dtype", Choice(&["float16", "float32"]), Extra),
    f("--gather_context_logits", Switch, Key("gather_context_logits")),
    f(
        "--gather_generation_logits",
        Switch,
        Key("gather_generation_logits"),
    ),
    f("--gather_all_token_logits", Switch, Key("gather_context_logits")),
    f("--lora_dir", Many, Extra),
    f("--lora_ckpt_source", Choice(&["hf", "nemo"]), Extra),
    f("--lora_target_modules", Many, Extra),
    f("--max_lora_rank", Int, Extra),
    f(
        "--speculative_decoding_mode",
        Choice(&[
            "draft_tokens_external",
            "lookahead_decoding",
            "medusa",
            "explicit_draft_tokens",
            "eagle",
        ]),
        Extra,
    ),
    f("--max_draft_len", Int, Extra),
    // Plugin options.
    f("--bert_attention_plugin", Choice(PLUGIN), Extra),
    f(
        "--gpt_attention_plugin",
        Choice(PLUGIN),
        Key("gpt_attention_plugin"),
    ),
    f(
        "--gemm_plugin",
        Choice(&[
            "auto", "float16", "float32", "bfloat16", "int32", "fp8", "nvfp4", "disable",
        ]),
        Key("gemm_plugin"),
    ),
    f("--gemm_swiglu_plugin", Choice(&["fp8", "disable"]), Extra),
    f("--fp8_rowwise_gemm_plugin", Choice(PLUGIN), Extra),
    f("--lora_plugin", Choice(PLUGIN), Extra),
    f("--dora_plugin", Choice(ENABLE), Extra),
    f("--moe_plugin", Choice(PLUGIN), Extra),
    f("--mamba_conv1d_plugin", Choice(PLUGIN), Extra),
    f("--nccl_plugin", Choice(PLUGIN), Extra),
    f("--low_latency_gemm_plugin", Choice(&["fp8", "disable"]), Extra),
    f(
        "--low_latency_gemm_swiglu_plugin",
        Choice(&["fp8", "disable"]),
        Extra,
    ),
    f(
        "--gemm_allreduce_plugin",
        Choice(&["float16", "bfloat16", "disable"]),
        Extra,
    ),
    f("--context_fmha", Choice(ENABLE), Key("context_fmha")),
    f("--bert_context_fmha_fp32_acc", Choice(ENABLE), Extra),
    f(
        "--remove_input_padding",
        Choice(ENABLE),
        Never("the Executor's in-flight batching needs it enabled"),
    ),
    f("--tokens_per_block", Int, Key("tokens_per_block")),
    f(
        "--use_paged_context_fmha",
        Choice(ENABLE),
        Key("paged_context_fmha"),
    ),
    f("--use_fp8_context_fmha", Choice(ENABLE), Extra),
    f("--fuse_fp4_quant", Choice(ENABLE), Extra),
    f("--multiple_profiles", Choice(ENABLE), Extra),
    f("--paged_state", Choice(ENABLE), Extra),
    f("--streamingllm", Choice(ENABLE), Extra),
    f("--norm_quant_fusion", Choice(ENABLE), Extra),
    f("--reduce_fusion", Choice(ENABLE), Extra),
    f("--user_buffer", Choice(ENABLE), Extra),
    f("--use_fused_mlp", Choice(ENABLE), Extra),
    f("--pp_reduce_scatter", Choice(ENABLE), Extra),
];

pub fn spec(name: &str) -> Option<&'static FlagSpec> {
    TRTLLM_BUILD_1_2.iter().find(|s| s.name == name)
}

/// Checks `extra_flags` against the 1.2 parser; the message names the flag and what was expected.
pub fn check_extra(tokens: &[String]) -> Result<(), String> {
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        let (name, inline) = match token.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (token.as_str(), None),
        };
        if !name.starts_with("--") {
            return Err(format!(
                "has \"{token}\" where a flag was expected; write each flag and each of its values as separate list items, e.g. [\"--multiple_profiles\", \"enable\"]"
            ));
        }
        let Some(s) = spec(name) else {
            let close: Vec<&str> = TRTLLM_BUILD_1_2
                .iter()
                .map(|s| s.name)
                .filter(|n| n.starts_with(name) || name.starts_with(n))
                .collect();
            let hint = if close.is_empty() {
                String::new()
            } else {
                format!(" (did you mean {}?)", close.join(" or "))
            };
            return Err(format!(
                "has {name}, which trtllm-build 1.2 does not accept{hint}; the flags it takes are listed in engines/README.md"
            ));
        };
        match s.owner {
            Owner::Extra => {}
            Owner::Key(key) => {
                return Err(format!(
                    "has {name}, which trtllm-minitron sets from the profile key `{key}`; set that key instead"
                ));
            }
            Owner::Never(why) => return Err(format!("has {name}, which is not allowed: {why}")),
        }
        i += 1;
        let mut values: Vec<&str> = Vec::new();
        if let Some(v) = inline {
            values.push(v);
        }
        let wants_value = !matches!(s.arity, Arity::Switch);
        if wants_value && inline.is_none() {
            while i < tokens.len() && !tokens[i].starts_with("--") {
                values.push(&tokens[i]);
                i += 1;
                if !matches!(s.arity, Arity::Many) {
                    break;
                }
            }
        }
        match s.arity {
            Arity::Switch if inline.is_some() => {
                return Err(format!("has {name}=...; {name} takes no value"));
            }
            Arity::Switch => {}
            _ if values.is_empty() => return Err(format!("has {name} without a value")),
            Arity::Choice(choices) => {
                if !choices.contains(&values[0]) {
                    return Err(format!(
                        "has {name} {}; trtllm-build 1.2 accepts {}",
                        values[0],
                        choices.join(", ")
                    ));
                }
            }
            Arity::Int => {
                if values[0].parse::<i64>().is_err() {
                    return Err(format!("has {name} {}; expected an integer", values[0]));
                }
            }
            Arity::Text | Arity::Many => {}
        }
    }
    Ok(())
}

fn enable(on: bool) -> String {
    if on { "enable" } else { "disable" }.to_string()
}

/// The arguments after the program name: every limit and plugin choice
/// explicit, since `trtllm-build`'s defaults change between versions.
pub fn builder_args(p: &BuildSettings, checkpoint: &Path, output: &Path) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |flag: &str, value: String| {
        a.push(flag.to_string());
        a.push(value);
    };
    push("--checkpoint_dir", checkpoint.display().to_string());
    push("--output_dir", output.display().to_string());
    push("--max_batch_size", p.max_batch_size.to_string());
    push("--max_input_len", p.max_input_len.to_string());
    push("--max_seq_len", p.max_seq_len.to_string());
    push("--max_num_tokens", p.max_num_tokens.to_string());
    push("--max_beam_width", p.max_beam_width.to_string());
    push("--gemm_plugin", p.gemm_plugin.clone());
    push("--gpt_attention_plugin", p.gpt_attention_plugin.clone());
    push(
        "--kv_cache_type",
        if p.paged_kv_cache { "paged" } else { "continuous" }.into(),
    );
    push("--tokens_per_block", p.tokens_per_block.to_string());
    push("--remove_input_padding", enable(true));
    push("--context_fmha", enable(p.context_fmha));
    push("--use_paged_context_fmha", enable(p.paged_context_fmha));
    push("--workers", p.workers.to_string());
    push("--log_level", "info".into());
    if p.gather_context_logits {
        a.push("--gather_context_logits".into());
    }
    if p.gather_generation_logits {
        a.push("--gather_generation_logits".into());
    }
    a.extend(p.extra_flags.iter().cloned());
    a
}

/// The value following `flag` in `args`.
pub fn value_of<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// `args` with `--output_dir`'s value replaced: the staged directory's name
/// differs every run, and must not make an unchanged build look changed.
pub fn without_output_dir(args: &[String]) -> Vec<String> {
    let mut out = args.to_vec();
    if let Some(i) = out.iter().position(|a| a == "--output_dir")
        && let Some(v) = out.get_mut(i + 1)
    {
        *v = "OUTPUT".into();
    }
    out
}

/// A command line as a shell would need it typed.
pub fn shell_line(program: &str, args: &[String]) -> String {
    std::iter::once(program)
        .chain(args.iter().map(String::as_str))
        .map(shell_quote)
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn extra_flags_follow_the_1_2_parser() {
        assert!(check_extra(&v(&["--multiple_profiles", "enable", "--weight_streaming"])).is_ok());
        assert!(
            check_extra(&v(&[
                "--opt_num_tokens=256",
                "--lora_target_modules",
                "attn_qkv",
                "attn_dense"
            ]))
            .is_ok()
        );
        for (bad, words) in [
            (
                v(&["--multiple_profile", "enable"]),
                "does not accept (did you mean --multiple_profiles?)",
            ),
            (v(&["--version"]), "does not accept"),
            (v(&["--multiple_profiles", "yes"]), "accepts enable, disable"),
            (v(&["--opt_num_tokens", "many"]), "expected an integer"),
            (v(&["--opt_num_tokens"]), "without a value"),
            (v(&["--max_seq_len", "8"]), "profile key `max_seq_len`"),
            (v(&["--dry_run"]), "writes no engine"),
            (v(&["--weight_streaming=1"]), "takes no value"),
            (v(&["multiple_profiles"]), "where a flag was expected"),
        ] {
            let e = check_extra(&bad).unwrap_err();
            assert!(e.contains(words), "{bad:?}: {e}");
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/a/b-c_d.toml"), "/a/b-c_d.toml");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
