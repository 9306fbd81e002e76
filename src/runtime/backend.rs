//! The reference runtime as a [`GenerationBackend`].

use std::sync::atomic::AtomicBool;

use crate::error::Result;
use crate::generation::{
    ContextLimit, Flow, Generated, GenerationBackend, GenerationService, Request, ServiceOptions, TokenEvent,
};
use crate::runtime::generate::generate;
use crate::runtime::model::Model;
use crate::runtime::service::ReferenceService;

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

    fn context_limit(&self) -> Option<ContextLimit> {
        Some(ContextLimit {
            tokens: self.config.max_position_embeddings,
            source: "max_position_embeddings",
        })
    }

    fn generate(
        &self,
        requests: &[Request],
        on_token: &mut dyn FnMut(TokenEvent) -> Flow,
        cancel: &AtomicBool,
    ) -> Result<Vec<Generated>> {
        generate(self, requests, on_token, cancel)
    }

    fn into_service(self: Box<Self>, options: &ServiceOptions) -> Result<Box<dyn GenerationService>> {
        Ok(Box::new(ReferenceService::start(*self, options)?))
    }
}
