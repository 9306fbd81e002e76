#!/usr/bin/env python3
"""Write a Hugging Face `NemotronForCausalLM` checkpoint of random data with
real Minitron shapes, for benchmarking `trtllm-minitron convert`.

    scripts/make-random-checkpoint.py SHAPE OUT_DIR [--format safetensors|bin]
        [--dtype bfloat16|float16|float32] [--seed N] [--threads N]
        [--max-shard-size BYTES]
    scripts/make-random-checkpoint.py SHAPE --print-size [--format ...] [--dtype ...]

SHAPE is minitron-8b (~16.5 GB in bf16), minitron-4b (~8.4 GB) or tiny.

Nothing is ever held in memory whole: every file is written tensor by tensor,
its header computed from the shapes first, the data generated in chunks of
CHUNK elements. Values are normal(0, 1) * 0.02 in float32, rounded to the
target dtype (round to nearest even for bfloat16). They depend only on the
seed, the tensor name and the chunk index: the same seed gives the same
values in both formats and whatever --threads is.

--format safetensors: shards of at most 5 GB (5e9 bytes, as transformers'
  save_pretrained cuts them) named model-0000k-of-0000n.safetensors plus
  model.safetensors.index.json; a single model.safetensors when it all fits
  in one shard.
--format bin: one pytorch_model.bin laid out as torch.save writes it (a zip,
  stored, every record 64-byte aligned, zip64 past 4 GiB, records
  data.pkl / .format_version / .storage_alignment / byteorder / data/N /
  version / .data/serialization_id under the `pytorch_model/` folder), the
  pickle being an OrderedDict of name -> _rebuild_tensor_v2(...), written by
  hand so that torch is not needed (and never imported).

Needs numpy only.
"""

import argparse
import collections
import io
import json
import os
import pickle
import struct
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

SHAPES = {
    "minitron-8b": dict(vocab_size=256000, hidden_size=4096, intermediate_size=16384,
                        num_hidden_layers=32, num_attention_heads=48,
                        num_key_value_heads=8, head_dim=128),
    "minitron-4b": dict(vocab_size=256000, hidden_size=3072, intermediate_size=9216,
                        num_hidden_layers=32, num_attention_heads=24,
                        num_key_value_heads=8, head_dim=128),
    # Same structure as the real ones (head_dim * heads != hidden, GQA), small.
    "tiny": dict(vocab_size=1000, hidden_size=256, intermediate_size=1024,
                 num_hidden_layers=4, num_attention_heads=6,
                 num_key_value_heads=2, head_dim=64),
}

DTYPES = {
    # name: (bytes per element, safetensors dtype, torch storage class)
    "bfloat16": (2, "BF16", "BFloat16Storage"),
    "float16": (2, "F16", "HalfStorage"),
    "float32": (4, "F32", "FloatStorage"),
}

CHUNK = 1 << 22            # elements generated at a time (16 MiB of float32)
MAX_SHARD = 5 * 10 ** 9    # transformers' default max_shard_size "5GB"
ALIGN = 64                 # torch.save record alignment
U32 = 0xFFFFFFFF


def config_json(shape, dtype):
    s = SHAPES[shape]
    # In the style of nvidia/Minitron-8B-Base's published config.json
    # (transformers 4.44: top-level rope_theta / partial_rotary_factor, torch_dtype).
    return collections.OrderedDict([
        ("architectures", ["NemotronForCausalLM"]),
        ("attention_bias", False),
        ("attention_dropout", 0.0),
        ("bos_token_id", 2),
        ("eos_token_id", 3),
        ("head_dim", s["head_dim"]),
        ("hidden_act", "relu2"),
        ("hidden_size", s["hidden_size"]),
        ("initializer_range", 0.0134),
        ("intermediate_size", s["intermediate_size"]),
        ("kv_channels", s["head_dim"]),
        ("max_position_embeddings", 4096),
        ("mlp_bias", False),
        ("model_type", "nemotron"),
        ("norm_eps", 1e-05),
        ("num_attention_heads", s["num_attention_heads"]),
        ("num_hidden_layers", s["num_hidden_layers"]),
        ("num_key_value_heads", s["num_key_value_heads"]),
        ("partial_rotary_factor", 0.5),
        ("rope_scaling", None),
        ("rope_theta", 10000),
        ("tie_word_embeddings", False),
        ("torch_dtype", dtype),
        ("transformers_version", "4.44.0"),
        ("use_cache", True),
        ("vocab_size", s["vocab_size"]),
    ])


