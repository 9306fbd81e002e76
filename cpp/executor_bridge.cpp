// C++ side of the TensorRT-LLM Executor bridge (see src/executor/ffi.rs and
// executor_bridge.h). Written against the TensorRT-LLM 1.2.x executor API
// (executor.h, types.h, tensor.h, plugins/api/tllmPlugin.h):
//
// - headers and library must come from the same release: default arguments are
//   filled in here, at the call site, so even the two-argument Request
//   constructor below calls the library's full positional constructor, and
//   config classes are built and passed by value with the headers' layout
//   (ExecutorConfig holds KvCacheConfig, CacheTransceiverConfig, ... whose
//   members change between releases). A mismatch can link cleanly and then
//   corrupt memory, so build.rs refuses headers whose version.h differs from the
//   library's version.py, and trtllm_headers_version() lets the Rust side
//   compare the headers with the loaded library's version() before use;
// - every decoding option arrives set (src/executor/mapping.rs): none is left
//   to the library's defaults, which would decode differently (cpp/README.md);
// - every entry point converts any exception into a std::runtime_error naming
//   the operation, so nothing but a std::exception reaches cxx (which turns it
//   into a Rust Err) and nothing aborts the process;
// - a response with hasError() is reported for that request only; getResult()
//   is not called on it (it would throw); a response that cannot be read is
//   reported as an error for its request, which is cancelled in the executor;
// - finish reasons, data types and scheduler policies cross as cxx shared enums
//   whose values are checked against the library's below; a value Rust does not
//   name still crosses, and Rust reports it;
// - logits are read from host memory (the library returns host tensors);
//   context logits, which the library attaches to every streaming response,
//   are copied from the first only.

#include "trtllm-minitron/cpp/executor_bridge.h"
#include "trtllm-minitron/src/executor/ffi.rs.h"

#include "tensorrt_llm/executor/executor.h"
#include "tensorrt_llm/plugins/api/tllmPlugin.h"
// Generated into the source tree from tensorrt_llm/version.py; a partial copy of
// the headers may lack it (then the run-time version check is skipped).
#if __has_include("tensorrt_llm/executor/version.h")
#include "tensorrt_llm/executor/version.h"
#define TRTLLM_MINITRON_HEADERS_VERSION tle::kTensorRtLlmVersion
#else
#define TRTLLM_MINITRON_HEADERS_VERSION ""
#endif

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <list>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

namespace tle = tensorrt_llm::executor;

namespace trtllm_minitron
{
namespace
{

// The shared enums mirror the library's, value for value.
template <typename Ours, typename Theirs>
constexpr bool same(Ours ours, Theirs theirs)
{
    return static_cast<std::int64_t>(ours) == static_cast<std::int64_t>(theirs);
}

static_assert(same(FinishReason::NotFinished, tle::FinishReason::kNOT_FINISHED));
static_assert(same(FinishReason::EndId, tle::FinishReason::kEND_ID));
static_assert(same(FinishReason::StopWords, tle::FinishReason::kSTOP_WORDS));
static_assert(same(FinishReason::Length, tle::FinishReason::kLENGTH));
static_assert(same(FinishReason::TimedOut, tle::FinishReason::kTIMED_OUT));
static_assert(same(FinishReason::Cancelled, tle::FinishReason::kCANCELLED));
static_assert(same(DataType::Bool, tle::DataType::kBOOL));
static_assert(same(DataType::UInt8, tle::DataType::kUINT8));
static_assert(same(DataType::Int8, tle::DataType::kINT8));
static_assert(same(DataType::Int32, tle::DataType::kINT32));
static_assert(same(DataType::Int64, tle::DataType::kINT64));
static_assert(same(DataType::BF16, tle::DataType::kBF16));
static_assert(same(DataType::FP8, tle::DataType::kFP8));
static_assert(same(DataType::FP16, tle::DataType::kFP16));
static_assert(same(DataType::FP32, tle::DataType::kFP32));
static_assert(same(DataType::Unknown, tle::DataType::kUNKNOWN));
static_assert(same(SchedulerPolicy::MaxUtilization, tle::CapacitySchedulerPolicy::kMAX_UTILIZATION));
static_assert(same(SchedulerPolicy::GuaranteedNoEvict, tle::CapacitySchedulerPolicy::kGUARANTEED_NO_EVICT));
static_assert(same(SchedulerPolicy::StaticBatch, tle::CapacitySchedulerPolicy::kSTATIC_BATCH));

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
    tle::KvCacheConfig kvCache;
    kvCache.setEnableBlockReuse(o.enable_kv_block_reuse);
    kvCache.setFreeGpuMemoryFraction(o.free_gpu_memory_fraction);

