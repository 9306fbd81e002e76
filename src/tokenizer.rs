//! Text <-> token ids through a Hugging Face `tokenizer.json` (the `tokenizers` crate),
//! or, for checkpoints that ship only a SentencePiece `tokenizer.model`, a tokenizer built
//! from it as transformers builds one (`llama_convert`).
//!
//! Minitron ships a SentencePiece BPE converted by transformers' LlamaConverter: byte
//! fallback, Metaspace pre-tokenizer, no post-processor (so no BOS by default).
//! Decoding skips special tokens (`<s>`, `</s>`, `<pad>`), as TensorRT-LLM's examples
//! print their outputs.

pub mod chat_template;
mod llama_convert;
mod spm_model;

use std::path::{Path, PathBuf};

pub use llama_convert::ConvertError;
pub use spm_model::SpmError;

/// File name of a Hugging Face fast tokenizer.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// File name of a SentencePiece model, used when there is no `tokenizer.json`.
pub const SENTENCEPIECE_FILE: &str = "tokenizer.model";

/// Names tried, in order, when `tokenizer_config.json` does not name the BOS / EOS token.
const BOS_NAMES: [&str; 4] = ["<s>", "<bos>", "<|begin_of_text|>", "<|startoftext|>"];
const EOS_NAMES: [&str; 4] = ["</s>", "<eos>", "<|end_of_text|>", "<|endoftext|>"];

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("cannot load tokenizer {}: {message}", path.display())]
    Load { path: PathBuf, message: String },
    // `problem`, not `source`: the message already holds it, and the CLI prints sources too.
    #[error("cannot read SentencePiece model {}: {problem}", path.display())]
    SentencePiece { path: PathBuf, problem: SpmError },
    #[error(
        "cannot build a tokenizer from {}: {problem}. Make a tokenizer.json beside it with \
         transformers (pip install transformers sentencepiece protobuf): python3 -c \"from transformers \
         import AutoTokenizer; AutoTokenizer.from_pretrained('{dir}').backend_tokenizer.save('{dir}/tokenizer.json')\"",
        path.display(),
        dir = path.parent().unwrap_or(Path::new(".")).display()
    )]
    Convert { path: PathBuf, problem: ConvertError },
    #[error("cannot encode text: {0}")]
    Encode(String),
    #[error("cannot decode token ids: {0}")]
    Decode(String),
    #[error("cannot add a BOS token: the tokenizer has none (no bos_token in tokenizer_config.json, none of {})", BOS_NAMES.join(", "))]
    NoBos,
}

/// Which file a tokenizer was loaded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenizerSource {
    /// A Hugging Face `tokenizer.json`.
    Json,
    /// A SentencePiece BPE `tokenizer.model`, converted here as transformers does.
    SentencePiece,
}

impl TokenizerSource {
    /// By file name: a `*.model` file is a SentencePiece model, anything else JSON.
    pub fn of(path: &Path) -> Self {
        if path.extension().is_some_and(|e| e == "model") {
            TokenizerSource::SentencePiece
        } else {
            TokenizerSource::Json
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            TokenizerSource::Json => "Hugging Face tokenizer.json",
            TokenizerSource::SentencePiece => {
                "SentencePiece BPE tokenizer.model (no tokenizer.json; converted as transformers' Llama tokenizer does)"
            }
        }
    }
}

/// What `inspect` says about a directory's tokenizer.
#[derive(Debug, serde::Serialize)]
pub struct TokenizerInfo {
    pub path: PathBuf,
    pub source: TokenizerSource,
    /// Token ids it knows (None when it cannot be loaded).
    pub vocab_size: Option<usize>,
    /// Why it cannot be loaded, if it cannot.
    pub problem: Option<String>,
}

impl TokenizerInfo {
    /// The tokenizer `run` would use from `dir`, loaded to check it; None if there is none.
    pub fn beside(dir: &Path) -> Option<Self> {
        let path = Tokenizer::find_beside(dir)?;
        let loaded = Tokenizer::from_file(&path);
        Some(TokenizerInfo {
            source: TokenizerSource::of(&path),
            vocab_size: loaded.as_ref().ok().map(Tokenizer::vocab_size),
            problem: loaded.err().map(|e| e.to_string()),
            path,
        })
    }
}