def tensor_specs(shape):
    """[(name, shape)] in the order transformers' state_dict() lists them."""
    s = SHAPES[shape]
    V, H, F = s["vocab_size"], s["hidden_size"], s["intermediate_size"]
    nh, nkv, d = s["num_attention_heads"], s["num_key_value_heads"], s["head_dim"]
    out = [("model.embed_tokens.weight", (V, H))]
    for l in range(s["num_hidden_layers"]):
        p = f"model.layers.{l}."
        out += [
            (p + "self_attn.q_proj.weight", (nh * d, H)),
            (p + "self_attn.k_proj.weight", (nkv * d, H)),
            (p + "self_attn.v_proj.weight", (nkv * d, H)),
            (p + "self_attn.o_proj.weight", (H, nh * d)),
            (p + "mlp.up_proj.weight", (F, H)),
            (p + "mlp.down_proj.weight", (H, F)),
            (p + "input_layernorm.weight", (H,)),
            (p + "input_layernorm.bias", (H,)),
            (p + "post_attention_layernorm.weight", (H,)),
            (p + "post_attention_layernorm.bias", (H,)),
        ]
    out += [("model.norm.weight", (H,)), ("model.norm.bias", (H,)),
            ("lm_head.weight", (V, H))]
    return out


def numel(shp):
    n = 1
    for x in shp:
        n *= x
    return n


# ---------------------------------------------------------------- random data

class Generator:
    def __init__(self, seed, dtype, threads):
        self.seed = seed
        self.dtype = dtype
        self.pool = ThreadPoolExecutor(max_workers=threads)
        self.threads = threads

    def _chunk(self, name_key, idx, n):
        rng = np.random.default_rng([self.seed, name_key, idx])
        x = rng.standard_normal(n, dtype=np.float32)
        x *= np.float32(0.02)
        if self.dtype == "float32":
            return x
        if self.dtype == "float16":
            return x.astype(np.float16)
        # bfloat16: round float32 to nearest even on the upper 16 bits.
        b = x.view(np.uint32)
        lsb = b >> np.uint32(16)
        lsb &= np.uint32(1)
        b += np.uint32(0x7FFF)
        b += lsb
        b >>= np.uint32(16)
        return b.astype(np.uint16)

    def chunks(self, name, count):
        """Yields the tensor's data as numpy arrays, in order, at most a few
        chunks in flight."""
        key = zlib.crc32(name.encode())
        nchunks = (count + CHUNK - 1) // CHUNK
        pending = collections.deque()
        nxt = 0
        while nxt < nchunks or pending:
            while nxt < nchunks and len(pending) < 2 * self.threads:
                n = min(CHUNK, count - nxt * CHUNK)
                pending.append(self.pool.submit(self._chunk, key, nxt, n))
                nxt += 1
            yield pending.popleft().result()


class Progress:
    def __init__(self, total):
        self.total = total
        self.done = 0
        self.t0 = time.monotonic()
        self.last = 0.0

    def add(self, n, force=False):
        self.done += n
        now = time.monotonic()
        if force or now - self.last >= 2.0:
            self.last = now
            el = now - self.t0
            rate = self.done / el if el > 0 else 0.0
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            print(f"  {self.done / 1e9:8.2f} / {self.total / 1e9:.2f} GB "
                  f"({100.0 * self.done / max(self.total, 1):5.1f}%)  "
                  f"{rate / 1e6:7.1f} MB/s  elapsed {el:6.1f}s  eta {eta:6.1f}s",
                  flush=True)


