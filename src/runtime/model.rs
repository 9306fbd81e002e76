//! The Nemotron forward pass over a TensorRT-LLM checkpoint of any tp/pp:
//! token embedding; per layer, LayerNorm1p, attention, residual, LayerNorm1p,
//! squared-ReLU MLP, residual; then the final norm and lm_head.
//!
//! Shards are combined as TensorRT-LLM does: column-parallel outputs (qkv, fc,
//! lm_head) stay per rank, row-parallel outputs (dense, proj) are summed over
//! ranks (the all-reduce) before the residual add; padded vocab rows are
//! dropped. Weights stay memory-mapped in their stored dtype (`kernels`
//! widens them as the products read them); activations are f32.

use std::path::Path;

use crate::error::{Error, Result};
use crate::hf::config::NemotronConfig;
use crate::runtime::attention_kernels::{HEADS_PER_PASS, add_weighted_rows, dots};
use crate::runtime::checkpoint::{Checkpoint, TensorLoc};
use crate::runtime::kernels::{MatRef, decode_row, layer_norm, matmul};
use crate::runtime::pool::{self, Chunks, Pool, SharedOut};
use crate::trtllm::mapping::Parallelism;

/// Below this many multiply-adds, attention runs on the calling thread alone.
const PARALLEL_ATTENTION_MACS: usize = 1 << 15;

pub struct Model {
    pub checkpoint: Checkpoint,
    pub config: NemotronConfig,
    pub par: Parallelism,
    embedding: Mat,
    layers: Vec<Layer>,
    final_norm: Norm,
    /// One column-parallel slice of `lm_head` per tp rank.
    lm_head: Vec<Mat>,
    attention: SelfAttention,
}

