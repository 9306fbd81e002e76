// Stand-in definitions of the bridge's C++ functions for builds where
// TensorRT-LLM was not found (see build.rs): every one throws. build.rs
// compiles this instead of executor_bridge.cpp only so that the link of such a
// build has no undefined symbols and fails with the one message build.rs puts
// in its linker-script ASSERT (what was looked for, and where). Nothing here
// runs a model, and no binary containing it can be linked.

#include "trtllm-minitron/cpp/executor_bridge.h"
#include "trtllm-minitron/src/executor/ffi.rs.h"

#include <stdexcept>

namespace trtllm_minitron
{
namespace
{
[[noreturn]] void unavailable()
{
    throw std::runtime_error("this build has no TensorRT-LLM bridge: TensorRT-LLM was not found when it was built");
}
} // namespace

struct TrtExecutor::Impl
{
};

TrtExecutor::TrtExecutor(BridgeOptions const&)
{
    unavailable();
}

TrtExecutor::~TrtExecutor() = default;

std::uint64_t TrtExecutor::enqueue(BridgeRequest const&, rust::Slice<std::int32_t const>,
    rust::Slice<std::int32_t const>, rust::Slice<std::uint32_t const>) const
{
    unavailable();
}

void TrtExecutor::await_responses(std::uint64_t, rust::Vec<BridgeResponse>&) const
{
    unavailable();
}

void TrtExecutor::cancel(std::uint64_t) const
{
    unavailable();
}

void TrtExecutor::shutdown() const
{
    unavailable();
}

rust::String trtllm_version()
{
    unavailable();
}

rust::String trtllm_headers_version()
{
    unavailable();
}

std::unique_ptr<TrtExecutor> new_executor(BridgeOptions const&)
{
    unavailable();
}

} // namespace trtllm_minitron
