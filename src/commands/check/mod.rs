//! `check`: engine regression checks for CI. Runs a golden suite's cases on any
//! [`GenerationBackend`] and compares the outputs with the suite's recorded
//! expectations (`check`), or with the CPU reference runtime over the same
//! checkpoint (`check --against reference`); `check --record` writes the
//! expectations. Suites may also hold a speed check (median of N repeats after a
//! warm-up, against a baseline). The suite format and tolerances are documented
//! in `tests/suites/README.md`.

pub mod args;
pub mod compare;
pub mod record;
pub mod report;
pub mod suite;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::generation::GenerationBackend;
use crate::generation::{Flow, Generated, Request};
use crate::progress::Progress;
use crate::runtime::free_memory;
use crate::runtime::model::Model;
use crate::target::{self, BackendChoice, Target, open_backend};
use crate::tokenizer::Tokenizer;
use crate::trtllm::build_manifest::BuildManifest;
use crate::trtllm::config::DirConfig;
use compare::{Run, SpeedMeasurement, SpeedSample, Status, Verdict};
use report::{CaseResult, CheckReport};
use suite::{Case, CaseInput, Expect, SpeedSpec, Suite};

pub use args::CheckArgs;

#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// What `run --model` takes: Hugging Face model, checkpoint or engine directory.
    pub model: String,
    pub backend: BackendChoice,
    pub suite: PathBuf,
    pub tokenizer: Option<PathBuf>,
    /// Compare with the CPU reference runtime instead of the recorded expectations.
    pub against_reference: bool,
    /// The checkpoint the reference runs [default: the engine's, from its build
    /// manifest; or the checkpoint `model` resolves to].
    pub reference_checkpoint: Option<PathBuf>,
    /// Write the cases' expectations into the suite file (default backend: reference).
    pub record: bool,
    /// Write the speed baselines into the suite file.
    pub record_speed: bool,
    /// Do not run the speed check.
    pub skip_speed: bool,
}

