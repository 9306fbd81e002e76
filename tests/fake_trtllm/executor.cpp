// The fake TensorRT-LLM library's Executor: no model, no GPU. A worker thread
// advances every active request by one token per step, as the in-flight batcher
// does, with deterministic tokens, and answers with the library's streaming
// behaviour (cited per rule). Every call is recorded (fake.h). See README.md.

#include "fake.h"

#include "tensorrt_llm/common/assert.h"

#include <cuda_runtime_api.h>

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

// The libraries the real libtensorrt_llm.so needs from other directories (its
// NEEDED entries; its own runpath is only $ORIGIN). The fake calls one function
// of each, so the dynamic loader must find them as it must for the real one.
extern "C" int32_t getInferLibVersion() noexcept; // TensorRT, libnvinfer.so.10
extern "C" int MPI_Initialized(int* flag);         // MPI, libmpi.so.40

namespace tle = tensorrt_llm::executor;

namespace
{

std::string readFile(std::filesystem::path const& path)
{
    std::ifstream in(path);
    if (!in)
    {
        TLLM_THROW("Failed to open %s", path.c_str());
    }
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

// The value after "key": in the engine's config.json (the fake's stand-in engines
// keep each key once).
std::string jsonValue(std::string const& text, std::string const& key)
{
    auto at = text.find("\"" + key + "\"");
    if (at == std::string::npos)
    {
        return {};
    }
    at = text.find(':', at);
    auto const begin = text.find_first_not_of(" \t\r\n", at + 1);
    auto const end = text.find_first_of(",}\r\n", begin);
    return text.substr(begin, end - begin);
}

int jsonInt(std::string const& text, std::string const& key, int fallback)
{
    auto const value = jsonValue(text, key);
    return value.empty() ? fallback : std::atoi(value.c_str());
}

template <typename T>
std::string json(std::optional<T> const& value)
{
    if (!value.has_value())
    {
        return "null";
    }
    std::ostringstream out;
    out << *value;
    return out.str();
}

template <typename T>
std::string json(std::vector<T> const& values)
{
    std::ostringstream out;
    out << '[';
    for (std::size_t i = 0; i < values.size(); ++i)
    {
        out << (i ? "," : "") << values[i];
    }
    out << ']';
    return out.str();
}

std::uint64_t mix(std::uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

// The file the dynamic loader loaded `symbol` from.
std::string loadedFrom(void const* symbol)
{
    Dl_info info{};
    return dladdr(symbol, &info) != 0 && info.dli_fname != nullptr ? info.dli_fname : "";
}

std::shared_ptr<tensorrt_llm::runtime::ITensor> floatTensor(std::vector<std::int64_t> shape, std::vector<float> values)
{
    std::vector<std::uint8_t> bytes(values.size() * sizeof(float));
    std::memcpy(bytes.data(), values.data(), bytes.size());
    // Host memory, as the library's results are (getContextLogitsHost / getGenerationLogitsHost).
    return std::make_shared<tensorrt_llm::runtime::ITensor>(
        tle::DataType::kFP32, tle::MemoryType::kCPU_PINNED, std::move(shape), std::move(bytes));
}

struct Active
{
    tle::IdType id;
    tle::Request request;
    tle::VecTokens tokens; // prompt, then the generated tokens
    std::optional<std::string> error;
    tle::SizeType32 generated = 0;
    std::vector<float> logProbs;
    bool cancelled = false;
    std::shared_ptr<tensorrt_llm::runtime::ITensor> contextLogits;
    tle::SizeType32 minTokens = 0;
};

// The length of the common prefix of a and b.
std::size_t commonPrefix(tle::VecTokens const& a, tle::VecTokens const& b)
{
    auto const n = std::min(a.size(), b.size());
    std::size_t i = 0;
    while (i < n && a[i] == b[i])
    {
        ++i;
    }
    return i;
}

} // namespace

namespace tensorrt_llm::executor
{

class Executor::Impl
{
public:
    Impl(std::filesystem::path const& engineDir, ExecutorConfig config)
        : mConfig(std::move(config))
    {
        auto const text = readFile(engineDir / "config.json");
        if (!std::filesystem::exists(engineDir / "rank0.engine"))
        {
            TLLM_THROW("Failed to open %s", (engineDir / "rank0.engine").c_str());
        }
        mVocab = jsonInt(text, "vocab_size", 0);
        mMaxInputLen = jsonInt(text, "max_input_len", 1024);
        mMaxSeqLen = jsonInt(text, "max_seq_len", 2048);
        mMaxBatchSize = std::max(1, jsonInt(text, "max_batch_size", 256));
        mTokensPerBlock = std::max(1, jsonInt(text, "tokens_per_block", 32));
        mContextLogitsBuilt = jsonValue(text, "gather_context_logits") == "true";
        TLLM_CHECK_WITH_INFO(mVocab > 0, "config.json has no vocab_size");
        TLLM_CHECK_WITH_INFO(mConfig.getMaxBeamWidth() == 1, "the fake decodes with beam width 1 only");
        if (char const* step = std::getenv("TRTLLM_FAKE_STEP_MS"))
        {
            mStep = std::chrono::milliseconds(std::atoi(step));
        }

        int mpi = -1;
        MPI_Initialized(&mpi);
        int cudart = 0;
        cudaRuntimeGetVersion(&cudart);
        auto const kv = mConfig.getKvCacheConfig();
        fake_trtllm::record(std::string("{\"event\":\"executor\",\"engine_dir\":") + fake_trtllm::quoted(engineDir)
            + ",\"max_beam_width\":" + std::to_string(mConfig.getMaxBeamWidth()) + ",\"scheduler_policy\":"
            + std::to_string(static_cast<int>(mConfig.getSchedulerConfig().getCapacitySchedulerPolicy()))
            + ",\"enable_block_reuse\":" + (kv.getEnableBlockReuse() ? "true" : "false")
            + ",\"free_gpu_memory_fraction\":" + json(kv.getFreeGpuMemoryFraction())
            + ",\"gather_generation_logits\":" + (mConfig.getGatherGenerationLogits() ? "true" : "false")
            + ",\"normalize_log_probs\":" + (mConfig.getNormalizeLogProbs() ? "true" : "false")
            + ",\"tensorrt_version\":" + std::to_string(getInferLibVersion()) + ",\"cudart_version\":"
            + std::to_string(cudart) + ",\"loaded\":{\"tensorrt\":"
            + fake_trtllm::quoted(loadedFrom(reinterpret_cast<void const*>(&getInferLibVersion)))
            + ",\"mpi\":" + fake_trtllm::quoted(loadedFrom(reinterpret_cast<void const*>(&MPI_Initialized)))
            + ",\"cudart\":" + fake_trtllm::quoted(loadedFrom(reinterpret_cast<void const*>(&cudaRuntimeGetVersion)))
            + "}}");
        mBlockReuse = kv.getEnableBlockReuse();
        mWorker = std::thread([this] { run(); });
    }

    ~Impl()
    {
        shutdown();
    }

    IdType enqueue(Request const& request)
    {
        std::lock_guard<std::mutex> lock(mMutex);
        // executorImpl.cpp refuses new requests once shut down.
        TLLM_CHECK_WITH_INFO(!mShutdownCalled, "Shutdown called, cannot enqueue requests");
        // The real library also serves non-streaming requests (with generation
        // logits shaped [beam, maxNewTokens, vocab], createResult in
        // batch_manager/llmRequest.cpp). The bridge always streams, so the fake
        // implements streaming only and refuses the rest rather than imitate it untested.
        TLLM_CHECK_WITH_INFO(request.getStreaming(), "the fake TensorRT-LLM serves streaming requests only");
        IdType const id = mNextId++;
        auto const s = request.getSamplingConfig();
        auto const o = request.getOutputConfig();
        auto const input = request.getInputTokenIds();
        fake_trtllm::record(std::string("{\"event\":\"enqueue\",\"id\":") + std::to_string(id)
            + ",\"input_ids\":" + json(input) + ",\"max_tokens\":" + std::to_string(request.getMaxTokens())
            + ",\"streaming\":" + (request.getStreaming() ? "true" : "false") + ",\"return_all_generated_tokens\":"
            + (request.getReturnAllGeneratedTokens() ? "true" : "false") + ",\"beam_width\":"
            + std::to_string(s.getBeamWidth()) + ",\"top_k\":" + json(s.getTopK()) + ",\"top_p\":" + json(s.getTopP())
            + ",\"temperature\":" + json(s.getTemperature()) + ",\"seed\":" + json(s.getSeed())
            + ",\"min_tokens\":" + json(s.getMinTokens()) + ",\"repetition_penalty\":"
            + json(s.getRepetitionPenalty()) + ",\"presence_penalty\":" + json(s.getPresencePenalty())
            + ",\"frequency_penalty\":" + json(s.getFrequencyPenalty()) + ",\"end_id\":" + json(request.getEndId())
            + ",\"pad_id\":" + json(request.getPadId()) + ",\"return_log_probs\":"
            + (o.returnLogProbs ? "true" : "false") + ",\"return_context_logits\":"
            + (o.returnContextLogits ? "true" : "false") + ",\"return_generation_logits\":"
            + (o.returnGenerationLogits ? "true" : "false") + ",\"exclude_input_from_output\":"
            + (o.excludeInputFromOutput ? "true" : "false") + "}");

        Active a{id, request, input, std::nullopt, 0, {}, false, nullptr, 0};
        // Checks the executor makes when it takes a request in (executorImpl.cpp,
        // fetchNewRequests; LlmRequest::validate): a failure is an error response.
        auto const promptLen = static_cast<int>(input.size());
        if (promptLen > mMaxInputLen)
        {
            a.error = "Prompt length (" + std::to_string(promptLen) + ") exceeds maximum input length ("
                + std::to_string(mMaxInputLen) + ").";
        }
        else if (o.returnContextLogits && !mContextLogitsBuilt)
        {
            a.error = "Return context logit need to build engine with gather_context_logits";
        }
        else if (o.returnGenerationLogits && !mConfig.getGatherGenerationLogits())
        {
            a.error = "To return generation logits, gather_generation_logits must be enabled in ExecutorConfig";
        }
        mQueued.push_back(std::move(a));
        return id;
    }

    std::vector<Response> await(std::optional<std::chrono::milliseconds> const& timeout)
    {
        std::unique_lock<std::mutex> lock(mMutex);
        // executorImpl.cpp: awaitResponses and cancelRequest refuse to run after shutdown.
        TLLM_CHECK_WITH_INFO(!mShutdownCalled, "Shutdown called");
        auto const ready = [this] { return !mResponses.empty() || mShutdownCalled; };
        if (timeout.has_value())
        {
            mReady.wait_for(lock, *timeout, ready);
        }
        else
        {
            mReady.wait(lock, ready);
        }
        std::vector<Response> out(mResponses.begin(), mResponses.end());
        mResponses.clear();
        return out;
    }

    void cancel(IdType id)
    {
        std::lock_guard<std::mutex> lock(mMutex);
        TLLM_CHECK_WITH_INFO(!mShutdownCalled, "Shutdown called");
        fake_trtllm::record("{\"event\":\"cancel\",\"id\":" + std::to_string(id) + "}");
        // Requests already terminated are ignored.
        auto const mark = [id](Active& a)
        {
            if (a.id == id)
            {
                a.cancelled = true;
            }
        };
        std::for_each(mActive.begin(), mActive.end(), mark);
        std::for_each(mQueued.begin(), mQueued.end(), mark);
    }

    // executorImpl.cpp: shutdown() refuses further calls at once, but returns
    // only when the execution loop ends, which it does once no request is
    // active (`while (!mShutdown || !activeRequests.empty())`), queued requests
    // taken in first. Every request still running generates to its end unless
    // it was cancelled before. The fake does the same, one step at a time.
    void shutdown()
    {
        {
            std::lock_guard<std::mutex> lock(mMutex);
            if (mShutdownCalled)
            {
                return;
            }
            mShutdownCalled = true;
        }
        auto const started = std::chrono::steady_clock::now();
        mWake.notify_all();
        mReady.notify_all();
        if (mWorker.joinable())
        {
            mWorker.join();
        }
        auto const waited
            = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
        std::string reads;
        for (auto const& [id, tensor] : mContextLogits)
        {
            reads += (reads.empty() ? "\"" : ",\"") + std::to_string(id) + "\":" + std::to_string(tensor->reads.load());
        }
        fake_trtllm::record("{\"event\":\"shutdown\",\"steps_after_shutdown\":" + std::to_string(mStepsAfterShutdown)
            + ",\"waited_ms\":" + std::to_string(waited.count()) + ",\"context_logits_reads\":{" + reads + "}}");
    }

private:
    bool idle() const
    {
        return mActive.empty() && mQueued.empty();
    }

    // The execution loop: one iteration per step, until shutdown was called and
    // no request is left.
    void run()
    {
        std::unique_lock<std::mutex> lock(mMutex);
        while (!(mShutdownCalled && idle()))
        {
            mWake.wait_for(lock, mStep, [this] { return mShutdownCalled && idle(); });
            if (mShutdownCalled && idle())
            {
                break;
            }
            admit();
            for (auto it = mActive.begin(); it != mActive.end();)
            {
                it = advance(*it) ? mActive.erase(it) : std::next(it);
            }
            if (mShutdownCalled)
            {
                ++mStepsAfterShutdown;
            }
            mReady.notify_all();
        }
    }

    // Takes queued requests in while the engine's max_batch_size allows (the
    // capacity scheduler), and runs their context phase.
    void admit()
    {
        std::vector<VecTokens> prompts;
        while (!mQueued.empty() && static_cast<int>(mActive.size()) < mMaxBatchSize)
        {
            Active a = std::move(mQueued.front());
            mQueued.pop_front();
            if (!a.error && !a.cancelled)
            {
                context(a);
                prompts.push_back(a.request.getInputTokenIds());
            }
            mActive.push_back(std::move(a));
        }
        // A prompt's blocks can be reused once its context phase is done: by
        // requests taken in at later iterations, not in this one.
        if (mBlockReuse)
        {
            mStoredPrompts.insert(mStoredPrompts.end(), prompts.begin(), prompts.end());
        }
    }

    // A request's context phase: its minimum length, and its context logits.
    void context(Active& a)
    {
        auto const s = a.request.getSamplingConfig();
        // layers/penaltyLayer.cpp: the end id is masked below a minimum length
        // only once some request has set minTokens (mUseMinLength |= ..., never
        // reset); from then on requests that set none get the default, 1
        // (defaultDecodingParams.h, getMinLength).
        mMinLengthInUse = mMinLengthInUse || s.getMinTokens().has_value();
        a.minTokens = s.getMinTokens().value_or(mMinLengthInUse ? 1 : 0);

        // KV-cache block reuse: the longest prefix of whole blocks this prompt
        // shares with one whose context ran before is taken from the cache (at
        // least one token is always computed), and those rows are not computed.
        auto const prompt = a.request.getInputTokenIds();
        std::size_t reused = 0;
        if (mBlockReuse)
        {
            for (auto const& earlier : mStoredPrompts)
            {
                auto const common = std::min(commonPrefix(prompt, earlier), prompt.size() - 1);
                reused = std::max(reused, common / mTokensPerBlock * mTokensPerBlock);
            }
        }
        if (!a.request.getOutputConfig().returnContextLogits)
        {
            return;
        }
        auto const vocab = static_cast<std::size_t>(mVocab);
        std::vector<float> values(prompt.size() * vocab, 0.f);
        for (std::size_t i = reused * vocab; i < values.size(); ++i)
        {
            values[i] = static_cast<float>(i % 5) * 0.5f;
        }
        if (reused > 0)
        {
            // batch_manager/handleContextLogits.cpp: only the rows computed are
            // copied into the host tensor; the rest stay as allocated (zeros
            // here), and the library only logs this warning.
            fake_trtllm::record("{\"event\":\"warning\",\"id\":" + std::to_string(a.id)
                + ",\"message\":\"Because of KV cache reuse, not all context logits could be produced for request "
                + std::to_string(a.id) + ".\",\"reused_tokens\":" + std::to_string(reused) + "}");
        }
        a.contextLogits = floatTensor({static_cast<std::int64_t>(prompt.size()), mVocab}, std::move(values));
        mContextLogits[a.id] = a.contextLogits;
    }

    // One iteration for one request; true when it is finished.
    bool advance(Active& a)
    {
        if (a.error.has_value())
        {
            mResponses.emplace_back(a.id, *a.error);
            return true;
        }
        auto const s = a.request.getSamplingConfig();
        auto const o = a.request.getOutputConfig();
        if (a.cancelled)
        {
            // cancelRequest ends the request at the next iteration with a final kCANCELLED response.
            respond(a, {}, FinishReason::kCANCELLED);
            return true;
        }
        // Defaults (layers/defaultDecodingParams.h) and the sampling setup's rule
        // that topK 0 with topP 0 is top-k 1 (kernels/samplingTopKKernels.cu,
        // setupTopKRuntimeArgs).
        auto const topK = s.getTopK().value_or(0);
        auto const topP = s.getTopP().value_or(0.f);
        // kernels/samplingTopKKernels.cu: with K above the vocabulary, topKStage1
        // fills the missing candidates with -FLT_MAX; when log-probs are
        // returned the candidates are already probabilities (logitsHasProbs), so
        // topKStage2Sampling adds those -FLT_MAX values to its sum, the random
        // point comes out negative, and the first (most likely) candidate is
        // taken: greedy decoding.
        bool const topKOverVocab = topK > mVocab && o.returnLogProbs;
        bool const greedy = topK == 1 || (topK == 0 && topP == 0.f) || topKOverVocab;
        auto const endId = a.request.getEndId().value_or(-1);
        auto const minTokens = a.minTokens;
        auto const last = a.tokens.back();
        // The fake model: greedy continues last+1; sampling jumps by 2..6, by seed and step.
        auto token = greedy ? (last + 1) % mVocab
                            : static_cast<TokenIdType>((last + 2 + mix(s.getSeed().value_or(0) * 1000003ULL
                                                                       + static_cast<std::uint64_t>(a.generated))
                                                               % 5)
                                  % mVocab);
        if (token == endId && a.generated < minTokens)
        {
            // Below the minimum length the end id's logit is masked
            // (kernels/penaltyKernels.cu): the next best token comes instead.
            token = (token + 1) % mVocab;
        }
        if (token == endId)
        {
            // The end token ends the request without being returned (the sampling
            // kernels do not count it in the sequence length).
            respond(a, {}, FinishReason::kEND_ID);
            return true;
        }
        a.tokens.push_back(token);
        a.generated += 1;
        a.logProbs.push_back(-static_cast<float>(a.generated) / 8.f);
        bool const length = a.generated >= a.request.getMaxTokens() || static_cast<int>(a.tokens.size()) >= mMaxSeqLen;
        respond(a, {token}, length ? FinishReason::kLENGTH : FinishReason::kNOT_FINISHED);
        return length;
    }

    // A response as createResult (batch_manager/llmRequest.cpp) makes it.
    void respond(Active& a, VecTokens fresh, FinishReason reason)
    {
        auto const o = a.request.getOutputConfig();
        bool const final = reason != FinishReason::kNOT_FINISHED;
        Result result{};
        result.isFinal = final;
        result.isSequenceFinal = final;
        result.outputTokenIds = {fresh};
        result.finishReasons = {reason};
        result.decodingIter = a.generated;
        if (o.returnLogProbs)
        {
            // All of them so far, while outputTokenIds holds only the new tokens.
            result.logProbs = std::vector<VecLogProbs>{a.logProbs};
            float cum = 0.f;
            for (auto p : a.logProbs)
            {
                cum += p;
            }
            result.cumLogProbs = VecLogProbs{cum};
        }
        if (a.contextLogits)
        {
            // The same host tensor on every response.
            result.contextLogits = detail::ofITensor(a.contextLogits);
        }
        if (o.returnGenerationLogits)
        {
            // Streaming: [new tokens, beam, vocab], a slice of the request's
            // generation-logits buffer from the first new token; a step that
            // ends on the end token has no new token, so no row (the end token's
            // logits are not returned).
            std::vector<float> values(fresh.size() * static_cast<std::size_t>(mVocab), 0.f);
            for (std::size_t i = 0; i < fresh.size(); ++i)
            {
                values[i * static_cast<std::size_t>(mVocab) + static_cast<std::size_t>(fresh[i])] = 2.f;
            }
            auto const n = static_cast<std::int64_t>(fresh.size());
            result.generationLogits = detail::ofITensor(floatTensor({n, 1, mVocab}, std::move(values)));
        }
        mResponses.emplace_back(a.id, std::move(result));
    }

    ExecutorConfig mConfig;
    int mVocab = 0;
    int mMaxInputLen = 0;
    int mMaxSeqLen = 0;
    int mMaxBatchSize = 0;
    std::size_t mTokensPerBlock = 32;
    bool mContextLogitsBuilt = false;
    bool mBlockReuse = false;
    std::chrono::milliseconds mStep{2};

    std::mutex mMutex;
    std::condition_variable mReady;
    std::condition_variable mWake;
    std::deque<Response> mResponses;
    std::deque<Active> mQueued;
    std::vector<Active> mActive;
    std::vector<VecTokens> mStoredPrompts; // whose KV-cache blocks may be reused
    bool mMinLengthInUse = false;
    std::map<IdType, std::shared_ptr<runtime::ITensor>> mContextLogits;
    IdType mNextId = 1;
    bool mShutdownCalled = false;
    std::uint64_t mStepsAfterShutdown = 0;
    std::thread mWorker;
};

Executor::Executor(std::filesystem::path const& modelPath, ModelType modelType, ExecutorConfig const& executorConfig)
{
    TLLM_CHECK_WITH_INFO(modelType == ModelType::kDECODER_ONLY, "the fake runs decoder-only engines");
    mImpl = std::make_unique<Impl>(modelPath, executorConfig);
}

Executor::~Executor() = default;

IdType Executor::enqueueRequest(Request const& request)
{
    return mImpl->enqueue(request);
}

std::vector<Response> Executor::awaitResponses(std::optional<std::chrono::milliseconds> const& timeout)
{
    return mImpl->await(timeout);
}

void Executor::cancelRequest(IdType requestId)
{
    mImpl->cancel(requestId);
}

void Executor::shutdown()
{
    mImpl->shutdown();
}

} // namespace tensorrt_llm::executor

extern "C" void fake_trtllm_record(char const* line)
{
    fake_trtllm::record(line);
}
