// Shared by the fake TensorRT-LLM library's sources (see README.md): the
// tensor storage behind executor::Tensor, and the request log.
#pragma once

#include "tensorrt_llm/executor/executor.h"

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace tensorrt_llm::runtime
{

// The fake's storage behind executor::Tensor (the real ITensor is an abstract
// buffer interface in runtime/iTensor.h; the bridge reaches it only through
// Tensor's methods). Counts reads of its data, so tests see how often the
// bridge copied a tensor.
class ITensor
{
public:
    ITensor(executor::DataType dataType, executor::MemoryType memoryType, std::vector<std::int64_t> shape,
        std::vector<std::uint8_t> bytes)
        : dataType(dataType)
        , memoryType(memoryType)
        , shape(std::move(shape))
        , bytes(std::move(bytes))
    {
    }

    executor::DataType dataType;
    executor::MemoryType memoryType;
    std::vector<std::int64_t> shape;
    std::vector<std::uint8_t> bytes;
    std::atomic<std::uint64_t> reads{0};
};

} // namespace tensorrt_llm::runtime

namespace fake_trtllm
{

// Appends one line to the file named by TRTLLM_FAKE_RECORD (nothing when unset).
void record(std::string const& jsonLine);

// A JSON string literal.
std::string quoted(std::string const& text);

} // namespace fake_trtllm