/// The keys and values one sequence has seen, per layer, tp rank and kv head.
pub struct KvCache {
    /// `[(layer * tp + rank) * kv_heads + kv_head]` -> `[position][head_dim]`:
    /// one head's keys side by side. (Interleaved by head, one head's rows
    /// would be `kv_heads * head_dim * 4` bytes apart, 4 KiB on Minitron:
    /// every row in the same few cache sets.)
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    len: usize,
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
        let weights = Weights {
            checkpoint: &checkpoint,
            hidden: config.hidden_size,
            eps: config.norm_eps as f32,
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for pp_rank in 0..par.pp {
            for local in 0..par.layers(config.num_hidden_layers, pp_rank).len() {
                layers.push(weights.layer(par, pp_rank, local, layers.len())?);
            }
        }
        let last = par.rank(par.pp - 1, 0);
        let final_norm = weights.norm(last, "transformer.ln_f")?;
        let lm_head = (0..par.tp)
            .map(|t| weights.mat(par.rank(par.pp - 1, t), "lm_head.weight"))
            .collect::<Result<Vec<_>>>()?;
        let embedding = weights.mat(0, "transformer.vocab_embedding.weight")?;
        let attention = SelfAttention::new(&config, par.tp);
        Ok(Model {
            checkpoint,
            config,
            par,
            embedding,
            layers,
            final_norm,
            lm_head,
            attention,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    /// An empty KV cache with room for `tokens` positions, allocated once (the
    /// memory is reserved, not touched: it is resident only as it fills).
    pub fn new_cache(&self, tokens: usize) -> KvCache {
        let n = self.layers.len() * self.par.tp * self.attention.kv_heads;
        let per_head = tokens * self.attention.head_dim;
        KvCache {
            keys: (0..n).map(|_| Vec::with_capacity(per_head)).collect(),
            values: (0..n).map(|_| Vec::with_capacity(per_head)).collect(),
            len: 0,
        }
    }

    /// Bytes of KV cache one position of one sequence takes: keys and values
    /// (f32) of every layer, tp rank and kv head.
    pub fn kv_bytes_per_token(&self) -> u64 {
        let heads = self.layers.len() * self.par.tp * self.attention.kv_heads;
        (heads * 2 * self.attention.head_dim * std::mem::size_of::<f32>()) as u64
    }

    /// Runs `rows` (any mix of sequences, each sequence's rows in position order)
    /// and returns the logits `[vocab]` of the rows listed in `logits_for`.
    pub fn forward(
        &self,
        rows: &[Row],
        caches: &mut [KvCache],
        logits_for: &[usize],
    ) -> Result<Vec<Vec<f32>>> {
        self.check_rows(rows, caches)?;
        let pass = Pass {
            checkpoint: &self.checkpoint,
            attention: &self.attention,
            rows,
            hidden: self.config.hidden_size,
        };
        let mut x = self.embed(rows);
        let mut normed = vec![0f32; x.len()];
        for layer in &self.layers {
            layer.forward(&mut x, &mut normed, &pass, caches);
        }
        for row in rows {
            caches[row.seq].len += 1;
        }
        Ok(self.logits(&x, logits_for, &pass))
    }

    /// Token ids within the vocabulary, positions within the model's length,
    /// and each sequence's rows continuing its cache.
    fn check_rows(&self, rows: &[Row], caches: &[KvCache]) -> Result<()> {
        let c = &self.config;
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
        Ok(())
    }

    /// The embedding rows of the tokens, `[n, hidden]`.
    fn embed(&self, rows: &[Row]) -> Vec<f32> {
        let h = self.config.hidden_size;
        let table = self.embedding.view(&self.checkpoint);
        let row_bytes = h * table.dtype.size();
        let mut x = vec![0f32; rows.len() * h];
        for (row, xr) in rows.iter().zip(x.chunks_exact_mut(h)) {
            let t = row.token as usize;
            decode_row(&table.data[t * row_bytes..(t + 1) * row_bytes], table.dtype, xr);
        }
        x
    }

    /// Final norm and lm_head, only for the rows asked for; the vocabulary
    /// padding of the last tp rank is dropped.
    fn logits(&self, x: &[f32], rows: &[usize], pass: &Pass<'_>) -> Vec<Vec<f32>> {
        let h = self.config.hidden_size;
        let m = rows.len();
        if m == 0 {
            // A pass over prompt chunks that end no prompt wants no logits.
            return Vec::new();
        }
        let mut last = vec![0f32; m * h];
        for (&i, out) in rows.iter().zip(last.chunks_exact_mut(h)) {
            self.final_norm.forward(&x[i * h..(i + 1) * h], out);
        }
        let mut logits = vec![Vec::with_capacity(self.config.vocab_size); m];
        for shard in &self.lm_head {
            let mut part = vec![0f32; m * shard.rows];
            matmul(&last, m, pass.view(shard), &mut part);
            for (dst, src) in logits.iter_mut().zip(part.chunks_exact(shard.rows)) {
                dst.extend_from_slice(src);
            }
        }
        for l in &mut logits {
            l.truncate(self.config.vocab_size);
        }
        logits
    }
}

struct Layer {
    input_norm: Norm,
    post_norm: Norm,
    shards: Vec<LayerShard>,
    /// This layer's first KV cache slot (`layer * tp`; one slot per tp rank,
    /// each the arrays of its kv heads, from `slot * kv_heads`).
    cache_slot: usize,
}

/// One tp rank's slices of a layer's matrices.
struct LayerShard {
    qkv: Mat,
    dense: Mat,
    fc: Mat,
    proj: Mat,
}

impl Layer {
    /// `x` (`[n, hidden]`) through the layer; `normed` is scratch of the same size.
    fn forward(&self, x: &mut [f32], normed: &mut [f32], pass: &Pass<'_>, caches: &mut [KvCache]) {
        self.input_norm.forward(x, normed);
        let attention = self.attention_block(normed, pass, caches);
        add_into(x, &attention);
        self.post_norm.forward(x, normed);
        let mlp = self.mlp_block(normed, pass);
        add_into(x, &mlp);
    }

    /// Per tp rank: the qkv projection, attention over the cache, the dense
    /// projection; summed over ranks.
    fn attention_block(&self, x: &[f32], pass: &Pass<'_>, caches: &mut [KvCache]) -> Vec<f32> {
        let n = pass.rows.len();
        let mut sum = vec![0f32; n * pass.hidden];
        for (rank, shard) in self.shards.iter().enumerate() {
            let mut qkv = vec![0f32; n * shard.qkv.rows];
            matmul(x, n, pass.view(&shard.qkv), &mut qkv);
            let heads = pass
                .attention
                .forward(&mut qkv, pass.rows, caches, self.cache_slot + rank);
            let mut partial = vec![0f32; n * pass.hidden];
            matmul(&heads, n, pass.view(&shard.dense), &mut partial);
            add_into(&mut sum, &partial);
        }
        sum
    }

    /// Per tp rank: the fc projection, squared ReLU, the proj projection;
    /// summed over ranks.
    fn mlp_block(&self, x: &[f32], pass: &Pass<'_>) -> Vec<f32> {
        let n = pass.rows.len();
        let mut sum = vec![0f32; n * pass.hidden];
        for shard in &self.shards {
            let mut hidden = vec![0f32; n * shard.fc.rows];
            matmul(x, n, pass.view(&shard.fc), &mut hidden);
            relu_squared(&mut hidden);
            let mut partial = vec![0f32; n * pass.hidden];
            matmul(&hidden, n, pass.view(&shard.proj), &mut partial);
            add_into(&mut sum, &partial);
        }
        sum
    }
}

/// Nemotron's activation: `max(x, 0)^2`.
fn relu_squared(values: &mut [f32]) {
    for v in values {
        let r = v.max(0.0);
        *v = r * r;
    }
}

/// LayerNorm with weight and bias over the hidden dimension. For Nemotron's
/// LayerNorm1p the checkpoint already stores `weight + 1`.
struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

impl Norm {
    /// Normalises every row of `x` into the same row of `out`.
    fn forward(&self, x: &[f32], out: &mut [f32]) {
        let h = self.weight.len();
        for (xr, or) in x.chunks_exact(h).zip(out.chunks_exact_mut(h)) {
            layer_norm(xr, &self.weight, &self.bias, self.eps, or);
        }
    }
}

/// Causal self-attention of one tp rank, with partial rotary embeddings
/// (GPT-NeoX style, on the first `rotary_dim` of each head) and grouped kv heads.
struct SelfAttention {
    /// Query and kv heads held by each tp rank (kv heads duplicated when tp > kv).
    q_heads: usize,
    kv_heads: usize,
    head_dim: usize,
    rotary_dim: usize,
    inv_freq: Vec<f64>,
}

impl SelfAttention {
    fn new(config: &NemotronConfig, tp: usize) -> Self {
        let kv_heads = if config.num_key_value_heads.is_multiple_of(tp) {
            config.num_key_value_heads / tp
        } else {
            1
        };
        let rd = config.rotary_dim();
        let inv_freq = (0..rd / 2)
            .map(|j| 1.0 / config.rope_theta.powf(2.0 * j as f64 / rd as f64))
            .collect();
        SelfAttention {
            q_heads: config.num_attention_heads / tp,
            kv_heads,
            head_dim: config.head_dim,
            rotary_dim: rd,
            inv_freq,
        }
    }

    /// RoPE on q and k, appends k/v to the arrays of `slot`'s kv heads in
    /// the caches, then causal attention for every row and local query head. Returns `[n, q_heads * head_dim]`.
    fn forward(&self, qkv: &mut [f32], rows: &[Row], caches: &mut [KvCache], slot: usize) -> Vec<f32> {
        self.forward_on(pool::global(), qkv, rows, caches, slot)
    }

    /// `forward` on a given pool.
    fn forward_on(
        &self,
        pool: &Pool,
        qkv: &mut [f32],
        rows: &[Row],
        caches: &mut [KvCache],
        slot: usize,
    ) -> Vec<f32> {
        let d = self.head_dim;
        let (qh, kvh) = (self.q_heads, self.kv_heads);
        let width = (qh + 2 * kvh) * d;
        // The arrays of this slot's kv heads in the caches.
        let cache_heads = slot * kvh..(slot + 1) * kvh;
        for (row, r) in rows.iter().zip(qkv.chunks_exact_mut(width)) {
            self.rotate(&mut r[..(qh + kvh) * d], row.pos);
            let cache = &mut caches[row.seq];
            let (k, v) = r[qh * d..].split_at(kvh * d);
            for ((keys, values), (k, v)) in cache.keys[cache_heads.clone()]
                .iter_mut()
                .zip(&mut cache.values[cache_heads.clone()])
                .zip(k.chunks_exact(d).zip(v.chunks_exact(d)))
            {
                keys.extend_from_slice(k);
                values.extend_from_slice(v);
            }
        }
        let scale = 1.0 / (d as f32).sqrt();
        let group = qh / kvh;
        let mut out = vec![0f32; rows.len() * qh * d];
        let caches = &*caches;
        // One item at a time: a row, a kv head and a pass of up to
        // HEADS_PER_PASS of its query heads (as the kernels take them: each
        // pass reads the keys and values once; more passes than kv heads
        // when a rank has one kv head for all its query heads). The scores
        // of the pass's heads over the row's span, then their weighted
        // values, into the heads' own outputs (a kv head's query heads are
        // side by side, in qkv and in out).
        let passes = group.div_ceil(HEADS_PER_PASS);
        // Item i's row, kv head, first query head and number of query heads.
        let item = |i: usize| {
            let (ri, kv, pass) = (i / (kvh * passes), i / passes % kvh, i % passes);
            let first = pass * HEADS_PER_PASS;
            (ri, kv, kv * group + first, HEADS_PER_PASS.min(group - first))
        };
        let attend = |i: usize, out: SharedOut| {
            let (ri, kv, head, h) = item(i);
            // SAFETY: item i's own outputs (row ri, its h heads from `head`):
            // no other item's, and `out` outlives the region.
            let o = unsafe { out.range((ri * qh + head) * d, h * d) };
            let row = rows[ri];
            let at = ri * width + head * d;
            let q = &qkv[at..at + h * d];
            let keys = &caches[row.seq].keys[cache_heads.start + kv];
            let values = &caches[row.seq].values[cache_heads.start + kv];
            let span = row.pos + 1;
            // Position p's key (and value) of this kv head at p * d.
            let mut scores = vec![0f32; h * span];
            dots(h, q, keys, d, &mut scores);
            for scores in scores.chunks_exact_mut(span) {
                for s in scores.iter_mut() {
                    *s *= scale;
                }
                let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut total = 0f32;
                for s in scores.iter_mut() {
                    *s = (*s - max).exp();
                    total += *s;
                }
                for s in scores.iter_mut() {
                    *s /= total;
                }
            }
            add_weighted_rows(h, o, &scores, values, d);
        };
        // On the kernels' pool (a second pool, rayon's, would compete with its
        // spinning workers for the cores); a short decode step stays serial.
        let items = rows.len() * kvh * passes;
        let work: usize = rows.iter().map(|r| (r.pos + 1) * qh * d).sum();
        let shared = SharedOut::new(&mut out);
        let chunks = Chunks::new(items, items.div_ceil(pool.threads() * 8));
        // Each item is claimed once, so each writes only its own outputs.
        let part = |_: usize| {
            while let Some((a, b)) = chunks.claim() {
                for i in a..b {
                    attend(i, shared);
                }
            }
        };
        if work < PARALLEL_ATTENTION_MACS || pool.threads() == 1 {
            part(0);
        } else {
            pool.run(&part);
        }
        out
    }

    /// Rotates the first `rotary_dim` of every head in `heads` (q and k) to position `pos`.
    fn rotate(&self, heads: &mut [f32], pos: usize) {
        let half = self.rotary_dim / 2;
        let (cos, sin): (Vec<f32>, Vec<f32>) = self
            .inv_freq
            .iter()
            .map(|f| {
                let a = pos as f64 * f;
                (a.cos() as f32, a.sin() as f32)
            })
            .unzip();
        for head in heads.chunks_exact_mut(self.head_dim) {
            for j in 0..half {
                let (a, b) = (head[j], head[j + half]);
                head[j] = a * cos[j] - b * sin[j];
                head[j + half] = b * cos[j] + a * sin[j];
            }
        }
    }
}

/// What every layer of one forward pass shares: the mapped weights, the
/// attention shape and the rows being run.
struct Pass<'a> {
    checkpoint: &'a Checkpoint,
    attention: &'a SelfAttention,
    rows: &'a [Row],
    hidden: usize,
}

impl Pass<'_> {
    fn view(&self, m: &Mat) -> MatRef<'_> {
        m.view(self.checkpoint)
    }
}

