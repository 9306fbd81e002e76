//! The comparisons `check` makes, free of any backend so they can be tested with
//! made-up numbers: generated tokens and logits against recorded expectations,
//! against another backend's run, and measured speed against a baseline.

use serde::Serialize;

use super::suite::{Expect, SpeedSpec, Tolerance};

/// Where two token sequences first differ. `expected`/`got` are `None` past the
/// end of the shorter one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Divergence {
    pub position: usize,
    pub expected: Option<u32>,
    pub got: Option<u32>,
}

pub fn first_divergence(expected: &[u32], got: &[u32]) -> Option<Divergence> {
    let n = expected.len().max(got.len());
    (0..n)
        .find(|&i| expected.get(i) != got.get(i))
        .map(|i| Divergence {
            position: i,
            expected: expected.get(i).copied(),
            got: got.get(i).copied(),
        })
}

/// Positions holding the same token, over the longer sequence's length (1.0 for two empty ones).
pub fn agreement(expected: &[u32], got: &[u32]) -> f64 {
    let n = expected.len().max(got.len());
    if n == 0 {
        return 1.0;
    }
    let same = expected.iter().zip(got).filter(|(a, b)| a == b).count();
    same as f64 / n as f64
}

/// log-softmax of one entry, computed in f64.
pub fn log_prob(logits: &[f32], token: u32) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    (logits[token as usize] as f64 - max - sum.ln()) as f32
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

/// The verdict on one case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub status: Status,
    pub divergence: Option<Divergence>,
    pub agreement: f64,
    pub max_logit_diff: Option<f32>,
    pub max_logprob_diff: Option<f32>,
    /// Why it failed, or notes (e.g. a divergence excused as a near-tie).
    pub message: String,
}

fn max_opt(a: Option<f32>, b: f32) -> Option<f32> {
    Some(a.map_or(b, |a| a.max(b)))
}

/// The token verdict: exact unless `min_agreement` is set.
fn judge_tokens(
    expected: &[u32],
    got: &[u32],
    min_agreement: Option<f64>,
    problems: &mut Vec<String>,
) -> f64 {
    let rate = agreement(expected, got);
    match min_agreement {
        None => {
            if let Some(d) = first_divergence(expected, got) {
                problems.push(format!(
                    "output differs from position {} (expected {} tokens, got {})",
                    d.position,
                    expected.len(),
                    got.len()
                ));
            }
        }
        Some(min) if rate < min => problems.push(format!(
            "token agreement {:.1}% is below the minimum {:.1}%",
            rate * 100.0,
            min * 100.0
        )),
        Some(_) => {}
    }
    rate
}

/// Steps whose logits were wanted but not returned: a note when it is only the
/// run's final end token (TensorRT-LLM returns no logits for it), else a
/// problem. `wanted`: steps to compare; `rows`/`tokens`: the run's.
fn missing_rows(
    wanted: usize,
    rows: usize,
    tokens: usize,
    problems: &mut Vec<String>,
    notes: &mut Vec<String>,
) {
    let compared = wanted.min(rows);
    if compared == wanted {
        return;
    }
    if wanted - compared == 1 && rows + 1 == tokens {
        notes.push(format!(
            "step {compared} (the final end token) not compared: the backend returns no logits for it"
        ));
    } else {
        problems.push(format!(
            "the backend returned logits for {rows} steps; {wanted} were to be compared"
        ));
    }
}

