//! Next-token selection from logits: greedy, or seeded sampling with repetition penalty,
//! temperature, top-k and top-p, applied in that order (as Hugging Face transformers'
//! `generate` and TensorRT-LLM's sampling layers both do).
//!
//! The distribution is TensorRT-LLM's, so that an engine and this runtime sample the same
//! one (`cpp/README.md` compares the two option by option). Where transformers differs, it
//! is in top-p: transformers keeps the smallest set of tokens whose mass reaches `top_p` and
//! renormalises over it, so the last token of the set keeps its whole probability;
//! TensorRT-LLM (its top-p and top-k sampling kernels) draws a point in the first `top_p` of
//! the sorted probability mass and takes the token covering it, so that token keeps only the
//! part of its probability below `top_p`. Top-k keeps every token tied with the k-th
//! (transformers); TensorRT-LLM keeps exactly k, which only differs on exact ties.
//!
//! Randomness comes from ChaCha8 (`rand_chacha`), seeded with `SeedableRng::seed_from_u64`:
//! both the stream and the seeding are specified bit for bit and portable, so a seed gives
//! the same draws on every run and platform. (A hand-written generator would be no simpler
//! once seeding and quality are accounted for, and the crate is already in the dependency
//! tree through `tokenizers`.) The arithmetic around the draws is done in a fixed order;
//! only `exp` comes from the platform's libm, which may differ in the last bit.

use std::cmp::Ordering;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::generation::SamplingParams;

