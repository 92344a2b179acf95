// Entry point of kiln_cuda.node: runtime (device, stream, pool, copies), kernels, cuBLASLt
// and NCCL bindings. Loading it needs only the CUDA driver; without one, probe() says why.
#include <napi.h>

#include "bench_bindings.h"
#include "cublaslt.h"
#include "kernels/fp8_gemm_sm90.cuh"
#include "nccl.h"
#include "runtime.h"

namespace {

Napi::Value Capabilities(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  bool lt = kiln::lt::available();
  o.Set("cublasLt", lt);
  o.Set("cublasLtReason", lt ? std::string() : kiln::lt::why());
  o.Set("cublasLtVersion", kiln::lt::version());
  o.Set("fp8GemmSm90", kiln_fp8_gemm_sm90_available());
  return o;
}

Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  kiln::registerRuntime(env, exports);
  kiln::registerKernels(env, exports);
  kiln::registerNccl(env, exports);
  kiln::registerBench(env, exports);
  exports.Set("capabilities", Napi::Function::New(env, Capabilities));
  return exports;
}

}  // namespace

NODE_API_MODULE(kiln_cuda, InitAddon)