impl TokenizerError {
    /// The same error about the same-named file in `dir`: for a tokenizer copied from a
    /// model directory (e.g. into the conversion cache), so the message and the fix name
    /// the user's file.
    pub fn in_dir(self, dir: &Path) -> Self {
        let moved = |path: PathBuf| match path.file_name() {
            Some(name) => dir.join(name),
            None => path,
        };
        match self {
            TokenizerError::SentencePiece { path, problem } => TokenizerError::SentencePiece {
                path: moved(path),
                problem,
            },
            TokenizerError::Convert { path, problem } => TokenizerError::Convert {
                path: moved(path),
                problem,
            },
            other => other,
        }
    }
}

impl From<TokenizerError> for crate::Error {
    fn from(e: TokenizerError) -> Self {
        crate::Error::Tokenizer(e.into())
    }
}

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    source: TokenizerSource,
    bos: Option<u32>,
    eos: Option<u32>,
    /// Ids of the `<0xNN>` byte-fallback tokens, sorted.
    byte_tokens: Vec<u32>,
    /// Ids of special added tokens (skipped by `decode`), sorted.
    special: Vec<u32>,
    /// The chat template beside the tokenizer, if any (not compiled: only a server uses it).
    chat_template: Option<chat_template::TemplateSource>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("byte_tokens", &self.byte_tokens.len())
            .finish()
    }
}

impl Tokenizer {
    /// Loads a `tokenizer.json`, or a SentencePiece model (a `*.model` file such as
    /// `tokenizer.model`). BOS / EOS come from a `tokenizer_config.json` beside it when it
    /// names them, else from the usual token names (`<s>`, `</s>`, ...); for a SentencePiece
    /// model it also holds transformers' settings (`legacy`, `add_bos_token`, ...).
    pub fn from_file(path: &Path) -> Result<Self, TokenizerError> {
        let load_err = |message: String| TokenizerError::Load {
            path: path.to_path_buf(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| load_err(e.to_string()))?;
        let config_path = path
            .parent()
            .unwrap_or(Path::new("."))
            .join("tokenizer_config.json");
        let config = read_config(&config_path);
        let chat_template = chat_template::find(
            path.parent().unwrap_or(Path::new(".")),
            config.as_ref(),
            &config_path,
        );
        let source = TokenizerSource::of(path);
        let inner = match source {
            TokenizerSource::Json => {
                tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| load_err(e.to_string()))?
            }
            TokenizerSource::SentencePiece => {
                let model =
                    spm_model::SpmModel::parse(&bytes).map_err(|problem| TokenizerError::SentencePiece {
                        path: path.to_path_buf(),
                        problem,
                    })?;
                let options = llama_convert::ConvertOptions::from_config(config.as_ref());
                llama_convert::build(&model, &options).map_err(|problem| TokenizerError::Convert {
                    path: path.to_path_buf(),
                    problem,
                })?
            }
        };
        let special = |key: &str, names: &[&str]| {
            config
                .as_ref()
                .and_then(|c| config_token(c, key))
                .and_then(|t| inner.token_to_id(&t))
                .or_else(|| names.iter().find_map(|n| inner.token_to_id(n)))
        };
        let bos = special("bos_token", &BOS_NAMES);
        let eos = special("eos_token", &EOS_NAMES);
        let mut byte_tokens: Vec<u32> = (0..=255u8)
            .filter_map(|b| inner.token_to_id(&format!("<0x{b:02X}>")))
            .collect();
        byte_tokens.sort_unstable();
        let mut special: Vec<u32> = inner
            .get_added_tokens_decoder()
            .iter()
            .filter(|(_, t)| t.special)
            .map(|(&id, _)| id)
            .collect();
        special.sort_unstable();
        Ok(Tokenizer {
            inner,
            source,
            bos,
            eos,
            byte_tokens,
            special,
            chat_template,
        })
    }

    /// The model's chat template (`chat_template.jinja`, or `chat_template` in
    /// `tokenizer_config.json`), if it has one.
    pub fn chat_template(&self) -> Option<&chat_template::TemplateSource> {
        self.chat_template.as_ref()
    }

