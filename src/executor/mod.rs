//! The TensorRT-LLM C++ Executor backend (`run --backend trtllm` on an engine
//! directory).
//!
//! The executor itself is reached through a `cxx` bridge (`ffi`, C++ in
//! `cpp/`) and opened by `engine`, both compiled only with `--features trtllm`.
//! Everything around them is plain Rust, compiled in every build, so
//! `cargo test` covers it against an in-memory stand-in (`stand_in`) of the
//! executor interface, which follows the library's defaults and streaming
//! behaviour (the bridge itself is tested one level down, against the fake
//! library of `tests/fake_trtllm/`):
//!
//! - `api`: the executor interface as a trait (`ExecutorApi`) and the flat
//!   data that crosses it;
//! - `mapping`: our `Request` to an executor request with every decoding
//!   option set (so the engine samples as the reference runtime does);
//!   executor finish reasons, responses and logits back to ours (unknown
//!   finish reasons, error responses and empty beams are per-request errors);
//! - `router`: the thread that waits in `awaitResponses` (with a timeout, never
//!   spinning) and routes each response to its request's channel; cancellation
//!   of dropped requests; shutdown;
//! - `backend`: `GenerationBackend` over any `ExecutorApi`, feeding the same
//!   output path as the reference runtime;
//! - `service`: the backend kept running for `serve`: requests join the
//!   executor's in-flight batch at any time, each streaming to its own sink;
//! - `preflight`: the engine's manifest and config.json against this GPU and
//!   the linked TensorRT-LLM version, before loading.

pub mod api;
pub mod backend;
pub mod mapping;
pub mod preflight;
pub mod router;
pub mod service;
pub mod stand_in;

#[cfg(feature = "trtllm")]
pub mod engine;
#[cfg(feature = "trtllm")]
pub mod ffi;
