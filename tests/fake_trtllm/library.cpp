// The fake TensorRT-LLM library's value classes: configs, Request, Response,
// Tensor, the exception type and version(). Each definition implements a
// declaration of the real 1.2 headers, with the behaviour the library's source
// gives it where the bridge can observe it (cited per function). See README.md.

#include "fake.h"

#include "tensorrt_llm/common/assert.h"
#include "tensorrt_llm/common/tllmException.h"

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>

namespace tle = tensorrt_llm::executor;

TRTLLM_NAMESPACE_BEGIN
namespace common
{

TllmException::TllmException(char const* file, std::size_t line, char const* msg)
    : std::runtime_error(std::string(msg) + " (" + file + ":" + std::to_string(line) + ")")
    , mNbFrames(0)
{
}

TllmException::~TllmException() noexcept = default;

std::string TllmException::getTrace() const
{
    return {};
}

std::string TllmException::demangle(char const* name)
{
    return name;
}

void fmtstr_(char const* format, fmtstr_allocator alloc, void* target, va_list args)
{
    va_list sizing;
    va_copy(sizing, args);
    int const n = std::vsnprintf(nullptr, 0, format, sizing);
    va_end(sizing);
    if (n <= 0)
    {
        return;
    }
    // The allocator (stringUtils.h) sizes a std::string, which keeps room for the terminator.
    char* buffer = alloc(target, static_cast<std::size_t>(n));
    if (buffer != nullptr)
    {
        std::vsnprintf(buffer, static_cast<std::size_t>(n) + 1, format, args);
    }
}

} // namespace common
TRTLLM_NAMESPACE_END

namespace fake_trtllm
{

void record(std::string const& jsonLine)
{
    static std::mutex mutex;
    char const* path = std::getenv("TRTLLM_FAKE_RECORD");
    if (path == nullptr || *path == '\0')
    {
        return;
    }
    std::lock_guard<std::mutex> lock(mutex);
    std::ofstream out(path, std::ios::app);
    out << jsonLine << '\n';
}

std::string quoted(std::string const& text)
{
    std::string out = "\"";
    for (char c : text)
    {
        if (c == '"' || c == '\\')
        {
            out += '\\';
            out += c;
        }
        else if (static_cast<unsigned char>(c) < 0x20)
        {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        }
        else
        {
            out += c;
        }
    }
    return out + "\"";
}

} // namespace fake_trtllm

