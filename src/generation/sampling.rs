//! A request's decoding options: how its next token is chosen. The reference
//! runtime's sampler (`runtime::sampling`) implements them; the executor
//! backend maps them onto TensorRT-LLM's sampling config.

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SamplingParams {
    /// 0.0 = greedy (argmax); must be >= 0.
    pub temperature: f32,
    /// Keep only the k most likely tokens; 0 = off; at most [`TOP_K_MAX`]. `top_k == 1`
    /// is greedy.
    pub top_k: usize,
    /// Sample only within the first `top_p` of the probability mass (most likely tokens
    /// first); 1.0 = off; must be in (0, 1].
    pub top_p: f32,
    /// 1.0 = off; must be > 0. For every token id already in the sequence (prompt and
    /// generated), a positive logit is divided by it and a negative one multiplied.
    pub repetition_penalty: f32,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            seed: 0,
        }
    }
}

/// The largest top-k TensorRT-LLM samples with: its top-k kernels support k <= 1024 and
/// its sampling layer clips larger values (topKSamplingLayer.cpp, TOP_K_MAX). Both backends
/// refuse more, so that a command behaves the same on either.
pub const TOP_K_MAX: usize = 1024;

/// The smallest temperature above 0 both backends accept. TensorRT-LLM scales
/// logits by 1/(T + 1e-6) (kernels/penaltyKernels.cu), i.e. samples at T + 1e-6:
/// log-odds between tokens come out T/(T + 1e-6) of the reference's, a relative
/// error of about 1e-6/T. Below 0.01 that exceeds 1e-4, and such a temperature
/// is greedy decoding in all but name (`--temperature 0`).
pub const TEMPERATURE_MIN: f32 = 0.01;

/// An invalid sampling option; the message names the command-line option.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{} {}: {}", self.option(), self.value(), self.reason())]
pub enum SamplingError {
    Temperature(f32),
    TemperatureTooLow(f32),
    TopK(usize),
    TopP(f32),
    RepetitionPenalty(f32),
}

impl SamplingError {
    /// The command-line option of the value.
    pub fn option(&self) -> &'static str {
        match self {
            SamplingError::Temperature(_) | SamplingError::TemperatureTooLow(_) => "--temperature",
            SamplingError::TopK(_) => "--top-k",
            SamplingError::TopP(_) => "--top-p",
            SamplingError::RepetitionPenalty(_) => "--repetition-penalty",
        }
    }

    /// The option's name as an OpenAI-style request field (`top_p`), for a
    /// server's errors.
    pub fn param(&self) -> &'static str {
        match self {
            SamplingError::Temperature(_) | SamplingError::TemperatureTooLow(_) => "temperature",
            SamplingError::TopK(_) => "top_k",
            SamplingError::TopP(_) => "top_p",
            SamplingError::RepetitionPenalty(_) => "repetition_penalty",
        }
    }

    /// The value refused, as written.
    pub fn value(&self) -> String {
        match self {
            SamplingError::Temperature(v)
            | SamplingError::TemperatureTooLow(v)
            | SamplingError::TopP(v)
            | SamplingError::RepetitionPenalty(v) => v.to_string(),
            SamplingError::TopK(k) => k.to_string(),
        }
    }

    /// What the value must be, without naming the option (clap names it).
    pub fn reason(&self) -> String {
        match self {
            SamplingError::Temperature(_) => "must be >= 0".into(),
            SamplingError::TemperatureTooLow(_) => format!(
                "below {TEMPERATURE_MIN}, TensorRT-LLM's 1/(T + 1e-6) scaling differs from 1/T by more than \
                 1e-4 (relative): use --temperature 0 for greedy decoding, or at least {TEMPERATURE_MIN}"
            ),
            SamplingError::TopK(_) => {
                format!("must be at most {TOP_K_MAX} (the largest top-k TensorRT-LLM samples with)")
            }
            SamplingError::TopP(_) => "expected a value in (0, 1]".into(),
            SamplingError::RepetitionPenalty(_) => "must be > 0".into(),
        }
    }
}

// Each rule written so that NaN fails it.
fn check_temperature(t: f32) -> Result<f32, SamplingError> {
    if !(t.is_finite() && t >= 0.0) {
        Err(SamplingError::Temperature(t))
    } else if t > 0.0 && t < TEMPERATURE_MIN {
        Err(SamplingError::TemperatureTooLow(t))
    } else {
        Ok(t)
    }
}

fn check_top_k(k: usize) -> Result<usize, SamplingError> {
    if k <= TOP_K_MAX {
        Ok(k)
    } else {
        Err(SamplingError::TopK(k))
    }
}

fn check_top_p(p: f32) -> Result<f32, SamplingError> {
    if p > 0.0 && p <= 1.0 {
        Ok(p)
    } else {
        Err(SamplingError::TopP(p))
    }
}