def write_tensor(f, gen, name, count, progress, crc=None):
    for arr in gen.chunks(name, count):
        mv = memoryview(arr).cast("B")
        f.write(mv)
        if crc is not None:
            crc = zlib.crc32(mv, crc)
        progress.add(len(mv))
    return crc


# ---------------------------------------------------------------- safetensors

def plan_shards(specs, esize, max_shard):
    """transformers' shard_checkpoint: fill a shard until the next tensor
    would pass max_shard (a tensor bigger than that gets a shard alone)."""
    shards, cur, cur_size = [], [], 0
    for name, shp in specs:
        nb = numel(shp) * esize
        if cur and cur_size + nb > max_shard:
            shards.append(cur)
            cur, cur_size = [], 0
        cur.append((name, shp))
        cur_size += nb
    if cur:
        shards.append(cur)
    return shards


def safetensors_header(tensors, st_dtype, esize):
    hdr = collections.OrderedDict()
    hdr["__metadata__"] = {"format": "pt"}
    off = 0
    for name, shp in tensors:
        nb = numel(shp) * esize
        hdr[name] = {"dtype": st_dtype, "shape": list(shp), "data_offsets": [off, off + nb]}
        off += nb
    raw = json.dumps(hdr, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return raw, off


def write_safetensors(out_dir, specs, dtype, gen, progress, max_shard):
    esize, st_dtype, _ = DTYPES[dtype]
    shards = plan_shards(specs, esize, max_shard)
    n = len(shards)
    weight_map = collections.OrderedDict()
    total = 0
    written = []
    for k, tensors in enumerate(shards, 1):
        fname = "model.safetensors" if n == 1 else f"model-{k:05d}-of-{n:05d}.safetensors"
        # safetensors orders the data by name within a file (all one dtype here).
        tensors = sorted(tensors, key=lambda t: t[0])
        raw, data_size = safetensors_header(tensors, st_dtype, esize)
        print(f"[{fname}] {len(tensors)} tensors, {data_size / 1e9:.2f} GB", flush=True)
        path = os.path.join(out_dir, fname)
        with open(path + ".partial", "wb") as f:
            f.write(struct.pack("<Q", len(raw)))
            f.write(raw)
            for name, shp in tensors:
                write_tensor(f, gen, name, numel(shp), progress)
                weight_map[name] = fname
        os.replace(path + ".partial", path)
        total += data_size
        written.append(fname)
    if n > 1:
        index = {"metadata": {"total_size": total},
                 "weight_map": collections.OrderedDict(sorted(weight_map.items()))}
        with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
            json.dump(index, f, indent=2)
            f.write("\n")
        written.append("model.safetensors.index.json")
    return written


# ---------------------------------------------------------------- pytorch_model.bin

class _Global:
    """Stands for a global (module.name) that torch would pickle by reference."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *a):  # pickle checks that a reduce function is callable
        raise TypeError("placeholder")


class _Storage:
    def __init__(self, key, storage_cls, count):
        self.key, self.storage_cls, self.count = key, storage_cls, count


class _Tensor:
    def __init__(self, storage, shape):
        self.storage, self.shape = storage, tuple(shape)


_REBUILD = _Global("torch._utils", "_rebuild_tensor_v2")


class _TorchLikePickler(pickle._Pickler):
    """The pure-Python pickler, protocol 2 like torch.save, so that memo
    (BINPUT/BINGET) use is the same as torch's output."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_fake_global(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("utf-8"))
        self.memoize(obj)

    dispatch[_Global] = _save_fake_global

    def reducer_override(self, obj):
        if isinstance(obj, _Tensor):
            stride, acc = [], 1
            for d in reversed(obj.shape):
                stride.append(acc)
                acc *= d
            return (_REBUILD, (obj.storage, 0, obj.shape, tuple(reversed(stride)),
                               False, collections.OrderedDict()))
        return NotImplemented

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", obj.storage_cls, obj.key, "cpu", obj.count)
        return None


def torch_pickle(specs, dtype):
    cls = _Global("torch", DTYPES[dtype][2])
    sd = collections.OrderedDict()
    for i, (name, shp) in enumerate(specs):
        sd[name] = _Tensor(_Storage(str(i), cls, numel(shp)), shp)
    buf = io.BytesIO()
    _TorchLikePickler(buf, protocol=2).dump(sd)
    return buf.getvalue()


class ZipWriter:
    """Stored (uncompressed) zip records, 64-byte aligned, the way torch's
    PyTorchStreamWriter (miniz) writes them: local header with the data
    descriptor flag, an "FB" padding extra field, data, data descriptor;
    zip64 fields once an offset or size passes 4 GiB; zip64 end records."""

    def __init__(self, f):
        self.f = f
        self.entries = []  # (name, offset, size, crc)

    def _local(self, name, size_hint):
        off = self.f.tell()
        nb = name.encode()
        z64 = b""
        if size_hint >= U32 or off >= U32:
            body = b""
            if size_hint >= U32:
                body += struct.pack("<QQ", 0, 0)
            if off >= U32:
                body += struct.pack("<Q", off)
            z64 = struct.pack("<HH", 1, len(body)) + body
        start = off + 30 + len(nb) + len(z64) + 4
        pad = -start % ALIGN
        extra = z64 + b"FB" + struct.pack("<H", pad) + b"Z" * pad
        self.f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 0, 0x0808, 0, 0, 0,
                                 0, 0, 0, len(nb), len(extra)))
        self.f.write(nb)
        self.f.write(extra)
        assert self.f.tell() % ALIGN == 0
        return off, bool(z64)

    def _finish(self, name, off, z64, size, crc):
        if z64:
            self.f.write(struct.pack("<IIQQ", 0x08074B50, crc, size, size))
        else:
            self.f.write(struct.pack("<IIII", 0x08074B50, crc, size, size))
        self.entries.append((name, off, size, crc))

    def write_bytes(self, name, data):
        off, z64 = self._local(name, len(data))
        self.f.write(data)
        self._finish(name, off, z64, len(data), zlib.crc32(data))

    def write_stream(self, name, size, fill):
        """fill(f) writes exactly size bytes and returns their crc32."""
        off, z64 = self._local(name, size)
        pos = self.f.tell()
        crc = fill(self.f)
        assert self.f.tell() - pos == size, (name, self.f.tell() - pos, size)
        self._finish(name, off, z64, size, crc)

    def close(self):
        cd_off = self.f.tell()
        for name, off, size, crc in self.entries:
            nb = name.encode()
            body = b""
            if size >= U32:
                body += struct.pack("<QQ", size, size)
            if off >= U32:
                body += struct.pack("<Q", off)
            extra = struct.pack("<HH", 1, len(body)) + body if body else b""
            s32 = U32 if size >= U32 else size
            o32 = U32 if off >= U32 else off
            self.f.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0, 0, 0x0808, 0, 0, 0,
                                     crc, s32, s32, len(nb), len(extra), 0, 0, 0, 0, o32))
            self.f.write(nb)
            self.f.write(extra)
        cd_end = self.f.tell()
        cd_size = cd_end - cd_off
        n = len(self.entries)
        # zip64 end of central directory record + locator (miniz always writes them)
        self.f.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 0x031E, 0x002D, 0, 0,
                                 n, n, cd_size, cd_off))
        self.f.write(struct.pack("<IIQI", 0x07064B50, 0, cd_end, 1))
        self.f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, min(n, 0xFFFF), min(n, 0xFFFF),
                                 min(cd_size, U32), min(cd_off, U32), 0))


