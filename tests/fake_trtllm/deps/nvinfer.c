/* Fake TensorRT runtime (libnvinfer.so.10) for the fake TensorRT-LLM library:
   only the version query, which the real one exports as getInferLibVersion()
   (NvInferRuntimeBase.h). 10.13.0, the TensorRT of TensorRT-LLM 1.2. */
#include <stdint.h>

int32_t getInferLibVersion(void)
{
    return 10 * 10000 + 13 * 100 + 0;
}
