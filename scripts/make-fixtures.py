#!/usr/bin/env python3
"""Regenerate the test fixtures under tests/fixtures/{models,expected,golden}.

    python3 scripts/make-fixtures.py

* models/<name>/    tiny Hugging Face NemotronForCausalLM checkpoints, built with
                    transformers' own NemotronConfig / NemotronForCausalLM and
                    seeded random weights, saved in their stated dtype and format.
* expected/<name>/<dtype>-tp<T>-pp<P>/
                    the TensorRT-LLM checkpoints our converter must produce,
                    computed here with torch straight from
                    docs/checkpoint-format.md (never from the Rust
                    code), plus expected/index.json.
* golden/<name>.safetensors
                    float32 logits of transformers' forward pass for two fixed
                    prompts, 8 greedy tokens continuing the first one and the
                    logits each of them was chosen from. The forward runs in
                    float32 on the stored weights, except that every LayerNorm1p
                    uses the effective weight the converted checkpoint stores:
                    (w.to(stored dtype) + 1).float().

Everything is deterministic: running the script twice gives byte-identical
files (checked by hand with sha256sum; see scripts/README.md).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path

import torch
import safetensors.torch
from safetensors.torch import save_file

import transformers
from transformers import GenerationConfig, NemotronConfig, NemotronForCausalLM

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
MODELS = FIX / "models"
EXPECTED = FIX / "expected"
GOLDEN = FIX / "golden"

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
DTYPE_NAME = {v: k for k, v in DTYPES.items()}

# Entries written into every LayerNorm weight so that "cast, then +1 in the
# target dtype" (the spec) differs from the naive orders of operations:
#   naive_f32: (w.float() + 1).to(dt)        (add in float32, round once)
#   naive_src: (w + 1).to(dt)                (add in the stored dtype, then cast)
# 2^-8 + 2^-16 and -(2^-9 + 2^-17) hit a bf16 double-rounding tie around 1.0,
# 2^-11 + 2^-22 and -(2^-12 + 2^-23) do the same for f16; 3e-4 / -7e-6 are tiny
# values (-7e-6 is subnormal in f16).
TINY = [2**-8 + 2**-16, -(2**-9 + 2**-17), 2**-9 + 2**-17, 2**-11 + 2**-22,
        -(2**-12 + 2**-23), 3e-4, -7e-6]

# ---------------------------------------------------------------------------
# Model definitions
# ---------------------------------------------------------------------------
MODEL_SPECS = [
    dict(name="gqa-headdim-bf16", seed=1001, hidden=48, heads=4, kv_heads=2, head_dim=16,
         intermediate=96, layers=3, vocab=101, prf=0.5, rope_theta=10000, max_pos=128,
         dtype="bfloat16", tie=False, fmt="safetensors", style="4.44",
         write_kv=True, write_head_dim=True, tokenizer=True),
    dict(name="mqa-tied-f16", seed=2002, hidden=32, heads=4, kv_heads=1, head_dim=8,
         intermediate=64, layers=2, vocab=64, prf=0.5, rope_theta=10000.0, max_pos=64,
         dtype="float16", tie=True, fmt="sharded", style="5",
         write_kv=True, write_head_dim=True, tokenizer=False),
    dict(name="bin-f32", seed=3003, hidden=40, heads=5, kv_heads=5, head_dim=8,
         intermediate=80, layers=4, vocab=50, prf=0.25, rope_theta=500000, max_pos=256,
         dtype="float32", tie=False, fmt="bin", style="4.44",
         write_kv=True, write_head_dim=True, tokenizer=False),
    dict(name="mha-f32-safetensors", seed=4004, hidden=32, heads=2, kv_heads=2, head_dim=16,
         intermediate=64, layers=2, vocab=40, prf=1.0, rope_theta=20000.0, max_pos=96,
         dtype="float32", tie=False, fmt="safetensors", style="5",
         write_kv=False, write_head_dim=False, tokenizer=False),
]

SETTINGS = [
    ("gqa-headdim-bf16", "bfloat16", 1, 1),
    ("gqa-headdim-bf16", "bfloat16", 2, 1),
    ("gqa-headdim-bf16", "bfloat16", 1, 2),
    ("gqa-headdim-bf16", "bfloat16", 2, 2),
    ("gqa-headdim-bf16", "float32", 1, 1),
    ("gqa-headdim-bf16", "float16", 4, 1),
    ("mqa-tied-f16", "float16", 1, 1),
    ("mqa-tied-f16", "float16", 2, 1),
    ("mqa-tied-f16", "bfloat16", 4, 2),
    ("bin-f32", "float32", 1, 1),
    ("bin-f32", "bfloat16", 1, 1),
    ("bin-f32", "float16", 5, 1),
    ("bin-f32", "float32", 1, 4),
    ("mha-f32-safetensors", "float32", 2, 1),
]


def dump_json(path: Path, obj, sort_keys=False):
    path.write_text(json.dumps(obj, indent=2, sort_keys=sort_keys, ensure_ascii=False) + "\n",
                    encoding="utf-8")


# ---------------------------------------------------------------------------
# 1. Hugging Face models
# ---------------------------------------------------------------------------
def hf_config_dict(s):
    """config.json as written by transformers 4.44 (Minitron-8B-Base) or 5.x."""
    d = {
        "architectures": ["NemotronForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 2,
        "eos_token_id": 3,
        "hidden_act": "relu2",
        "hidden_size": s["hidden"],
        "initializer_range": 0.0134,
        "intermediate_size": s["intermediate"],
        "max_position_embeddings": s["max_pos"],
        "mlp_bias": False,
        "model_type": "nemotron",
        "norm_eps": 1e-05,
        "num_attention_heads": s["heads"],
        "num_hidden_layers": s["layers"],
        "tie_word_embeddings": s["tie"],
        "use_cache": True,
        "vocab_size": s["vocab"],
    }
    if s["write_kv"]:
        d["num_key_value_heads"] = s["kv_heads"]
    if s["write_head_dim"]:
        d["head_dim"] = s["head_dim"]
    if s["style"] == "4.44":
        if s["write_head_dim"]:
            d["kv_channels"] = s["head_dim"]  # Minitron's config carries both
        d["partial_rotary_factor"] = s["prf"]
        d["rope_scaling"] = None
        d["rope_theta"] = s["rope_theta"]
        d["torch_dtype"] = s["dtype"]
        d["transformers_version"] = "4.44.0"
    else:
        d["dtype"] = s["dtype"]
        d["pad_token_id"] = None
        d["rope_parameters"] = {"partial_rotary_factor": s["prf"],
                                "rope_theta": s["rope_theta"], "rope_type": "default"}
        d["transformers_version"] = "5.0.0"
    return d


def build_model(s):
    cfg = NemotronConfig(
        vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["intermediate"],
        num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
        num_key_value_heads=s["kv_heads"], head_dim=s["head_dim"],
        max_position_embeddings=s["max_pos"], norm_eps=1e-5, hidden_act="relu2",
        bos_token_id=2, eos_token_id=3, tie_word_embeddings=s["tie"],
        rope_parameters={"rope_theta": float(s["rope_theta"]),
                         "partial_rotary_factor": s["prf"], "rope_type": "default"},
    )
    torch.manual_seed(s["seed"])
    model = NemotronForCausalLM(cfg).eval()
    # Overwrite every parameter from our own seeded generator: transformers'
    # init (std 0.0134, LayerNorm weight = 1, bias = 0) gives near-uniform logits
    # and trivial LayerNorms, and may change between transformers versions.
    g = torch.Generator().manual_seed(s["seed"])
    H = s["hidden"]
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layernorm" in name or name.startswith("model.norm."):
                v = torch.randn(p.shape, generator=g) * 0.5
                if name.endswith(".weight"):
                    v[: len(TINY)] = torch.tensor(TINY, dtype=torch.float32)
                p.copy_(v)
            elif name == "model.embed_tokens.weight":
                p.copy_(torch.randn(p.shape, generator=g))
            elif p.dim() == 2:  # linear [out, in]
                scale = 1.0 / math.sqrt(p.shape[1])
                if name == "lm_head.weight":
                    scale *= 2.0
                p.copy_(torch.randn(p.shape, generator=g) * scale)
            else:
                raise RuntimeError(f"unexpected parameter {name}")
    if s["tie"]:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    return model.to(DTYPES[s["dtype"]])


def save_model(s, model, out: Path):
    out.mkdir(parents=True)
    dump_json(out / "config.json", hf_config_dict(s), sort_keys=True)
    sd = model.state_dict()
    names = [n for n in sd if not (s["tie"] and n == "lm_head.weight")]
    assert ("lm_head.weight" in names) == (not s["tie"])
    if s["fmt"] == "bin":
        # Exactly what old transformers' save_pretrained did: a torch.save zip of
        # the state dict (an OrderedDict carrying the `_metadata` attribute).
        assert hasattr(sd, "_metadata")
        torch.save(sd, out / "pytorch_model.bin")
    elif s["fmt"] == "safetensors":
        save_file({n: sd[n].contiguous() for n in names}, out / "model.safetensors",
                  metadata={"format": "pt"})
    elif s["fmt"] == "sharded":
        sizes = [sd[n].numel() * sd[n].element_size() for n in names]
        total = sum(sizes)
        shards, acc = [[], [], []], 0
        for n, sz in zip(names, sizes):
            shards[min(2, acc * 3 // total)].append(n)
            acc += sz
        assert all(shards), "need 3 non-empty shards"
        weight_map = {}
        for i, group in enumerate(shards):
            fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file({n: sd[n].contiguous() for n in group}, out / fname,
                      metadata={"format": "pt"})
            for n in group:
                weight_map[n] = fname
        dump_json(out / "model.safetensors.index.json",
                  {"metadata": {"total_size": total},
                   "weight_map": dict(sorted(weight_map.items()))}, sort_keys=True)
    else:
        raise ValueError(s["fmt"])
    if s["tokenizer"]:
        write_tokenizer(out, s["vocab"])


def read_hf_state_dict(model_dir: Path):
    """Re-read the weights as saved (independent of the in-memory model)."""
    if (model_dir / "model.safetensors").exists():
        return safetensors.torch.load_file(model_dir / "model.safetensors")
    if (model_dir / "model.safetensors.index.json").exists():
        idx = json.loads((model_dir / "model.safetensors.index.json").read_text())
        sd = {}
        for f in sorted(set(idx["weight_map"].values())):
            sd.update(safetensors.torch.load_file(model_dir / f))
        assert set(sd) == set(idx["weight_map"])
        return sd
    if (model_dir / "pytorch_model.bin").exists():
        return dict(torch.load(model_dir / "pytorch_model.bin", map_location="cpu",
                               weights_only=True))
    raise FileNotFoundError(model_dir)


# ---------------------------------------------------------------------------
# Tokenizer (only for gqa-headdim-bf16): Minitron-style, tiny vocabulary
# ---------------------------------------------------------------------------
TOKENIZER_CORPUS = (
    "the quick brown fox jumps over the lazy dog . to be or not to be , that is the "
    "question . the model converts the checkpoint into a tensorrt engine and the "
    "engine runs the model on the gpu . there is no need to train another model "
    "when the weights are already there , is there ? the rain in spain stays mainly "
    "in the plain . she sells sea shells on the sea shore ! a tiny test tokenizer "
    "for tests , tested in the tests of the converter ."
)


def train_tiny_bpe(vocab_size):
    """A deterministic toy BPE training (pure python, ties broken lexically)."""
    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    base = ["<0x0A>", "\u2581"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + \
        [".", ",", "!", "?", "'"]
    vocab = specials + base
    words = {}
    for w in TOKENIZER_CORPUS.split():
        key = tuple("\u2581" + w)
        words[key] = words.get(key, 0) + 1
    merges = []
    while len(vocab) < vocab_size:
        pairs = {}
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + c
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merged = best[0] + best[1]
        merges.append(best)
        if merged not in vocab:
            vocab.append(merged)
        new_words = {}
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(merged)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new_words[tuple(out)] = new_words.get(tuple(out), 0) + c
        words = new_words
    assert len(vocab) == vocab_size, len(vocab)
    return {t: i for i, t in enumerate(vocab)}, merges


def write_tokenizer(out: Path, vocab_size):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    vocab, merges = train_tiny_bpe(vocab_size)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>",
                               fuse_unk=True, byte_fallback=True))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581",
                                                 prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence([
        decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
        decoders.Strip(content=" ", left=1, right=0)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in ["<pad>", "<unk>", "<s>", "</s>"]])
    tok.save(str(out / "tokenizer.json"), pretty=True)

    def added(content):
        return {"content": content, "lstrip": False, "normalized": False,
                "rstrip": False, "single_word": False, "special": True}
    dump_json(out / "tokenizer_config.json", {
        "added_tokens_decoder": {str(i): added(t) for i, t in
                                 enumerate(["<pad>", "<unk>", "<s>", "</s>"])},
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": False,
        "eos_token": "</s>",
        "model_max_length": 4096,
        "pad_token": "<pad>",
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": "<unk>",
    }, sort_keys=True)
    dump_json(out / "special_tokens_map.json", {
        k: {"content": v, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False}
        for k, v in [("bos_token", "<s>"), ("eos_token", "</s>"), ("pad_token", "<pad>"),
                     ("unk_token", "<unk>")]}, sort_keys=True)
    dump_json(out / "generation_config.json", {
        "_from_model_config": True, "bos_token_id": 2, "eos_token_id": 3,
        "transformers_version": "4.44.0"}, sort_keys=True)

    # sanity: loadable by `tokenizers` and by transformers, ids as promised, no BOS.
    t2 = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert [t2.id_to_token(i) for i in range(4)] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert t2.get_vocab_size() == vocab_size
    text = "the quick brown fox is there."
    enc = t2.encode(text)
    assert enc.ids[0] != 2 and 1 not in enc.ids, enc.tokens
    assert t2.decode(enc.ids) == text, t2.decode(enc.ids)
    # no <0x5A> token: byte fallback falls back to <unk>
    assert t2.encode("Z").ids == [vocab["\u2581"], 1], t2.encode("Z").tokens
    assert t2.encode("\n").ids == [vocab["\u2581"], vocab["<0x0A>"]], t2.encode("\n").tokens
    from transformers import AutoTokenizer
    at = AutoTokenizer.from_pretrained(str(out))
    assert at(text)["input_ids"] == enc.ids
    assert (at.bos_token_id, at.eos_token_id, at.pad_token_id, at.unk_token_id) == (2, 3, 0, 1)


# ---------------------------------------------------------------------------
# 2. Expected TensorRT-LLM checkpoints (straight from the spec)
# ---------------------------------------------------------------------------
def model_params(cfg):
    heads = cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads", heads)
    hd = cfg.get("head_dim", cfg["hidden_size"] // heads)
    if "rope_parameters" in cfg:
        theta = cfg["rope_parameters"]["rope_theta"]
        prf = cfg["rope_parameters"].get("partial_rotary_factor", 1.0)
    else:
        theta = cfg["rope_theta"]
        prf = cfg.get("partial_rotary_factor", 1.0)
    return dict(H=cfg["hidden_size"], nh=heads, nkv=kv, hd=hd, F=cfg["intermediate_size"],
                L=cfg["num_hidden_layers"], V=cfg["vocab_size"], theta=float(theta),
                prf=float(prf), eps=cfg["norm_eps"], tie=cfg.get("tie_word_embeddings", False),
                max_pos=cfg["max_position_embeddings"])


def trt_config(p, dt_name, tp, pp):
    return {
        "architecture": "NemotronForCausalLM",
        "dtype": dt_name,
        "logits_dtype": "float32",
        "vocab_size": p["V"],
        "hidden_size": p["H"],
        "num_hidden_layers": p["L"],
        "num_attention_heads": p["nh"],
        "num_key_value_heads": p["nkv"],
        "head_size": p["hd"],
        "intermediate_size": p["F"],
        "hidden_act": "squared-relu",
        "norm_epsilon": p["eps"],
        "position_embedding_type": "rope_gpt_neox",
        "rotary_base": p["theta"],
        "rotary_pct": p["prf"],
        "max_position_embeddings": p["max_pos"],
        "gpt_variant": "nemotron",
        "bias": False,
        "use_parallel_embedding": False,
        "embedding_sharding_dim": 0,
        "mapping": {"world_size": tp * pp, "tp_size": tp, "pp_size": pp},
        "quantization": {"quant_algo": None, "kv_cache_quant_algo": None},
    }


def convert(sd, p, dt, tp, pp):
    """Returns {rank: {name: tensor}} per the spec."""
    H, nh, nkv, hd, L = p["H"], p["nh"], p["nkv"], p["hd"], p["L"]
    assert nh % tp == 0 and (nkv % tp == 0 or tp % nkv == 0)

    def c(name):
        return sd[name].to(dt)  # round to nearest even

    def ln1p(name):
        return sd[name].to(dt) + 1  # "+1" IN the target dtype

    def chunk(t, dim, r):
        assert t.shape[dim] % tp == 0
        return torch.chunk(t, tp, dim=dim)[r]

    ranks = {}
    layer_ranges = torch.tensor_split(torch.arange(L), pp)
    for pr in range(pp):
        for tr in range(tp):
            out = {}
            if pr == 0:
                out["transformer.vocab_embedding.weight"] = c("model.embed_tokens.weight")
            for i, l in enumerate(layer_ranges[pr].tolist()):
                hf, tl = f"model.layers.{l}.", f"transformer.layers.{i}."
                q = c(hf + "self_attn.q_proj.weight")
                k = c(hf + "self_attn.k_proj.weight")
                v = c(hf + "self_attn.v_proj.weight")
                assert q.shape == (nh * hd, H) and k.shape == v.shape == (nkv * hd, H)
                if nkv < tp:
                    rep = tp // nkv
                    k = k.reshape(nkv, hd, H).repeat_interleave(rep, dim=0).reshape(-1, H)
                    v = v.reshape(nkv, hd, H).repeat_interleave(rep, dim=0).reshape(-1, H)
                out[tl + "input_layernorm.weight"] = ln1p(hf + "input_layernorm.weight")
                out[tl + "input_layernorm.bias"] = c(hf + "input_layernorm.bias")
                out[tl + "attention.qkv.weight"] = torch.cat(
                    [chunk(q, 0, tr), chunk(k, 0, tr), chunk(v, 0, tr)], dim=0)
                out[tl + "attention.dense.weight"] = chunk(c(hf + "self_attn.o_proj.weight"), 1, tr)
                out[tl + "post_layernorm.weight"] = ln1p(hf + "post_attention_layernorm.weight")
                out[tl + "post_layernorm.bias"] = c(hf + "post_attention_layernorm.bias")
                out[tl + "mlp.fc.weight"] = chunk(c(hf + "mlp.up_proj.weight"), 0, tr)
                out[tl + "mlp.proj.weight"] = chunk(c(hf + "mlp.down_proj.weight"), 1, tr)
            if pr == pp - 1:
                out["transformer.ln_f.weight"] = ln1p("model.norm.weight")
                out["transformer.ln_f.bias"] = c("model.norm.bias")
                lm = c("model.embed_tokens.weight" if p["tie"] else "lm_head.weight")
                pad = (-lm.shape[0]) % tp
                if pad:
                    lm = torch.cat([lm, torch.zeros(pad, lm.shape[1], dtype=dt)], dim=0)
                out["lm_head.weight"] = chunk(lm, 0, tr)
            ranks[pr * tp + tr] = {n: t.clone().contiguous() for n, t in out.items()}
    return ranks


def check_layernorm_rounding(sd, src_dt, dt):
    """Which naive "+1" orders of operations this (source, target) pair exposes."""
    ln = [n for n in sd if "layernorm.weight" in n or n == "model.norm.weight"]
    diff_f32 = diff_src = False
    for n in ln:
        w = sd[n]
        spec = w.to(dt) + 1
        naive_f32 = (w.float() + 1).to(dt)
        naive_src = (w + 1).to(dt)
        diff_f32 |= not torch.equal(spec, naive_f32)
        diff_src |= not torch.equal(spec, naive_src)
    return diff_f32, diff_src


def reassemble(ranks, p, tp, pp):
    """Inverse of convert (a different code path): full tensors per HF name."""
    H, nh, nkv, hd, L = p["H"], p["nh"], p["nkv"], p["hd"], p["L"]
    kv_eff = max(nkv, tp)
    full = {}
    layer_ranges = torch.tensor_split(torch.arange(L), pp)
    for pr in range(pp):
        rs = [ranks[pr * tp + t] for t in range(tp)]
        if pr == 0:
            full["embed"] = rs[0]["transformer.vocab_embedding.weight"]
            assert all(torch.equal(r["transformer.vocab_embedding.weight"], full["embed"]) for r in rs)
        else:
            assert all("transformer.vocab_embedding.weight" not in r for r in rs)
        local = layer_ranges[pr].tolist()
        for r in rs:
            assert {k for k in r if k.startswith("transformer.layers.")} == {
                f"transformer.layers.{i}.{s}" for i in range(len(local)) for s in [
                    "input_layernorm.weight", "input_layernorm.bias", "attention.qkv.weight",
                    "attention.dense.weight", "post_layernorm.weight", "post_layernorm.bias",
                    "mlp.fc.weight", "mlp.proj.weight"]}
        for i, l in enumerate(local):
            t = f"transformer.layers.{i}."
            qs, ks, vs = [], [], []
            for r in rs:
                qkv = r[t + "attention.qkv.weight"]
                nq, nk = nh * hd // tp, kv_eff * hd // tp
                assert qkv.shape == (nq + 2 * nk, H)
                qs.append(qkv[:nq]); ks.append(qkv[nq:nq + nk]); vs.append(qkv[nq + nk:])
            k, v = torch.cat(ks), torch.cat(vs)
            if nkv < tp:
                k = k.reshape(tp, hd, H)
                v = v.reshape(tp, hd, H)
                rep = tp // nkv
                for h in range(nkv):  # duplicated copies must be identical
                    for j in range(rep):
                        assert torch.equal(k[h * rep + j], k[h * rep])
                        assert torch.equal(v[h * rep + j], v[h * rep])
                k = k[::rep].reshape(-1, H)
                v = v[::rep].reshape(-1, H)
            full[f"{l}.q"], full[f"{l}.k"], full[f"{l}.v"] = torch.cat(qs), k, v
            full[f"{l}.o"] = torch.cat([r[t + "attention.dense.weight"] for r in rs], 1)
            full[f"{l}.up"] = torch.cat([r[t + "mlp.fc.weight"] for r in rs], 0)
            full[f"{l}.down"] = torch.cat([r[t + "mlp.proj.weight"] for r in rs], 1)
            for a, b in [("ln1", "input_layernorm"), ("ln2", "post_layernorm")]:
                full[f"{l}.{a}.w"] = rs[0][t + b + ".weight"]
                full[f"{l}.{a}.b"] = rs[0][t + b + ".bias"]
                assert all(torch.equal(r[t + b + ".weight"], full[f"{l}.{a}.w"]) for r in rs)
        if pr == pp - 1:
            full["lnf.w"] = rs[0]["transformer.ln_f.weight"]
            full["lnf.b"] = rs[0]["transformer.ln_f.bias"]
            lm = torch.cat([r["lm_head.weight"] for r in rs], 0)
            assert lm.shape[0] == -(-p["V"] // tp) * tp
            assert not lm[p["V"]:].any()
            full["lm"] = lm[: p["V"]]
        else:
            assert all("lm_head.weight" not in r and "transformer.ln_f.weight" not in r for r in rs)
    return full


def hf_to_full(sd, p, dt):
    """The same "full" layout straight from HF names (cast; +1 folded)."""
    f = {"embed": sd["model.embed_tokens.weight"].to(dt)}
    for l in range(p["L"]):
        m = f"model.layers.{l}."
        for k, n in [("q", "self_attn.q_proj"), ("k", "self_attn.k_proj"),
                     ("v", "self_attn.v_proj"), ("o", "self_attn.o_proj"),
                     ("up", "mlp.up_proj"), ("down", "mlp.down_proj")]:
            f[f"{l}.{k}"] = sd[m + n + ".weight"].to(dt)
        for a, n in [("ln1", "input_layernorm"), ("ln2", "post_attention_layernorm")]:
            f[f"{l}.{a}.w"] = sd[m + n + ".weight"].to(dt) + 1
            f[f"{l}.{a}.b"] = sd[m + n + ".bias"].to(dt)
    f["lnf.w"] = sd["model.norm.weight"].to(dt) + 1
    f["lnf.b"] = sd["model.norm.bias"].to(dt)
    f["lm"] = sd["model.embed_tokens.weight" if p["tie"] else "lm_head.weight"].to(dt)
    return f


def spec_forward(full, p, ids):
    """docs/forward-pass.md in float64 on "full" weights (LayerNorm "+1" folded)."""
    W = {k: v.double() for k, v in full.items()}
    H, nh, nkv, d = p["H"], p["nh"], p["nkv"], p["hd"]
    T = len(ids)
    rd = int(d * p["prf"])
    pos = torch.arange(T, dtype=torch.float64)[:, None]
    j = torch.arange(rd // 2, dtype=torch.float64)[None, :]
    ang = pos * p["theta"] ** (-2 * j / rd)
    cos, sin = ang.cos()[:, None, :], ang.sin()[:, None, :]

    def ln(x, w, b):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + p["eps"]) * w + b

    def rope(x):  # [T, heads, d]
        x1, x2, rest = x[..., : rd // 2], x[..., rd // 2: rd], x[..., rd:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest], -1)

    x = W["embed"][torch.tensor(ids)]
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    for l in range(p["L"]):
        a = ln(x, W[f"{l}.ln1.w"], W[f"{l}.ln1.b"])
        q = rope((a @ W[f"{l}.q"].T).reshape(T, nh, d))
        k = rope((a @ W[f"{l}.k"].T).reshape(T, nkv, d))
        v = (a @ W[f"{l}.v"].T).reshape(T, nkv, d)
        o = torch.empty(T, nh, d, dtype=torch.float64)
        for h in range(nh):
            g = h // (nh // nkv)
            s = (q[:, h] @ k[:, g].T) / math.sqrt(d)
            s = s.masked_fill(mask, float("-inf")).softmax(-1)
            o[:, h] = s @ v[:, g]
        x = x + o.reshape(T, nh * d) @ W[f"{l}.o"].T
        m = ln(x, W[f"{l}.ln2.w"], W[f"{l}.ln2.b"])
        x = x + torch.relu(m @ W[f"{l}.up"].T) ** 2 @ W[f"{l}.down"].T
    x = ln(x, W["lnf.w"], W["lnf.b"])
    return x @ W["lm"].T


# ---------------------------------------------------------------------------
# 3. Golden logits
# ---------------------------------------------------------------------------
def golden(name, model_dir: Path, sd, p, seed):
    config = NemotronConfig.from_pretrained(str(model_dir))
    if config.num_key_value_heads is None:
        # transformers 5.x's NemotronConfig no longer defaults an absent
        # num_key_value_heads to num_attention_heads (4.44 did; the spec says
        # absent = heads), so the model would not even build. Fill it in here;
        # the config.json on disk keeps the key absent.
        config.num_key_value_heads = config.num_attention_heads
    model = NemotronForCausalLM.from_pretrained(
        str(model_dir), config=config, dtype=torch.float32,
        attn_implementation="eager").eval()
    # the loaded config must say what we meant (both config.json styles)
    c = model.config
    assert (c.head_dim, c.num_key_value_heads, c.rope_parameters["rope_theta"],
            c.rope_parameters["partial_rotary_factor"]) == (p["hd"], p["nkv"], p["theta"], p["prf"])
    # "model.float() on the weights as stored"
    msd = model.state_dict()
    for n, t in sd.items():
        assert torch.equal(msd[n], t.float()), n
    if p["tie"]:
        assert torch.equal(msd["lm_head.weight"], sd["model.embed_tokens.weight"].float())

    # The golden logits are the reference for a runtime over the CONVERTED
    # checkpoint, which stores each LayerNorm1p weight as (w + 1) rounded to the
    # checkpoint dtype. So every LayerNorm1p here must act with the effective
    # weight (w.to(dt) + 1).float(), dt = the model's stored dtype (a no-op for
    # float32 models). transformers' NemotronLayerNorm1P computes `weight + 1`
    # in float32, so store (w.to(dt) + 1).float() - 1: exact in float32 for
    # these magnitudes, and adding 1 back must reproduce the effective weight
    # bit for bit.
    src_dt = next(iter(sd.values())).dtype
    assert all(t.dtype == src_dt for t in sd.values())
    ln_names = [n for n in sd if n.endswith("layernorm.weight") or n == "model.norm.weight"]
    assert len(ln_names) == 2 * p["L"] + 1, ln_names
    params_by_name = dict(model.named_parameters())
    with torch.no_grad():
        for n in ln_names:
            eff = (sd[n].to(src_dt) + 1).float()
            stored = eff - 1
            assert torch.equal(stored + 1, eff), n
            params_by_name[n].copy_(stored)
            assert torch.equal(params_by_name[n] + 1.0, eff), n
            if src_dt == torch.float32:  # what transformers computed anyway
                assert torch.equal(eff, sd[n] + 1.0), n

    g = torch.Generator().manual_seed(seed + 77)
    out = {}
    for i, T in enumerate([7, 12]):
        ids = torch.randint(0, p["V"], (T,), generator=g, dtype=torch.int64)
        with torch.no_grad():
            logits = model(ids[None]).logits[0].float().contiguous()
        # independent float64 forward on the same effective weights: hf_to_full
        # in the stored dtype leaves every other weight as stored and folds the
        # "+1" into the LayerNorm weights in that dtype, as the converter does
        ref = spec_forward(hf_to_full(sd, p, src_dt), p, ids.tolist())
        err = (logits.double() - ref).abs().max().item()
        assert err < 1e-4 * max(1.0, ref.abs().max().item()), (name, err)
        out[f"input_ids_{i}"] = ids
        out[f"logits_{i}"] = logits

    ids0 = out["input_ids_0"][None]
    gen_cfg = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=8, min_new_tokens=0,
                               eos_token_id=None, pad_token_id=0, bos_token_id=2)
    with torch.no_grad():
        gen = model.generate(ids0, attention_mask=torch.ones_like(ids0), generation_config=gen_cfg,
                             output_logits=True, return_dict_in_generate=True)
    seq = gen.sequences
    greedy = seq[0, ids0.shape[1]:].to(torch.int64).contiguous()
    assert greedy.shape == (8,), greedy
    # the raw logits (before any logits processor) each greedy token was chosen
    # from, one row per step
    greedy_logits = torch.stack([l[0] for l in gen.logits]).float().contiguous()
    assert greedy_logits.shape == (8, p["V"]), greedy_logits.shape
    assert greedy_logits.argmax(-1).tolist() == greedy.tolist(), name
    # independent check: pure argmax, recomputing the whole prefix each step
    cur, margins, lasts = out["input_ids_0"].tolist(), [], []
    for _ in range(8):
        with torch.no_grad():
            last = model(torch.tensor([cur])).logits[0, -1]
        top2 = last.topk(2).values
        margins.append((top2[0] - top2[1]).item())
        lasts.append(last.float())
        cur.append(int(last.argmax()))
    assert cur[7:] == greedy.tolist(), (name, cur[7:], greedy.tolist())
    assert min(margins) > 1e-3, (name, margins)  # robust to float noise
    # generate (KV cache) and the full recompute give the same distributions
    recomputed = torch.stack(lasts)
    err = (greedy_logits - recomputed).abs().max().item()
    assert err < 1e-4 * max(1.0, recomputed.abs().max().item()), (name, err)
    assert torch.allclose(greedy_logits[0], out["logits_0"][-1], rtol=0, atol=1e-4 * max(
        1.0, out["logits_0"].abs().max().item())), name
    out["greedy_0"] = greedy
    out["greedy_logits_0"] = greedy_logits
    GOLDEN.mkdir(parents=True, exist_ok=True)
    # A single metadata key: safetensors keeps metadata in a hash map, so with
    # several keys the header order (and the file bytes) would vary run to run.
    save_file(out, GOLDEN / f"{name}.safetensors", metadata={"description": (
        f"{name}: logits_i = float32 logits [len, vocab] of transformers' NemotronForCausalLM "
        "on input_ids_i (float32 forward on the weights as stored, except every LayerNorm1p "
        "weight is the effective (w.to(stored dtype) + 1).float() the converted checkpoint "
        "stores; eager attention, positions 0..len-1, no BOS added); greedy_0 = the 8 tokens "
        "continuing input_ids_0 by pure argmax (no eos stop, no eos suppression); "
        "greedy_logits_0 = float32 [8, vocab], row j = the logits greedy_0[j] was chosen from "
        "(generate with KV cache)")})
    return greedy.tolist(), min(margins)


# ---------------------------------------------------------------------------
def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    for d in (MODELS, EXPECTED, GOLDEN):
        if d.exists():
            shutil.rmtree(d)
    specs = {s["name"]: s for s in MODEL_SPECS}

    saved, params = {}, {}
    for s in MODEL_SPECS:
        model = build_model(s)
        save_model(s, model, MODELS / s["name"])
        cfg = json.loads((MODELS / s["name"] / "config.json").read_text())
        p = model_params(cfg)
        assert (p["nkv"], p["hd"]) == (s["kv_heads"], s["head_dim"])
        sd = read_hf_state_dict(MODELS / s["name"])
        for n, t in model.state_dict().items():  # saved == in-memory, dtype as stated
            if n in sd:
                assert sd[n].dtype == DTYPES[s["dtype"]] and torch.equal(sd[n], t), n
        saved[s["name"]], params[s["name"]] = sd, p
        print(f"model {s['name']}: {sorted(os.listdir(MODELS / s['name']))}")

    index = []
    for name, dt_name, tp, pp in SETTINGS:
        sd, p, dt = saved[name], params[name], DTYPES[dt_name]
        rel = f"{name}/{dt_name}-tp{tp}-pp{pp}"
        out = EXPECTED / rel
        out.mkdir(parents=True)
        ranks = convert(sd, p, dt, tp, pp)
        assert sorted(ranks) == list(range(tp * pp))
        for r, tensors in ranks.items():
            assert all(t.dtype == dt for t in tensors.values())
            save_file(tensors, out / f"rank{r}.safetensors")
        dump_json(out / "config.json", trt_config(p, dt_name, tp, pp))
        index.append({"model": name, "dtype": dt_name, "tp": tp, "pp": pp, "dir": rel})

        # self-checks: reassemble the ranks from the files we wrote
        back = {r: safetensors.torch.load_file(out / f"rank{r}.safetensors") for r in ranks}
        full = reassemble(back, p, tp, pp)
        direct = hf_to_full(sd, p, dt)
        assert full.keys() == direct.keys()
        for k in full:
            assert torch.equal(full[k], direct[k]), (rel, k)
        # the naive "+1" must be detectable wherever it can be
        src_dt = DTYPES[specs[name]["dtype"]]
        note = ""
        if dt != torch.float32:
            d_f32, d_src = check_layernorm_rounding(sd, src_dt, dt)
            # IEEE addition is correctly rounded, so when src == dt both naive
            # orders equal the spec bit for bit; bf16 -> f16 is exact, so only
            # the "+1 in the source dtype" order can differ there.
            need_f32 = src_dt != dt and src_dt != torch.bfloat16
            need_src = src_dt != dt
            assert (d_f32, d_src) == (need_f32, need_src), (rel, d_f32, d_src)
            note = f"  naive(+1 in f32) differs: {d_f32}, naive(+1 in {DTYPE_NAME[src_dt]}) differs: {d_src}"
        print(f"expected {rel}: {tp * pp} rank(s){note}")
    dump_json(EXPECTED / "index.json", index)

    for s in MODEL_SPECS:
        greedy, margin = golden(s["name"], MODELS / s["name"], saved[s["name"]],
                                params[s["name"]], s["seed"])
        print(f"golden {s['name']}: greedy_0 {greedy} (min top-2 margin {margin:.3g})")

    print("versions: torch", torch.__version__, "transformers", transformers.__version__,
          "safetensors", safetensors.__version__,
          "tokenizers", __import__("tokenizers").__version__)


if __name__ == "__main__":
    sys.exit(main())