def write_bin(out_dir, specs, dtype, gen, progress, seed):
    esize = DTYPES[dtype][0]
    fname = "pytorch_model.bin"
    prefix = "pytorch_model/"  # torch.save(path) names the folder after the file
    pkl = torch_pickle(specs, dtype)
    path = os.path.join(out_dir, fname)
    print(f"[{fname}] {len(specs)} tensors, "
          f"{sum(numel(s) for _, s in specs) * esize / 1e9:.2f} GB", flush=True)
    with open(path + ".partial", "wb") as f:
        z = ZipWriter(f)
        z.write_bytes(prefix + "data.pkl", pkl)
        z.write_bytes(prefix + ".format_version", b"1")
        z.write_bytes(prefix + ".storage_alignment", b"64")
        z.write_bytes(prefix + "byteorder", b"little")
        for i, (name, shp) in enumerate(specs):
            count = numel(shp)
            z.write_stream(prefix + f"data/{i}", count * esize,
                           lambda fh, name=name, count=count:
                           write_tensor(fh, gen, name, count, progress, crc=0))
        z.write_bytes(prefix + "version", b"3\n")
        sid = str(zlib.crc32(f"serialization_id {seed}".encode())).rjust(40, "0")
        z.write_bytes(prefix + ".data/serialization_id", sid.encode())
        z.close()
    os.replace(path + ".partial", path)
    return [fname]


