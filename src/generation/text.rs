//! A request's generated tokens as text: streamed UTF-8 (correct across
//! byte-fallback tokens) with its stop strings applied. `run` prints it; a
//! server would send it.

use super::stop::StopMatcher;
use crate::error::Result;
use crate::tokenizer::{StreamDecoder, Tokenizer};

/// Text state of one prompt's generation.
pub struct TextStream<'t> {
    decoder: Option<StreamDecoder<'t>>,
    stops: StopMatcher,
    pub text: String,
    pub stopped: bool,
    end_id: Option<u32>,
}

impl<'t> TextStream<'t> {
    pub fn new(tokenizer: Option<&'t Tokenizer>, stops: &[String], end_id: Option<u32>) -> Self {
        TextStream {
            decoder: tokenizer.map(StreamDecoder::new),
            stops: StopMatcher::new(stops.to_vec()),
            text: String::new(),
            stopped: false,
            end_id,
        }
    }

    /// Takes one token; returns the text now safe to show. Sets `stopped` when a
    /// stop string appears (the stop string itself is not shown).
    pub fn push(&mut self, token: u32) -> Result<String> {
        let Some(decoder) = self.decoder.as_mut() else {
            return Ok(String::new());
        };
        if self.stopped || Some(token) == self.end_id {
            return Ok(String::new());
        }
        let piece = decoder.push(token)?;
        Ok(self.accept(&piece))
    }

    /// Flushes what is held back (an unfinished byte sequence, a possible stop prefix).
    pub fn finish(&mut self) -> Result<String> {
        let Some(decoder) = self.decoder.as_mut() else {
            return Ok(String::new());
        };
        if self.stopped {
            return Ok(String::new());
        }
        let rest = decoder.finish()?;
        let mut out = self.accept(&rest);
        if !self.stopped {
            let tail = self.stops.finish();
            self.text.push_str(&tail);
            out.push_str(&tail);
        }
        Ok(out)
    }

    fn accept(&mut self, piece: &str) -> String {
        let (emit, hit) = self.stops.push(piece);
        self.stopped |= hit;
        self.text.push_str(&emit);
        emit
    }

    pub fn has_text(&self) -> bool {
        self.decoder.is_some()
    }
}
