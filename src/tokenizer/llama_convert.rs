//! Builds a `tokenizers` tokenizer from a SentencePiece BPE model the way transformers'
//! Llama tokenizer does when a checkpoint ships only `tokenizer.model` (transformers 5:
//! `LlamaTokenizer` fed by `SentencePieceExtractor`; 4.x: `LlamaConverter` in
//! `convert_slow_tokenizer.py`, which agrees on everything below except where noted).
//!
//! - Model: BPE over every piece (id = index), byte fallback on, unknown pieces fused,
//!   `unk_token` = the model's unk piece. Merges are derived from the vocabulary: every
//!   split of a normal piece into two normal pieces, ranked by the merged piece's score
//!   (highest first, then lower id), splits of one piece by shorter left part first.
//!   SentencePiece's BPE trainer writes scores that fall with the id, so this is the id
//!   order transformers 5 uses.
//! - Control and unknown pieces (`<s>`, `</s>`, `<pad>`, `<unk>`) become special added
//!   tokens, user-defined pieces non-special added tokens; none is normalized.
//! - No normalizer. Pre-tokenizer Metaspace (`▁`, no split) with prepend scheme "first"
//!   (transformers' default, non-legacy), "always" when `tokenizer_config.json` says
//!   `"legacy": true`, "never" when it says `"add_prefix_space": false`. (4.x's
//!   `LlamaConverter` expressed legacy as a Prepend + Replace normalizer, which differs only
//!   for text that already starts with a space.)
//! - Decoder: Replace `▁` by a space, ByteFallback, Fuse, then Strip one leading space
//!   unless `add_prefix_space` is false.
//! - Post-processor: BOS / EOS only when `tokenizer_config.json` sets `add_bos_token` /
//!   `add_eos_token` (transformers 5's default is neither; 4.x added a BOS by default).

use std::collections::HashMap;

use serde_json::Value;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, DecoderWrapper};

use super::spm_model::{ModelKind, PieceKind, SpmModel};

const SPACE: char = '▁';

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("it is a SentencePiece {} model; only BPE models (as Minitron's) can be converted here", .0.name())]
    NotBpe(ModelKind),
    #[error("tokenizer_config.json asks for a {which} token, but the model has no {which} piece")]
    MissingSpecial { which: &'static str },
    #[error("building the tokenizer failed: {0}")]
    Build(String),
}

/// The `tokenizer_config.json` settings transformers' Llama tokenizer reads.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertOptions {
    pub legacy: bool,
    pub add_prefix_space: bool,
    pub add_bos: bool,
    pub add_eos: bool,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            legacy: false,
            add_prefix_space: true,
            add_bos: false,
            add_eos: false,
            bos_token: None,
            eos_token: None,
        }
    }
}

impl ConvertOptions {
    /// From a parsed `tokenizer_config.json` (absent keys, or `null`, keep the defaults).
    pub fn from_config(config: Option<&Value>) -> Self {
        let d = ConvertOptions::default();
        let Some(c) = config else { return d };
        let flag = |key: &str, default: bool| c.get(key).and_then(Value::as_bool).unwrap_or(default);
        ConvertOptions {
            legacy: flag("legacy", d.legacy),
            add_prefix_space: flag("add_prefix_space", d.add_prefix_space),
            add_bos: flag("add_bos_token", d.add_bos),
            add_eos: flag("add_eos_token", d.add_eos),
            bos_token: super::config_token(c, "bos_token"),
            eos_token: super::config_token(c, "eos_token"),
        }
    }
}