/// A matrix of one rank file.
#[derive(Debug, Clone)]
struct Mat {
    loc: TensorLoc,
    rows: usize,
    cols: usize,
}

impl Mat {
    fn view<'c>(&self, checkpoint: &'c Checkpoint) -> MatRef<'c> {
        MatRef {
            dtype: checkpoint.dtype,
            rows: self.rows,
            cols: self.cols,
            data: checkpoint.data(&self.loc),
        }
    }
}

/// Reads a layer's tensors out of the checkpoint at open.
struct Weights<'c> {
    checkpoint: &'c Checkpoint,
    hidden: usize,
    eps: f32,
}

impl Weights<'_> {
    /// Layer `local` of pipeline stage `pp_rank`, the model's layer `index`.
    fn layer(&self, par: Parallelism, pp_rank: usize, local: usize, index: usize) -> Result<Layer> {
        let name = |s: &str| format!("transformer.layers.{local}.{s}");
        let shards = (0..par.tp)
            .map(|t| {
                let r = par.rank(pp_rank, t);
                Ok(LayerShard {
                    qkv: self.mat(r, &name("attention.qkv.weight"))?,
                    dense: self.mat(r, &name("attention.dense.weight"))?,
                    fc: self.mat(r, &name("mlp.fc.weight"))?,
                    proj: self.mat(r, &name("mlp.proj.weight"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // Norms are replicated: read them from the stage's first tp rank.
        let r0 = par.rank(pp_rank, 0);
        Ok(Layer {
            input_norm: self.norm(r0, &name("input_layernorm"))?,
            post_norm: self.norm(r0, &name("post_layernorm"))?,
            shards,
            cache_slot: index * par.tp,
        })
    }

    fn mat(&self, rank: usize, name: &str) -> Result<Mat> {
        let loc = self.checkpoint.loc(rank, name)?.clone();
        let (rows, cols) = match loc.shape.as_slice() {
            [r, c] => (*r, *c),
            other => {
                return Err(Error::Tensor {
                    path: self.checkpoint.dir.join(format!("rank{rank}.safetensors")),
                    tensor: name.into(),
                    problem: format!("has shape {other:?}; expected a matrix"),
                });
            }
        };
        Ok(Mat { loc, rows, cols })
    }

    /// `{prefix}.weight` and `{prefix}.bias`, widened to f32.
    fn norm(&self, rank: usize, prefix: &str) -> Result<Norm> {
        Ok(Norm {
            weight: self.vector(rank, &format!("{prefix}.weight"))?,
            bias: self.vector(rank, &format!("{prefix}.bias"))?,
            eps: self.eps,
        })
    }

    fn vector(&self, rank: usize, name: &str) -> Result<Vec<f32>> {
        let loc = self.checkpoint.loc(rank, name)?;
        let mut out = vec![0f32; self.hidden];
        decode_row(self.checkpoint.data(loc), self.checkpoint.dtype, &mut out);
        Ok(out)
    }
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

fn add_into(acc: &mut [f32], x: &[f32]) {
    for (a, b) in acc.iter_mut().zip(x) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attention split over threads gives every (row, kv head) exactly what the
    /// calling thread alone gives it: two sequences, one prefilling 40 rows
    /// (enough work to go parallel), one decoding.
    #[test]
    fn attention_is_the_same_on_one_thread_and_on_three() {
        let attention = SelfAttention {
            q_heads: 4,
            kv_heads: 2,
            head_dim: 16,
            rotary_dim: 8,
            inv_freq: (0..4).map(|j| 1.0 / 10000f64.powf(j as f64 / 4.0)).collect(),
        };
        let width = (4 + 2 * 2) * 16;
        let mut rows: Vec<Row> = (0..40)
            .map(|pos| Row {
                seq: 0,
                token: 0,
                pos,
            })
            .collect();
        rows.push(Row {
            seq: 1,
            token: 0,
            pos: 7,
        });
        let qkv: Vec<f32> = (0..rows.len() * width)
            .map(|i| ((i * 7919 % 1009) as f32 - 504.0) / 300.0)
            .collect();
        let run = |pool: &Pool| {
            let cache = |len: usize| KvCache {
                keys: vec![vec![0.25; len * 16]; 2],
                values: (0..2)
                    .map(|h| (0..len * 16).map(|i| ((i + h) % 13) as f32 / 13.0).collect())
                    .collect(),
                len,
            };
            let mut caches = [cache(0), cache(7)];
            attention.forward_on(pool, &mut qkv.clone(), &rows, &mut caches, 0)
        };
        let alone = run(&Pool::new(1));
        let shared = run(&Pool::new(3));
        assert!(alone.iter().all(|v| v.is_finite()) && alone.iter().any(|&v| v != 0.0));
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&alone), bits(&shared));
    }

    /// Every (row, query head) gets plain attention over its own kv head,
    /// bit for bit: the scores of `dot`, the softmax, the weighted values
    /// added position by position. Query heads per kv head that fill the
    /// kernels' passes and leave some over (4 = 3 + 1, 7 = 3 + 3 + 1), and
    /// one query head per kv head; on two threads.
    #[test]
    fn every_query_head_attends_to_its_own_kv_head() {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let d = 32;
        for (q_heads, kv_heads) in [(8, 2), (7, 1), (3, 3)] {
            let attention = SelfAttention {
                q_heads,
                kv_heads,
                head_dim: d,
                rotary_dim: 16,
                inv_freq: (0..8).map(|j| 1.0 / 10000f64.powf(j as f64 / 8.0)).collect(),
            };
            let width = (q_heads + 2 * kv_heads) * d;
            let rows: Vec<Row> = (0..40)
                .map(|pos| Row {
                    seq: 0,
                    token: 0,
                    pos,
                })
                .collect();
            let mut qkv =
                crate::runtime::kernels::test_values::mixed(q_heads as u64, rows.len() * width, &[0.5, 2.0]);
            let mut caches = [KvCache {
                keys: vec![Vec::new(); kv_heads],
                values: vec![Vec::new(); kv_heads],
                len: 0,
            }];
            // Rotates q and k in qkv, and fills the cache, as the reference below reads them.
            let out = attention.forward_on(&Pool::new(2), &mut qkv, &rows, &mut caches, 0);
            let group = q_heads / kv_heads;
            let scale = 1.0 / (d as f32).sqrt();
            for (ri, row) in rows.iter().enumerate() {
                for head in 0..q_heads {
                    let q = &qkv[ri * width + head * d..][..d];
                    let (keys, values) = (&caches[0].keys[head / group], &caches[0].values[head / group]);
                    let mut weights: Vec<f32> = (0..=row.pos)
                        .map(|p| crate::runtime::kernels::dot(q, &keys[p * d..(p + 1) * d]) * scale)
                        .collect();
                    let max = weights.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut total = 0f32;
                    for w in weights.iter_mut() {
                        *w = (*w - max).exp();
                        total += *w;
                    }
                    let mut want = vec![0f32; d];
                    for (p, w) in weights.iter().enumerate() {
                        let w = w / total;
                        for (o, v) in want.iter_mut().zip(&values[p * d..]) {
                            *o += w * v;
                        }
                    }
                    let got = &out[(ri * q_heads + head) * d..][..d];
                    assert_eq!(
                        bits(got),
                        bits(&want),
                        "{q_heads}/{kv_heads} heads, row {ri}, head {head}"
                    );
                }
            }
        }
    }
}
