#include "runtime.h"

#include <cstring>

namespace kiln {

Runtime& runtime() {
  static Runtime r;
  return r;
}

void throwCuda(Napi::Env env, cudaError_t err, const std::string& what) {
  cudaGetLastError();  // clear a non-sticky error so later calls can proceed
  Napi::Error e = Napi::Error::New(env, "CUDA error in " + what + ": " + cudaGetErrorString(err) + " (" +
                                            cudaGetErrorName(err) + ")");
  e.Set("code", Napi::String::New(env, "KILN_CUDA_ERROR"));
  e.Set("cudaError", Napi::Number::New(env, (double)err));
  e.Set("cudaErrorName", Napi::String::New(env, cudaGetErrorName(err)));
  throw e;
}

void requireInit(Napi::Env env) {
  if (!runtime().initialised) {
    Napi::Error e = Napi::Error::New(env, "the CUDA runtime is not initialised (call init first)");
    e.Set("code", Napi::String::New(env, "KILN_CUDA_ERROR"));
    throw e;
  }
}

void* deviceAlloc(Napi::Env env, size_t bytes) {
  Runtime& rt = runtime();
  void* p = nullptr;
  size_t n = bytes == 0 ? 1 : bytes;
  cudaError_t err = cudaMallocAsync(&p, n, rt.pool, rt.stream);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    // Give cached blocks back and retry once before reporting.
    cudaStreamSynchronize(rt.stream);
    cudaMemPoolTrimTo(rt.pool, 0);
    err = cudaMallocAsync(&p, n, rt.pool, rt.stream);
  }
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t freeB = 0, totalB = 0;
    cudaMemGetInfo(&freeB, &totalB);
    Napi::Error e = Napi::Error::New(env, "CUDA out of memory: requested " + std::to_string(bytes) + " bytes, " +
                                              std::to_string(freeB) + " of " + std::to_string(totalB) + " bytes free");
    e.Set("code", Napi::String::New(env, "KILN_CUDA_OOM"));
    e.Set("requestedBytes", Napi::Number::New(env, (double)bytes));
    e.Set("freeBytes", Napi::Number::New(env, (double)freeB));
    e.Set("totalBytes", Napi::Number::New(env, (double)totalB));
    throw e;
  }
  check(env, err, "cudaMallocAsync");
  rt.liveBytes += (double)bytes;
  rt.liveBuffers += 1;
  return p;
}

void deviceFree(void* p, size_t bytes) {
  Runtime& rt = runtime();
  if (!p) return;
  cudaFreeAsync(p, rt.stream);
  rt.liveBytes -= (double)bytes;
  rt.liveBuffers -= 1;
}

namespace {

// probe(): { ok, reason?, deviceCount, runtimeVersion, driverVersion } without initialising.
Napi::Value Probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  int count = 0, drv = 0, rtv = 0;
  cudaRuntimeGetVersion(&rtv);
  cudaError_t derr = cudaDriverGetVersion(&drv);
  cudaError_t err = cudaGetDeviceCount(&count);
  o.Set("runtimeVersion", rtv);
  o.Set("driverVersion", derr == cudaSuccess ? drv : 0);
  o.Set("deviceCount", err == cudaSuccess ? count : 0);
  if (err != cudaSuccess || count == 0) {
    cudaGetLastError();
    std::string why = err != cudaSuccess ? std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err)
                                         : std::string("no CUDA device is visible");
    o.Set("ok", false);
    o.Set("reason", why);
  } else {
    o.Set("ok", true);
  }
  return o;
}

Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Runtime& rt = runtime();
  int ordinal = info.Length() > 0 ? info[0].As<Napi::Number>().Int32Value() : 0;
  if (!rt.initialised) {
    check(env, cudaSetDevice(ordinal), "cudaSetDevice");
    check(env, cudaStreamCreateWithFlags(&rt.stream, cudaStreamNonBlocking), "cudaStreamCreate");
    check(env, cudaDeviceGetDefaultMemPool(&rt.pool, ordinal), "cudaDeviceGetDefaultMemPool");
    // Keep freed blocks cached in the pool (a caching allocator) instead of returning them
    // to the driver at every synchronisation.
    uint64_t threshold = UINT64_MAX;
    check(env, cudaMemPoolSetAttribute(rt.pool, cudaMemPoolAttrReleaseThreshold, &threshold), "cudaMemPoolSetAttribute");
    check(env, cudaGetDeviceProperties(&rt.props, ordinal), "cudaGetDeviceProperties");
    rt.device = ordinal;
    rt.initialised = true;
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", rt.props.name);
  o.Set("major", rt.props.major);
  o.Set("minor", rt.props.minor);
  o.Set("multiProcessorCount", rt.props.multiProcessorCount);
  o.Set("totalGlobalMem", (double)rt.props.totalGlobalMem);
  o.Set("l2CacheSize", rt.props.l2CacheSize);
  o.Set("ordinal", rt.device);
  return o;
}