/// Compares a run (its tokens and per-step generation logits) with recorded
/// expectations. Logits and log-probs are compared at the steps whose context
/// is still the same: up to and including the first divergence. A final end
/// token without logits (TensorRT-LLM's) is noted, not compared.
pub fn against_expect(
    expect: &Expect,
    got: &[u32],
    generation_logits: &[Vec<f32>],
    min_agreement: Option<f64>,
    tol: Tolerance,
) -> Verdict {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let divergence = first_divergence(&expect.output_ids, got);
    let rate = judge_tokens(&expect.output_ids, got, min_agreement, &mut problems);
    let window = divergence.as_ref().map_or(expect.output_ids.len(), |d| {
        (d.position + 1).min(expect.output_ids.len())
    });
    let expected_rows = expect
        .logits
        .as_ref()
        .map(Vec::len)
        .max(expect.logprobs.as_ref().map(Vec::len))
        .unwrap_or(0);
    missing_rows(
        window.min(expected_rows).min(got.len()),
        generation_logits.len(),
        got.len(),
        &mut problems,
        &mut notes,
    );
    let same_context = window.min(generation_logits.len());
    let mut max_logit = None;
    let mut max_logprob = None;
    for (step, row) in generation_logits.iter().enumerate().take(same_context) {
        let token = expect.output_ids[step];
        if token as usize >= row.len() {
            continue;
        }
        if let Some(want) = expect.logits.as_ref().and_then(|l| l.get(step)) {
            max_logit = max_opt(max_logit, (row[token as usize] - want).abs());
        }
        if let Some(want) = expect.logprobs.as_ref().and_then(|l| l.get(step)) {
            max_logprob = max_opt(max_logprob, (log_prob(row, token) - want).abs());
        }
    }
    if let Some(d) = max_logit
        && d > tol.logit_abs
    {
        problems.push(format!("logit differs by {d:.4} (tolerance {})", tol.logit_abs));
    }
    if let Some(d) = max_logprob
        && d > tol.logprob_abs
    {
        problems.push(format!(
            "log-prob differs by {d:.4} (tolerance {})",
            tol.logprob_abs
        ));
    }
    let failed = !problems.is_empty();
    problems.extend(notes);
    Verdict {
        status: if failed { Status::Fail } else { Status::Pass },
        divergence,
        agreement: rate,
        max_logit_diff: max_logit,
        max_logprob_diff: max_logprob,
        message: problems.join("; "),
    }
}

/// One backend's run of a case, with every logit.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub output_ids: Vec<u32>,
    pub context_logits: Vec<Vec<f32>>,
    pub generation_logits: Vec<Vec<f32>>,
}

/// Compares a run under test with the reference run of the same case: every
/// context logit, and the generation logits at the steps whose context is the
/// same (up to and including the first divergence). A greedy divergence where
/// the reference's logits for the two tokens are within `tol.logit_abs` is a
/// near-tie, not a regression.
pub fn against_reference(reference: &Run, test: &Run, min_agreement: Option<f64>, tol: Tolerance) -> Verdict {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let divergence = first_divergence(&reference.output_ids, &test.output_ids);
    let rate = agreement(&reference.output_ids, &test.output_ids);
    let mut max_logit: Option<f32> = None;
    let mut max_logprob: Option<f32> = None;
    let mut compare_rows = |a: &[f32], b: &[f32], token: Option<u32>| {
        if a.len() != b.len() {
            return false;
        }
        let d = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        max_logit = max_opt(max_logit, d);
        if let Some(t) = token
            && (t as usize) < a.len()
        {
            max_logprob = max_opt(max_logprob, (log_prob(a, t) - log_prob(b, t)).abs());
        }
        true
    };
    let mut shape_ok = reference.context_logits.len() == test.context_logits.len();
    for (a, b) in reference.context_logits.iter().zip(&test.context_logits) {
        shape_ok &= compare_rows(a, b, None);
    }
    let same_context = divergence
        .as_ref()
        .map_or(reference.output_ids.len(), |d| d.position + 1);
    missing_rows(
        same_context
            .min(reference.generation_logits.len())
            .min(test.output_ids.len()),
        test.generation_logits.len(),
        test.output_ids.len(),
        &mut problems,
        &mut notes,
    );
    for (step, (a, b)) in reference
        .generation_logits
        .iter()
        .zip(&test.generation_logits)
        .enumerate()
        .take(same_context)
    {
        shape_ok &= compare_rows(a, b, reference.output_ids.get(step).copied());
    }
    if !shape_ok {
        problems.push("the backends' logits have different shapes".to_string());
    }
    let mut tie = false;
    if let Some(d) = &divergence {
        if let (Some(want), Some(got), Some(row)) =
            (d.expected, d.got, reference.generation_logits.get(d.position))
            && (want as usize) < row.len()
            && (got as usize) < row.len()
        {
            let margin = row[want as usize] - row[got as usize];
            if margin <= tol.logit_abs {
                tie = true;
                notes.push(format!(
                    "diverged at {} on a near-tie (reference margin {margin:.4} <= {})",
                    d.position, tol.logit_abs
                ));
            }
        }
        if !tie {
            match min_agreement {
                None => problems.push(format!("greedy output differs from position {}", d.position)),
                Some(min) if rate < min => problems.push(format!(
                    "token agreement {:.1}% is below the minimum {:.1}%",
                    rate * 100.0,
                    min * 100.0
                )),
                Some(_) => {}
            }
        }
    }
    if let Some(d) = max_logit
        && d > tol.logit_abs
    {
        problems.push(format!(
            "logits differ by up to {d:.4} (tolerance {})",
            tol.logit_abs
        ));
    }
    if let Some(d) = max_logprob
        && d > tol.logprob_abs
    {
        problems.push(format!(
            "log-probs differ by up to {d:.4} (tolerance {})",
            tol.logprob_abs
        ));
    }
    let failed = !problems.is_empty();
    problems.extend(notes);
    Verdict {
        status: if failed { Status::Fail } else { Status::Pass },
        divergence,
        agreement: rate,
        max_logit_diff: max_logit,
        max_logprob_diff: max_logprob,
        message: problems.join("; "),
    }
}