pub fn build(model: &SpmModel, opts: &ConvertOptions) -> Result<tokenizers::Tokenizer, ConvertError> {
    if model.kind != ModelKind::Bpe {
        return Err(ConvertError::NotBpe(model.kind));
    }
    let build_err = |e: tokenizers::Error| ConvertError::Build(e.to_string());
    let vocab: tokenizers::models::bpe::Vocab = model
        .pieces
        .iter()
        .enumerate()
        .map(|(id, p)| (p.text.clone(), id as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges(model))
        .unk_token(model.unk_piece.clone())
        .fuse_unk(true)
        .byte_fallback(true)
        .build()
        .map_err(build_err)?;
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);

    let scheme = match (opts.add_prefix_space, opts.legacy) {
        (false, _) => PrependScheme::Never,
        (true, true) => PrependScheme::Always,
        (true, false) => PrependScheme::First,
    };
    tokenizer.with_pre_tokenizer(Some(Metaspace::new(SPACE, scheme, false)));
    let mut decoders: Vec<DecoderWrapper> = vec![
        Replace::new(SPACE.to_string(), " ").map_err(build_err)?.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if opts.add_prefix_space {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    tokenizer.with_decoder(Some(Sequence::new(decoders)));

    let added = |kinds: &[PieceKind], special: bool| -> Vec<AddedToken> {
        model
            .pieces
            .iter()
            .filter(|p| kinds.contains(&p.kind))
            .map(|p| AddedToken::from(p.text.clone(), special).normalized(false))
            .collect()
    };
    tokenizer
        .add_special_tokens(added(&[PieceKind::Control, PieceKind::Unknown], true))
        .map_err(build_err)?;
    tokenizer
        .add_tokens(added(&[PieceKind::UserDefined], false))
        .map_err(build_err)?;

    if opts.add_bos || opts.add_eos {
        let bos = special_id(&tokenizer, opts.add_bos, &opts.bos_token, &model.bos_piece, "BOS")?;
        let eos = special_id(&tokenizer, opts.add_eos, &opts.eos_token, &model.eos_piece, "EOS")?;
        let template = |seq: &str, type_id: u32| {
            let mut parts = Vec::new();
            if let Some((t, _)) = &bos {
                parts.push(format!("{t}:{type_id}"));
            }
            parts.push(format!("${seq}:{type_id}"));
            if let Some((t, _)) = &eos {
                parts.push(format!("{t}:{type_id}"));
            }
            parts.join(" ")
        };
        let single = template("A", 0);
        let pair = format!("{single} {}", template("B", 1));
        let processor = TemplateProcessing::builder()
            .try_single(single)
            .and_then(|b| b.try_pair(pair))
            .map_err(ConvertError::Build)?
            .special_tokens(bos.into_iter().chain(eos).collect::<Vec<_>>())
            .build()
            .map_err(|e| ConvertError::Build(e.to_string()))?;
        tokenizer.with_post_processor(Some(processor));
    }
    Ok(tokenizer)
}

/// The token (and id) a template adds, when `wanted`.
fn special_id(
    tokenizer: &tokenizers::Tokenizer,
    wanted: bool,
    configured: &Option<String>,
    from_model: &Option<String>,
    which: &'static str,
) -> Result<Option<(String, u32)>, ConvertError> {
    if !wanted {
        return Ok(None);
    }
    let token = configured
        .clone()
        .or_else(|| from_model.clone())
        .ok_or(ConvertError::MissingSpecial { which })?;
    let id = tokenizer
        .token_to_id(&token)
        .ok_or(ConvertError::MissingSpecial { which })?;
    Ok(Some((token, id)))
}

/// Every split of a normal piece into two normal pieces, in rank order.
fn merges(model: &SpmModel) -> Vec<(String, String)> {
    let normal: HashMap<&str, usize> = model
        .pieces
        .iter()
        .enumerate()
        .filter(|(_, p)| p.kind == PieceKind::Normal)
        .map(|(id, p)| (p.text.as_str(), id))
        .collect();
    // (merged piece's id, split position in bytes), sorted below.
    let mut ranked: Vec<(usize, usize)> = Vec::new();
    for (&text, &id) in &normal {
        for (at, _) in text.char_indices().skip(1) {
            if normal.contains_key(&text[..at]) && normal.contains_key(&text[at..]) {
                ranked.push((id, at));
            }
        }
    }
    let score = |id: usize| model.pieces[id].score;
    ranked.sort_by(|a, b| {
        score(b.0)
            .total_cmp(&score(a.0))
            .then(a.0.cmp(&b.0))
            .then(a.1.cmp(&b.1))
    });
    ranked
        .into_iter()
        .map(|(id, at)| {
            let text = &model.pieces[id].text;
            (text[..at].to_string(), text[at..].to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::spm_model::Piece;
    use super::*;

    fn model(pieces: &[(&str, f32, PieceKind)]) -> SpmModel {
        SpmModel {
            kind: ModelKind::Bpe,
            pieces: pieces
                .iter()
                .map(|&(t, s, k)| Piece {
                    text: t.into(),
                    score: s,
                    kind: k,
                })
                .collect(),
            unk_piece: "<unk>".into(),
            bos_piece: Some("<s>".into()),
            eos_piece: Some("</s>".into()),
        }
    }

    #[test]
    fn merges_rank_by_score_then_id_then_left_length() {
        use PieceKind::*;
        let m = model(&[
            ("<unk>", 0.0, Unknown),
            ("<s>", 0.0, Control),
            ("aaa", -1.0, Normal),
            ("ab", -2.0, Normal),
            ("aa", -2.0, Normal),
            ("<s>a", -0.5, Normal),
            ("a", -5.0, Normal),
            ("b", -6.0, Normal),
        ]);
        let got: Vec<String> = merges(&m).into_iter().map(|(l, r)| format!("{l} {r}")).collect();
        // "aaa" first (highest score), its splits shorter-left first; "ab" before "aa"
        // (same score, lower id); "<s>a" has no split into two normal pieces.
        assert_eq!(got, ["a aa", "aa a", "a b", "a a"]);
    }

    #[test]
    fn options_come_from_tokenizer_config() {
        let config = serde_json::json!({"legacy": true, "add_bos_token": true, "add_prefix_space": null,
                                        "bos_token": {"content": "<s>"}});
        let o = ConvertOptions::from_config(Some(&config));
        assert!(o.legacy && o.add_bos && o.add_prefix_space && !o.add_eos);
        assert_eq!(o.bos_token.as_deref(), Some("<s>"));
        assert_eq!(ConvertOptions::from_config(None), ConvertOptions::default());
    }

    /// Ours against transformers' own conversion of the fixture model (saved by
    /// scripts/make-spm-fixture.py): vocabulary, merges in order, added tokens,
    /// pre-tokenizer, decoder, and no normalizer.
    #[test]
    fn matches_transformers_conversion_of_the_fixture() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer-spm");
        let bytes = std::fs::read(dir.join("bpe.model")).expect("fixture bpe.model");
        let model = SpmModel::parse(&bytes).expect("parse fixture");
        let ours = build(&model, &ConvertOptions::default()).expect("build");
        let ours: Value = serde_json::from_str(&ours.to_string(false).expect("serialize")).expect("json");
        let text = std::fs::read_to_string(dir.join("transformers-tokenizer.json")).expect("fixture json");
        let theirs: Value = serde_json::from_str(&text).expect("json");
        for key in ["normalizer", "pre_tokenizer", "decoder", "added_tokens"] {
            assert_eq!(ours[key], theirs[key], "{key}");
        }
        for key in ["type", "byte_fallback", "fuse_unk", "vocab", "merges"] {
            assert_eq!(ours["model"][key], theirs["model"][key], "model.{key}");
        }
        assert!(
            theirs["model"]["merges"]
                .as_array()
                .is_some_and(|m| m.len() > 500)
        );
    }

    #[test]
    fn unigram_is_refused() {
        let mut m = model(&[("<unk>", 0.0, PieceKind::Unknown)]);
        m.kind = ModelKind::Unigram;
        let e = build(&m, &ConvertOptions::default()).expect_err("unigram");
        assert!(e.to_string().contains("SentencePiece Unigram model"), "{e}");
    }
}
