//! Reads a SentencePiece `tokenizer.model` (a serialized `sentencepiece.ModelProto`).
//!
//! Only the fields a BPE conversion needs are declared; prost skips the others. Field
//! numbers, types and defaults are those of SentencePiece's `sentencepiece_model.proto`
//! (proto2): `ModelProto { repeated SentencePiece pieces = 1; TrainerSpec trainer_spec = 2;
//! NormalizerSpec normalizer_spec = 3; }`, `SentencePiece { string piece = 1; float score = 2;
//! Type type = 3 [default = NORMAL]; }`, `TrainerSpec { ModelType model_type = 3 [default =
//! UNIGRAM]; string unk_piece = 45 [default = "<unk>"]; bos_piece = 46
//! [default = "<s>"]; eos_piece = 47 [default = "</s>"]; bos_id = 41 [default = 1]; eos_id = 42
//! [default = 2]; }`.

use std::collections::HashMap;

use prost::Message;

#[derive(Clone, PartialEq, prost::Message)]
struct ModelProto {
    #[prost(message, repeated, tag = "1")]
    pieces: Vec<PieceProto>,
    #[prost(message, optional, tag = "2")]
    trainer_spec: Option<TrainerSpecProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PieceProto {
    #[prost(string, optional, tag = "1")]
    piece: Option<String>,
    #[prost(float, optional, tag = "2")]
    score: Option<f32>,
    #[prost(int32, optional, tag = "3")]
    kind: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TrainerSpecProto {
    #[prost(int32, optional, tag = "3")]
    model_type: Option<i32>,
    #[prost(int32, optional, tag = "41")]
    bos_id: Option<i32>,
    #[prost(int32, optional, tag = "42")]
    eos_id: Option<i32>,
    #[prost(string, optional, tag = "45")]
    unk_piece: Option<String>,
    #[prost(string, optional, tag = "46")]
    bos_piece: Option<String>,
    #[prost(string, optional, tag = "47")]
    eos_piece: Option<String>,
}

/// `TrainerSpec.ModelType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    Unigram,
    Bpe,
    Word,
    Char,
}

impl ModelKind {
    fn from_proto(v: i32) -> Option<Self> {
        Some(match v {
            1 => ModelKind::Unigram,
            2 => ModelKind::Bpe,
            3 => ModelKind::Word,
            4 => ModelKind::Char,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Unigram => "Unigram",
            ModelKind::Bpe => "BPE",
            ModelKind::Word => "Word",
            ModelKind::Char => "Char",
        }
    }
}

/// `SentencePiece.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceKind {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl PieceKind {
    fn from_proto(v: i32) -> Option<Self> {
        Some(match v {
            1 => PieceKind::Normal,
            2 => PieceKind::Unknown,
            3 => PieceKind::Control,
            4 => PieceKind::UserDefined,
            5 => PieceKind::Unused,
            6 => PieceKind::Byte,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub text: String,
    pub score: f32,
    pub kind: PieceKind,
}

/// What a conversion needs from a `tokenizer.model`; a piece's id is its index.
#[derive(Debug, Clone)]
pub struct SpmModel {
    pub kind: ModelKind,
    pub pieces: Vec<Piece>,
    pub unk_piece: String,
    /// `None` when the model was trained without one (id -1).
    pub bos_piece: Option<String>,
    pub eos_piece: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpmError {
    #[error("not a SentencePiece model (protobuf ModelProto): {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("the model has no pieces")]
    NoPieces,
    #[error("piece {id} has no text")]
    EmptyPiece { id: usize },
    #[error("piece {id} has type {value}, which is none of SentencePiece's piece types (1..=6)")]
    PieceType { id: usize, value: i32 },
    #[error("trainer_spec.model_type is {0}, which is none of Unigram (1), BPE (2), Word (3), Char (4)")]
    ModelType(i32),
    #[error("piece {piece:?} appears twice (ids {first} and {second})")]
    Duplicate {
        piece: String,
        first: usize,
        second: usize,
    },
}

impl SpmModel {
    pub fn parse(bytes: &[u8]) -> Result<Self, SpmError> {
        let proto = ModelProto::decode(bytes)?;
        let spec = proto.trainer_spec.unwrap_or_default();
        // proto2 defaults when a field is absent.
        let model_type = spec.model_type.unwrap_or(1);
        let kind = ModelKind::from_proto(model_type).ok_or(SpmError::ModelType(model_type))?;
        if proto.pieces.is_empty() {
            return Err(SpmError::NoPieces);
        }
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(proto.pieces.len());
        let mut pieces = Vec::with_capacity(proto.pieces.len());
        for (id, p) in proto.pieces.iter().enumerate() {
            let text = p.piece.as_deref().unwrap_or("");
            if text.is_empty() {
                return Err(SpmError::EmptyPiece { id });
            }
            if let Some(first) = seen.insert(text, id) {
                return Err(SpmError::Duplicate {
                    piece: text.to_string(),
                    first,
                    second: id,
                });
            }
            let value = p.kind.unwrap_or(1);
            let kind = PieceKind::from_proto(value).ok_or(SpmError::PieceType { id, value })?;
            pieces.push(Piece {
                text: text.to_string(),
                score: p.score.unwrap_or(0.0),
                kind,
            });
        }
        let named = |id: Option<i32>, default_id: i32, piece: Option<String>, default: &str| {
            (id.unwrap_or(default_id) >= 0).then(|| piece.unwrap_or_else(|| default.to_string()))
        };
        Ok(SpmModel {
            kind,
            unk_piece: spec.unk_piece.unwrap_or_else(|| "<unk>".to_string()),
            bos_piece: named(spec.bos_id, 1, spec.bos_piece, "<s>"),
            eos_piece: named(spec.eos_id, 2, spec.eos_piece, "</s>"),
            pieces,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(text: &str, score: f32, kind: i32) -> PieceProto {
        PieceProto {
            piece: Some(text.into()),
            score: Some(score),
            kind: Some(kind),
        }
    }

    fn encode(pieces: Vec<PieceProto>, model_type: Option<i32>) -> Vec<u8> {
        ModelProto {
            pieces,
            trainer_spec: Some(TrainerSpecProto {
                model_type,
                ..Default::default()
            }),
        }
        .encode_to_vec()
    }

    #[test]
    fn defaults_follow_the_proto() {
        let bytes = encode(vec![piece("<unk>", 0.0, 2), piece("a", -1.0, 1)], None);
        let m = SpmModel::parse(&bytes).expect("parse");
        // model_type defaults to UNIGRAM, the special pieces to <unk> / <s> / </s>.
        assert_eq!(m.kind, ModelKind::Unigram);
        assert_eq!(m.unk_piece, "<unk>");
        assert_eq!(m.bos_piece.as_deref(), Some("<s>"));
        assert_eq!(m.pieces[1].kind, PieceKind::Normal);
        let no_type = ModelProto {
            pieces: vec![PieceProto {
                piece: Some("x".into()),
                score: None,
                kind: None,
            }],
            trainer_spec: None,
        }
        .encode_to_vec();
        let m = SpmModel::parse(&no_type).expect("parse");
        assert_eq!((m.pieces[0].kind, m.pieces[0].score), (PieceKind::Normal, 0.0));
    }

    #[test]
    fn bad_models_are_refused_with_the_reason() {
        let err = |bytes: &[u8]| SpmModel::parse(bytes).expect_err("must fail").to_string();
        assert!(err(b"{\"version\": \"1.0\"}").contains("not a SentencePiece model"));
        let good = encode(vec![piece("<unk>", 0.0, 2), piece("ab", -1.0, 1)], Some(2));
        // Truncated anywhere inside: a decode error, never a panic.
        for cut in 1..good.len() {
            let _ = SpmModel::parse(&good[..cut]);
        }
        assert!(err(&good[..good.len() - 1]).contains("not a SentencePiece model"));
        assert_eq!(err(&encode(vec![], Some(2))), "the model has no pieces");
        assert!(err(&encode(vec![piece("a", 0.0, 1), piece("a", 0.0, 1)], Some(2))).contains("ids 0 and 1"));
        assert!(err(&encode(vec![piece("a", 0.0, 9)], Some(2))).contains("piece 0 has type 9"));
        assert!(err(&encode(vec![piece("", 0.0, 1)], Some(2))).contains("piece 0 has no text"));
        assert!(err(&encode(vec![piece("a", 0.0, 1)], Some(7))).contains("model_type is 7"));
    }
}