    tle::ExecutorConfig config;
    config.setMaxBeamWidth(1);
    config.setSchedulerConfig(
        tle::SchedulerConfig(static_cast<tle::CapacitySchedulerPolicy>(static_cast<std::int32_t>(o.scheduler_policy))));
    config.setKvCacheConfig(kvCache);
    config.setGatherGenerationLogits(o.gather_generation_logits);
    // Off, logProbs are log-softmax values over the whole vocabulary (after
    // penalties and temperature) on every sampling path; on (the default), the
    // top-k path divides by the top-k mass, so greedy decoding reports 0
    // (kernels/samplingTopKKernels.cu). The reference runtime reports the former.
    config.setNormalizeLogProbs(false);
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

BridgeLogits noLogits()
{
    BridgeLogits out{};
    out.present = false;
    out.dtype = DataType::Unknown;
    out.row_len = 0;
    return out;
}

// Copies a host tensor's bytes. The executor's results hold host tensors
// (createResult in batch_manager/llmRequest.cpp wraps getContextLogitsHost() and
// getGenerationLogitsHost()); a device tensor would need Tensor::copyToCpu with
// a CUDA stream, which this API gives no way to make, so it is refused.
BridgeLogits copyLogits(std::optional<tle::Tensor> const& maybe)
{
    BridgeLogits out = noLogits();
    if (!maybe.has_value() || !*maybe)
    {
        return out;
    }
    tle::Tensor tensor = *maybe;
    auto const memory = tensor.getMemoryType();
    if (memory != tle::MemoryType::kCPU && memory != tle::MemoryType::kCPU_PINNED
        && memory != tle::MemoryType::kCPU_PINNEDPOOL && memory != tle::MemoryType::kUVM)
    {
        throw std::runtime_error("a logits tensor is not in host memory (memory type "
            + std::to_string(static_cast<int>(memory)) + "); this bridge reads host tensors only");
    }
    auto const shape = tensor.getShape();
    if (shape.size() == 0 || shape[shape.size() - 1] <= 0)
    {
        throw std::runtime_error("a logits tensor has no last dimension");
    }
    out.present = true;
    out.dtype = static_cast<DataType>(static_cast<std::int32_t>(tensor.getDataType()));
    out.row_len = static_cast<std::size_t>(shape[shape.size() - 1]);
    auto const bytes = tensor.getSizeInBytes();
    auto const* data = static_cast<std::uint8_t const*>(tensor.getData());
    if (bytes > 0 && data == nullptr)
    {
        throw std::runtime_error("a logits tensor has no data");
    }
    out.data.reserve(bytes);
    std::copy(data, data + bytes, std::back_inserter(out.data));
    return out;
}

BridgeResponse emptyResponse(tle::IdType id)
{
    BridgeResponse out{};
    out.request_id = id;
    out.has_error = false;
    out.is_final = false;
    out.num_beams = 0;
    out.has_finish_reason = false;
    out.finish_reason = FinishReason::NotFinished;
    out.context_logits = noLogits();
    out.generation_logits = noLogits();
    return out;
}

BridgeResponse failed(tle::Response const& response, char const* why)
{
    BridgeResponse out = emptyResponse(response.getRequestId());
    out.has_error = true;
    out.error = rust::String::lossy(std::string("cannot read the executor's response: ") + why);
    out.is_final = true;
    return out;
}

} // namespace

struct TrtExecutor::Impl
{
    std::unique_ptr<tle::Executor> executor;

    // Requests whose context logits were copied already: written and read on
    // the response thread only, guarded all the same.
    std::mutex contextMutex;
    std::unordered_set<tle::IdType> contextTaken;

    // True the first time a request's context logits arrive.
    bool firstContextLogits(tle::IdType id)
    {
        std::lock_guard<std::mutex> lock(contextMutex);
        return contextTaken.insert(id).second;
    }

    // A request's last response was seen: nothing more comes for it.
    void forget(tle::IdType id)
    {
        std::lock_guard<std::mutex> lock(contextMutex);
        contextTaken.erase(id);
    }

    // The Rust side ends a request whose response could not be read; it may
    // still be generating, and the executor's shutdown would wait for it
    // (executorImpl.cpp), so it is cancelled. cancelRequest ignores a request
    // that has terminated already; its own failure changes nothing here.
    void cancelUnread(tle::IdType id)
    {
        forget(id);
        try
        {
            executor->cancelRequest(id);
        }
        catch (...)
        {
        }
    }

    BridgeResponse flatten(tle::Response const& response)
    {
        BridgeResponse out = emptyResponse(response.getRequestId());
        out.has_error = response.hasError();
        if (out.has_error)
        {
            // getResult() would throw on an error response.
            out.error = rust::String::lossy(response.getErrorMsg());
            out.is_final = true;
            forget(out.request_id);
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
            out.finish_reason = static_cast<FinishReason>(static_cast<std::int32_t>(result.finishReasons.front()));
        }
        // Cumulative: every token's log-prob so far, while outputTokenIds holds
        // only the new tokens (createResult, batch_manager/llmRequest.cpp).
        if (result.logProbs.has_value() && !result.logProbs->empty())
        {
            for (auto p : result.logProbs->front())
            {
                out.log_probs.push_back(p);
            }
        }
        if (result.contextLogits.has_value() && firstContextLogits(out.request_id))
        {
            out.context_logits = copyLogits(result.contextLogits);
        }
        if (out.is_final)
        {
            forget(out.request_id);
        }
        out.generation_logits = copyLogits(result.generationLogits);
        return out;
    }
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
            // The other arguments are the header's defaults; the setters below set
            // what this bridge decides.
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
                // A response that cannot be read fails its own request, not the
                // others, and ends it in the executor as well.
                try
                {
                    out.push_back(mImpl->flatten(response));
                }
                catch (std::exception const& e)
                {
                    out.push_back(failed(response, e.what()));
                    mImpl->cancelUnread(response.getRequestId());
                }
                catch (...)
                {
                    out.push_back(failed(response, "a C++ exception that is not a std::exception"));
                    mImpl->cancelUnread(response.getRequestId());
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

rust::String trtllm_headers_version()
{
    return guarded("headers version", [] { return rust::String(TRTLLM_MINITRON_HEADERS_VERSION); });
}

std::unique_ptr<TrtExecutor> new_executor(BridgeOptions const& options)
{
    return guarded("Executor", [&] { return std::make_unique<TrtExecutor>(options); });
}

} // namespace trtllm_minitron
