#!/usr/bin/env python3
"""Write a synthetic SentencePiece `tokenizer.model` with exactly VOCAB pieces.

    make-spm-tokenizer.py VOCAB OUT_FILE

llama.cpp's convert_hf_to_gguf.py reads the vocabulary of a Nemotron model
from a SentencePiece model; the random benchmark checkpoints have none. This
builds the ModelProto directly with the protobuf classes the `sentencepiece`
package ships (no training): <unk>, <s>, </s>, the 256 byte-fallback pieces
<0x00>..<0xFF>, then distinct placeholder pieces up to VOCAB. The benchmarks
feed token ids, never text, so what the pieces spell does not matter; the
file only has to load and have the model's vocabulary size.
"""

import sys

from sentencepiece import SentencePieceProcessor
from sentencepiece import sentencepiece_model_pb2 as spm_pb2


def build(vocab: int) -> bytes:
    if vocab < 3 + 256 + 1:
        raise SystemExit(f"make-spm-tokenizer: vocab {vocab} is too small (need > 259)")
    m = spm_pb2.ModelProto()
    m.trainer_spec.model_type = spm_pb2.TrainerSpec.BPE
    m.trainer_spec.vocab_size = vocab
    m.trainer_spec.byte_fallback = True
    m.trainer_spec.unk_id, m.trainer_spec.bos_id, m.trainer_spec.eos_id = 0, 1, 2
    m.trainer_spec.pad_id = -1
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = False
    P = spm_pb2.ModelProto.SentencePiece

    def add(piece, kind, score=0.0):
        p = m.pieces.add()
        p.piece, p.type, p.score = piece, kind, score

    add("<unk>", P.UNKNOWN)
    add("<s>", P.CONTROL)
    add("</s>", P.CONTROL)
    for b in range(256):
        add(f"<0x{b:02X}>", P.BYTE)
    for i in range(vocab - len(m.pieces)):
        add(f"\u2581t{i}", P.NORMAL, -float(i))
    return m.SerializeToString()


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    vocab, out = int(sys.argv[1]), sys.argv[2]
    data = build(vocab)
    with open(out, "wb") as f:
        f.write(data)
    sp = SentencePieceProcessor()
    sp.LoadFromFile(out)
    assert sp.vocab_size() == vocab, (sp.vocab_size(), vocab)


if __name__ == "__main__":
    main()
