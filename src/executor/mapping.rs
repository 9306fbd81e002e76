//! From our [`Request`] to an executor request, and from executor responses
//! back: finish reasons (unknown values are errors, never undefined
//! behaviour), token ids, log-probs, logits.

use half::{bf16, f16};

use super::api::{LogitsDType, RawLogits, RawResponse, RequestSpec};
use crate::generation::{FinishReason, Request, SamplingParams};

/// TensorRT-LLM's `executor::FinishReason`, by value (types.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrtFinish {
    NotFinished,
    EndId,
    StopWords,
    Length,
    TimedOut,
    Cancelled,
}

impl TrtFinish {
    pub fn from_code(code: i32) -> Result<Self, String> {
        Ok(match code {
            0 => TrtFinish::NotFinished,
            1 => TrtFinish::EndId,
            2 => TrtFinish::StopWords,
            3 => TrtFinish::Length,
            4 => TrtFinish::TimedOut,
            5 => TrtFinish::Cancelled,
            other => {
                return Err(format!(
                    "the executor reported finish reason {other}, which this build does not know \
                     (known: 0..=5, kNOT_FINISHED..kCANCELLED); was it built against other TensorRT-LLM headers?"
                ));
            }
        })
    }

    /// Ours, for a final response. `kNOT_FINISHED` and `kTIMED_OUT` (we set
    /// no allotted time) on a final response are errors.
    pub fn to_finish_reason(self) -> Result<FinishReason, String> {
        match self {
            TrtFinish::EndId => Ok(FinishReason::EndId),
            TrtFinish::StopWords => Ok(FinishReason::Stop),
            TrtFinish::Length => Ok(FinishReason::Length),
            TrtFinish::Cancelled => Ok(FinishReason::Cancelled),
            TrtFinish::NotFinished => {
                Err("the executor's final response says the request is not finished".into())
            }
            TrtFinish::TimedOut => Err("the executor timed the request out".into()),
        }
    }
}

/// A response after checking: what the backend consumes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Step {
    pub tokens: Vec<u32>,
    pub is_final: bool,
    /// Set on final responses (always), and on others when the executor gave one.
    pub finish: Option<FinishReason>,
    /// Log-probs of every token generated so far (cumulative, as delivered).
    pub log_probs: Vec<f32>,
    pub context_logits: Option<RawLogits>,
    pub generation_logits: Option<RawLogits>,
}

/// Turns one raw response into a [`Step`] or the error for that request:
/// `hasError`, no beams, negative token ids, a final response without or with
/// an unknown finish reason.
pub fn check_response(raw: RawResponse) -> Result<Step, String> {
    if let Some(e) = raw.error {
        return Err(format!("the executor failed this request: {e}"));
    }
    if raw.num_beams == 0 {
        return Err("the executor returned a result with no beams".into());
    }
    let tokens = raw
        .tokens
        .iter()
        .map(|&t| u32::try_from(t).map_err(|_| format!("the executor returned token id {t}")))
        .collect::<Result<Vec<u32>, String>>()?;
    let finish = match raw.finish_reason {
        Some(code) => match TrtFinish::from_code(code)? {
            TrtFinish::NotFinished if !raw.is_final => None,
            other => Some(other.to_finish_reason()?),
        },
        None if raw.is_final => {
            return Err("the executor's final response carries no finish reason".into());
        }
        None => None,
    };
    Ok(Step {
        tokens,
        is_final: raw.is_final,
        finish,
        log_probs: raw.log_probs,
        context_logits: raw.context_logits,
        generation_logits: raw.generation_logits,
    })
}

impl Step {
    /// The tokens this step brings, each with its log-prob, as the reference
    /// runtime reports them: TensorRT-LLM's new tokens, then, when the step ends
    /// the request with its end token, that token, which TensorRT-LLM leaves out
    /// (NVIDIA/TensorRT-LLM#2190) and the reference (like transformers) returns.
    /// Log-probs come from the cumulative list, where `before` tokens came
    /// earlier; the end token has none, on either backend.
    pub fn tokens_with_logprobs(&self, end_id: Option<u32>, before: usize) -> Vec<(u32, Option<f32>)> {
        let mut out: Vec<(u32, Option<f32>)> = self
            .tokens
            .iter()
            .enumerate()
            .map(|(k, &t)| (t, self.log_probs.get(before + k).copied()))
            .collect();
        if self.is_final
            && self.finish == Some(FinishReason::EndId)
            && let Some(end) = end_id
        {
            out.push((end, None));
        }
        out
    }
}

