// C++ side of the TensorRT-LLM Executor bridge (see src/executor/ffi.rs).
//
// One opaque class owns a tensorrt_llm::executor::Executor. This header names
// no TensorRT-LLM type (the executor lives behind a pointer to an
// implementation defined in executor_bridge.cpp), so the cxx-generated code
// compiles without TensorRT-LLM's headers. Every function below may throw;
// cxx turns the exception into a Rust Err, and executor_bridge.cpp makes sure
// anything thrown is a std::exception.
#pragma once

#include "rust/cxx.h"

#include <cstdint>
#include <memory>

namespace trtllm_minitron
{

// Shared structs, defined by the cxx-generated header.
struct BridgeOptions;
struct BridgeRequest;
struct BridgeResponse;

class TrtExecutor
{
public:
    explicit TrtExecutor(BridgeOptions const& options);
    ~TrtExecutor();
    TrtExecutor(TrtExecutor const&) = delete;
    TrtExecutor& operator=(TrtExecutor const&) = delete;

    std::uint64_t enqueue(BridgeRequest const& request, rust::Slice<std::int32_t const> input_ids,
        rust::Slice<std::int32_t const> stop_word_tokens, rust::Slice<std::uint32_t const> stop_word_lengths) const;
    void await_responses(std::uint64_t timeout_ms, rust::Vec<BridgeResponse>& out) const;
    void cancel(std::uint64_t request_id) const;
    void shutdown() const;

private:
    struct Impl;
    std::unique_ptr<Impl> mImpl;
};

rust::String trtllm_version();
rust::String trtllm_headers_version();
std::unique_ptr<TrtExecutor> new_executor(BridgeOptions const& options);

} // namespace trtllm_minitron
