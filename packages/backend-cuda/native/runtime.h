// The addon's process-wide CUDA state: one device, one stream, a stream-ordered memory pool.
#pragma once
#include <cuda_runtime.h>
#include <napi.h>
#include <string>

namespace kiln {

struct Runtime {
  bool initialised = false;
  int device = -1;
  cudaStream_t stream = nullptr;
  cudaMemPool_t pool = nullptr;
  double liveBytes = 0;
  double liveBuffers = 0;
  cudaDeviceProp props{};
};

Runtime& runtime();

// Throws a JS Error { code: 'KILN_CUDA_ERROR', cudaError, cudaErrorName } naming `what`.
[[noreturn]] void throwCuda(Napi::Env env, cudaError_t err, const std::string& what);
inline void check(Napi::Env env, cudaError_t err, const char* what) {
  if (err != cudaSuccess) throwCuda(env, err, what);
}
// Requires init() to have run.
void requireInit(Napi::Env env);

// Stream-ordered allocation from the pool; out of memory becomes { code: 'KILN_CUDA_OOM',
// requestedBytes, freeBytes }. Zero bytes allocate a 1-byte buffer so every tensor has a
// distinct address.
void* deviceAlloc(Napi::Env env, size_t bytes);
void deviceFree(void* p, size_t bytes);

// Pointers travel to JS as numbers: user-space addresses fit in 48 bits, exactly representable.
inline Napi::Value ptrValue(Napi::Env env, const void* p) { return Napi::Number::New(env, (double)(uintptr_t)p); }
inline void* ptrArg(const Napi::Value& v) { return (void*)(uintptr_t)v.As<Napi::Number>().DoubleValue(); }

void registerRuntime(Napi::Env env, Napi::Object exports);
void registerKernels(Napi::Env env, Napi::Object exports);

}  // namespace kiln