    /// The tokenizer file of a model / checkpoint directory: `tokenizer.json`, else a
    /// SentencePiece `tokenizer.model`, if either is present.
    pub fn find_beside(dir: &Path) -> Option<PathBuf> {
        [TOKENIZER_FILE, SENTENCEPIECE_FILE]
            .iter()
            .map(|name| dir.join(name))
            .find(|path| path.is_file())
    }

    /// Which kind of file this tokenizer was loaded from.
    pub fn source(&self) -> TokenizerSource {
        self.source
    }

    /// `add_bos`: None = whatever tokenizer.json's post-processor does (Minitron's has none:
    /// no BOS); Some(true) puts a BOS at the front unless one is already there; Some(false)
    /// removes one that the post-processor added (a literal "<s>" in the text stays).
    pub fn encode(&self, text: &str, add_bos: Option<bool>) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self
            .inner
            .encode(text, true)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        let mut ids = encoding.get_ids().to_vec();
        match add_bos {
            None => {}
            Some(true) => {
                let bos = self.bos.ok_or(TokenizerError::NoBos)?;
                if ids.first() != Some(&bos) {
                    ids.insert(0, bos);
                }
            }
            Some(false) => {
                // The special-tokens mask marks what the post-processor added; a special
                // token matched in the text itself has 0 there.
                let added = encoding.get_special_tokens_mask().first() == Some(&1);
                if added && self.bos.is_some() && ids.first() == self.bos.as_ref() {
                    ids.remove(0);
                }
            }
        }
        Ok(ids)
    }

    /// Text of the ids, special tokens skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.inner
            .decode(ids, true)
            .map_err(|e| TokenizerError::Decode(e.to_string()))
    }

    /// Number of distinct token ids: the model's vocabulary plus added tokens not in it.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The BOS id (Minitron: 2), if the tokenizer has one.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// The EOS id (Minitron: 3), if the tokenizer has one.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// Whether text decoded up to this id may still change: a byte token may be part of a
    /// run that later turns out invalid, and a skipped or unknown id does not end a run.
    fn may_continue_run(&self, id: u32) -> bool {
        self.byte_tokens.binary_search(&id).is_ok()
            || self.special.binary_search(&id).is_ok()
            || self.inner.id_to_token(id).is_none()
    }
}

fn read_config(path: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// `"bos_token": "<s>"` or `"bos_token": {"content": "<s>", ...}`.
fn config_token(config: &serde_json::Value, key: &str) -> Option<String> {
    let v = config.get(key)?;
    v.as_str()
        .or_else(|| v.get("content").and_then(|c| c.as_str()))
        .map(str::to_string)
}

/// Incremental detokenizer for streaming: emits only complete UTF-8 text, correct across
/// byte-fallback tokens (`<0xE2><0x98><0x83>` -> "☃") and Metaspace's leading-space rules.
///
/// Concatenating every `push` and `finish` gives `tokenizer.decode(all ids)`. It decodes a
/// window of recent ids and emits what the newest ids added (the window's leading-space
/// strip cancels out). Text is held while the newest id is a byte token: the decoder turns
/// a run of byte tokens into text all or nothing (if any byte of the run is invalid UTF-8,
/// every byte becomes U+FFFD), so a run is final only once a non-byte token ends it.
/// Special tokens are skipped before that step, so they do not end a run either.
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    /// Ids from the start of the window; `ids[..read]` has been emitted.
    ids: Vec<u32>,
    read: usize,
    /// Text of `ids[..read]`, as decoded with this window.
    read_text: String,
}

impl<'a> StreamDecoder<'a> {
    /// For the generated tokens only (the first one's leading space is dropped, as
    /// `decode` does).
    pub fn new(tokenizer: &'a Tokenizer) -> Self {
        StreamDecoder {
            tokenizer,
            ids: Vec::new(),
            read: 0,
            read_text: String::new(),
        }
    }