namespace tensorrt_llm::executor
{

char const* version() noexcept
{
    // The engine directories the tests make say they were built by this version
    // (scripts/build-fake-trtllm gives the headers' version.h and the package's
    // version.py the same). TRTLLM_FAKE_VERSION stands for a library of another
    // release, loaded by a binary built against these headers.
    char const* other = std::getenv("TRTLLM_FAKE_VERSION");
    return other != nullptr && *other != '\0' ? other : "1.2.0";
}

// ---- SamplingConfig: the checks of executor/samplingConfig.cpp ----

SamplingConfig::SamplingConfig(SizeType32 beamWidth, std::optional<SizeType32> const& topK,
    std::optional<FloatType> const& topP, std::optional<FloatType> const& topPMin,
    std::optional<TokenIdType> const& topPResetIds, std::optional<FloatType> const& topPDecay,
    std::optional<RandomSeedType> const& seed, std::optional<FloatType> const& temperature,
    std::optional<SizeType32> const& minTokens, std::optional<FloatType> const& beamSearchDiversityRate,
    std::optional<FloatType> const& repetitionPenalty, std::optional<FloatType> const& presencePenalty,
    std::optional<FloatType> const& frequencyPenalty, std::optional<FloatType> const& lengthPenalty,
    std::optional<SizeType32> const& earlyStopping, std::optional<SizeType32> const& noRepeatNgramSize,
    std::optional<SizeType32> const& numReturnSequences, std::optional<FloatType> const& minP,
    std::optional<std::vector<SizeType32>> const& beamWidthArray)
    : mBeamWidth(checkBeamWidth(beamWidth))
    , mTopK(topK)
    , mTopP(checkTopP(topP))
    , mTopPMin(topPMin)
    , mTopPResetIds(topPResetIds)
    , mTopPDecay(topPDecay)
    , mSeed(seed)
    , mTemperature(checkTemperature(temperature))
    , mMinTokens(checkMinTokens(minTokens))
    , mBeamSearchDiversityRate(beamSearchDiversityRate)
    , mRepetitionPenalty(checkRepetitionPenalty(repetitionPenalty))
    , mPresencePenalty(presencePenalty)
    , mFrequencyPenalty(frequencyPenalty)
    , mLengthPenalty(lengthPenalty)
    , mEarlyStopping(earlyStopping)
    , mNoRepeatNgramSize(noRepeatNgramSize)
    , mNumReturnSequences(numReturnSequences)
    , mNumReturnBeams(beamWidth)
    , mMinP(minP)
    , mBeamWidthArray(beamWidthArray)
{
    if (topK.has_value())
    {
        TLLM_CHECK(topK.value() >= 0);
    }
}

SizeType32 SamplingConfig::checkBeamWidth(SizeType32 beamWidth)
{
    TLLM_CHECK(beamWidth > 0);
    return beamWidth;
}

std::optional<FloatType> const& SamplingConfig::checkTopP(std::optional<FloatType> const& topP)
{
    if (topP.has_value())
    {
        TLLM_CHECK(topP.value() > 0.f);
        TLLM_CHECK(topP.value() <= 1.f);
    }
    return topP;
}

std::optional<FloatType> const& SamplingConfig::checkTemperature(std::optional<FloatType> const& temperature)
{
    if (temperature.has_value())
    {
        TLLM_CHECK(temperature.value() >= 0.f);
    }
    return temperature;
}

std::optional<SizeType32> const& SamplingConfig::checkMinTokens(std::optional<SizeType32> const& minTokens)
{
    if (minTokens.has_value())
    {
        TLLM_CHECK(minTokens.value() >= 0);
    }
    return minTokens;
}

std::optional<FloatType> const& SamplingConfig::checkRepetitionPenalty(std::optional<FloatType> const& penalty)
{
    if (penalty.has_value())
    {
        TLLM_CHECK(penalty.value() > 0.f);
    }
    return penalty;
}

SizeType32 SamplingConfig::getBeamWidth() const
{
    return mBeamWidth;
}

std::optional<SizeType32> SamplingConfig::getTopK() const
{
    return mTopK;
}

std::optional<FloatType> SamplingConfig::getTopP() const
{
    return mTopP;
}

std::optional<RandomSeedType> SamplingConfig::getSeed() const
{
    return mSeed;
}

std::optional<FloatType> SamplingConfig::getTemperature() const
{
    return mTemperature;
}

std::optional<SizeType32> SamplingConfig::getMinTokens() const
{
    return mMinTokens;
}

std::optional<FloatType> SamplingConfig::getRepetitionPenalty() const
{
    return mRepetitionPenalty;
}

std::optional<FloatType> SamplingConfig::getPresencePenalty() const
{
    return mPresencePenalty;
}

std::optional<FloatType> SamplingConfig::getFrequencyPenalty() const
{
    return mFrequencyPenalty;
}

void SamplingConfig::setTopK(std::optional<SizeType32> const& topK)
{
    if (topK.has_value())
    {
        TLLM_CHECK(topK.value() >= 0);
    }
    mTopK = topK;
}

void SamplingConfig::setTopP(std::optional<FloatType> const& topP)
{
    mTopP = checkTopP(topP);
}

void SamplingConfig::setSeed(std::optional<RandomSeedType> const& seed)
{
    mSeed = seed;
}

void SamplingConfig::setTemperature(std::optional<FloatType> const& temperature)
{
    mTemperature = checkTemperature(temperature);
}

void SamplingConfig::setMinTokens(std::optional<SizeType32> const& minTokens)
{
    mMinTokens = checkMinTokens(minTokens);
}

void SamplingConfig::setRepetitionPenalty(std::optional<FloatType> const& repetitionPenalty)
{
    mRepetitionPenalty = checkRepetitionPenalty(repetitionPenalty);
}

// Presence and frequency penalties take any value (no check in samplingConfig.cpp).
void SamplingConfig::setPresencePenalty(std::optional<FloatType> const& presencePenalty)
{
    mPresencePenalty = presencePenalty;
}

void SamplingConfig::setFrequencyPenalty(std::optional<FloatType> const& frequencyPenalty)
{
    mFrequencyPenalty = frequencyPenalty;
}

// ---- Plain configs ----

OutputConfig::OutputConfig(bool returnLogProbs, bool returnContextLogits, bool returnGenerationLogits,
    bool excludeInputFromOutput, bool returnEncoderOutput, bool returnPerfMetrics,
    std::optional<std::vector<AdditionalModelOutput>> additionalModelOutputs)
    : returnLogProbs(returnLogProbs)
    , returnContextLogits(returnContextLogits)
    , returnGenerationLogits(returnGenerationLogits)
    , excludeInputFromOutput(excludeInputFromOutput)
    , returnEncoderOutput(returnEncoderOutput)
    , returnPerfMetrics(returnPerfMetrics)
    , additionalModelOutputs(std::move(additionalModelOutputs))
{
}

KvCacheConfig::KvCacheConfig(bool enableBlockReuse, std::optional<SizeType32> const& maxTokens,
    std::optional<std::vector<SizeType32>> const& maxAttentionWindowVec,
    std::optional<SizeType32> const& sinkTokenLength, std::optional<FloatType> const& freeGpuMemoryFraction,
    std::optional<size_t> const& hostCacheSize, bool onboardBlocks,
    std::optional<FloatType> const& crossKvCacheFraction, std::optional<RetentionPriority> secondaryOffloadMinPriority,
    size_t eventBufferMaxSize, bool enablePartialReuse, bool copyOnPartialReuse, bool useUvm,
    SizeType32 attentionDpEventsGatherPeriodMs,
    std::optional<tensorrt_llm::runtime::RuntimeDefaults> const& /*runtimeDefaults*/, uint64_t const& maxGpuTotalBytes)
    : mEnableBlockReuse(enableBlockReuse)
    , mMaxTokens(maxTokens)
    , mMaxAttentionWindowVec(maxAttentionWindowVec)
    , mSinkTokenLength(sinkTokenLength)
    , mFreeGpuMemoryFraction(freeGpuMemoryFraction)
    , mCrossKvCacheFraction(crossKvCacheFraction)
    , mHostCacheSize(hostCacheSize)
    , mOnboardBlocks(onboardBlocks)
    , mSecondaryOffloadMinPriority(secondaryOffloadMinPriority)
    , mEventBufferMaxSize(eventBufferMaxSize)
    , mEnablePartialReuse(enablePartialReuse)
    , mCopyOnPartialReuse(copyOnPartialReuse)
    , mUseUvm(useUvm)
    , mAttentionDpEventsGatherPeriodMs(attentionDpEventsGatherPeriodMs)
    , mMaxGpuTotalBytes(maxGpuTotalBytes)
{
}

bool KvCacheConfig::getEnableBlockReuse() const
{
    return mEnableBlockReuse;
}

std::optional<FloatType> KvCacheConfig::getFreeGpuMemoryFraction() const
{
    return mFreeGpuMemoryFraction;
}

void KvCacheConfig::setEnableBlockReuse(bool enableBlockReuse)
{
    mEnableBlockReuse = enableBlockReuse;
}

void KvCacheConfig::setFreeGpuMemoryFraction(FloatType freeGpuMemoryFraction)
{
    // executor/kvCacheConfig.cpp: strictly between 0 and 1.
    TLLM_CHECK(freeGpuMemoryFraction > 0.F);
    TLLM_CHECK(freeGpuMemoryFraction < 1.F);
    mFreeGpuMemoryFraction = freeGpuMemoryFraction;
}

SchedulerConfig::SchedulerConfig(CapacitySchedulerPolicy capacitySchedulerPolicy,
    std::optional<ContextChunkingPolicy> contextChunkingPolicy, std::optional<DynamicBatchConfig> dynamicBatchConfig)
    : mCapacitySchedulerPolicy(capacitySchedulerPolicy)
    , mContextChunkingPolicy(contextChunkingPolicy)
    , mDynamicBatchConfig(std::move(dynamicBatchConfig))
{
}

CapacitySchedulerPolicy SchedulerConfig::getCapacitySchedulerPolicy() const
{
    return mCapacitySchedulerPolicy;
}

ExtendedRuntimePerfKnobConfig::ExtendedRuntimePerfKnobConfig(
    bool multiBlockMode, bool enableContextFMHAFP32Acc, bool cudaGraphMode, SizeType32 cudaGraphCacheSize)
    : mMultiBlockMode(multiBlockMode)
    , mEnableContextFMHAFP32Acc(enableContextFMHAFP32Acc)
    , mCudaGraphMode(cudaGraphMode)
    , mCudaGraphCacheSize(cudaGraphCacheSize)
{
}

ExecutorConfig::ExecutorConfig(SizeType32 maxBeamWidth, SchedulerConfig schedulerConfig, KvCacheConfig kvCacheConfig,
    bool enableChunkedContext, bool normalizeLogProbs, SizeType32 iterStatsMaxIterations,
    SizeType32 requestStatsMaxIterations, BatchingType batchingType, std::optional<SizeType32> maxBatchSize,
    std::optional<SizeType32> maxNumTokens, std::optional<ParallelConfig> parallelConfig,
    std::optional<PeftCacheConfig> const& peftCacheConfig,
    std::optional<LogitsPostProcessorConfig> logitsPostProcessorConfig, std::optional<DecodingConfig> decodingConfig,
    bool useGpuDirectStorage, float gpuWeightsPercent, std::optional<SizeType32> maxQueueSize,
    ExtendedRuntimePerfKnobConfig const& extendedRuntimePerfKnobConfig, std::optional<DebugConfig> debugConfig,
    SizeType32 recvPollPeriodMs, uint64_t maxSeqIdleMicroseconds,
    std::optional<SpeculativeDecodingConfig> specDecConfig, std::optional<GuidedDecodingConfig> guidedDecodingConfig,
    std::optional<std::vector<AdditionalModelOutput>> additionalModelOutputs,
    std::optional<CacheTransceiverConfig> cacheTransceiverConfig, bool gatherGenerationLogits,
    bool promptTableOffloading, bool enableTrtOverlap, bool failFastOnAttentionWindowTooLarge)
    : mMaxBeamWidth(maxBeamWidth)
    , mSchedulerConfig(std::move(schedulerConfig))
    , mKvCacheConfig(std::move(kvCacheConfig))
    , mEnableChunkedContext(enableChunkedContext)
    , mNormalizeLogProbs(normalizeLogProbs)
    , mIterStatsMaxIterations(iterStatsMaxIterations)
    , mRequestStatsMaxIterations(requestStatsMaxIterations)
    , mBatchingType(batchingType)
    , mMaxBatchSize(maxBatchSize)
    , mMaxNumTokens(maxNumTokens)
    , mParallelConfig(std::move(parallelConfig))
    , mPeftCacheConfig(peftCacheConfig)
    , mLogitsPostProcessorConfig(std::move(logitsPostProcessorConfig))
    , mDecodingConfig(std::move(decodingConfig))
    , mUseGpuDirectStorage(useGpuDirectStorage)
    , mGpuWeightsPercent(gpuWeightsPercent)
    , mMaxQueueSize(maxQueueSize)
    , mExtendedRuntimePerfKnobConfig(extendedRuntimePerfKnobConfig)
    , mDebugConfig(std::move(debugConfig))
    , mRecvPollPeriodMs(recvPollPeriodMs)
    , mMaxSeqIdleMicroseconds(maxSeqIdleMicroseconds)
    , mSpeculativeDecodingConfig(std::move(specDecConfig))
    , mGuidedDecodingConfig(std::move(guidedDecodingConfig))
    , mAdditionalModelOutputs(std::move(additionalModelOutputs))
    , mCacheTransceiverConfig(std::move(cacheTransceiverConfig))
    , mGatherGenerationLogits(gatherGenerationLogits)
    , mPromptTableOffloading(promptTableOffloading)
    , mEnableTrtOverlap(enableTrtOverlap)
    , mFailFastOnAttentionWindowTooLarge(failFastOnAttentionWindowTooLarge)
{
}

SizeType32 ExecutorConfig::getMaxBeamWidth() const
{
    return mMaxBeamWidth;
}

SchedulerConfig ExecutorConfig::getSchedulerConfig() const
{
    return mSchedulerConfig;
}

KvCacheConfig ExecutorConfig::getKvCacheConfig() const
{
    return mKvCacheConfig;
}

bool ExecutorConfig::getNormalizeLogProbs() const
{
    return mNormalizeLogProbs;
}

bool ExecutorConfig::getGatherGenerationLogits() const
{
    return mGatherGenerationLogits;
}

void ExecutorConfig::setMaxBeamWidth(SizeType32 maxBeamWidth)
{
    mMaxBeamWidth = maxBeamWidth;
}

void ExecutorConfig::setSchedulerConfig(SchedulerConfig const& schedulerConfig)
{
    mSchedulerConfig = schedulerConfig;
}

void ExecutorConfig::setKvCacheConfig(KvCacheConfig const& kvCacheConfig)
{
    mKvCacheConfig = kvCacheConfig;
}

void ExecutorConfig::setNormalizeLogProbs(bool normalizeLogProbs)
{
    mNormalizeLogProbs = normalizeLogProbs;
}

void ExecutorConfig::setGatherGenerationLogits(bool gatherGenerationLogits)
{
    mGatherGenerationLogits = gatherGenerationLogits;
}

// Results carry an optional ContextPhaseParams (disaggregated serving), so
// copying a Result needs these; the fake never makes one.
void ContextPhaseParams::deleter(void const* /*data*/) {}

ContextPhaseParams::ContextPhaseParams(ContextPhaseParams const& other)
    : mReqId(other.mReqId)
    , mFirstGenTokens(other.mFirstGenTokens)
    , mState(nullptr, deleter)
    , mDraftTokens(other.mDraftTokens)
{
}

ContextPhaseParams::ContextPhaseParams(ContextPhaseParams&& other) noexcept = default;

ContextPhaseParams::~ContextPhaseParams() = default;

// ---- Request: executor/requestImpl.h keeps the fields and validates them ----

class Request::Impl
{
public:
    VecTokens inputTokenIds;
    SizeType32 maxNewTokens;
    bool streaming;
    SamplingConfig samplingConfig;
    OutputConfig outputConfig;
    std::optional<SizeType32> endId;
    std::optional<SizeType32> padId;
    std::optional<std::list<VecTokens>> stopWords;
    bool returnAllGeneratedTokens;
};

Request::Request(VecTokens inputTokenIds, SizeType32 maxTokens, bool streaming, SamplingConfig const& samplingConfig,
    OutputConfig const& outputConfig, std::optional<SizeType32> const& endId, std::optional<SizeType32> const& padId,
    std::optional<std::vector<SizeType32>> /*positionIds*/, std::optional<std::list<VecTokens>> /*badWords*/,
    std::optional<std::list<VecTokens>> stopWords, std::optional<Tensor> /*embeddingBias*/,
    std::optional<ExternalDraftTokensConfig> /*externalDraftTokensConfig*/,
    std::optional<PromptTuningConfig> /*pTuningConfig*/, std::optional<MultimodalInput> /*multimodalInput*/,
    std::optional<Tensor> /*multimodalEmbedding*/, std::optional<MropeConfig> /*mRopeConfig*/,
    std::optional<LoraConfig> /*loraConfig*/, std::optional<LookaheadDecodingConfig> /*lookaheadConfig*/,
    std::optional<KvCacheRetentionConfig> /*kvCacheRetentionConfig*/,
    std::optional<std::string> /*logitsPostProcessorName*/,
    std::optional<LogitsPostProcessor> /*logitsPostProcessor*/, std::optional<VecTokens> /*encoderInputTokenIds*/,
    std::optional<IdType> /*clientId*/, bool returnAllGeneratedTokens, PriorityType /*priority*/,
    RequestType /*type*/, std::optional<ContextPhaseParams> /*contextPhaseParams*/,
    std::optional<Tensor> /*encoderInputFeatures*/, std::optional<SizeType32> /*encoderOutputLength*/,
    std::optional<Tensor> /*crossAttentionMask*/, SizeType32 /*numReturnSequences*/,
    std::optional<EagleConfig> /*eagleConfig*/, std::optional<Tensor> /*skipCrossAttnBlocks*/,
    std::optional<GuidedDecodingParams> /*guidedDecodingParams*/, std::optional<SizeType32> /*languageAdapterUid*/,
    std::optional<MillisecondsType> /*allottedTimeMs*/, std::optional<CacheSaltIDType> /*cacheSaltID*/)
    : mImpl(std::make_unique<Impl>(Impl{std::move(inputTokenIds), maxTokens, streaming, samplingConfig, outputConfig,
        endId, padId, std::move(stopWords), returnAllGeneratedTokens}))
{
    // requestImpl.h, Request::Impl::validate.
    TLLM_CHECK(!mImpl->inputTokenIds.empty());
    TLLM_CHECK(mImpl->maxNewTokens > 0);
}

Request::Request(Request const& other)
    : mImpl(std::make_unique<Impl>(*other.mImpl))
{
}

Request::Request(Request&& other) noexcept = default;

Request& Request::operator=(Request const& other)
{
    mImpl = std::make_unique<Impl>(*other.mImpl);
    return *this;
}

Request& Request::operator=(Request&& other) noexcept = default;

Request::~Request() = default;

VecTokens Request::getInputTokenIds() const
{
    return mImpl->inputTokenIds;
}

SizeType32 Request::getMaxTokens() const
{
    return mImpl->maxNewTokens;
}

bool Request::getStreaming() const
{
    return mImpl->streaming;
}

SamplingConfig Request::getSamplingConfig() const
{
    return mImpl->samplingConfig;
}

OutputConfig Request::getOutputConfig() const
{
    return mImpl->outputConfig;
}

std::optional<SizeType32> Request::getEndId() const
{
    return mImpl->endId;
}

std::optional<SizeType32> Request::getPadId() const
{
    return mImpl->padId;
}

std::optional<std::list<VecTokens>> Request::getStopWords() const
{
    return mImpl->stopWords;
}

bool Request::getReturnAllGeneratedTokens() const
{
    return mImpl->returnAllGeneratedTokens;
}

void Request::setStreaming(bool streaming)
{
    mImpl->streaming = streaming;
}

void Request::setSamplingConfig(SamplingConfig const& config)
{
    mImpl->samplingConfig = config;
}

void Request::setOutputConfig(OutputConfig const& outputConfig)
{
    mImpl->outputConfig = outputConfig;
}

void Request::setEndId(SizeType32 endId)
{
    mImpl->endId = endId;
}

void Request::setPadId(SizeType32 padId)
{
    mImpl->padId = padId;
}

void Request::setStopWords(std::list<VecTokens> const& stopWords)
{
    mImpl->stopWords = stopWords;
}

void Request::setReturnAllGeneratedTokens(bool returnAllGeneratedTokens)
{
    mImpl->returnAllGeneratedTokens = returnAllGeneratedTokens;
}

// ---- Response: executor/responseImpl.h holds an error or a result ----

class Response::Impl
{
public:
    IdType requestId;
    std::optional<std::string> error;
    std::optional<Result> result;
};

Response::Response(IdType requestId, std::string errorMsg, std::optional<IdType> /*clientId*/)
    : mImpl(std::make_unique<Impl>(Impl{requestId, std::move(errorMsg), std::nullopt}))
{
    TLLM_CHECK_WITH_INFO(!mImpl->error->empty(), "Error message should not be empty");
}

Response::Response(IdType requestId, Result result, std::optional<IdType> /*clientId*/)
    : mImpl(std::make_unique<Impl>(Impl{requestId, std::nullopt, std::move(result)}))
{
}

Response::~Response() = default;

Response::Response(Response const& other)
    : mImpl(std::make_unique<Impl>(*other.mImpl))
{
}

Response::Response(Response&& other) noexcept = default;

Response& Response::operator=(Response const& other)
{
    mImpl = std::make_unique<Impl>(*other.mImpl);
    return *this;
}

Response& Response::operator=(Response&& other) noexcept = default;

IdType Response::getRequestId() const
{
    return mImpl->requestId;
}

bool Response::hasError() const
{
    return mImpl->error.has_value();
}

std::string const& Response::getErrorMsg() const
{
    if (!mImpl->error.has_value())
    {
        TLLM_THROW("Cannot get the error message for a response without error");
    }
    return *mImpl->error;
}

Result const& Response::getResult() const
{
    if (!mImpl->result.has_value())
    {
        TLLM_THROW("Cannot get the result for a response with an error: %s", mImpl->error->c_str());
    }
    return *mImpl->result;
}

// ---- Tensor over the fake ITensor ----

namespace detail
{
Tensor ofITensor(std::shared_ptr<runtime::ITensor> tensor)
{
    return Tensor(std::move(tensor));
}
} // namespace detail

Tensor::Tensor(std::shared_ptr<runtime::ITensor> tensor)
    : mTensor(std::move(tensor))
{
}

void* Tensor::getData()
{
    TLLM_CHECK(mTensor != nullptr);
    mTensor->reads++;
    return mTensor->bytes.data();
}

void const* Tensor::getData() const
{
    TLLM_CHECK(mTensor != nullptr);
    mTensor->reads++;
    return mTensor->bytes.data();
}

DataType Tensor::getDataType() const
{
    TLLM_CHECK(mTensor != nullptr);
    return mTensor->dataType;
}

MemoryType Tensor::getMemoryType() const
{
    TLLM_CHECK(mTensor != nullptr);
    return mTensor->memoryType;
}

Shape Tensor::getShape() const
{
    TLLM_CHECK(mTensor != nullptr);
    return Shape(mTensor->shape.data(), mTensor->shape.size());
}

std::size_t Tensor::getSizeInBytes() const
{
    TLLM_CHECK(mTensor != nullptr);
    return mTensor->bytes.size();
}

} // namespace tensorrt_llm::executor
