// C++ side of the TensorRT-LLM Executor bridge (see src/executor/ffi.rs and
// executor_bridge.h). Written against the TensorRT-LLM 1.2.x executor API
// (executor.h, types.h, tensor.h, plugins/api/tllmPlugin.h):
//
// - requests are built with setters after a constructor taking only the two
//   arguments every version has (input ids, max tokens): the positional
//   constructor's later arguments moved between versions;
// - every entry point converts any exception into a std::runtime_error naming
//   the operation, so nothing but a std::exception reaches cxx (which turns it
//   into a Rust Err) and nothing aborts the process;
// - a response with hasError() is reported for that request only; getResult()
//   is not called on it (it would throw);
// - finish reasons are passed as their integer value and checked in Rust, so
//   an enum value this file does not know is an error, not undefined
//   behaviour; an empty beam list is reported, never indexed.

#include "trtllm-minitron/cpp/executor_bridge.h"
#include "trtllm-minitron/src/executor/ffi.rs.h"

#include "tensorrt_llm/executor/executor.h"
#include "tensorrt_llm/plugins/api/tllmPlugin.h"

#include <chrono>
#include <cstring>
#include <filesystem>
#include <list>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace tle = tensorrt_llm::executor;

namespace trtllm_minitron
{
namespace
{

// Runs f, turning any exception into a std::runtime_error that says where it came from.
template <typename F>
auto guarded(char const* what, F&& f) -> decltype(f())
{
    try
    {
        return f();
    }
    catch (std::exception const& e)
    {
        throw std::runtime_error(std::string(what) + ": " + e.what());
    }
    catch (...)
    {
        throw std::runtime_error(std::string(what) + ": a C++ exception that is not a std::exception");
    }
}

// initTrtLlmPlugins() exactly once per process, before the first Executor.
void initPluginsOnce()
{
    static std::once_flag once;
    static bool registered = false;
    std::call_once(once, [] { registered = initTrtLlmPlugins(); });
    if (!registered)
    {
        throw std::runtime_error("initTrtLlmPlugins() failed: the TensorRT-LLM plugins are not registered");
    }
}

tle::ExecutorConfig executorConfig(BridgeOptions const& o)
{
    tle::CapacitySchedulerPolicy policy;
    if (o.scheduler_policy == 0)
    {
        policy = tle::CapacitySchedulerPolicy::kMAX_UTILIZATION;
    }
    else if (o.scheduler_policy == 1)
    {
        policy = tle::CapacitySchedulerPolicy::kGUARANTEED_NO_EVICT;
    }
    else
    {
        throw std::invalid_argument("unknown scheduler policy " + std::to_string(o.scheduler_policy));
    }
    tle::KvCacheConfig kvCache;
    kvCache.setEnableBlockReuse(o.enable_kv_block_reuse);
    kvCache.setFreeGpuMemoryFraction(o.free_gpu_memory_fraction);

    tle::ExecutorConfig config;
    config.setMaxBeamWidth(1);
    config.setSchedulerConfig(tle::SchedulerConfig(policy));
    config.setKvCacheConfig(kvCache);
    config.setGatherGenerationLogits(o.gather_generation_logits);
    return config;
}

tle::SamplingConfig samplingConfig(BridgeRequest const& r)
{
    tle::SamplingConfig s(1);
    if (r.has_top_k)
    {
        s.setTopK(r.top_k);
    }
    if (r.has_top_p)
    {
        s.setTopP(r.top_p);
    }
    if (r.has_temperature)
    {
        s.setTemperature(r.temperature);
    }
    if (r.has_seed)
    {
        s.setSeed(r.seed);
    }
    if (r.has_min_tokens)
    {
        s.setMinTokens(r.min_tokens);
    }
    if (r.has_repetition_penalty)
    {
        s.setRepetitionPenalty(r.repetition_penalty);
    }
    if (r.has_presence_penalty)
    {
        s.setPresencePenalty(r.presence_penalty);
    }
    if (r.has_frequency_penalty)
    {
        s.setFrequencyPenalty(r.frequency_penalty);
    }
    return s;
}

std::uint8_t dtypeCode(tle::DataType t)
{
    if (t == tle::DataType::kFP32)
    {
        return 1;
    }
    if (t == tle::DataType::kFP16)
    {
        return 2;
    }
    if (t == tle::DataType::kBF16)
    {
        return 3;
    }
    return 0; // Rust reports it as unsupported.
}

void copyLogits(std::optional<tle::Tensor> const& maybe, BridgeLogits& out)
{
    out.present = false;
    out.dtype = 0;
    out.row_len = 0;
    if (!maybe.has_value() || !*maybe)
    {
        return;
    }
    tle::Tensor tensor = *maybe;
    if (tensor.getMemoryType() == tle::MemoryType::kGPU)
    {
        tensor = tensor.copyToCpu();
    }
    auto const shape = tensor.getShape();
    if (shape.size() == 0 || shape[shape.size() - 1] <= 0)
    {
        throw std::runtime_error("a logits tensor has no last dimension");
    }
    out.present = true;
    out.dtype = dtypeCode(tensor.getDataType());
    out.row_len = static_cast<std::size_t>(shape[shape.size() - 1]);
    auto const bytes = tensor.getSizeInBytes();
    auto const* data = static_cast<std::uint8_t const*>(tensor.getData());
    if (bytes > 0 && data == nullptr)
    {
        throw std::runtime_error("a logits tensor has no data");
    }
    out.data.reserve(bytes);
    for (std::size_t i = 0; i < bytes; ++i)
    {
        out.data.push_back(data[i]);
    }
}

BridgeResponse flatten(tle::Response const& response)
{
    BridgeResponse out{};
    out.request_id = response.getRequestId();
    out.has_error = response.hasError();
    out.has_finish_reason = false;
    out.finish_reason = 0;
    out.num_beams = 0;
    out.context_logits.present = false;
    out.generation_logits.present = false;
    if (out.has_error)
    {
        // getResult() would throw on an error response.
        out.error = rust::String::lossy(response.getErrorMsg());
        out.is_final = true;
        return out;
    }
    tle::Result const& result = response.getResult();
    out.is_final = result.isFinal;
    out.num_beams = result.outputTokenIds.size();
    if (!result.outputTokenIds.empty())
    {
        for (auto token : result.outputTokenIds.front())
        {
            out.tokens.push_back(token);
        }
    }
    if (!result.finishReasons.empty())
    {
        out.has_finish_reason = true;
        out.finish_reason = static_cast<std::int32_t>(result.finishReasons.front());
    }
    if (result.logProbs.has_value() && !result.logProbs->empty())
    {
        for (auto p : result.logProbs->front())
        {
            out.log_probs.push_back(p);
        }
    }
    copyLogits(result.contextLogits, out.context_logits);
    copyLogits(result.generationLogits, out.generation_logits);
    return out;
}

BridgeResponse failed(tle::Response const& response, char const* why)
{
    BridgeResponse out{};
    out.request_id = response.getRequestId();
    out.has_error = true;
    out.error = rust::String::lossy(std::string("cannot read the executor's response: ") + why);
    out.is_final = true;
    out.context_logits.present = false;
    out.generation_logits.present = false;
    return out;
}

} // namespace

struct TrtExecutor::Impl
{
    std::unique_ptr<tle::Executor> executor;
};

TrtExecutor::TrtExecutor(BridgeOptions const& options)
    : mImpl(std::make_unique<Impl>())
{
    initPluginsOnce();
    std::filesystem::path const engineDir(std::string(options.engine_dir));
    mImpl->executor
        = std::make_unique<tle::Executor>(engineDir, tle::ModelType::kDECODER_ONLY, executorConfig(options));
}

TrtExecutor::~TrtExecutor() = default;

std::uint64_t TrtExecutor::enqueue(BridgeRequest const& r, rust::Slice<std::int32_t const> input_ids,
    rust::Slice<std::int32_t const> stop_word_tokens, rust::Slice<std::uint32_t const> stop_word_lengths) const
{
    return guarded("enqueueRequest",
        [&]() -> std::uint64_t
        {
            tle::VecTokens tokens(input_ids.begin(), input_ids.end());
            tle::Request request(std::move(tokens), r.max_tokens);
            request.setStreaming(r.streaming);
            request.setReturnAllGeneratedTokens(false);
            request.setSamplingConfig(samplingConfig(r));

            tle::OutputConfig output;
            output.returnLogProbs = r.return_log_probs;
            output.returnContextLogits = r.return_context_logits;
            output.returnGenerationLogits = r.return_generation_logits;
            output.excludeInputFromOutput = true;
            request.setOutputConfig(output);

            if (r.has_end_id)
            {
                request.setEndId(r.end_id);
            }
            if (r.has_pad_id)
            {
                request.setPadId(r.pad_id);
            }
            if (!stop_word_lengths.empty())
            {
                std::list<tle::VecTokens> stopWords;
                std::size_t at = 0;
                for (auto length : stop_word_lengths)
                {
                    if (length == 0 || at + length > stop_word_tokens.size())
                    {
                        throw std::invalid_argument("stop word lengths do not match the stop word tokens");
                    }
                    stopWords.emplace_back(stop_word_tokens.begin() + at, stop_word_tokens.begin() + at + length);
                    at += length;
                }
                if (at != stop_word_tokens.size())
                {
                    throw std::invalid_argument("stop word lengths do not match the stop word tokens");
                }
                request.setStopWords(stopWords);
            }
            return mImpl->executor->enqueueRequest(request);
        });
}

void TrtExecutor::await_responses(std::uint64_t timeout_ms, rust::Vec<BridgeResponse>& out) const
{
    guarded("awaitResponses",
        [&]
        {
            std::optional<std::chrono::milliseconds> const timeout{
                std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(timeout_ms))};
            auto responses = mImpl->executor->awaitResponses(timeout);
            for (auto const& response : responses)
            {
                // A response that cannot be read fails its own request, not the others.
                try
                {
                    out.push_back(flatten(response));
                }
                catch (std::exception const& e)
                {
                    out.push_back(failed(response, e.what()));
                }
                catch (...)
                {
                    out.push_back(failed(response, "a C++ exception that is not a std::exception"));
                }
            }
        });
}

void TrtExecutor::cancel(std::uint64_t request_id) const
{
    guarded("cancelRequest", [&] { mImpl->executor->cancelRequest(request_id); });
}

void TrtExecutor::shutdown() const
{
    guarded("shutdown", [&] { mImpl->executor->shutdown(); });
}

rust::String trtllm_version()
{
    return guarded("version", [] { return rust::String(tle::version()); });
}

std::unique_ptr<TrtExecutor> new_executor(BridgeOptions const& options)
{
    return guarded("Executor", [&] { return std::make_unique<TrtExecutor>(options); });
}

} // namespace trtllm_minitron