    /// New text since the last call (may be "").
    pub fn push(&mut self, id: u32) -> Result<String, TokenizerError> {
        self.ids.push(id);
        if self.tokenizer.may_continue_run(id) {
            return Ok(String::new());
        }
        let text = self.tokenizer.decode(&self.ids)?;
        if text.len() > self.read_text.len() && text.starts_with(&self.read_text) {
            let out = text[self.read_text.len()..].to_string();
            // The next window starts after what was already emitted: its first token
            // follows a token that ends any byte run, so no run straddles the cut.
            self.ids.drain(..self.read);
            self.read = self.ids.len();
            self.read_text = self.tokenizer.decode(&self.ids)?;
            return Ok(out);
        }
        Ok(String::new())
    }

    /// Whatever remains (e.g. an incomplete byte sequence as U+FFFD).
    pub fn finish(&mut self) -> Result<String, TokenizerError> {
        let text = self.tokenizer.decode(&self.ids)?;
        let out = match text.strip_prefix(self.read_text.as_str()) {
            Some(rest) => rest.to_string(),
            // Not reached with SentencePiece-style decoders; emit past the common prefix.
            None => {
                let common = text
                    .char_indices()
                    .zip(self.read_text.chars())
                    .find(|((_, a), b)| a != b)
                    .map_or(text.len().min(self.read_text.len()), |((i, _), _)| i);
                text[common..].to_string()
            }
        };
        self.ids.clear();
        self.read = 0;
        self.read_text.clear();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A small SentencePiece-style tokenizer like Minitron's: byte fallback with all 256
    /// byte tokens, Metaspace "first", decoder Replace/ByteFallback/Fuse/Strip.
    fn spm_json(post_processor: serde_json::Value) -> String {
        let mut vocab = serde_json::Map::new();
        let mut add = |t: &str| {
            let id = vocab.len();
            vocab.insert(t.to_string(), json!(id));
        };
        for t in ["<pad>", "<unk>", "<s>", "</s>"] {
            add(t);
        }
        for b in 0..=255u8 {
            add(&format!("<0x{b:02X}>"));
        }
        for t in [
            "▁", "a", "b", "d", "e", "h", "l", "o", "r", "w", "t", "!", "ü", "▁h", "he", "ll", "▁he", "llo",
            "▁hello", "▁w", "or", "ld", "▁wor", "▁world", "▁t", "▁the", "▁▁",
        ] {
            add(t);
        }
        let merges = [
            ["▁", "h"],
            ["h", "e"],
            ["l", "l"],
            ["▁h", "e"],
            ["ll", "o"],
            ["▁he", "llo"],
            ["▁", "w"],
            ["o", "r"],
            ["l", "d"],
            ["▁w", "or"],
            ["▁wor", "ld"],
            ["▁", "t"],
            ["▁t", "he"],
            ["▁", "▁"],
        ];
        let added: Vec<_> = ["<pad>", "<unk>", "<s>", "</s>"]
            .iter()
            .enumerate()
            .map(|(id, c)| {
                json!({"id": id, "content": c, "single_word": false, "lstrip": false,
                       "rstrip": false, "normalized": false, "special": true})
            })
            .collect();
        json!({
            "version": "1.0", "truncation": null, "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false},
            "post_processor": post_processor,
            "decoder": {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0}
            ]},
            "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>",
                      "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                      "vocab": vocab, "merges": merges}
        })
        .to_string()
    }

    fn load(json: &str) -> (tempfile::TempDir, Tokenizer) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(TOKENIZER_FILE);
        std::fs::write(&path, json).expect("write tokenizer.json");
        let tok = Tokenizer::from_file(&path).expect("load tokenizer");
        (dir, tok)
    }

    fn spm() -> (tempfile::TempDir, Tokenizer) {
        load(&spm_json(serde_json::Value::Null))
    }

    fn id(t: &Tokenizer, token: &str) -> u32 {
        t.token_id(token).unwrap_or_else(|| panic!("no token {token}"))
    }

    fn streamed(t: &Tokenizer, ids: &[u32]) -> String {
        let mut d = StreamDecoder::new(t);
        let mut out = String::new();
        for &i in ids {
            out.push_str(&d.push(i).expect("push"));
        }
        out.push_str(&d.finish().expect("finish"));
        out
    }

    #[test]
    fn encode_decode_round_trip_with_byte_fallback() {
        let (_dir, t) = spm();
        assert_eq!(t.vocab_size(), 4 + 256 + 27);
        assert_eq!((t.bos_id(), t.eos_id()), (Some(2), Some(3)));
        let text = "hello world ☃ über  the!";
        let ids = t.encode(text, None).expect("encode");
        // Same ids as the Python `tokenizers` package gives for this tokenizer.json.
        assert_eq!(
            ids,
            [
                278, 283, 260, 230, 156, 135, 260, 272, 262, 264, 268, 260, 285, 271
            ]
        );
        // No post-processor: no BOS.
        assert_eq!(ids[0], id(&t, "▁hello"));
        let snowman = [id(&t, "<0xE2>"), id(&t, "<0x98>"), id(&t, "<0x83>")];
        assert!(ids.windows(3).any(|w| w == snowman));
        assert_eq!(t.decode(&ids).expect("decode"), text);
        // Special tokens are skipped when decoding.
        let with_special = [2, id(&t, "▁hello"), 3];
        assert_eq!(t.decode(&with_special).expect("decode"), "hello");
        // A byte run with an invalid byte: every byte of the run becomes U+FFFD.
        let mut bad = snowman.to_vec();
        bad.push(id(&t, "<0xFF>"));
        assert_eq!(t.decode(&bad).expect("decode"), "\u{FFFD}".repeat(4));
    }

    #[test]
    fn bos_handling() {
        let (_dir, t) = spm();
        let hello = id(&t, "▁hello");
        assert_eq!(t.encode("hello", None).expect("encode"), [hello]);
        assert_eq!(t.encode("hello", Some(true)).expect("encode"), [2, hello]);
        assert_eq!(t.encode("hello", Some(false)).expect("encode"), [hello]);
        // Already there: not doubled.
        assert_eq!(
            t.encode("<s>hello", Some(true)).expect("encode")[..2],
            [2, id(&t, "he")]
        );

        let template = json!({
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [2], "tokens": ["<s>"]}}
        });
        let (_dir, t) = load(&spm_json(template));
        assert_eq!(t.encode("hello", None).expect("encode"), [2, hello]);
        assert_eq!(t.encode("hello", Some(true)).expect("encode"), [2, hello]);
        assert_eq!(t.encode("hello", Some(false)).expect("encode"), [hello]);
        // A literal <s> in the text is the user's, not the post-processor's.
        assert_eq!(
            t.encode("<s>hello", None).expect("encode")[..3],
            [2, 2, id(&t, "he")]
        );
        assert_eq!(
            t.encode("<s>hello", Some(false)).expect("encode")[..2],
            [2, id(&t, "he")]
        );
    }

    #[test]
    fn bos_from_tokenizer_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(TOKENIZER_FILE);
        std::fs::write(&path, spm_json(serde_json::Value::Null)).expect("write");
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"bos_token": {"content": "<pad>"}, "eos_token": "<unk>"}"#,
        )
        .expect("write");
        let t = Tokenizer::from_file(&path).expect("load");
        assert_eq!((t.bos_id(), t.eos_id()), (Some(0), Some(1)));
        assert_eq!(Tokenizer::find_beside(dir.path()), Some(path));
        assert_eq!(Tokenizer::find_beside(&dir.path().join("nope")), None);
    }

    #[test]
    fn load_errors_name_the_file() {
        let missing = Path::new("/nonexistent/dir/tokenizer.json");
        let e = Tokenizer::from_file(missing).expect_err("missing file");
        assert!(e.to_string().contains("/nonexistent/dir/tokenizer.json"), "{e}");
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = dir.path().join(TOKENIZER_FILE);
        std::fs::write(&bad, "{\"not\": \"a tokenizer\"}").expect("write");
        let e = Tokenizer::from_file(&bad).expect_err("bad json");
        assert!(e.to_string().contains(&*bad.to_string_lossy()), "{e}");
    }

    #[test]
    fn fixture_tokenizer() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/gqa-headdim-bf16");
        let file = Tokenizer::find_beside(&path).expect("fixture tokenizer.json");
        let t = Tokenizer::from_file(&file).expect("load fixture");
        assert_eq!(t.vocab_size(), 101);
        assert_eq!((t.bos_id(), t.eos_id()), (Some(2), Some(3)));
        let ids = t
            .encode("the model is not an engine.\nconvert", None)
            .expect("encode");
        assert_eq!(ids[..2], [39, 66]);
        assert!(ids.contains(&4), "newline via its byte token");
        assert_eq!(
            t.decode(&ids).expect("decode"),
            "the model is not an engine.\nconvert"
        );
        assert_eq!(streamed(&t, &ids), t.decode(&ids).expect("decode"));
    }

    #[test]
    fn stream_emits_complete_text_as_it_goes() {
        let (_dir, t) = spm();
        let mut d = StreamDecoder::new(&t);
        assert_eq!(d.push(id(&t, "▁hello")).expect("push"), "hello");
        assert_eq!(d.push(id(&t, "▁world")).expect("push"), " world");
        assert_eq!(d.push(id(&t, "▁")).expect("push"), " ");
        assert_eq!(d.push(id(&t, "<0xE2>")).expect("push"), "");
        assert_eq!(d.push(id(&t, "<0x98>")).expect("push"), "");
        assert_eq!(d.push(id(&t, "<0x83>")).expect("push"), "");
        // The run is final once a non-byte token follows it.
        assert_eq!(d.push(id(&t, "!")).expect("push"), "☃!");
        assert_eq!(d.push(3).expect("push"), "");
        assert_eq!(d.push(id(&t, "▁the")).expect("push"), " the");
        assert_eq!(d.push(id(&t, "<0xE2>")).expect("push"), "");
        assert_eq!(d.finish().expect("finish"), "\u{FFFD}");
    }

    #[test]
    fn stream_matches_decode() {
        let (_dir, t) = spm();
        let b = |x: u8| id(&t, &format!("<0x{x:02X}>"));
        let w = |s: &str| id(&t, s);
        let cases: Vec<Vec<u32>> = vec![
            vec![],
            t.encode("hello world the!", None).expect("encode"),
            t.encode("  hello  ☃☃ über\n the ü", None).expect("encode"),
            t.encode("☃", None).expect("encode"),
            // Leading-space words and bare spaces.
            vec![w("▁"), w("▁"), w("a")],
            vec![w("▁▁"), w("▁hello"), w("▁"), w("▁world")],
            // Special tokens first and in between.
            vec![2, w("▁hello"), 3, w("▁world"), 0],
            vec![3, w("▁hello")],
            // Multi-byte chars split over byte tokens, truncated and invalid runs.
            vec![w("▁"), b(0xE2), b(0x98), b(0x83), b(0xE2), b(0x98), b(0x83)],
            vec![b(0xE2), b(0x98), b(0x83), b(0xFF), w("▁world")],
            vec![w("a"), b(0xC3), b(0xBC), w("▁t"), b(0xF0), b(0x9F)],
            vec![b(0x41), b(0xE2), w("▁")],
            vec![b(0x20), w("a")],
            vec![w("ü"), b(0x80), w("ü")],
        ];
        for ids in &cases {
            assert_eq!(streamed(&t, ids), t.decode(ids).expect("decode"), "ids {ids:?}");
        }
        // Pseudo-random sequences, biased towards byte tokens and spaces.
        let pool: Vec<u32> = (0..t.vocab_size() as u32).collect();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut ids = Vec::new();
            for _ in 0..(state % 12) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let r = state >> 32;
                let pick = match r % 4 {
                    0 => b([0xE2, 0x98, 0x83, 0xC3, 0xBC, 0x41, 0xFF, 0x80][(r >> 8) as usize % 8]),
                    1 => [w("▁"), w("▁hello"), w("▁▁"), 2, 3][(r >> 8) as usize % 5],
                    _ => pool[(r >> 8) as usize % pool.len()],
                };
                ids.push(pick);
            }
            assert_eq!(streamed(&t, &ids), t.decode(&ids).expect("decode"), "ids {ids:?}");
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        }
    }
}