/// Medians of the repeats of a speed run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SpeedMeasurement {
    pub tokens_per_s: f64,
    pub first_token_ms: f64,
    pub repeats: usize,
}

/// One repeat: time to the first token, and decode rate after it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeedSample {
    pub first_token_ms: f64,
    pub tokens_per_s: f64,
}

pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

pub fn summarize(samples: &[SpeedSample]) -> SpeedMeasurement {
    let mut tps: Vec<f64> = samples.iter().map(|s| s.tokens_per_s).collect();
    let mut ftl: Vec<f64> = samples.iter().map(|s| s.first_token_ms).collect();
    SpeedMeasurement {
        tokens_per_s: median(&mut tps),
        first_token_ms: median(&mut ftl),
        repeats: samples.len(),
    }
}

/// Compares a measurement with the suite's baselines: tokens/s may drop, and the
/// first-token latency grow, by at most `max_regression_pct` percent (the limit
/// itself passes). Without any baseline the check is skipped.
pub fn judge_speed(m: &SpeedMeasurement, spec: &SpeedSpec) -> (Status, String) {
    let pct = spec.max_regression_pct;
    let mut problems = Vec::new();
    let mut parts = vec![format!(
        "{:.1} tok/s, first token {:.1} ms (median of {})",
        m.tokens_per_s, m.first_token_ms, m.repeats
    )];
    if let Some(base) = spec.tokens_per_s {
        let floor = base - base * pct / 100.0;
        parts.push(format!("baseline {base:.1} tok/s, floor {floor:.1}"));
        if m.tokens_per_s < floor {
            problems.push(format!(
                "{:.1} tok/s is {:.1}% below the baseline {base:.1} (allowed {pct}%)",
                m.tokens_per_s,
                (1.0 - m.tokens_per_s / base) * 100.0
            ));
        }
    }
    if let Some(base) = spec.first_token_ms {
        let ceiling = base + base * pct / 100.0;
        parts.push(format!("baseline {base:.1} ms, ceiling {ceiling:.1}"));
        if m.first_token_ms > ceiling {
            problems.push(format!(
                "first token {:.1} ms is {:.1}% above the baseline {base:.1} ms (allowed {pct}%)",
                m.first_token_ms,
                (m.first_token_ms / base - 1.0) * 100.0
            ));
        }
    }
    if spec.tokens_per_s.is_none() && spec.first_token_ms.is_none() {
        parts.push("no baseline (record one with --record-speed)".into());
        return (Status::Skip, parts.join("; "));
    }
    if problems.is_empty() {
        (Status::Pass, parts.join("; "))
    } else {
        (Status::Fail, problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::super::suite::CaseInput;
    use super::*;

    const TOL: Tolerance = Tolerance {
        logit_abs: 0.5,
        logprob_abs: 0.25,
    };

    fn onehot(v: usize, hot: usize, value: f32) -> Vec<f32> {
        let mut r = vec![0.0; v];
        r[hot] = value;
        r
    }

    #[test]
    fn divergence_and_agreement() {
        assert_eq!(first_divergence(&[1, 2, 3], &[1, 2, 3]), None);
        let d = first_divergence(&[1, 2, 3], &[1, 5, 3]).unwrap();
        assert_eq!((d.position, d.expected, d.got), (1, Some(2), Some(5)));
        let d = first_divergence(&[1, 2, 3], &[1, 2]).unwrap();
        assert_eq!((d.position, d.expected, d.got), (2, Some(3), None));
        assert_eq!(agreement(&[1, 2, 3, 4], &[1, 9, 3, 4]), 0.75);
        assert_eq!(agreement(&[1, 2, 3, 4], &[1, 2]), 0.5);
        assert_eq!(agreement(&[], &[]), 1.0);
    }

    #[test]
    fn expectations_exact_agreement_and_logit_edges() {
        let rows: Vec<Vec<f32>> = vec![
            onehot(4, 1, 5.0),
            onehot(4, 2, 5.0),
            onehot(4, 3, 5.0),
            onehot(4, 0, 5.0),
        ];
        let mut e = Expect {
            output_ids: vec![1, 2, 3, 0],
            logits: Some(vec![5.0, 5.0, 5.5, 5.0]),
            ..Default::default()
        };
        // exactly at the tolerance: passes
        let v = against_expect(&e, &[1, 2, 3, 0], &rows, None, TOL);
        assert_eq!(v.status, Status::Pass, "{}", v.message);
        assert_eq!(v.max_logit_diff, Some(0.5));
        // just past it: fails
        e.logits = Some(vec![5.0, 5.0, 5.5001, 5.0]);
        let v = against_expect(&e, &[1, 2, 3, 0], &rows, None, TOL);
        assert_eq!(v.status, Status::Fail);
        e.logits = None;
        // one token off: exact fails at that position, 75% agreement passes
        let v = against_expect(&e, &[1, 2, 2, 0], &rows, None, TOL);
        assert_eq!(v.status, Status::Fail);
        assert_eq!(v.divergence.unwrap().position, 2);
        assert_eq!(
            against_expect(&e, &[1, 2, 2, 0], &rows, Some(0.75), TOL).status,
            Status::Pass
        );
        assert_eq!(
            against_expect(&e, &[1, 2, 2, 0], &rows, Some(0.76), TOL).status,
            Status::Fail
        );
        // log-probs
        e.logprobs = Some(vec![
            log_prob(&rows[0], 1) + 0.25,
            log_prob(&rows[1], 2),
            -1.0,
            -1.0,
        ]);
        let v = against_expect(&e, &[1, 2, 9, 9], &rows, Some(0.0), TOL);
        // compared through the divergence at 2: step 2's log-prob of 3 is far from -1.0
        assert_eq!(v.status, Status::Fail, "{v:?}");
        let v = against_expect(&e, &[1, 9, 9, 9], &rows, Some(0.0), TOL);
        assert!(
            v.status == Status::Pass && v.max_logprob_diff.unwrap() <= 0.25 + 1e-6,
            "{v:?}"
        );
    }

    #[test]
    fn reference_comparison_ties_and_tolerances() {
        let r = Run {
            output_ids: vec![1, 2],
            context_logits: vec![vec![0.0, 1.0, 2.0]],
            generation_logits: vec![vec![0.0, 3.0, 2.8], vec![0.0, 0.0, 4.0]],
        };
        assert_eq!(against_reference(&r, &r, None, TOL).status, Status::Pass);
        // a divergence on a near-tie (margin 0.2 <= 0.5) passes, with a note
        let mut t = r.clone();
        t.output_ids = vec![2, 2];
        let v = against_reference(&r, &t, None, TOL);
        assert_eq!(v.status, Status::Pass, "{}", v.message);
        assert!(v.message.contains("near-tie"));
        // ... not with a tight tolerance
        let tight = Tolerance {
            logit_abs: 0.1,
            logprob_abs: 0.1,
        };
        assert_eq!(against_reference(&r, &t, None, tight).status, Status::Fail);
        // a logit difference at the tolerance passes, beyond it fails
        let mut t = r.clone();
        t.context_logits[0][2] = 2.5;
        assert_eq!(against_reference(&r, &t, None, TOL).status, Status::Pass);
        t.context_logits[0][2] = 2.51;
        let v = against_reference(&r, &t, None, TOL);
        assert_eq!(v.status, Status::Fail);
        assert!((v.max_logit_diff.unwrap() - 0.51).abs() < 1e-5);
    }

    #[test]
    fn a_final_end_token_without_logits_is_noted_not_dropped() {
        // Recorded on the reference: a logit for every token, the end token (0) included.
        let rows = vec![onehot(4, 1, 5.0), onehot(4, 2, 5.0), onehot(4, 0, 5.0)];
        let e = Expect {
            output_ids: vec![1, 2, 0],
            logits: Some(vec![5.0, 5.0, 5.0]),
            ..Default::default()
        };
        // TensorRT-LLM: the same tokens, no row for the final end token.
        let v = against_expect(&e, &[1, 2, 0], &rows[..2], None, TOL);
        assert_eq!(v.status, Status::Pass, "{}", v.message);
        assert!(
            v.message.contains("step 2 (the final end token) not compared"),
            "{}",
            v.message
        );
        // Rows missing for anything else fail.
        let v = against_expect(&e, &[1, 2, 0], &rows[..1], None, TOL);
        assert_eq!(v.status, Status::Fail);
        assert!(v.message.contains("logits for 1 steps; 3"), "{}", v.message);
        // Against the reference run, likewise.
        let reference = Run {
            output_ids: vec![1, 2, 0],
            context_logits: vec![],
            generation_logits: rows.clone(),
        };
        let engine = Run {
            generation_logits: rows[..2].to_vec(),
            ..reference.clone()
        };
        let v = against_reference(&reference, &engine, None, TOL);
        assert_eq!(v.status, Status::Pass, "{}", v.message);
        assert!(v.message.contains("final end token"), "{}", v.message);
        let short = Run {
            generation_logits: rows[..1].to_vec(),
            ..reference.clone()
        };
        assert_eq!(
            against_reference(&reference, &short, None, TOL).status,
            Status::Fail
        );
    }

    #[test]
    fn speed_verdicts() {
        let spec = SpeedSpec {
            input: CaseInput::Ids(vec![1]),
            max_new_tokens: 8,
            warmup: 1,
            repeats: 3,
            max_regression_pct: 10.0,
            tokens_per_s: Some(100.0),
            first_token_ms: Some(20.0),
        };
        let m = summarize(&[
            SpeedSample {
                first_token_ms: 22.0,
                tokens_per_s: 90.0,
            },
            SpeedSample {
                first_token_ms: 500.0,
                tokens_per_s: 1.0,
            },
            SpeedSample {
                first_token_ms: 10.0,
                tokens_per_s: 120.0,
            },
        ]);
        // the medians ignore the outlier; 90 tok/s and 22 ms sit exactly at the limits
        assert_eq!((m.tokens_per_s, m.first_token_ms), (90.0, 22.0));
        assert_eq!(judge_speed(&m, &spec).0, Status::Pass);
        let slow = SpeedMeasurement {
            tokens_per_s: 89.9,
            ..m
        };
        let (s, msg) = judge_speed(&slow, &spec);
        assert_eq!(s, Status::Fail);
        assert!(msg.contains("below the baseline"), "{msg}");
        let late = SpeedMeasurement {
            first_token_ms: 22.1,
            ..m
        };
        assert_eq!(judge_speed(&late, &spec).0, Status::Fail);
        let none = SpeedSpec {
            tokens_per_s: None,
            first_token_ms: None,
            ..spec
        };
        assert_eq!(judge_speed(&m, &none).0, Status::Skip);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