fn token_id(t: u32, what: &str) -> Result<i32, String> {
    i32::try_from(t).map_err(|_| format!("{what} {t} does not fit TensorRT-LLM's 32-bit token ids"))
}

/// The decoding options of an executor request that samples as `s` does on the
/// reference runtime. Every one is set: TensorRT-LLM's defaults would otherwise
/// decide (topK 0 with topP 0.0 is greedy, minTokens 1 forbids an end token
/// first). `cpp/README.md` has the table of options, fields and defaults.
struct Decoding {
    temperature: f32,
    top_k: i32,
    top_p: f32,
}

fn decoding(s: &SamplingParams, vocab: usize) -> Result<Decoding, String> {
    s.validate().map_err(|e| e.to_string())?;
    // A top-k of at least the vocabulary cuts nothing: sent as 0 ("no top-k").
    // Sent as it is, K above the vocabulary leaves TensorRT-LLM's top-k kernel
    // with missing candidates (kernels/samplingTopKKernels.cu: topKStage1 fills
    // them with -FLT_MAX), which, when log-probs are returned, makes the sum
    // topKStage2Sampling draws against negative, so it takes the most likely
    // token every time: greedy decoding.
    let top_k = if s.top_k >= vocab { 0 } else { s.top_k };
    let top_k = i32::try_from(top_k).map_err(|_| format!("--top-k {} is too large", s.top_k))?;
    Ok(if s.is_greedy() {
        // top-k 1 is TensorRT-LLM's greedy decoding. The temperature changes no argmax,
        // only the log-probs: 0 (our greedy) is sent as 1, as the reference reads it.
        Decoding {
            temperature: if s.temperature > 0.0 { s.temperature } else { 1.0 },
            top_k: 1,
            top_p: 1.0,
        }
    } else {
        // top-k 0 is "no top-k cut", top-p 1.0 "no nucleus cut".
        Decoding {
            temperature: s.temperature,
            top_k,
            top_p: s.top_p,
        }
    })
}

/// Our request as an executor request for an engine with a vocabulary of
/// `vocab` tokens, with every decoding option set (see [`Decoding`]). Values
/// TensorRT-LLM refuses are refused here, naming the option, before anything
/// is enqueued.
pub fn request_spec(r: &Request, streaming: bool, vocab: usize) -> Result<RequestSpec, String> {
    if r.input_ids.is_empty() {
        return Err("the prompt is empty: there is nothing to continue".into());
    }
    if r.max_new_tokens == 0 {
        return Err("--max-new-tokens 0: must be at least 1".into());
    }
    let input_ids = r
        .input_ids
        .iter()
        .map(|&t| token_id(t, "token id"))
        .collect::<Result<Vec<_>, _>>()?;
    let max_tokens = i32::try_from(r.max_new_tokens)
        .map_err(|_| format!("--max-new-tokens {} is too large", r.max_new_tokens))?;
    let d = decoding(&r.sampling, vocab)?;
    // -1 is what TensorRT-LLM uses for an unset end id: no token ends generation.
    let end_id = r.end_id.map(|t| token_id(t, "end id")).transpose()?.unwrap_or(-1);
    Ok(RequestSpec {
        input_ids,
        max_tokens,
        streaming,
        temperature: Some(d.temperature),
        top_k: Some(d.top_k),
        top_p: Some(d.top_p),
        seed: Some(r.sampling.seed),
        repetition_penalty: Some(r.sampling.repetition_penalty),
        presence_penalty: Some(0.0),
        frequency_penalty: Some(0.0),
        // The reference runtime has no minimum: an end token may come first.
        min_tokens: Some(0),
        end_id: Some(end_id),
        // Nothing is padded with one sequence per request; the end id is the
        // conventional choice.
        pad_id: Some(end_id),
        stop_words: Vec::new(),
        return_log_probs: r.want_logprobs,
        return_context_logits: r.want_context_logits,
        return_generation_logits: r.want_generation_logits,
    })
}