Napi::Value Alloc(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  return ptrValue(info.Env(), deviceAlloc(info.Env(), (size_t)info[0].As<Napi::Number>().DoubleValue()));
}
Napi::Value Free(const Napi::CallbackInfo& info) {
  deviceFree(ptrArg(info[0]), (size_t)info[1].As<Napi::Number>().DoubleValue());
  return info.Env().Undefined();
}
Napi::Value MemInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireInit(env);
  size_t freeB = 0, totalB = 0;
  check(env, cudaMemGetInfo(&freeB, &totalB), "cudaMemGetInfo");
  Napi::Object o = Napi::Object::New(env);
  o.Set("freeBytes", (double)freeB);
  o.Set("totalBytes", (double)totalB);
  o.Set("liveBytes", runtime().liveBytes);
  o.Set("liveBuffers", runtime().liveBuffers);
  return o;
}
Napi::Value TrimPool(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  check(info.Env(), cudaStreamSynchronize(runtime().stream), "cudaStreamSynchronize");
  check(info.Env(), cudaMemPoolTrimTo(runtime().pool, 0), "cudaMemPoolTrimTo");
  return info.Env().Undefined();
}

// upload(ptr, typedArray): host -> device. From pageable memory the copy is staged before
// cudaMemcpyAsync returns, so the JS array may be reused immediately.
Napi::Value Upload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireInit(env);
  void* dst = ptrArg(info[0]);
  Napi::TypedArray t = info[1].As<Napi::TypedArray>();
  size_t bytes = t.ByteLength();
  if (bytes == 0) return env.Undefined();
  const char* src = (const char*)t.ArrayBuffer().Data() + t.ByteOffset();
  check(env, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, runtime().stream), "upload");
  return env.Undefined();
}

// download(ptr, typedArray): device -> host, synchronous.
Napi::Value Download(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireInit(env);
  const void* src = ptrArg(info[0]);
  Napi::TypedArray t = info[1].As<Napi::TypedArray>();
  size_t bytes = t.ByteLength();
  if (bytes == 0) return env.Undefined();
  char* dst = (char*)t.ArrayBuffer().Data() + t.ByteOffset();
  check(env, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, runtime().stream), "download");
  check(env, cudaStreamSynchronize(runtime().stream), "download (synchronize)");
  return env.Undefined();
}

// downloadAsync(ptr, typedArray) -> Promise: waits for the stream on a worker thread so the
// event loop keeps running while the GPU finishes the queued work.
class DownloadWorker : public Napi::AsyncWorker {
 public:
  DownloadWorker(Napi::Env env, const void* src, Napi::TypedArray t)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), src_(src) {
    ref_ = Napi::Persistent(t);
    bytes_ = t.ByteLength();
    dst_ = (char*)t.ArrayBuffer().Data() + t.ByteOffset();
  }
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    // A worker thread starts on device 0: make this process's device current before touching
    // its stream (ranks of a multi-GPU run use ordinals 1, 2, ...).
    cudaError_t err = cudaSetDevice(runtime().device);
    if (err == cudaSuccess && bytes_) err = cudaMemcpyAsync(dst_, src_, bytes_, cudaMemcpyDeviceToHost, runtime().stream);
    if (err == cudaSuccess) err = cudaStreamSynchronize(runtime().stream);
    err_ = err;
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (err_ != cudaSuccess) {
      Napi::Error e = Napi::Error::New(env, std::string("CUDA error in download: ") + cudaGetErrorString(err_) + " (" +
                                                cudaGetErrorName(err_) + ")");
      e.Set("code", Napi::String::New(env, "KILN_CUDA_ERROR"));
      e.Set("cudaErrorName", Napi::String::New(env, cudaGetErrorName(err_)));
      deferred_.Reject(e.Value());
    } else {
      deferred_.Resolve(ref_.Value());
    }
  }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::Reference<Napi::TypedArray> ref_;
  const void* src_;
  char* dst_ = nullptr;
  size_t bytes_ = 0;
  cudaError_t err_ = cudaSuccess;
};

Napi::Value DownloadAsync(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  auto* w = new DownloadWorker(info.Env(), ptrArg(info[0]), info[1].As<Napi::TypedArray>());
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value CopyDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireInit(env);
  size_t bytes = (size_t)info[2].As<Napi::Number>().DoubleValue();
  if (bytes) check(env, cudaMemcpyAsync(ptrArg(info[0]), ptrArg(info[1]), bytes, cudaMemcpyDeviceToDevice, runtime().stream), "copy");
  return env.Undefined();
}

Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  requireInit(info.Env());
  check(info.Env(), cudaStreamSynchronize(runtime().stream), "cudaStreamSynchronize");
  return info.Env().Undefined();
}

}  // namespace

void registerRuntime(Napi::Env env, Napi::Object exports) {
  exports.Set("probe", Napi::Function::New(env, Probe));
  exports.Set("init", Napi::Function::New(env, Init));
  exports.Set("alloc", Napi::Function::New(env, Alloc));
  exports.Set("free", Napi::Function::New(env, Free));
  exports.Set("memInfo", Napi::Function::New(env, MemInfo));
  exports.Set("trimPool", Napi::Function::New(env, TrimPool));
  exports.Set("upload", Napi::Function::New(env, Upload));
  exports.Set("download", Napi::Function::New(env, Download));
  exports.Set("downloadAsync", Napi::Function::New(env, DownloadAsync));
  exports.Set("copy", Napi::Function::New(env, CopyDevice));
  exports.Set("synchronize", Napi::Function::New(env, Synchronize));
}

}  // namespace kiln
