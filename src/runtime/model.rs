//! The Nemotron forward pass over a TensorRT-LLM checkpoint of any tp/pp,
//! combining shards as TensorRT-LLM does: column-parallel outputs (qkv, fc,
//! lm_head) stay per rank, row-parallel outputs (dense, proj) are summed over
//! ranks (the all-reduce) before the residual add; padded vocab rows are dropped.

use std::path::Path;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::hf::config::NemotronConfig;
use crate::runtime::checkpoint::{Checkpoint, TensorLoc};
use crate::runtime::kernels::{MatRef, decode_row, dot, layer_norm, matmul};
use crate::trtllm::mapping::Parallelism;

/// A matrix of one rank file.
#[derive(Debug, Clone)]
struct Mat {
    loc: TensorLoc,
    rows: usize,
    cols: usize,
}

/// One tp rank's slices of a layer.
struct LayerShard {
    qkv: Mat,
    dense: Mat,
    fc: Mat,
    proj: Mat,
}

struct Layer {
    ln1: (Vec<f32>, Vec<f32>),
    ln2: (Vec<f32>, Vec<f32>),
    shards: Vec<LayerShard>,
}

pub struct Model {
    pub checkpoint: Checkpoint,
    pub config: NemotronConfig,
    pub par: Parallelism,
    embedding: Mat,
    layers: Vec<Layer>,
    ln_f: (Vec<f32>, Vec<f32>),
    lm_head: Vec<Mat>,
    /// Query and kv heads held by each tp rank (kv heads duplicated when tp > kv).
    q_heads: usize,
    kv_heads: usize,
    inv_freq: Vec<f64>,
}

/// The keys and values one sequence has seen, per layer and tp rank.
pub struct KvCache {
    /// `[layer * tp + rank]` -> `[position][kv_head][head_dim]`.
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    len: usize,
}

impl KvCache {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held, for memory reports.
    pub fn bytes(&self) -> usize {
        self.keys
            .iter()
            .chain(&self.values)
            .map(|v| v.capacity() * 4)
            .sum()
    }
}

/// One token to run: `seq` indexes the caches, `pos` must equal that cache's length.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub seq: usize,
    pub token: u32,
    pub pos: usize,
}