/// Runs a suite. `Err` is a usage or infrastructure problem (bad suite, missing
/// model); regressions are failed cases in the report.
pub fn check(opts: &CheckOptions, progress: &dyn Progress, stop: &AtomicBool) -> Result<CheckReport> {
    let started = Instant::now();
    let suite = Suite::read(&opts.suite).map_err(|e| Error::InvalidInput(e.to_string()))?;
    if opts.against_reference && (opts.record || opts.record_speed) {
        return Err(Error::InvalidInput(
            "--against reference compares two backends; it records nothing (drop --record)".into(),
        ));
    }
    let needs_text = suite.cases.iter().any(|c| matches!(c.input, CaseInput::Text(_)))
        || suite
            .speed
            .as_ref()
            .is_some_and(|s| matches!(s.input, CaseInput::Text(_)));

    let reference_dir = if opts.against_reference {
        Some(match &opts.reference_checkpoint {
            Some(dir) => dir.clone(),
            None => match target::resolve(&opts.model, progress, stop)? {
                Target::Checkpoint(dir) => dir,
                Target::Engine(dir) => BuildManifest::read(&dir)?.checkpoint.dir,
            },
        })
    } else {
        None
    };
    let backend = match (opts.record, opts.backend) {
        (true, BackendChoice::Auto) => BackendChoice::Reference,
        (_, b) => b,
    };
    let opened = open_backend(
        &opts.model,
        backend,
        opts.tokenizer.as_deref(),
        needs_text,
        progress,
        stop,
    )?;
    if opened.reference {
        free_memory::keep_freed_memory();
    }
    let tested: &dyn GenerationBackend = opened.backend.as_ref();
    let tokenizer = opened.tokenizer.as_ref();
    let dtype = DirConfig::read(&opened.checkpoint)?.dtype()?;
    let tolerance = suite.tolerance(dtype);
    let reference = match &reference_dir {
        Some(dir) => Some(Model::open(dir)?),
        None => None,
    };
    if let Some(r) = &reference
        && r.config.vocab_size != tested.vocab_size()
    {
        return Err(Error::InvalidInput(format!(
            "the reference checkpoint {} has a vocabulary of {} tokens, the model under test {}: \
             they are not the same model",
            r.checkpoint.dir.display(),
            r.config.vocab_size,
            tested.vocab_size()
        )));
    }

    let mut results = Vec::new();
    let mut recorded: Vec<Option<Expect>> = Vec::new();
    for case in &suite.cases {
        let t0 = Instant::now();
        let request = request_for(&suite, case, tokenizer, tested, reference.is_some())?;
        let got = generate_one(tested, &request, stop)?;
        let expected_ids;
        let verdict = if let Some(reference) = &reference {
            if !case.sampling.is_greedy() {
                expected_ids = Vec::new();
                skipped("sampled case: backends draw differently; compared only with recorded expectations")
            } else {
                let want = generate_one(reference, &request, stop)?;
                expected_ids = want.output_ids.clone();
                compare::against_reference(&as_run(want), &as_run(got.clone()), case.min_agreement, tolerance)
            }
        } else if opts.record {
            let expect = expect_from(&got, tokenizer);
            expected_ids = expect.output_ids.clone();
            recorded.push(Some(expect));
            Verdict {
                status: Status::Pass,
                divergence: None,
                agreement: 1.0,
                max_logit_diff: None,
                max_logprob_diff: None,
                message: String::new(),
            }
        } else if let Some(expect) = &case.expect {
            expected_ids = expect.output_ids.clone();
            let tol = suite::Tolerance {
                logit_abs: case.logit_tolerance.unwrap_or(tolerance.logit_abs),
                logprob_abs: case.logprob_tolerance.unwrap_or(tolerance.logprob_abs),
            };
            compare::against_expect(
                expect,
                &got.output_ids,
                &got.generation_logits,
                case.min_agreement,
                tol,
            )
        } else {
            expected_ids = Vec::new();
            skipped("no expectations: record them with `check --record`")
        };
        let text = |id: Option<u32>| {
            let (t, id) = (tokenizer?, id?);
            t.decode(&[id]).ok()
        };
        let (expected_text, got_text) = match &verdict.divergence {
            Some(d) => (text(d.expected), text(d.got)),
            None => (None, None),
        };
        results.push(CaseResult {
            name: case.name.clone(),
            verdict,
            expected_text,
            got_text,
            expected_ids,
            output_ids: got.output_ids,
            speed: None,
            seconds: t0.elapsed().as_secs_f64(),
        });
    }

    let mut measured_speed = None;
    if let Some(spec) = &suite.speed
        && !opts.skip_speed
        && !opts.against_reference
        && (!opts.record || opts.record_speed)
    {
        let t0 = Instant::now();
        let ids = input_ids(&spec.input, None, tokenizer)?;
        let m = measure_speed(tested, &ids, spec, stop)?;
        measured_speed = Some(m);
        let (status, message) = if opts.record_speed {
            (Status::Pass, "recorded the speed baselines".to_string())
        } else {
            compare::judge_speed(&m, spec)
        };
        results.push(CaseResult {
            name: "speed".into(),
            verdict: Verdict {
                status,
                divergence: None,
                agreement: 1.0,
                max_logit_diff: None,
                max_logprob_diff: None,
                message,
            },
            expected_text: None,
            got_text: None,
            expected_ids: Vec::new(),
            output_ids: Vec::new(),
            speed: Some(m),
            seconds: t0.elapsed().as_secs_f64(),
        });
    }

    if opts.record || opts.record_speed {
        let speed = if opts.record_speed {
            measured_speed.as_ref()
        } else {
            None
        };
        let cases = if opts.record {
            Some(recorded.as_slice())
        } else {
            None
        };
        record::update_file(&opts.suite, cases, speed)?;
    }

    let mut report = CheckReport {
        suite: suite.name.clone(),
        suite_file: opts.suite.display().to_string(),
        model: opts.model.clone(),
        backend: tested.name().to_string(),
        mode: if opts.against_reference {
            "reference".into()
        } else if opts.record || opts.record_speed {
            "record".into()
        } else {
            "golden".into()
        },
        reference_checkpoint: reference_dir.map(|d| d.display().to_string()),
        dtype: dtype.config_name().to_string(),
        tolerance,
        cases: results,
        passed: 0,
        failed: 0,
        skipped: 0,
        seconds: started.elapsed().as_secs_f64(),
    };
    report.count();
    Ok(report)
}

fn skipped(message: &str) -> Verdict {
    Verdict {
        status: Status::Skip,
        divergence: None,
        agreement: 0.0,
        max_logit_diff: None,
        max_logprob_diff: None,
        message: message.into(),
    }
}

fn as_run(g: Generated) -> Run {
    Run {
        output_ids: g.output_ids,
        context_logits: g.context_logits,
        generation_logits: g.generation_logits,
    }
}

/// The expectations a run establishes: its tokens, their text, and each token's
/// logit and log-prob (rounded to 1e-4). A run on TensorRT-LLM that ends with
/// the end token has no logits for it: its lists stop one short (comparisons
/// say so when they reach that step).
pub fn expect_from(g: &Generated, tokenizer: Option<&Tokenizer>) -> Expect {
    let round = |x: f32| ((x as f64) * 1e4).round() as f32 / 1e4;
    let mut logits = Vec::new();
    let mut logprobs = Vec::new();
    for (row, &t) in g.generation_logits.iter().zip(&g.output_ids) {
        if (t as usize) < row.len() {
            logits.push(round(row[t as usize]));
            logprobs.push(round(compare::log_prob(row, t)));
        }
    }
    let complete = logits.len() == g.output_ids.len()
        || (g.end_token_row_missing() && logits.len() + 1 == g.output_ids.len());
    Expect {
        output_ids: g.output_ids.clone(),
        text: tokenizer.and_then(|t| t.decode(&g.output_ids).ok()),
        logits: complete.then_some(logits),
        logprobs: complete.then_some(logprobs),
    }
}

