//! Golden suites: TOML files listing cases (prompt text or input ids, decoding
//! parameters, expectations) and an optional speed check. The format is
//! documented in `tests/suites/README.md`; errors name the line at fault.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::DType;
use crate::generation::SamplingParams;

/// Default `max_new_tokens` when neither the case nor the suite sets one.
pub const DEFAULT_MAX_NEW_TOKENS: usize = 32;

/// A suite file that cannot be used: unreadable, not TOML, or a bad key or value
/// (the message gives the line and column).
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    // The OS error's text is in the message, so it is not also the `source`.
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path}: bad suite file: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Logit and log-prob tolerances (absolute).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tolerance {
    /// Largest allowed |logit difference|.
    pub logit_abs: f32,
    /// Largest allowed |log-probability difference| of the chosen token.
    pub logprob_abs: f32,
}

impl Tolerance {
    /// The documented default for a dtype (see tests/suites/README.md).
    pub fn for_dtype(dtype: DType) -> Tolerance {
        match dtype {
            DType::F32 => Tolerance {
                logit_abs: 1e-3,
                logprob_abs: 1e-3,
            },
            DType::F16 => Tolerance {
                logit_abs: 0.15,
                logprob_abs: 0.1,
            },
            DType::BF16 => Tolerance {
                logit_abs: 0.5,
                logprob_abs: 0.25,
            },
        }
    }
}