/// Chooses tokens for one sequence. Holds the RNG and buffers reused across steps, so a
/// step allocates nothing once the buffers have grown to the vocabulary size.
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    /// Logits after penalty and temperature.
    scores: Vec<f32>,
    /// Whether `scores` were divided by the temperature (the greedy path does not).
    scaled: bool,
    /// Candidate token ids, ordered best first once filtered.
    cand: Vec<u32>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(params.seed);
        Sampler {
            params,
            rng,
            scores: Vec::new(),
            scaled: false,
            cand: Vec::new(),
        }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the next token from raw logits (length = vocab). `history` = all token ids so
    /// far. Ids in `history` outside the logits are ignored. NaN logits count as -inf.
    /// Returns 0 for empty logits.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        self.scaled = false;
        if logits.is_empty() {
            return 0;
        }
        self.scores.clear();
        self.scores.extend_from_slice(logits);
        let penalty = self.params.repetition_penalty;
        if penalty != 1.0 {
            for &id in history {
                let i = id as usize;
                // Each distinct id is penalised once (HF gathers and scatters). A score
                // still equal to the raw logit has not been penalised yet; if penalising
                // left it unchanged, doing it again leaves it unchanged too. This avoids
                // a vocab-sized "seen" set.
                if let (Some(s), Some(&raw)) = (self.scores.get_mut(i), logits.get(i))
                    && s.to_bits() == raw.to_bits()
                {
                    *s = if raw > 0.0 { raw / penalty } else { raw * penalty };
                }
            }
        }
        if self.params.is_greedy() {
            return argmax(&self.scores);
        }
        let t = self.params.temperature;
        if t != 1.0 {
            for s in &mut self.scores {
                *s /= t;
            }
        }
        self.scaled = true;
        for s in &mut self.scores {
            if s.is_nan() {
                *s = f32::NEG_INFINITY;
            }
        }
        let n = self.scores.len();
        let top_k = self.params.top_k;
        let top_p = self.params.top_p;
        let filtered = (top_k > 0 && top_k < n) || top_p < 1.0;
        if !filtered {
            return self.draw_from_all();
        }

        self.cand.clear();
        self.cand.extend(0..n as u32);
        let scores = &self.scores;
        let by_score = |a: &u32, b: &u32| cmp_desc(scores, *a, *b);
        // Candidates in `cand[..sorted]` are the best ones, in order.
        let mut sorted = 0;
        if top_k > 0 && top_k < n {
            self.cand.select_nth_unstable_by(top_k - 1, by_score);
            // HF keeps every token whose score ties the k-th one.
            let kth = scores[self.cand[top_k - 1] as usize];
            let mut keep = top_k;
            for j in top_k..n {
                if scores[self.cand[j] as usize] >= kth {
                    self.cand.swap(keep, j);
                    keep += 1;
                }
            }
            self.cand.truncate(keep);
            self.cand.sort_unstable_by(by_score);
            sorted = keep;
        }
        // The mass to draw within, walking `cand` in order (None: all of it).
        let mut within = None;
        if top_p < 1.0 {
            let max = max_score(scores, &self.cand);
            let total: f64 = self.cand.iter().map(|&i| weight(scores[i as usize], max)).sum();
            if total > 0.0 {
                let target = f64::from(top_p) * total;
                // Sort only as much of the candidates as the nucleus needs: take the best
                // 256, then 8x more each round, until the mass reaches top_p.
                let mut acc = 0.0;
                let mut j = 0;
                let mut chunk = 256;
                let len = self.cand.len();
                loop {
                    if j == sorted {
                        let end = (sorted + chunk).min(len);
                        let rest = &mut self.cand[sorted..];
                        if end < len {
                            rest.select_nth_unstable_by(end - sorted - 1, by_score);
                        }
                        rest[..end - sorted].sort_unstable_by(by_score);
                        sorted = end;
                        chunk *= 8;
                    }
                    // Tokens are kept while the mass before them is below top_p: the
                    // smallest set with mass >= top_p, which holds every token the draw
                    // below can reach.
                    acc += weight(scores[self.cand[j] as usize], max);
                    j += 1;
                    if acc >= target || j == len {
                        break;
                    }
                }
                self.cand.truncate(j);
                within = Some(target);
            }
        }
        self.draw_from_candidates(within)
    }

    /// Log-probability of `token` under the distribution the last [`sample`](Self::sample)
    /// call drew from: the softmax of the logits after the repetition penalty and the
    /// temperature (1 when decoding greedily with temperature 0), over the whole
    /// vocabulary, before the top-k and top-p cuts. That is what TensorRT-LLM returns as
    /// `logProbs` when its executor's `normalizeLogProbs` is off, as the engine backend
    /// sets it (see `cpp/README.md`).
    pub fn log_prob(&self, token: u32) -> f32 {
        let Some(&score) = self.scores.get(token as usize) else {
            return f32::NEG_INFINITY;
        };
        let t = if self.scaled || self.params.temperature <= 0.0 {
            1.0
        } else {
            f64::from(self.params.temperature)
        };
        let live = || self.scores.iter().copied().filter(|s| !s.is_nan());
        let max = live().fold(f32::NEG_INFINITY, f32::max);
        if score.is_nan() || score == f32::NEG_INFINITY || !max.is_finite() {
            return f32::NEG_INFINITY;
        }
        let sum: f64 = live()
            .filter(|&s| s != f32::NEG_INFINITY)
            .map(|s| (f64::from(s - max) / t).exp())
            .sum();
        (f64::from(score - max) / t - sum.ln()) as f32
    }

    /// Uniform in [0, 1), from the top 53 bits of one u64.
    fn uniform(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Softmax sampling over the whole vocabulary, walking ids in order.
    fn draw_from_all(&mut self) -> u32 {
        let max = self.scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let total: f64 = self.scores.iter().map(|&s| weight(s, max)).sum();
        if !(total > 0.0 && total.is_finite()) {
            return argmax(&self.scores);
        }
        let u = self.uniform() * total;
        let mut acc = 0.0;
        let mut last = None;
        for (i, &s) in self.scores.iter().enumerate() {
            let w = weight(s, max);
            if w > 0.0 {
                acc += w;
                last = Some(i as u32);
                if u < acc {
                    return i as u32;
                }
            }
        }
        // Rounding left u at the very top: the last token with any mass.
        last.unwrap_or(0)
    }

    /// Softmax sampling over `cand`, walking it in its (deterministic) order: a point is
    /// drawn in the first `within` of the candidates' mass (all of it when `None`), and the
    /// candidate covering it is taken.
    fn draw_from_candidates(&mut self, within: Option<f64>) -> u32 {
        let scores = &self.scores;
        let max = max_score(scores, &self.cand);
        let total: f64 = self.cand.iter().map(|&i| weight(scores[i as usize], max)).sum();
        if !(total > 0.0 && total.is_finite()) {
            return argmax(&self.scores);
        }
        let u = self.uniform() * within.map_or(total, |w| w.min(total));
        let scores = &self.scores;
        let mut acc = 0.0;
        let mut last = None;
        for &i in &self.cand {
            let w = weight(scores[i as usize], max);
            if w > 0.0 {
                acc += w;
                last = Some(i);
                if u < acc {
                    return i;
                }
            }
        }
        last.unwrap_or(0)
    }
}

