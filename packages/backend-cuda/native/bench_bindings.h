// Timing bindings for bench/cuda-gemm.bench.mjs: GEMMs timed in C++ with CUDA events on the addon's
// stream (no N-API call overhead in the numbers), plus cuBLASLt calls that throw instead of falling
// back, for the benchmark's correctness checks.
#pragma once
#include <napi.h>

namespace kiln {
void registerBench(Napi::Env env, Napi::Object exports);
}  // namespace kiln
