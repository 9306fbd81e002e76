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
pub enum SamplingError {
    #[error("--temperature {0}: must be >= 0")]
    Temperature(f32),
    #[error(
        "--temperature {0}: below {TEMPERATURE_MIN}, TensorRT-LLM's 1/(T + 1e-6) scaling differs from \
         1/T by more than 1e-4 (relative): use --temperature 0 for greedy decoding, or at least {TEMPERATURE_MIN}"
    )]
    TemperatureTooLow(f32),
    #[error("--top-k {0}: must be at most {TOP_K_MAX} (the largest top-k TensorRT-LLM samples with)")]
    TopK(usize),
    #[error("--top-p {0}: expected a value in (0, 1]")]
    TopP(f32),
    #[error("--repetition-penalty {0}: must be > 0")]
    RepetitionPenalty(f32),
}

impl SamplingParams {
    pub fn validate(&self) -> Result<(), SamplingError> {
        // Written so that NaN fails every check.
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(SamplingError::Temperature(self.temperature));
        }
        if self.temperature > 0.0 && self.temperature < TEMPERATURE_MIN {
            return Err(SamplingError::TemperatureTooLow(self.temperature));
        }
        if self.top_k > TOP_K_MAX {
            return Err(SamplingError::TopK(self.top_k));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(SamplingError::TopP(self.top_p));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return Err(SamplingError::RepetitionPenalty(self.repetition_penalty));
        }
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
}