/// Unnormalised softmax weight of a score relative to the maximum.
fn weight(score: f32, max: f32) -> f64 {
    if score == f32::NEG_INFINITY {
        0.0
    } else {
        f64::from(score - max).exp()
    }
}

fn max_score(scores: &[f32], ids: &[u32]) -> f32 {
    ids.iter()
        .map(|&i| scores[i as usize])
        .fold(f32::NEG_INFINITY, f32::max)
}

/// Best first; ties by lowest id, so the order is total and independent of the
/// selection algorithm. NaN is ranked last.
fn cmp_desc(scores: &[f32], a: u32, b: u32) -> Ordering {
    let (sa, sb) = (scores[a as usize], scores[b as usize]);
    match sb.partial_cmp(&sa) {
        Some(Ordering::Equal) | None if sa.is_nan() == sb.is_nan() => a.cmp(&b),
        Some(o) => o,
        None if sa.is_nan() => Ordering::Greater,
        None => Ordering::Less,
    }
}

/// Index of the largest score; ties go to the lowest id (like torch.argmax); NaN ignored.
fn argmax(scores: &[f32]) -> u32 {
    let mut best: Option<(usize, f32)> = None;
    for (i, &s) in scores.iter().enumerate() {
        if s.is_nan() {
            continue;
        }
        match best {
            Some((_, b)) if s <= b => {}
            _ => best = Some((i, s)),
        }
    }
    best.map_or(0, |(i, _)| i as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_k: usize, top_p: f32, seed: u64) -> SamplingParams {
        SamplingParams {
            temperature,
            top_k,
            top_p,
            repetition_penalty: 1.0,
            seed,
        }
    }

    const PROBS: [f64; 4] = [0.5, 0.3, 0.15, 0.05];

    fn logits() -> Vec<f32> {
        PROBS.iter().map(|p| p.ln() as f32).collect()
    }

    /// Draws n tokens and checks each frequency is within 5 standard errors of `expected`.
    fn check_frequencies(p: SamplingParams, expected: &[f64]) {
        const N: usize = 20000;
        let logits = logits();
        let mut sampler = Sampler::new(p.clone());
        let mut counts = vec![0usize; logits.len()];
        for _ in 0..N {
            counts[sampler.sample(&logits, &[]) as usize] += 1;
        }
        for (i, (&c, &e)) in counts.iter().zip(expected).enumerate() {
            let f = c as f64 / N as f64;
            let se = (e * (1.0 - e) / N as f64).sqrt().max(1e-9);
            assert!(
                (f - e).abs() <= 5.0 * se,
                "{p:?}: token {i}: frequency {f}, expected {e} (se {se})"
            );
        }
    }

    #[test]
    fn greedy_is_argmax_lowest_id_on_ties() {
        let mut s = Sampler::new(SamplingParams::default());
        assert!(SamplingParams::default().is_greedy());
        assert_eq!(s.sample(&[0.1, 2.0, -1.0, 1.5], &[]), 1);
        assert_eq!(s.sample(&[0.1, 2.0, 2.0, 1.5], &[]), 1);
        assert_eq!(s.sample(&[f32::NAN, -3.0, -2.0], &[]), 2);
        assert_eq!(s.sample(&[f32::NEG_INFINITY; 3], &[]), 0);
        assert_eq!(s.sample(&[], &[]), 0);
        // top_k = 1 is greedy too, whatever the temperature.
        let mut s = Sampler::new(params(1.0, 1, 1.0, 7));
        for _ in 0..100 {
            assert_eq!(s.sample(&logits(), &[]), 0);
        }
    }

    #[test]
    fn same_seed_same_sequence_different_seed_different() {
        let logits: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 1000) as f32 / 200.0).collect();
        let run = |seed, top_k, top_p| {
            let mut s = Sampler::new(params(1.0, top_k, top_p, seed));
            (0..200).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        for (k, p) in [(0, 1.0), (50, 1.0), (0, 0.9), (50, 0.9)] {
            assert_eq!(run(1, k, p), run(1, k, p));
            assert_ne!(run(1, k, p), run(2, k, p));
        }
    }

    #[test]
    fn seeded_stream_is_pinned() {
        // Guards portability: ChaCha8 seeded with seed_from_u64(0) and the 53-bit uniform.
        let mut s = Sampler::new(params(1.0, 0, 1.0, 0));
        let draws: Vec<u32> = (0..12).map(|_| s.sample(&logits(), &[])).collect();
        let mut again = Sampler::new(params(1.0, 0, 1.0, 0));
        let expected: Vec<u32> = (0..12)
            .map(|_| {
                let u = again.uniform();
                let mut acc = 0.0;
                PROBS
                    .iter()
                    .position(|p| {
                        acc += p;
                        u < acc
                    })
                    .unwrap_or(3) as u32
            })
            .collect();
        assert_eq!(draws, expected);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert_eq!(rng.next_u64(), 0xb585f767a79a3b6c);
    }

    #[test]
    fn temperature_one_matches_probabilities() {
        check_frequencies(params(1.0, 0, 1.0, 11), &PROBS);
    }

    #[test]
    fn temperature_half_squares_probabilities() {
        let sq: Vec<f64> = PROBS.iter().map(|p| p * p).collect();
        let z: f64 = sq.iter().sum();
        let expected: Vec<f64> = sq.iter().map(|p| p / z).collect();
        check_frequencies(params(0.5, 0, 1.0, 12), &expected);
    }

    #[test]
    fn top_k_renormalises_over_the_top_k() {
        check_frequencies(params(1.0, 2, 1.0, 13), &[0.5 / 0.8, 0.3 / 0.8, 0.0, 0.0]);
        check_frequencies(
            params(1.0, 3, 1.0, 14),
            &[0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.0],
        );
        // k at or above the vocabulary size is no filter.
        check_frequencies(params(1.0, 10, 1.0, 15), &PROBS);
    }

    #[test]
    fn top_k_keeps_ties_with_the_kth() {
        let logits = [1.0, 0.5, 0.5, 0.0];
        let mut s = Sampler::new(params(1.0, 2, 1.0, 3));
        let mut seen = [false; 4];
        for _ in 0..2000 {
            seen[s.sample(&logits, &[]) as usize] = true;
        }
        assert_eq!(seen, [true, true, true, false]);
    }

    #[test]
    fn top_p_draws_within_the_first_p_of_the_mass() {
        // TensorRT-LLM's rule: a point in (0, p] of the sorted mass picks the token covering
        // it. 0.5 then 0.3: with p = 0.7, token 0 covers 0.5 of it and token 1 the last 0.2.
        check_frequencies(params(1.0, 0, 0.7, 16), &[0.5 / 0.7, 0.2 / 0.7, 0.0, 0.0]);
        check_frequencies(params(1.0, 0, 0.45, 17), &[1.0, 0.0, 0.0, 0.0]);
        check_frequencies(
            params(1.0, 0, 0.81, 18),
            &[0.5 / 0.81, 0.3 / 0.81, 0.01 / 0.81, 0.0],
        );
        // top-k first, then top-p over the renormalised top-k (0.625, 0.375): p = 0.7 gives
        // token 0 its 0.625 and token 1 the remaining 0.075.
        check_frequencies(params(1.0, 2, 0.7, 19), &[0.625 / 0.7, 0.075 / 0.7, 0.0, 0.0]);
        check_frequencies(params(1.0, 2, 0.6, 20), &[1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn log_prob_is_the_full_softmax_after_penalty_and_temperature() {
        let ln = |p: f64| p.ln() as f32;
        let close = |a: f32, b: f32| assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        // Sampled at temperature 1 with a top-p cut: still the whole vocabulary's softmax.
        let mut s = Sampler::new(params(1.0, 0, 0.6, 3));
        let t = s.sample(&logits(), &[]);
        close(s.log_prob(t), ln(PROBS[t as usize]));
        close(s.log_prob(3), ln(0.05));
        // Temperature 0.5 squares the probabilities before normalising.
        let mut s = Sampler::new(params(0.5, 2, 1.0, 4));
        let t = s.sample(&logits(), &[]);
        let z: f64 = PROBS.iter().map(|p| p * p).sum();
        close(s.log_prob(t), ln(PROBS[t as usize].powi(2) / z));
        // Greedy: temperature 0 reads as 1; greedy by top_k = 1 keeps its temperature.
        let mut s = Sampler::new(SamplingParams::default());
        assert_eq!(s.sample(&logits(), &[]), 0);
        close(s.log_prob(0), ln(0.5));
        let mut s = Sampler::new(params(0.5, 1, 1.0, 5));
        assert_eq!(s.sample(&logits(), &[]), 0);
        close(s.log_prob(0), ln(0.25 / z));
        // The repetition penalty is part of the distribution: 2.0/2 = 1.0 vs 1.0.
        let mut s = Sampler::new(SamplingParams {
            repetition_penalty: 2.0,
            ..Default::default()
        });
        s.sample(&[2.0, 1.0], &[0]);
        close(s.log_prob(0), ln(0.5));
        assert_eq!(s.log_prob(7), f32::NEG_INFINITY);
    }

    #[test]
    fn top_p_over_a_large_vocabulary() {
        // Probabilities 2^-1, 2^-2, ...: the nucleus for 0.999 is the first 10 tokens, found
        // without sorting the whole vocabulary; the rest of the vocab has tiny mass.
        let n = 100_000;
        let mut logits = vec![-80.0f32; n];
        let ids: Vec<usize> = (0..12).map(|j| (j * 7_919 + 1_000) % n).collect();
        for (j, &id) in ids.iter().enumerate() {
            logits[id] = -((j + 1) as f32) * std::f32::consts::LN_2;
        }
        let mut s = Sampler::new(params(1.0, 0, 0.999, 21));
        for _ in 0..300 {
            let t = s.sample(&logits, &[]) as usize;
            let rank = ids.iter().position(|&i| i == t);
            assert!(
                matches!(rank, Some(r) if r < 10),
                "sampled {t} outside the nucleus"
            );
        }
    }

    #[test]
    fn top_p_nucleus_larger_than_the_first_chunk() {
        // Uniform over 5000 tokens: the nucleus for 0.5 is 2500 tokens, ties by lowest id.
        let logits = vec![0.0f32; 5000];
        let mut s = Sampler::new(params(1.0, 0, 0.5, 22));
        let draws: Vec<u32> = (0..2000).map(|_| s.sample(&logits, &[])).collect();
        assert!(draws.iter().all(|&t| t < 2500));
        assert!(draws.iter().any(|&t| t >= 2048) && draws.iter().any(|&t| t < 256));
    }

    #[test]
    fn repetition_penalty_changes_the_argmax() {
        let logits = [2.0, 1.5, -1.0, -1.2];
        let mut s = Sampler::new(SamplingParams {
            repetition_penalty: 1.5,
            ..Default::default()
        });
        // 2.0 / 1.5 = 1.33 < 1.5: token 1 wins; repeating an id in history penalises it once.
        assert_eq!(s.sample(&logits, &[0]), 1);
        assert_eq!(s.sample(&logits, &[0, 0, 0]), 1);
        // Both penalised: 1.33 vs 1.0.
        assert_eq!(s.sample(&logits, &[1, 0, 1]), 0);
        // Negative logits are multiplied: -1.0 * 1.5 = -1.5 < -1.2.
        assert_eq!(s.sample(&[-1.0, -1.2], &[0]), 1);
        assert_eq!(s.sample(&[-1.0, -1.2], &[0, 0]), 1);
        // A penalty below 1 rewards repetition; out-of-range ids are ignored.
        let mut s = Sampler::new(SamplingParams {
            repetition_penalty: 0.5,
            ..Default::default()
        });
        assert_eq!(s.sample(&logits, &[1, 99]), 1);
        // The caller's logits are left alone.
        assert_eq!(logits, [2.0, 1.5, -1.0, -1.2]);
    }
}
