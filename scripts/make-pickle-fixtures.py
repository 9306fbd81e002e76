#!/usr/bin/env python3
"""Regenerate the fixtures of the restricted `pytorch_model.bin` reader (src/hf/torch_bin/).

    python3 scripts/make-pickle-fixtures.py

Writes tests/fixtures/pickle/:

* good.bin        torch.save of a small OrderedDict state dict: float16, bfloat16 and
                  float32 tensors, a view sharing its base's storage at a nonzero
                  offset, an nn.Parameter, a 0-d and an empty tensor, enough tensors
                  that the memo passes 255 (LONG_BINPUT / LONG_BINGET), and the
                  `_metadata` attribute state dicts carry (set through BUILD).
* good-p4.bin     the same state dict saved with pickle_protocol=4 (FRAME, MEMOIZE,
                  SHORT_BINUNICODE, STACK_GLOBAL).
* good.json       {"torch_version", "tensors": [{name, dtype, shape, values, bits}]}
                  in state-dict order; values are the tensor's elements, row-major,
                  as floats (Python's shortest repr of the exact value), bits the
                  same elements' IEEE bit patterns.
* evil-global.bin a zip in torch's layout whose data.pkl REDUCEs posix.system
                  ("echo pwned"), written by pickle itself from a __reduce__.
* evil-opcode.bin torch's layout, data.pkl uses INST (os.system), which torch never emits.
* long-storage.bin torch.save of a state dict holding an int64 tensor.
* deflated.bin    good.bin's entries rewritten into a zip whose storages are deflated.

The output is deterministic (torch.save is, for the same archive name; zip dates are
fixed here). Nothing in this script unpickles the evil files.
"""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "pickle"
DATE = (1980, 1, 1, 0, 0, 0)
DTYPE_NAME = {torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float32: "float32"}


def state_dict() -> collections.OrderedDict:
    g = torch.Generator().manual_seed(1234)
    sd = collections.OrderedDict()
    sd["model.embed_tokens.weight"] = torch.randn(6, 4, generator=g).to(torch.float16)
    sd["model.norm.weight"] = torch.randn(4, generator=g).to(torch.bfloat16)
    base = torch.randn(5, 3, generator=g)
    sd["model.layers.0.mlp.up_proj.weight"] = base
    # A view into `base`'s storage that starts at element 6: saved as the same storage.
    sd["model.layers.0.mlp.up_proj.tail"] = base[2:]
    # A Parameter pickles through torch._utils._rebuild_parameter.
    sd["lm_head.weight"] = torch.nn.Parameter(
        torch.randn(3, 4, generator=g).to(torch.bfloat16), requires_grad=False
    )
    sd["model.scale"] = torch.tensor(0.5, dtype=torch.float32)
    sd["model.empty"] = torch.zeros(0, 3, dtype=torch.float16)
    # > 255 elements: BININT2 for numel.
    sd["model.big"] = torch.randn(20, 16, generator=g).to(torch.float16)
    # Enough entries to push the memo past 255 (LONG_BINPUT / LONG_BINGET).
    for i in range(24):
        sd[f"model.extra.{i}"] = torch.randn(2, generator=g)
    sd._metadata = collections.OrderedDict()
    sd._metadata[""] = {"version": 1}
    sd._metadata["model"] = {"version": 2}
    sd._metadata["model.layers.0.mlp"] = {"version": 1}
    return sd


def bits(t: torch.Tensor) -> list[int]:
    as_int = {2: torch.int16, 4: torch.int32}[t.element_size()]
    mask = (1 << (8 * t.element_size())) - 1
    return [x & mask for x in t.contiguous().view(as_int).flatten().tolist()]


def save(obj, name: str, **kwargs) -> Path:
    # torch names the zip's top folder after the file, so the name is part of the bytes.
    path = OUT / name
    torch.save(obj, path, **kwargs)
    return path


def torch_layout_zip(name: str, pkl: bytes) -> None:
    """A zip laid out as torch.save lays it out, with a hand-made data.pkl."""
    prefix = Path(name).stem
    with zipfile.ZipFile(OUT / name, "w", compression=zipfile.ZIP_STORED) as z:
        for entry, data in [
            ("data.pkl", pkl),
            (".format_version", b"1"),
            (".storage_alignment", b"64"),
            ("byteorder", b"little"),
            ("data/0", b"\0" * 8),
            ("version", b"3\n"),
        ]:
            z.writestr(zipfile.ZipInfo(f"{prefix}/{entry}", DATE), data)


class Evil:
    # pickle turns this into GLOBAL 'posix system' + REDUCE: running it would execute.
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    sd = state_dict()
    save(sd, "good.bin")
    save(sd, "good-p4.bin", pickle_protocol=4)

    tensors = []
    for name, t in sd.items():
        t = t.detach()
        tensors.append(
            {
                "name": name,
                "dtype": DTYPE_NAME[t.dtype],
                "shape": list(t.shape),
                "values": [float(x) for x in t.double().flatten().tolist()],
                # The same elements as their IEEE bit patterns (u16 or u32), for
                # comparisons that do not depend on a JSON float parser.
                "bits": bits(t),
            }
        )
    doc = {"torch_version": torch.__version__, "tensors": tensors}
    (OUT / "good.json").write_text(json.dumps(doc, indent=1) + "\n")

    # Evil: a real pickle of a dict whose value REDUCEs os.system (posix.system on Linux).
    evil = pickle.dumps({"model.embed_tokens.weight": Evil()}, protocol=2)
    assert b"system" in evil
    torch_layout_zip("evil-global.bin", evil)

    # Evil: INST os.system, an opcode torch never emits (protocol 0).
    inst = b"\x80\x02(X\x0a\x00\x00\x00echo pwnedios\nsystem\n."
    torch_layout_zip("evil-opcode.bin", inst)

    save(collections.OrderedDict(ids=torch.arange(5, dtype=torch.int64)), "long-storage.bin")

    # Same entries as good.bin, with the storages deflated (data.pkl stays stored so
    # the pickle itself is read and the error comes at the storage).
    src = zipfile.ZipFile(OUT / "good.bin")
    with zipfile.ZipFile(OUT / "deflated.bin", "w") as z:
        for info in src.infolist():
            entry = info.filename.replace("good/", "deflated/", 1)
            method = zipfile.ZIP_DEFLATED if "/data/" in entry else zipfile.ZIP_STORED
            zi = zipfile.ZipInfo(entry, DATE)
            zi.compress_type = method
            z.writestr(zi, src.read(info.filename))
    src.close()

    # Self-check: torch reads the good files back equal, and refuses the evil ones.
    for name in ["good.bin", "good-p4.bin"]:
        # torch's own weights_only unpickler refuses FRAME (protocol 4); these two
        # files were just written from trusted tensors, so a full load is safe.
        back = torch.load(OUT / name, weights_only=name == "good.bin")
        assert list(back) == list(sd), name
        for k in sd:
            assert torch.equal(back[k], sd[k].detach()), (name, k)
        assert back._metadata == sd._metadata, name
    for name in ["evil-global.bin", "evil-opcode.bin"]:
        try:
            torch.load(OUT / name, weights_only=True)
        except pickle.UnpicklingError:
            pass
        else:
            raise AssertionError(f"torch accepted {name}")
    for p in sorted(OUT.iterdir()):
        assert p.stat().st_size < 100_000, p
        print(f"{p.relative_to(ROOT)}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
