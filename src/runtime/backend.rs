//! The reference runtime as a [`GenerationBackend`].

use std::sync::atomic::AtomicBool;

use crate::error::Result;
use crate::generation::{Flow, Generated, GenerationBackend, Request, TokenEvent};
use crate::runtime::generate::generate;
use crate::runtime::model::Model;

impl GenerationBackend for Model {
    fn name(&self) -> &'static str {
        "reference"
    }

    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn eos_id(&self) -> Option<u32> {
        self.config.eos_token_id
    }

    fn generate(
        &self,
        requests: &[Request],
        on_token: &mut dyn FnMut(TokenEvent) -> Flow,
        cancel: &AtomicBool,
    ) -> Result<Vec<Generated>> {
        generate(self, requests, on_token, cancel)
    }
}