fn input_ids(input: &CaseInput, add_bos: Option<bool>, tokenizer: Option<&Tokenizer>) -> Result<Vec<u32>> {
    match (input, tokenizer) {
        (CaseInput::Ids(ids), _) => Ok(ids.clone()),
        (CaseInput::Text(text), Some(t)) => Ok(t.encode(text, add_bos)?),
        (CaseInput::Text(_), None) => Err(Error::InvalidInput("text prompts need a tokenizer".into())),
    }
}

fn request_for(
    suite: &Suite,
    case: &Case,
    tokenizer: Option<&Tokenizer>,
    backend: &dyn GenerationBackend,
    context_logits: bool,
) -> Result<Request> {
    let input_ids = input_ids(&case.input, case.add_bos, tokenizer)
        .map_err(|e| Error::InvalidInput(format!("case `{}`: {e}", case.name)))?;
    let end_id = if case.ignore_eos {
        None
    } else {
        tokenizer.and_then(Tokenizer::eos_id).or(backend.eos_id())
    };
    Ok(Request {
        input_ids,
        max_new_tokens: suite.max_new_tokens(case),
        sampling: case.sampling.clone(),
        end_id,
        want_context_logits: context_logits,
        want_generation_logits: true,
        want_logprobs: false,
    })
}

fn generate_one(backend: &dyn GenerationBackend, request: &Request, stop: &AtomicBool) -> Result<Generated> {
    let mut out = backend.generate(std::slice::from_ref(request), &mut |_| Flow::Continue, stop)?;
    if stop.load(Ordering::Relaxed) {
        return Err(Error::Interrupted);
    }
    out.pop()
        .ok_or_else(|| Error::InvalidOutput(format!("the {} backend returned no result", backend.name())))
}

/// Runs the speed prompt `warmup + repeats` times (end token ignored, greedy) and
/// returns the medians of the repeats.
pub fn measure_speed(
    backend: &dyn GenerationBackend,
    input_ids: &[u32],
    spec: &SpeedSpec,
    stop: &AtomicBool,
) -> Result<SpeedMeasurement> {
    let request = Request {
        input_ids: input_ids.to_vec(),
        max_new_tokens: spec.max_new_tokens,
        sampling: Default::default(),
        end_id: None,
        want_context_logits: false,
        want_generation_logits: false,
        want_logprobs: false,
    };
    let mut samples = Vec::new();
    for i in 0..spec.warmup + spec.repeats {
        let t0 = Instant::now();
        let mut first = None;
        let out = backend.generate(
            std::slice::from_ref(&request),
            &mut |_| {
                first.get_or_insert_with(|| t0.elapsed());
                Flow::Continue
            },
            stop,
        )?;
        let total = t0.elapsed();
        if stop.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
        let n = out.first().map_or(0, |g| g.output_ids.len());
        let first = first.unwrap_or(total);
        let decode = (total - first).as_secs_f64();
        if i >= spec.warmup {
            samples.push(SpeedSample {
                first_token_ms: first.as_secs_f64() * 1e3,
                tokens_per_s: if n > 1 && decode > 0.0 {
                    (n - 1) as f64 / decode
                } else {
                    0.0
                },
            });
        }
    }
    Ok(compare::summarize(&samples))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generation::FinishReason;

    fn row(hot: usize) -> Vec<f32> {
        let mut r = vec![0.0; 4];
        r[hot] = 2.0;
        r
    }

    #[test]
    fn an_engine_run_ending_with_the_end_token_records_its_logits() {
        // TensorRT-LLM: tokens 1, 2 and the end token 0, logits for 1 and 2 only.
        let mut g = Generated {
            output_ids: vec![1, 2, 0],
            finish_reason: Some(FinishReason::EndId),
            generation_logits: vec![row(1), row(2)],
            ..Generated::default()
        };
        let e = expect_from(&g, None);
        assert_eq!(e.logits, Some(vec![2.0, 2.0]));
        assert_eq!(e.logprobs.as_ref().map(Vec::len), Some(2));
        // The reference: a row for the end token too.
        g.generation_logits.push(row(0));
        assert_eq!(expect_from(&g, None).logits, Some(vec![2.0, 2.0, 2.0]));
        // Rows missing otherwise: no logits are recorded rather than misaligned ones.
        g.generation_logits.truncate(1);
        assert_eq!(expect_from(&g, None).logits, None);
    }
}
