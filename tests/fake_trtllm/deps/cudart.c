/* Fake CUDA runtime (libcudart.so.13) for the fake TensorRT-LLM library: only
   cudaRuntimeGetVersion (cuda_runtime_api.h; cudaSuccess is 0). */
int cudaRuntimeGetVersion(int* runtimeVersion)
{
    *runtimeVersion = 13000;
    return 0;
}