# ---------------------------------------------------------------- main

def weight_bytes(specs, dtype):
    return sum(numel(s) for _, s in specs) * DTYPES[dtype][0]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shape", choices=sorted(SHAPES))
    ap.add_argument("out_dir", nargs="?")
    ap.add_argument("--format", choices=["safetensors", "bin"], default="safetensors")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="generator threads (values do not depend on it)")
    ap.add_argument("--max-shard-size", type=int, default=MAX_SHARD, metavar="BYTES",
                    help="safetensors shard limit (default 5e9, as transformers)")
    ap.add_argument("--print-size", action="store_true",
                    help="print the bytes of tensor data and the parameter count, then exit")
    args = ap.parse_args()

    specs = tensor_specs(args.shape)
    total = weight_bytes(specs, args.dtype)
    params = sum(numel(s) for _, s in specs)
    if args.print_size:
        print(total, params)
        return 0
    if not args.out_dir:
        ap.error("OUT_DIR is required")

    os.makedirs(args.out_dir, exist_ok=True)
    print(f"make-random-checkpoint: shape {args.shape}, {params:,} parameters "
          f"({params / 1e9:.3f}e9), {args.dtype}, {total / 1e9:.2f} GB of tensor data, "
          f"format {args.format}, seed {args.seed}, {args.threads} threads -> {args.out_dir}",
          flush=True)
    with open(os.path.join(args.out_dir, "config.json"), "w") as f:
        json.dump(config_json(args.shape, args.dtype), f, indent=2)
        f.write("\n")
    with open(os.path.join(args.out_dir, "generation_config.json"), "w") as f:
        json.dump({"_from_model_config": True, "bos_token_id": 2, "eos_token_id": 3,
                   "transformers_version": "4.44.0"}, f, indent=2)
        f.write("\n")

    gen = Generator(args.seed, args.dtype, max(1, args.threads))
    progress = Progress(total)
    t0 = time.monotonic()
    if args.format == "safetensors":
        files = write_safetensors(args.out_dir, specs, args.dtype, gen, progress,
                                  args.max_shard_size)
    else:
        files = write_bin(args.out_dir, specs, args.dtype, gen, progress, args.seed)
    progress.add(0, force=True)
    gen.pool.shutdown()
    dt = time.monotonic() - t0
    print(f"done in {dt:.1f}s: config.json generation_config.json {' '.join(files)}",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