/// Logits rows as f32, each cut to `vocab` (the executor pads the vocabulary).
pub fn decode_logits(raw: &RawLogits, vocab: usize) -> Result<Vec<Vec<f32>>, String> {
    let size = raw.dtype.size().ok_or_else(|| {
        format!(
            "the executor returned logits of an unsupported type ({:?}; f32, f16 and bf16 are read)",
            raw.dtype
        )
    })?;
    if raw.row_len == 0 || raw.row_len < vocab {
        return Err(format!(
            "the executor returned logits rows of {} values, fewer than the vocabulary's {vocab}",
            raw.row_len
        ));
    }
    let row_bytes = raw.row_len * size;
    if !raw.data.len().is_multiple_of(row_bytes) {
        return Err(format!(
            "the executor returned {} bytes of logits, not a whole number of {}-value rows",
            raw.data.len(),
            raw.row_len
        ));
    }
    Ok(raw
        .data
        .chunks_exact(row_bytes)
        .map(|row| {
            let values = row.chunks_exact(size).take(vocab);
            match raw.dtype {
                LogitsDType::F16 => values
                    .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                LogitsDType::BF16 => values
                    .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                LogitsDType::F32 | LogitsDType::Other(_) => values
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOCAB: usize = 256;

    fn request(sampling: SamplingParams) -> Request {
        Request {
            input_ids: vec![1, 2, 3],
            max_new_tokens: 8,
            sampling,
            end_id: Some(2),
            want_context_logits: false,
            want_generation_logits: true,
            want_logprobs: true,
        }
    }

    fn decoding_of(spec: &RequestSpec) -> (Option<f32>, Option<i32>, Option<f32>, Option<u64>) {
        (spec.temperature, spec.top_k, spec.top_p, spec.seed)
    }

    #[test]
    fn greedy_is_top_k_one_with_every_option_set() {
        let spec = request_spec(&request(SamplingParams::default()), true, VOCAB).unwrap();
        assert_eq!(spec.input_ids, vec![1, 2, 3]);
        assert_eq!((spec.max_tokens, spec.streaming), (8, true));
        assert_eq!(decoding_of(&spec), (Some(1.0), Some(1), Some(1.0), Some(0)));
        assert_eq!(
            (
                spec.repetition_penalty,
                spec.presence_penalty,
                spec.frequency_penalty
            ),
            (Some(1.0), Some(0.0), Some(0.0))
        );
        assert_eq!(spec.min_tokens, Some(0));
        assert_eq!((spec.end_id, spec.pad_id), (Some(2), Some(2)));
        assert!(spec.return_generation_logits && !spec.return_context_logits && spec.return_log_probs);
    }

    #[test]
    fn temperature_alone_samples_the_whole_vocabulary() {
        // Unset, TensorRT-LLM's topK 0 and topP 0.0 would make this greedy.
        let spec = request_spec(
            &request(SamplingParams {
                temperature: 0.8,
                seed: 9,
                ..Default::default()
            }),
            true,
            VOCAB,
        )
        .unwrap();
        assert_eq!(decoding_of(&spec), (Some(0.8), Some(0), Some(1.0), Some(9)));
    }

    #[test]
    fn sampling_options_are_passed_as_given() {
        let spec = request_spec(
            &request(SamplingParams {
                temperature: 0.7,
                top_k: 40,
                top_p: 0.9,
                repetition_penalty: 1.1,
                seed: 42,
            }),
            false,
            VOCAB,
        )
        .unwrap();
        assert_eq!(decoding_of(&spec), (Some(0.7), Some(40), Some(0.9), Some(42)));
        assert_eq!(spec.repetition_penalty, Some(1.1));
        // Greedy by top-k 1 keeps its temperature (it only shapes the log-probs).
        let spec = request_spec(
            &request(SamplingParams {
                temperature: 0.5,
                top_k: 1,
                ..Default::default()
            }),
            false,
            VOCAB,
        )
        .unwrap();
        assert_eq!(decoding_of(&spec), (Some(0.5), Some(1), Some(1.0), Some(0)));
    }

    #[test]
    fn a_top_k_of_at_least_the_vocabulary_is_no_top_k() {
        let sampled = |top_k| {
            request(SamplingParams {
                temperature: 0.8,
                top_k,
                ..Default::default()
            })
        };
        assert_eq!(
            request_spec(&sampled(VOCAB - 1), true, VOCAB).unwrap().top_k,
            Some(255)
        );
        assert_eq!(request_spec(&sampled(VOCAB), true, VOCAB).unwrap().top_k, Some(0));
        assert_eq!(request_spec(&sampled(1000), true, VOCAB).unwrap().top_k, Some(0));
        // Greedy stays top-k 1 whatever the vocabulary.
        let greedy = request(SamplingParams::default());
        assert_eq!(request_spec(&greedy, true, 1).unwrap().top_k, Some(1));
    }

    #[test]
    fn no_end_id_is_minus_one() {
        let mut r = request(SamplingParams::default());
        r.end_id = None;
        let spec = request_spec(&r, true, VOCAB).unwrap();
        assert_eq!((spec.end_id, spec.pad_id), (Some(-1), Some(-1)));
    }

    #[test]
    fn options_out_of_the_library_range_are_refused_by_name() {
        let mut r = request(SamplingParams {
            top_k: 2000,
            temperature: 1.0,
            ..Default::default()
        });
        assert!(
            request_spec(&r, true, VOCAB)
                .unwrap_err()
                .contains("--top-k 2000")
        );
        r.sampling = SamplingParams {
            top_p: 1.5,
            ..Default::default()
        };
        assert!(request_spec(&r, true, VOCAB).unwrap_err().contains("--top-p 1.5"));
        r.sampling = SamplingParams::default();
        r.max_new_tokens = 0;
        assert!(
            request_spec(&r, true, VOCAB)
                .unwrap_err()
                .contains("--max-new-tokens 0")
        );
    }

    #[test]
    fn out_of_range_ids_are_refused() {
        let mut r = request(SamplingParams::default());
        r.input_ids = vec![u32::MAX];
        assert!(request_spec(&r, true, VOCAB).unwrap_err().contains("32-bit"));
        r.input_ids.clear();
        assert!(request_spec(&r, true, VOCAB).unwrap_err().contains("empty"));
    }

    #[test]
    fn finish_reasons_map_and_unknown_ones_are_errors() {
        assert_eq!(
            TrtFinish::from_code(1).unwrap().to_finish_reason(),
            Ok(FinishReason::EndId)
        );
        assert_eq!(
            TrtFinish::from_code(2).unwrap().to_finish_reason(),
            Ok(FinishReason::Stop)
        );
        assert_eq!(
            TrtFinish::from_code(3).unwrap().to_finish_reason(),
            Ok(FinishReason::Length)
        );
        assert_eq!(
            TrtFinish::from_code(5).unwrap().to_finish_reason(),
            Ok(FinishReason::Cancelled)
        );
        assert!(TrtFinish::from_code(4).unwrap().to_finish_reason().is_err());
        assert!(TrtFinish::from_code(6).unwrap_err().contains("finish reason 6"));
        assert!(TrtFinish::from_code(-1).is_err());
    }

    #[test]
    fn responses_are_checked() {
        let ok = RawResponse {
            num_beams: 1,
            tokens: vec![5],
            finish_reason: Some(0),
            ..Default::default()
        };
        assert_eq!(check_response(ok.clone()).unwrap().finish, None);
        let fin = RawResponse {
            is_final: true,
            finish_reason: Some(3),
            ..ok.clone()
        };
        assert_eq!(check_response(fin).unwrap().finish, Some(FinishReason::Length));
        let no_beams = RawResponse {
            num_beams: 0,
            tokens: vec![],
            ..ok.clone()
        };
        assert!(check_response(no_beams).unwrap_err().contains("no beams"));
        let final_without_reason = RawResponse {
            is_final: true,
            finish_reason: None,
            ..ok.clone()
        };
        assert!(check_response(final_without_reason).is_err());
        let error = RawResponse {
            error: Some("boom".into()),
            ..ok
        };
        assert!(check_response(error).unwrap_err().contains("boom"));
    }

    #[test]
    fn logits_are_decoded_and_cut_to_the_vocabulary() {
        let mut data = Vec::new();
        for v in [1.0f32, 2.0, 3.0, 9.0, 4.0, 5.0, 6.0, 9.0] {
            data.extend_from_slice(&v.to_le_bytes());
        }
        let raw = RawLogits {
            dtype: LogitsDType::F32,
            row_len: 4,
            data,
        };
        assert_eq!(
            decode_logits(&raw, 3).unwrap(),
            vec![vec![1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0]]
        );
        let mut data = Vec::new();
        for v in [0.5f32, -2.0] {
            data.extend_from_slice(&bf16::from_f32(v).to_le_bytes());
        }
        let raw = RawLogits {
            dtype: LogitsDType::BF16,
            row_len: 2,
            data,
        };
        assert_eq!(decode_logits(&raw, 2).unwrap(), vec![vec![0.5, -2.0]]);
        let bad = RawLogits {
            dtype: LogitsDType::Other(2),
            row_len: 2,
            data: vec![],
        };
        assert!(decode_logits(&bad, 2).is_err());
        let ragged = RawLogits {
            dtype: LogitsDType::F16,
            row_len: 2,
            data: vec![0; 6],
        };
        assert!(decode_logits(&ragged, 2).is_err());
    }
}