/// What a case should produce, as recorded by `check --record`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The generated tokens (new tokens only).
    pub output_ids: Vec<u32>,
    /// Their decoded text: informational, not compared.
    pub text: Option<String>,
    /// The logit of each expected token at its step. Recorded on TensorRT-LLM,
    /// a run that ends with the end token has none for it (the list is one
    /// short); checks note that step as not compared.
    pub logits: Option<Vec<f32>>,
    /// The log-probability of each expected token at its step (likewise).
    pub logprobs: Option<Vec<f32>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CaseInput {
    Text(String),
    Ids(Vec<u32>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub name: String,
    pub input: CaseInput,
    pub max_new_tokens: Option<usize>,
    pub sampling: SamplingParams,
    pub ignore_eos: bool,
    pub add_bos: Option<bool>,
    /// `None`: the output ids must match exactly.
    pub min_agreement: Option<f64>,
    pub logit_tolerance: Option<f32>,
    pub logprob_tolerance: Option<f32>,
    pub expect: Option<Expect>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    prompt: Option<String>,
    input_ids: Option<Vec<u32>>,
    max_new_tokens: Option<usize>,
    temperature: Option<f32>,
    top_k: Option<usize>,
    top_p: Option<f32>,
    repetition_penalty: Option<f32>,
    seed: Option<u64>,
    #[serde(default)]
    ignore_eos: bool,
    add_bos: Option<bool>,
    min_agreement: Option<f64>,
    logit_tolerance: Option<f32>,
    logprob_tolerance: Option<f32>,
    expect: Option<Expect>,
}

fn input_of(name: &str, prompt: Option<String>, ids: Option<Vec<u32>>) -> Result<CaseInput, String> {
    match (prompt, ids) {
        (Some(_), Some(_)) => Err(format!("case `{name}`: give `prompt` or `input_ids`, not both")),
        (None, None) => Err(format!("case `{name}`: needs `prompt` (text) or `input_ids`")),
        (Some(p), None) if p.is_empty() => Err(format!("case `{name}`: `prompt` is empty")),
        (None, Some(ids)) if ids.is_empty() => Err(format!("case `{name}`: `input_ids` is empty")),
        (Some(p), None) => Ok(CaseInput::Text(p)),
        (None, Some(ids)) => Ok(CaseInput::Ids(ids)),
    }
}

fn check_tolerance(what: &str, v: Option<f32>) -> Result<(), String> {
    match v {
        Some(t) if !(t.is_finite() && t >= 0.0) => Err(format!("`{what}` {t}: must be a number >= 0")),
        _ => Ok(()),
    }
}

impl TryFrom<RawCase> for Case {
    type Error = String;
    fn try_from(r: RawCase) -> Result<Case, String> {
        let name = r.name.trim().to_string();
        if name.is_empty() {
            return Err("case `name` is empty".into());
        }
        let input = input_of(&name, r.prompt, r.input_ids)?;
        let sampling_asked = r.top_k.is_some() || r.top_p.is_some();
        let sampling = SamplingParams {
            temperature: r.temperature.unwrap_or(if sampling_asked { 1.0 } else { 0.0 }),
            top_k: r.top_k.unwrap_or(0),
            top_p: r.top_p.unwrap_or(1.0),
            repetition_penalty: r.repetition_penalty.unwrap_or(1.0),
            seed: r.seed.unwrap_or(0),
        };
        sampling.validate().map_err(|e| {
            format!(
                "case `{name}`: {}",
                e.to_string().trim_start_matches("--").replace('-', "_")
            )
        })?;
        if let Some(a) = r.min_agreement
            && !(0.0..=1.0).contains(&a)
        {
            return Err(format!(
                "case `{name}`: `min_agreement` {a}: expected a rate in [0, 1]"
            ));
        }
        check_tolerance("logit_tolerance", r.logit_tolerance).map_err(|e| format!("case `{name}`: {e}"))?;
        check_tolerance("logprob_tolerance", r.logprob_tolerance)
            .map_err(|e| format!("case `{name}`: {e}"))?;
        if r.max_new_tokens == Some(0) {
            return Err(format!("case `{name}`: `max_new_tokens` must be at least 1"));
        }
        Ok(Case {
            name,
            input,
            max_new_tokens: r.max_new_tokens,
            sampling,
            ignore_eos: r.ignore_eos,
            add_bos: r.add_bos,
            min_agreement: r.min_agreement,
            logit_tolerance: r.logit_tolerance,
            logprob_tolerance: r.logprob_tolerance,
            expect: r.expect,
        })
    }
}

/// A speed check: one prompt, generated `repeats` times after `warmup` runs.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeedSpec {
    pub input: CaseInput,
    pub max_new_tokens: usize,
    pub warmup: usize,
    pub repeats: usize,
    /// Allowed regression in percent (tokens/s lower, or first-token latency higher).
    pub max_regression_pct: f64,
    /// Baseline decode throughput (generated tokens per second after the first).
    pub tokens_per_s: Option<f64>,
    /// Baseline first-token latency in milliseconds.
    pub first_token_ms: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpeed {
    prompt: Option<String>,
    input_ids: Option<Vec<u32>>,
    #[serde(default = "default_speed_tokens")]
    max_new_tokens: usize,
    #[serde(default = "one")]
    warmup: usize,
    #[serde(default = "five")]
    repeats: usize,
    #[serde(default = "ten")]
    max_regression_pct: f64,
    tokens_per_s: Option<f64>,
    first_token_ms: Option<f64>,
}

fn default_speed_tokens() -> usize {
    64
}
fn one() -> usize {
    1
}
fn five() -> usize {
    5
}
fn ten() -> f64 {
    10.0
}

impl TryFrom<RawSpeed> for SpeedSpec {
    type Error = String;
    fn try_from(r: RawSpeed) -> Result<SpeedSpec, String> {
        let input =
            input_of("speed", r.prompt, r.input_ids).map_err(|e| e.replacen("case `speed`", "speed", 1))?;
        if r.repeats == 0 {
            return Err("speed: `repeats` must be at least 1".into());
        }
        if r.max_new_tokens < 2 {
            return Err(
                "speed: `max_new_tokens` must be at least 2 (decode speed needs a second token)".into(),
            );
        }
        if !(r.max_regression_pct.is_finite() && r.max_regression_pct >= 0.0) {
            return Err(format!(
                "speed: `max_regression_pct` {}: must be >= 0",
                r.max_regression_pct
            ));
        }
        for (what, v) in [
            ("tokens_per_s", r.tokens_per_s),
            ("first_token_ms", r.first_token_ms),
        ] {
            if let Some(v) = v
                && !(v.is_finite() && v > 0.0)
            {
                return Err(format!("speed: `{what}` {v}: must be > 0"));
            }
        }
        Ok(SpeedSpec {
            input,
            max_new_tokens: r.max_new_tokens,
            warmup: r.warmup,
            repeats: r.repeats,
            max_regression_pct: r.max_regression_pct,
            tokens_per_s: r.tokens_per_s,
            first_token_ms: r.first_token_ms,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuite {
    name: Option<String>,
    description: Option<String>,
    max_new_tokens: Option<usize>,
    #[serde(default)]
    tolerances: BTreeMap<String, Tolerance>,
    speed: Option<RawSpeedWrap>,
    #[serde(default)]
    case: Vec<CaseWrap>,
}

#[derive(Deserialize)]
#[serde(try_from = "RawCase")]
struct CaseWrap(Case);
impl TryFrom<RawCase> for CaseWrap {
    type Error = String;
    fn try_from(r: RawCase) -> Result<Self, String> {
        Case::try_from(r).map(CaseWrap)
    }
}

#[derive(Deserialize)]
#[serde(try_from = "RawSpeed")]
struct RawSpeedWrap(SpeedSpec);
impl TryFrom<RawSpeed> for RawSpeedWrap {
    type Error = String;
    fn try_from(r: RawSpeed) -> Result<Self, String> {
        SpeedSpec::try_from(r).map(RawSpeedWrap)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Suite {
    pub path: PathBuf,
    pub name: String,
    pub description: Option<String>,
    pub max_new_tokens: Option<usize>,
    /// Per-dtype overrides of [`Tolerance::for_dtype`].
    pub tolerances: std::collections::HashMap<DType, Tolerance>,
    pub speed: Option<SpeedSpec>,
    pub cases: Vec<Case>,
}

impl Suite {
    pub fn read(path: &Path) -> Result<Suite, SuiteError> {
        let text = std::fs::read_to_string(path).map_err(|error| SuiteError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        Suite::parse(&text, path)
    }

    /// Parses suite text; `path` is for messages and the default name.
    pub fn parse(text: &str, path: &Path) -> Result<Suite, SuiteError> {
        let invalid = |message: String| SuiteError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let raw: RawSuite = toml::from_str(text).map_err(|e| invalid(describe(&e, text)))?;
        let mut tolerances = std::collections::HashMap::new();
        for (k, t) in raw.tolerances {
            let dtype = DType::parse(&k).ok_or_else(|| {
                invalid(format!(
                    "[tolerances.{k}] (line {}): unknown dtype; expected bfloat16, float16 or float32",
                    line_of(text, &format!("tolerances.{k}")).unwrap_or(0)
                ))
            })?;
            if !(t.logit_abs.is_finite()
                && t.logit_abs >= 0.0
                && t.logprob_abs.is_finite()
                && t.logprob_abs >= 0.0)
            {
                return Err(invalid(format!(
                    "[tolerances.{k}]: tolerances must be numbers >= 0"
                )));
            }
            tolerances.insert(dtype, t);
        }
        let cases: Vec<Case> = raw.case.into_iter().map(|c| c.0).collect();
        let mut seen = std::collections::HashSet::new();
        for c in &cases {
            if !seen.insert(c.name.as_str()) {
                let line = line_of(text, &format!("\"{}\"", c.name));
                return Err(invalid(format!(
                    "case name `{}` is used twice{}",
                    c.name,
                    line.map(|l| format!(" (again at line {l})")).unwrap_or_default()
                )));
            }
        }
        if cases.is_empty() && raw.speed.is_none() {
            return Err(invalid("no [[case]] and no [speed]: nothing to check".into()));
        }
        if raw.max_new_tokens == Some(0) {
            return Err(invalid("`max_new_tokens` must be at least 1".into()));
        }
        let name = raw.name.unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "suite".into())
        });
        Ok(Suite {
            path: path.to_path_buf(),
            name,
            description: raw.description,
            max_new_tokens: raw.max_new_tokens,
            tolerances,
            speed: raw.speed.map(|s| s.0),
            cases,
        })
    }

    /// The tolerance for a dtype: the suite's override, else the documented default.
    pub fn tolerance(&self, dtype: DType) -> Tolerance {
        self.tolerances
            .get(&dtype)
            .copied()
            .unwrap_or_else(|| Tolerance::for_dtype(dtype))
    }

    pub fn max_new_tokens(&self, case: &Case) -> usize {
        case.max_new_tokens
            .or(self.max_new_tokens)
            .unwrap_or(DEFAULT_MAX_NEW_TOKENS)
    }
}

/// "line L, column C: message" from a toml error. A case's own checks (made once
/// the whole table is read) point at the line of that case's `name`.
fn describe(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().trim().to_string();
    if let Some(rest) = message.strip_prefix("case `")
        && let Some((name, _)) = rest.split_once('`')
        && let Some(line) = name_line(text, name)
    {
        return format!("line {line}: {message}");
    }
    if message.starts_with("speed:")
        && let Some(i) = text.find("[speed]")
    {
        return format!("line {}: {message}", line_col(text, i).0);
    }
    match e.span() {
        Some(span) => {
            let (line, col) = line_col(text, span.start);
            format!("line {line}, column {col}: {message}")
        }
        None => message,
    }
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, col)
}

/// The line of `name = "NAME"` (the first one).
fn name_line(text: &str, name: &str) -> Option<usize> {
    let quoted = format!("\"{name}\"");
    let literal = format!("'{name}'");
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.starts_with("name")
                && l[4..].trim_start().starts_with('=')
                && (l.contains(&quoted) || l.contains(&literal))
        })
        .map(|i| i + 1)
}

fn line_of(text: &str, needle: &str) -> Option<usize> {
    // The last occurrence: for duplicates, the second one is the one at fault.
    text.rfind(needle).map(|i| line_col(text, i).0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Suite, SuiteError> {
        Suite::parse(text, Path::new("s.toml"))
    }

    #[test]
    fn minimal_suite_and_defaults() {
        let s = parse("[[case]]\nname = \"a\"\ninput_ids = [1, 2]\n").unwrap();
        assert_eq!(s.name, "s");
        assert_eq!(s.cases[0].input, CaseInput::Ids(vec![1, 2]));
        assert!(s.cases[0].sampling.is_greedy());
        assert_eq!(s.max_new_tokens(&s.cases[0]), DEFAULT_MAX_NEW_TOKENS);
        assert_eq!(s.tolerance(DType::BF16), Tolerance::for_dtype(DType::BF16));
    }

    #[test]
    fn errors_name_the_line() {
        let text = "name = \"x\"\n\n[[case]]\nname = \"a\"\nprompt = \"hi\"\n\n[[case]]\nname = \"b\"\nprompt = \"hi\"\ninput_ids = [1]\n";
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains("line 8") && e.contains("not both"), "{e}");
        let e = parse("[[case]]\nname = \"a\"\nprompt = \"hi\"\ncolour = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 4") && e.contains("colour"), "{e}");
        let e = parse("[[case]]\nname = \"a\"\nprompt = \"hi\"\ntop_p = 2.0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("top_p"), "{e}");
        let e = parse("name = \"x\"\n[speed]\ninput_ids = [1]\nrepeats = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("repeats"), "{e}");
        let e = parse("[[case]]\nname = \"a\"\nprompt = \"hi\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3"), "{e}");
        let e = parse("[[case]]\nname = \"a\"\nprompt = \"x\"\n[[case]]\nname = \"a\"\nprompt = \"y\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("used twice") && e.contains("line 5"), "{e}");
        let e = parse(
            "[tolerances.float8]\nlogit_abs = 1\nlogprob_abs = 1\n[[case]]\nname = \"a\"\nprompt = \"x\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown dtype") && e.contains("line 1"), "{e}");
        assert!(parse("name = \"empty\"\n").is_err());
    }

    #[test]
    fn tolerance_overrides() {
        let s = parse(
            "[tolerances.bfloat16]\nlogit_abs = 2.0\nlogprob_abs = 1.0\n[[case]]\nname = \"a\"\ninput_ids = [1]\n",
        )
        .unwrap();
        assert_eq!(s.tolerance(DType::BF16).logit_abs, 2.0);
        assert_eq!(s.tolerance(DType::F32), Tolerance::for_dtype(DType::F32));
    }
}