fn check_repetition_penalty(r: f32) -> Result<f32, SamplingError> {
    if r.is_finite() && r > 0.0 {
        Ok(r)
    } else {
        Err(SamplingError::RepetitionPenalty(r))
    }
}

/// Command-line value parsers (clap `value_parser`) with the rules of
/// [`SamplingParams::validate`], so that a bad value is refused when the
/// command line is read, as a usage error.
pub mod arg {
    use super::*;

    fn number<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, String> {
        text.trim().parse().map_err(|_| format!("expected {what}"))
    }

    pub fn temperature(text: &str) -> Result<f32, String> {
        check_temperature(number(text, "a number >= 0")?).map_err(|e| e.reason())
    }

    pub fn top_k(text: &str) -> Result<usize, String> {
        check_top_k(number(
            text,
            &format!("a whole number from 0 (off) to {TOP_K_MAX}"),
        )?)
        .map_err(|e| e.reason())
    }

    pub fn top_p(text: &str) -> Result<f32, String> {
        check_top_p(number(text, "a value in (0, 1]")?).map_err(|e| e.reason())
    }

    pub fn repetition_penalty(text: &str) -> Result<f32, String> {
        check_repetition_penalty(number(text, "a number > 0")?).map_err(|e| e.reason())
    }
}

impl SamplingParams {
    pub fn validate(&self) -> Result<(), SamplingError> {
        check_temperature(self.temperature)?;
        check_top_k(self.top_k)?;
        check_top_p(self.top_p)?;
        check_repetition_penalty(self.repetition_penalty)?;
        Ok(())
    }

    /// Greedy decoding: temperature 0, or top_k 1 (as TensorRT-LLM treats it).
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0 || self.top_k == 1
    }
}

/// Folded into the crate's error as a bad input; the message names the option.
impl From<SamplingError> for crate::Error {
    fn from(e: SamplingError) -> Self {
        crate::Error::InvalidInput(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_the_option() {
        assert_eq!(SamplingParams::default().validate(), Ok(()));
        let bad = |p: SamplingParams| p.validate().map_err(|e| e.to_string()).unwrap_err();
        let d = SamplingParams::default;
        assert_eq!(
            bad(SamplingParams { top_p: 1.5, ..d() }),
            "--top-p 1.5: expected a value in (0, 1]"
        );
        assert_eq!(
            bad(SamplingParams { top_p: 0.0, ..d() }),
            "--top-p 0: expected a value in (0, 1]"
        );
        assert_eq!(
            bad(SamplingParams { top_k: 1025, ..d() }),
            "--top-k 1025: must be at most 1024 (the largest top-k TensorRT-LLM samples with)"
        );
        assert!(SamplingParams { top_k: 1024, ..d() }.validate().is_ok());
        assert_eq!(
            bad(SamplingParams {
                temperature: -1.0,
                ..d()
            }),
            "--temperature -1: must be >= 0"
        );
        assert_eq!(
            bad(SamplingParams {
                temperature: f32::NAN,
                ..d()
            }),
            "--temperature NaN: must be >= 0"
        );
        let low = bad(SamplingParams {
            temperature: 0.001,
            ..d()
        });
        assert!(
            low.starts_with("--temperature 0.001: below 0.01") && low.contains("--temperature 0"),
            "{low}"
        );
        assert!(
            SamplingParams {
                temperature: TEMPERATURE_MIN,
                ..d()
            }
            .validate()
            .is_ok()
        );
        assert_eq!(
            bad(SamplingParams {
                repetition_penalty: 0.0,
                ..d()
            }),
            "--repetition-penalty 0: must be > 0"
        );
        assert!(
            SamplingParams {
                temperature: 0.7,
                top_k: 40,
                top_p: 0.9,
                ..d()
            }
            .validate()
            .is_ok()
        );
        assert!(
            !SamplingParams {
                temperature: 0.7,
                ..d()
            }
            .is_greedy()
        );
    }

    #[test]
    fn argument_parsers_apply_the_same_rules() {
        assert_eq!(arg::temperature("0.7"), Ok(0.7));
        assert_eq!(arg::temperature("-1"), Err("must be >= 0".into()));
        assert!(arg::temperature("0.001").unwrap_err().starts_with("below 0.01"));
        assert_eq!(arg::temperature("warm"), Err("expected a number >= 0".into()));
        assert_eq!(arg::top_k("1024"), Ok(1024));
        assert!(arg::top_k("1025").unwrap_err().contains("at most 1024"));
        assert!(arg::top_k("-1").unwrap_err().contains("whole number from 0"));
        assert_eq!(arg::top_p("1"), Ok(1.0));
        assert!(arg::top_p("0").is_err() && arg::top_p("NaN").is_err());
        assert_eq!(arg::repetition_penalty("1.1"), Ok(1.1));
        assert!(arg::repetition_penalty("0").is_err() && arg::repetition_penalty("inf").is_err());
    }
}