impl Model {
    pub fn open(dir: &Path) -> Result<Self> {
        let checkpoint = Checkpoint::open(dir)?;
        let config = checkpoint.config.model_config();
        let par = checkpoint.config.parallelism();
        let (h, tp) = (config.hidden_size, par.tp);
        let mat = |rank: usize, name: &str| -> Result<Mat> {
            let loc = checkpoint.loc(rank, name)?.clone();
            let (rows, cols) = match loc.shape.as_slice() {
                [r, c] => (*r, *c),
                other => {
                    return Err(Error::Tensor {
                        path: checkpoint.dir.join(format!("rank{rank}.safetensors")),
                        tensor: name.into(),
                        problem: format!("has shape {other:?}; expected a matrix"),
                    });
                }
            };
            Ok(Mat { loc, rows, cols })
        };
        let vector = |rank: usize, name: &str| -> Result<Vec<f32>> {
            let loc = checkpoint.loc(rank, name)?;
            let mut out = vec![0f32; h];
            decode_row(checkpoint.data(loc), checkpoint.dtype, &mut out);
            Ok(out)
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for pp_rank in 0..par.pp {
            for (local, _global) in par.layers(config.num_hidden_layers, pp_rank).enumerate() {
                let name = |s: &str| format!("transformer.layers.{local}.{s}");
                // Norms are replicated: read them from the stage's first tp rank.
                let r0 = par.rank(pp_rank, 0);
                let shards = (0..tp)
                    .map(|t| {
                        let r = par.rank(pp_rank, t);
                        Ok(LayerShard {
                            qkv: mat(r, &name("attention.qkv.weight"))?,
                            dense: mat(r, &name("attention.dense.weight"))?,
                            fc: mat(r, &name("mlp.fc.weight"))?,
                            proj: mat(r, &name("mlp.proj.weight"))?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                layers.push(Layer {
                    ln1: (
                        vector(r0, &name("input_layernorm.weight"))?,
                        vector(r0, &name("input_layernorm.bias"))?,
                    ),
                    ln2: (
                        vector(r0, &name("post_layernorm.weight"))?,
                        vector(r0, &name("post_layernorm.bias"))?,
                    ),
                    shards,
                });
            }
        }
        let last = par.rank(par.pp - 1, 0);
        let ln_f = (
            vector(last, "transformer.ln_f.weight")?,
            vector(last, "transformer.ln_f.bias")?,
        );
        let lm_head = (0..tp)
            .map(|t| mat(par.rank(par.pp - 1, t), "lm_head.weight"))
            .collect::<Result<Vec<_>>>()?;
        let embedding = mat(0, "transformer.vocab_embedding.weight")?;
        let kv_heads = if config.num_key_value_heads.is_multiple_of(tp) {
            config.num_key_value_heads / tp
        } else {
            1
        };
        let rd = config.rotary_dim();
        let inv_freq = (0..rd / 2)
            .map(|j| 1.0 / config.rope_theta.powf(2.0 * j as f64 / rd as f64))
            .collect();
        Ok(Model {
            q_heads: config.num_attention_heads / tp,
            kv_heads,
            checkpoint,
            config,
            par,
            embedding,
            layers,
            ln_f,
            lm_head,
            inv_freq,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn view(&self, m: &Mat) -> MatRef<'_> {
        MatRef {
            dtype: self.checkpoint.dtype,
            rows: m.rows,
            cols: m.cols,
            data: self.checkpoint.data(&m.loc),
        }
    }

    pub fn new_cache(&self) -> KvCache {
        let n = self.layers.len() * self.par.tp;
        KvCache {
            keys: vec![Vec::new(); n],
            values: vec![Vec::new(); n],
            len: 0,
        }
    }

    /// Runs `rows` (any mix of sequences, each sequence's rows in position order)
    /// and returns the logits `[vocab]` of the rows listed in `logits_for`.
    pub fn forward(
        &self,
        rows: &[Row],
        caches: &mut [KvCache],
        logits_for: &[usize],
    ) -> Result<Vec<Vec<f32>>> {
        let c = &self.config;
        let (h, n) = (c.hidden_size, rows.len());
        for row in rows {
            if row.token as usize >= c.vocab_size {
                return Err(Error::InvalidInput(format!(
                    "token id {} is out of range: the vocabulary has {} tokens",
                    row.token, c.vocab_size
                )));
            }
            if row.pos >= c.max_position_embeddings {
                return Err(Error::InvalidInput(format!(
                    "position {} is past max_position_embeddings {}",
                    row.pos, c.max_position_embeddings
                )));
            }
        }
        let mut expected_len: Vec<usize> = caches.iter().map(|k| k.len).collect();
        for row in rows {
            let len = expected_len
                .get_mut(row.seq)
                .ok_or_else(|| Error::InvalidOutput("bad sequence".into()))?;
            if row.pos != *len {
                return Err(Error::InvalidOutput(format!(
                    "row at position {} but cache holds {}",
                    row.pos, *len
                )));
            }
            *len += 1;
        }

        // Embedding lookup.
        let emb = self.view(&self.embedding);
        let es = emb.dtype.size();
        let mut x = vec![0f32; n * h];
        for (row, xr) in rows.iter().zip(x.chunks_exact_mut(h)) {
            let t = row.token as usize;
            decode_row(&emb.data[t * h * es..(t + 1) * h * es], emb.dtype, xr);
        }

        let eps = c.norm_eps as f32;
        let mut normed = vec![0f32; n * h];
        for (li, layer) in self.layers.iter().enumerate() {
            for (xr, nr) in x.chunks_exact(h).zip(normed.chunks_exact_mut(h)) {
                layer_norm(xr, &layer.ln1.0, &layer.ln1.1, eps, nr);
            }
            let mut attn_sum = vec![0f32; n * h];
            for (r, shard) in layer.shards.iter().enumerate() {
                let width = shard.qkv.rows;
                let mut qkv = vec![0f32; n * width];
                matmul(&normed, n, self.view(&shard.qkv), &mut qkv);
                let out = self.attention(&mut qkv, rows, caches, li * self.par.tp + r);
                let mut partial = vec![0f32; n * h];
                matmul(&out, n, self.view(&shard.dense), &mut partial);
                add_into(&mut attn_sum, &partial);
            }
            add_into(&mut x, &attn_sum);

            for (xr, nr) in x.chunks_exact(h).zip(normed.chunks_exact_mut(h)) {
                layer_norm(xr, &layer.ln2.0, &layer.ln2.1, eps, nr);
            }
            let mut mlp_sum = vec![0f32; n * h];
            for shard in &layer.shards {
                let mut hidden = vec![0f32; n * shard.fc.rows];
                matmul(&normed, n, self.view(&shard.fc), &mut hidden);
                for v in hidden.iter_mut() {
                    let r = v.max(0.0);
                    *v = r * r;
                }
                let mut partial = vec![0f32; n * h];
                matmul(&hidden, n, self.view(&shard.proj), &mut partial);
                add_into(&mut mlp_sum, &partial);
            }
            add_into(&mut x, &mlp_sum);
        }
        for row in rows {
            caches[row.seq].len += 1;
        }

        // Final norm and lm_head only for the rows asked for.
        let m = logits_for.len();
        let mut last = vec![0f32; m * h];
        for (&i, out) in logits_for.iter().zip(last.chunks_exact_mut(h)) {
            layer_norm(&x[i * h..(i + 1) * h], &self.ln_f.0, &self.ln_f.1, eps, out);
        }
        let mut logits = vec![Vec::with_capacity(c.vocab_size); m];
        for shard in &self.lm_head {
            let mut part = vec![0f32; m * shard.rows];
            matmul(&last, m, self.view(shard), &mut part);
            for (dst, src) in logits.iter_mut().zip(part.chunks_exact(shard.rows)) {
                dst.extend_from_slice(src);
            }
        }
        for l in &mut logits {
            l.truncate(c.vocab_size);
        }
        Ok(logits)
    }

    /// RoPE on q and k, appends k/v to the caches, then causal attention for
    /// every row and local query head. Returns `[n, q_heads * head_dim]`.
    fn attention(&self, qkv: &mut [f32], rows: &[Row], caches: &mut [KvCache], slot: usize) -> Vec<f32> {
        let d = self.config.head_dim;
        let (qh, kvh) = (self.q_heads, self.kv_heads);
        let width = (qh + 2 * kvh) * d;
        let rd = self.config.rotary_dim();
        for (row, r) in rows.iter().zip(qkv.chunks_exact_mut(width)) {
            let (cos, sin): (Vec<f32>, Vec<f32>) = self
                .inv_freq
                .iter()
                .map(|f| {
                    let a = row.pos as f64 * f;
                    (a.cos() as f32, a.sin() as f32)
                })
                .unzip();
            for head in r[..(qh + kvh) * d].chunks_exact_mut(d) {
                for j in 0..rd / 2 {
                    let (a, b) = (head[j], head[j + rd / 2]);
                    head[j] = a * cos[j] - b * sin[j];
                    head[j + rd / 2] = b * cos[j] + a * sin[j];
                }
            }
            let cache = &mut caches[row.seq];
            cache.keys[slot].extend_from_slice(&r[qh * d..(qh + kvh) * d]);
            cache.values[slot].extend_from_slice(&r[(qh + kvh) * d..]);
        }
        let scale = 1.0 / (d as f32).sqrt();
        let group = qh / kvh;
        let mut out = vec![0f32; rows.len() * qh * d];
        let caches = &*caches;
        out.par_chunks_mut(d).enumerate().for_each(|(i, o)| {
            let (ri, head) = (i / qh, i % qh);
            let row = rows[ri];
            let q = &qkv[ri * width + head * d..ri * width + (head + 1) * d];
            let kv = head / group;
            let keys = &caches[row.seq].keys[slot];
            let values = &caches[row.seq].values[slot];
            let span = row.pos + 1;
            let mut scores: Vec<f32> = (0..span)
                .map(|p| dot(q, &keys[(p * kvh + kv) * d..(p * kvh + kv + 1) * d]) * scale)
                .collect();
            let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut total = 0f32;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                total += *s;
            }
            for (p, s) in scores.iter().enumerate() {
                let w = s / total;
                let v = &values[(p * kvh + kv) * d..(p * kvh + kv + 1) * d];
                for (oj, vj) in o.iter_mut().zip(v) {
                    *oj += w * vj;
                }
            }
        });
        out
    }
}

fn add_into(acc: &mut [f32], x: &[f32]) {
    for (a, b) in acc.iter_mut().zip(x) {
        *a += b;
    }
}
