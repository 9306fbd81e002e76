#!/usr/bin/env python3
"""Make the SentencePiece tokenizer fixtures under tests/fixtures/tokenizer-spm/.

    python3 -m venv target/spm-venv
    target/spm-venv/bin/pip install sentencepiece transformers tokenizers protobuf
    target/spm-venv/bin/python scripts/make-spm-fixture.py

Some checkpoints ship only a SentencePiece `tokenizer.model` and no
`tokenizer.json`. trtllm-minitron then builds the fast tokenizer itself, as
transformers' Llama tokenizer does when it is given only the `.model` file. These
fixtures let `cargo test` check that against transformers without Python:

* bpe.model       a small SentencePiece BPE model trained here with the
                  `sentencepiece` package on the multilingual text and code below:
                  byte_fallback on, ids 0 <pad> 1 <unk> 2 <s> 3 </s> (Minitron's
                  layout), digits split, identity normalisation, one user-defined
                  symbol.
* unigram.model   a small SentencePiece Unigram model (what the tool must refuse).
* expected.json   for each test text: the ids transformers' fast tokenizer gives
                  when a directory holds only this model as `tokenizer.model`
                  (`LlamaTokenizerFast.from_pretrained(dir)`, which converts it; also
                  with `add_bos_token=True` and with `legacy=True`), the decoded text
                  and the tokens; SentencePiece's own ids for comparison; the versions.
* transformers-tokenizer.json
                  transformers' own conversion of bpe.model, saved: the test
                  compares vocabulary, merges and pipeline pieces with ours.

Training is single-threaded and unshuffled, so the same package versions give the
same files. The script checks its own output (round trips, the merge order rule the
Rust side relies on) and stops with an assertion error if a check fails.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import sentencepiece as spm
import transformers
from transformers import LlamaTokenizerFast

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "tokenizer-spm"

# Training text: short passages written for this fixture in several scripts, plus
# this script's own source as code.
PROSE = """\
The quick brown fox jumps over the lazy dog while the model converts its weights.
A tokenizer turns text into numbers, and a good one turns the numbers back into the same text.
Large language models are trained on many languages and on a lot of source code.
Every token that is not in the vocabulary falls back to its UTF-8 bytes.
Der schnelle braune Fuchs springt über den faulen Hund, während es draußen regnet.
Grüße aus München: Straßenbahn, Bäckerei, Frühstück und ein schöner Spaziergang.
Le renard brun rapide saute par-dessus le chien paresseux, et c'est déjà l'été.
Où est la gare ? Je voudrais un café crème et deux croissants, s'il vous plaît.
El rápido zorro marrón salta sobre el perro perezoso. ¿Dónde está la biblioteca?
Mañana por la mañana vamos a la playa con nuestros niños y sus abuelos.
Il veloce volpe marrone salta sopra il cane pigro. Dove si trova la stazione?
A rápida raposa marrom pula sobre o cão preguiçoso. Não sei onde está a estação.
Быстрая коричневая лиса прыгает через ленивую собаку. Где находится вокзал?
Москва, Санкт-Петербург и Новосибирск — крупные города России.
Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο. Πού είναι ο σταθμός;
敏捷的棕色狐狸跳过了懒狗。今天天气很好，我们去公园散步吧。
我们在北京学习中文，也学习计算机科学和机器学习。
素早い茶色の狐が怠け者の犬を飛び越える。東京駅はどこですか。
日本語の文章には漢字とひらがなとカタカナが混ざっています。
빠른 갈색 여우가 게으른 개를 뛰어넘는다. 서울역은 어디에 있습니까?
الثعلب البني السريع يقفز فوق الكلب الكسول. أين محطة القطار؟
השועל החום המהיר קופץ מעל הכלב העצלן. איפה תחנת הרכבת?
तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है। रेलवे स्टेशन कहाँ है?
Szybki brązowy lis przeskakuje nad leniwym psem. Gdzie jest dworzec?
Hızlı kahverengi tilki tembel köpeğin üzerinden atlar. İstasyon nerede?
Numbers: 1 2 3 10 42 100 2024 3.14159 1,000,000 and 0x1F are split into digits.
"""

# Held-out test texts: a multilingual one (with characters the model never saw, so
# byte fallback is used) and a code one (indentation, tabs, runs of spaces, digits).
TEXTS = {
    "multilingual": (
        "Hello, world! Grüße aus Köln — ça va? ¿Qué tal, señor? Привет, мир. "
        "你好，世界。こんにちは、世界。Γειά σου κόσμε. مرحبا بالعالم. "
        "Rare: 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ☃ 🙂 ẞ ǅ\u200b end."
    ),
    "code": (
        "def tokenize(text: str, max_len: int = 4096) -> list[int]:\n"
        "    ids = [2]  # bos\n"
        "    for i, ch in enumerate(text):\n"
        "        if ch == \"\\t\":\n"
        "\t\tids.append(0x09)\n"
        "        elif i > 100 and  ch  in '{}[]':\n"
        "            return ids[:max_len]   # truncated\n"
        "    return ids\n"
        "\n"
        "fn main() { let v: Vec<u32> = vec![1, 22, 333]; println!(\"{v:?}\"); }\n"
    ),
    "edges": "  leading spaces, <s> and </s> in the text,\n\nblank lines<|code|>and trailing spaces  ",
    "empty": "",
}

USER_SYMBOL = "<|code|>"


def log(*a):
    print(*a, flush=True)


def train(model_type: str, vocab_size: int, prefix: Path, corpus: Path) -> None:
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(prefix),
        model_type=model_type,
        vocab_size=vocab_size,
        character_coverage=0.98,
        byte_fallback=True,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        pad_id=0,
        unk_id=1,
        bos_id=2,
        eos_id=3,
        user_defined_symbols=[USER_SYMBOL],
        hard_vocab_limit=False,
        num_threads=1,
        shuffle_input_sentence=False,
        minloglevel=2,
    )


def versions() -> dict:
    return {
        "python": sys.version.split()[0],
        "sentencepiece": md.version("sentencepiece"),
        "transformers": transformers.__version__,
        "tokenizers": md.version("tokenizers"),
        "protobuf": md.version("protobuf"),
    }


def encode_case(tok, text: str) -> dict:
    with_special = tok(text)["input_ids"]
    plain = tok(text, add_special_tokens=False)["input_ids"]
    return {
        "ids": plain,
        "tokens": tok.convert_ids_to_tokens(plain),
        "ids_default": with_special,
        "decoded": tok.decode(plain, skip_special_tokens=True),
    }


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    code = Path(__file__).read_text(encoding="utf-8")
    cwd = Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        # The model records its input and output paths: train with relative ones so
        # that every run writes the same bytes.
        os.chdir(tmp)
        try:
            Path("corpus.txt").write_text(PROSE + code, encoding="utf-8")
            train("bpe", 1000, Path("bpe"), Path("corpus.txt"))
            train("unigram", 700, Path("unigram"), Path("corpus.txt"))
            shutil.copy("bpe.model", OUT / "bpe.model")
            shutil.copy("unigram.model", OUT / "unigram.model")
        finally:
            os.chdir(cwd)

    model = OUT / "bpe.model"
    sp = spm.SentencePieceProcessor(model_file=str(model))
    pieces = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    normal = [(i, s) for i, (p, s) in enumerate(pieces)
              if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i) or sp.is_unused(i))
              and p != USER_SYMBOL]
    # The Rust side ranks merges by piece score, then id; transformers 5 by id alone.
    # They agree when scores fall strictly with the id, as SentencePiece's BPE trainer
    # writes them.
    assert all(a[1] > b[1] for a, b in zip(normal, normal[1:])), "BPE scores not falling with id"

    # transformers 5 converts a `.model` when loading a directory (`LlamaTokenizerFast(
    # vocab_file=...)` alone gives an empty tokenizer there); 4.x did so in the constructor.
    model_dir = Path(tempfile.mkdtemp())
    shutil.copy(model, model_dir / "tokenizer.model")
    tok = LlamaTokenizerFast.from_pretrained(model_dir)
    tok_bos = LlamaTokenizerFast.from_pretrained(model_dir, add_bos_token=True)
    tok_legacy = LlamaTokenizerFast.from_pretrained(model_dir, legacy=True)
    assert len(tok) == sp.get_piece_size(), (len(tok), sp.get_piece_size())
    tok.backend_tokenizer.save(str(OUT / "transformers-tokenizer.json"))
    shutil.rmtree(model_dir)

    cases = {}
    for name, text in TEXTS.items():
        case = encode_case(tok, text)
        case["text"] = text
        case["ids_with_bos"] = tok_bos(text)["input_ids"]
        case["ids_legacy"] = tok_legacy(text, add_special_tokens=False)["input_ids"]
        case["ids_sentencepiece"] = sp.encode(text)
        cases[name] = case
        log(f"{name}: {len(case['ids'])} ids; sentencepiece itself agrees: "
            f"{case['ids'] == case['ids_sentencepiece']}; legacy differs: {case['ids'] != case['ids_legacy']}")

    # Self-checks: the byte fallback is exercised and text round-trips.
    multi = cases["multilingual"]
    assert any(t.startswith("<0x") for t in multi["tokens"]), "no byte-fallback token in the multilingual text"
    for name in ("multilingual", "code"):
        assert cases[name]["decoded"] == TEXTS[name], (name, cases[name]["decoded"])
    assert cases["multilingual"]["ids_with_bos"][0] == 2

    expected = {
        "about": "ids from transformers' fast tokenizer built from bpe.model; made by scripts/make-spm-fixture.py",
        "versions": versions(),
        "vocab_size": sp.get_piece_size(),
        "cases": cases,
    }
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    log(f"wrote {OUT} ({sum(f.stat().st_size for f in OUT.iterdir())} bytes); versions {versions()}")


if __name__ == "__main__":
    main()
