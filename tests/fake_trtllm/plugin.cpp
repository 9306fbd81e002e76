// The fake libnvinfer_plugin_tensorrt_llm.so: plugin registration, which the
// bridge calls once before the first Executor (plugins/api/tllmPlugin.h).
// Registration is recorded; there are no plugins. See README.md.

#include "tensorrt_llm/plugins/api/tllmPlugin.h"

#include <string>

// Exported by the fake libtensorrt_llm.so, which this library needs (as the
// real plugin library needs the real one).
extern "C" void fake_trtllm_record(char const* line);

namespace tensorrt_llm::plugins::api
{

nvinfer1::ILogger* LoggerManager::defaultLogger() noexcept
{
    return nullptr;
}

} // namespace tensorrt_llm::plugins::api

extern "C" bool initTrtLlmPlugins(void* /*logger*/, char const* libNamespace)
{
    std::string const ns = libNamespace == nullptr ? "" : libNamespace;
    fake_trtllm_record(("{\"event\":\"init_plugins\",\"namespace\":\"" + ns + "\"}").c_str());
    return true;
}
