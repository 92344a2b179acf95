// See bench_bindings.h. Every time* function runs `warmup` untimed calls, then `iters` calls each
// bracketed by its own pair of events (optionally after overwriting a 256 MiB buffer so that no
// operand is left in L2), and returns { medianMs, minMs, iters }.
#include "bench_bindings.h"

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "cublaslt.h"
#include "kernels/api.h"
#include "kernels/fp8_gemm_sm90.cuh"
#include "runtime.h"

namespace kiln {
namespace {

inline double num(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::Number>().DoubleValue(); }
inline int inum(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::Number>().Int32Value(); }
inline bool bval(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::Boolean>().Value(); }
inline cudaStream_t stream() { return runtime().stream; }

[[noreturn]] void throwWhy(Napi::Env env, cudaError_t err, const std::string& what) {
  std::string lt = lt::lastError();
  throwCuda(env, err, what + (lt.empty() ? std::string() : " [cuBLASLt: " + lt + "]"));
}

constexpr size_t kFlushBytes = 256u << 20;
void* flushBuffer(Napi::Env env) {
  static void* p = nullptr;
  if (!p) check(env, cudaMalloc(&p, kFlushBytes), "bench flush buffer");
  return p;
}

// A device buffer owned by one timing call.
struct Scoped {
  void* p = nullptr;
  Scoped(Napi::Env env, size_t bytes) { check(env, cudaMalloc(&p, bytes ? bytes : 1), "bench output"); }
  ~Scoped() { cudaFree(p); }
};

Napi::Value timeIt(Napi::Env env, const std::function<cudaError_t()>& fn, int iters, bool flush, const char* what,
                   int warmup = 3) {
  requireInit(env);
  cudaStream_t s = stream();
  void* fb = flush ? flushBuffer(env) : nullptr;
  for (int i = 0; i < warmup; ++i) {
    cudaError_t e = fn();
    if (e != cudaSuccess) throwWhy(env, e, what);
  }
  iters = std::max(1, iters);
  std::vector<cudaEvent_t> ev(2 * iters);
  for (auto& e : ev) check(env, cudaEventCreate(&e), "cudaEventCreate");
  cudaError_t err = cudaSuccess;
  for (int i = 0; i < iters && err == cudaSuccess; ++i) {
    if (fb) cudaMemsetAsync(fb, i & 0xff, kFlushBytes, s);
    cudaEventRecord(ev[2 * i], s);
    err = fn();
    cudaEventRecord(ev[2 * i + 1], s);
  }
  cudaError_t serr = cudaStreamSynchronize(s);
  std::vector<double> ms;
  for (int i = 0; i < iters && err == cudaSuccess && serr == cudaSuccess; ++i) {
    float t = 0;
    cudaEventElapsedTime(&t, ev[2 * i], ev[2 * i + 1]);
    ms.push_back(t);
  }
  for (auto& e : ev) cudaEventDestroy(e);
  if (err != cudaSuccess) throwWhy(env, err, what);
  if (serr != cudaSuccess) throwWhy(env, serr, std::string(what) + " (synchronize)");
  std::sort(ms.begin(), ms.end());
  size_t n = ms.size();
  double med = n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
  Napi::Object o = Napi::Object::New(env);
  o.Set("medianMs", med);
  o.Set("minMs", ms[0]);
  o.Set("iters", (double)n);
  return o;
}

// timeFp8Gemm(path, a, sa, b, sb, M, N, K, outBf16, iters, flush)
// path 0: exact CUDA-core kernel; 1: kiln sm90; 2: cuBLASLt blockwise from kiln's layouts (scale
// conversion included); 3: cuBLASLt blockwise with the scales converted beforehand (cuBLASLt alone).
Napi::Value TimeFp8Gemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int path = inum(info, 0);
  auto a = (const uint8_t*)ptrArg(info[1]);
  auto sa = (const float*)ptrArg(info[2]);
  auto b = (const uint8_t*)ptrArg(info[3]);
  auto sb = (const float*)ptrArg(info[4]);
  int M = inum(info, 5), N = inum(info, 6), K = inum(info, 7);
  bool bf16 = bval(info, 8);
  int iters = inum(info, 9);
  bool flush = bval(info, 10);
  cudaStream_t s = stream();
  Scoped out(env, (size_t)M * N * (bf16 ? 2 : 4));
  if (path == 0) {
    if (bf16) throwCuda(env, cudaErrorInvalidValue, "timeFp8Gemm path 0 has f32 output only");
    return timeIt(env, [&] {
      return launchFp8GemmReference(a, sa, E4M3, 1, 128, b, sb, E4M3, 128, 128, (float*)out.p, M, N, K, 128, -1, 1, 1, s);
    }, iters, flush, "fp8 gemm (exact)", 1);
  }
  if (path == 1) {
    if (!kiln_fp8_gemm_sm90_available()) throwCuda(env, cudaErrorNotSupported, "kiln sm90 FP8 GEMM unavailable here");
    return timeIt(env, [&] { return kiln_fp8_gemm_sm90(a, sa, b, sb, out.p, bf16 ? 1 : 0, M, N, K, s); }, iters, flush,
                  "fp8 gemm (sm90)");
  }
  if (!lt::available()) throwCuda(env, cudaErrorNotSupported, "cuBLASLt unavailable: " + lt::why());
  if (path == 2)
    return timeIt(env, [&] { return lt::fp8BlockwiseGemm(a, sa, b, sb, out.p, bf16, M, N, K, s); }, iters, flush,
                  "fp8 gemm (cuBLASLt)");
  const int KB = (K + 127) / 128, NB = (N + 127) / 128, KBp = (KB + 3) / 4 * 4;
  Scoped saT(env, (size_t)M * KB * 4), sbP(env, (size_t)NB * KBp * 4);
  check(env, lt::launchLtScaleLayout(sa, M, KB, (float*)saT.p, sb, NB, (float*)sbP.p, KBp, s), "scale layout");
  return timeIt(env, [&] {
    return lt::fp8BlockwiseGemmNative(a, (const float*)saT.p, b, (const float*)sbP.p, out.p, bf16, M, N, K, s);
  }, iters, flush, "fp8 gemm (cuBLASLt native layouts)");
}

// timeMatmul(which, a, b, batch, aStride, bStride, M, N, K, transA, transB, iters, flush)
// which 0: kiln's CUDA-core f32 kernel; 1: cuBLASLt sgemm (f32, no TF32); 2: cuBLASLt bf16 (a [M,K],
// b [N,K] bf16, bf16 out); 3: the same with f32 out.
Napi::Value TimeMatmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int which = inum(info, 0);
  const void* a = ptrArg(info[1]);
  const void* b = ptrArg(info[2]);
  int batch = inum(info, 3);
  int64_t as = (int64_t)num(info, 4), bs = (int64_t)num(info, 5);
  int M = inum(info, 6), N = inum(info, 7), K = inum(info, 8);
  bool tA = bval(info, 9), tB = bval(info, 10);
  int iters = inum(info, 11);
  bool flush = bval(info, 12);
  cudaStream_t s = stream();
  Scoped out(env, (size_t)batch * M * N * (which == 2 ? 2 : 4));
  switch (which) {
    case 0:
      return timeIt(env, [&] { return launchMatmul(F32, a, b, out.p, batch, as, bs, M, N, K, tA, tB, s); }, iters, flush,
                    "matmul (kiln)", 1);
    case 1:
      return timeIt(env, [&] { return lt::sgemm(a, b, out.p, batch, as, bs, M, N, K, tA, tB, s); }, iters, flush,
                    "sgemm (cuBLASLt)");
    default:
      return timeIt(env, [&] { return lt::bf16Gemm(a, b, out.p, which == 3, M, N, K, s); }, iters, flush,
                    "bf16 gemm (cuBLASLt)");
  }
}

// timeGroupedFp8Gemm(layout, a, sa, b, sb, meta, G, rows, N, K, expectedM, outBf16, iters, flush)
// layout 0: contiguous (meta = int32[G+1] offsets on the device, rows = totalM);
// layout 1: masked (meta = int32[G] masked_m on the device, rows = Mmax).
Napi::Value TimeGroupedFp8Gemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int layout = inum(info, 0);
  auto a = (const uint8_t*)ptrArg(info[1]);
  auto sa = (const float*)ptrArg(info[2]);
  auto b = (const uint8_t*)ptrArg(info[3]);
  auto sb = (const float*)ptrArg(info[4]);
  auto meta = (const int*)ptrArg(info[5]);
  int G = inum(info, 6), rows = inum(info, 7), N = inum(info, 8), K = inum(info, 9), expectedM = inum(info, 10);
  bool bf16 = bval(info, 11);
  int iters = inum(info, 12);
  bool flush = bval(info, 13);
  if (!kiln_fp8_gemm_sm90_available()) throwCuda(env, cudaErrorNotSupported, "kiln sm90 FP8 GEMM unavailable here");
  cudaStream_t s = stream();
  size_t outRows = layout == 0 ? (size_t)rows : (size_t)G * rows;
  Scoped out(env, outRows * N * (bf16 ? 2 : 4));
  if (layout == 0)
    return timeIt(env, [&] {
      return kiln_fp8_grouped_gemm_contiguous_sm90(a, sa, b, sb, out.p, bf16, meta, G, rows, N, K, s);
    }, iters, flush, "grouped fp8 gemm (contiguous)");
  return timeIt(env, [&] {
    return kiln_fp8_grouped_gemm_masked_sm90(a, sa, b, sb, out.p, bf16, meta, G, rows, N, K, expectedM, s);
  }, iters, flush, "grouped fp8 gemm (masked)");
}

// timeLtFp8Loop(a, sa, b, sb, offsets (JS array, G+1 row offsets into a), N, K, outBf16, native, iters, flush)
// The grouped baseline: one cuBLASLt blockwise GEMM per non-empty expert g on rows
// [offsets[g], offsets[g+1]) of a (kiln's contiguous layout) with weights b[g], sb[g].
// native: scales converted to cuBLASLt's layouts beforehand (cuBLASLt alone); else through
// fp8BlockwiseGemm (conversion per expert, kiln's path 2).
Napi::Value TimeLtFp8Loop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto a = (const uint8_t*)ptrArg(info[0]);
  auto sa = (const float*)ptrArg(info[1]);
  auto b = (const uint8_t*)ptrArg(info[2]);
  auto sb = (const float*)ptrArg(info[3]);
  Napi::Array offs = info[4].As<Napi::Array>();
  int N = inum(info, 5), K = inum(info, 6);
  bool bf16 = bval(info, 7), native = bval(info, 8);
  int iters = inum(info, 9);
  bool flush = bval(info, 10);
  if (!lt::available()) throwCuda(env, cudaErrorNotSupported, "cuBLASLt unavailable: " + lt::why());
  int G = (int)offs.Length() - 1;
  std::vector<int> off(G + 1);
  for (int g = 0; g <= G; ++g) off[g] = offs.Get((uint32_t)g).As<Napi::Number>().Int32Value();
  const int KB = (K + 127) / 128, NB = (N + 127) / 128, KBp = (KB + 3) / 4 * 4;
  const int eb = bf16 ? 2 : 4;
  cudaStream_t s = stream();
  Scoped out(env, (size_t)off[G] * N * eb);
  Scoped saT(env, native ? (size_t)off[G] * KB * 4 : 0), sbP(env, native ? (size_t)G * NB * KBp * 4 : 0);
  if (native) {
    for (int g = 0; g < G; ++g) {
      int m = off[g + 1] - off[g];
      check(env, lt::launchLtScaleLayout(sa + (size_t)off[g] * KB, m, KB, (float*)saT.p + (size_t)off[g] * KB,
                                         sb + (size_t)g * NB * KB, NB, (float*)sbP.p + (size_t)g * NB * KBp, KBp, s),
            "scale layout");
    }
  }
  return timeIt(env, [&]() -> cudaError_t {
    for (int g = 0; g < G; ++g) {
      int m = off[g + 1] - off[g];
      if (m <= 0) continue;
      const uint8_t* ag = a + (size_t)off[g] * K;
      const uint8_t* bg = b + (size_t)g * N * K;
      char* dg = (char*)out.p + (size_t)off[g] * N * eb;
      cudaError_t e = native ? lt::fp8BlockwiseGemmNative(ag, (const float*)saT.p + (size_t)off[g] * KB, bg,
                                                          (const float*)sbP.p + (size_t)g * NB * KBp, dg, bf16, m, N, K, s)
                             : lt::fp8BlockwiseGemm(ag, sa + (size_t)off[g] * KB, bg, sb + (size_t)g * NB * KB, dg, bf16,
                                                    m, N, K, s);
      if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
  }, iters, flush, "per-expert cuBLASLt loop");
}

// ltSgemm(a, b, batch, aStride, bStride, M, N, K, transA, transB) -> out (pool allocation); throws
// when cuBLASLt declines (no silent fallback: for the correctness checks).
Napi::Value LtSgemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireInit(env);
  int batch = inum(info, 2), M = inum(info, 5), N = inum(info, 6), K = inum(info, 7);
  void* out = deviceAlloc(env, (size_t)batch * M * N * 4);
  cudaError_t e = lt::sgemm(ptrArg(info[0]), ptrArg(info[1]), out, batch, (int64_t)num(info, 3), (int64_t)num(info, 4), M, N,
                            K, bval(info, 8), bval(info, 9), stream());
  if (e != cudaSuccess) {
    deviceFree(out, 0);
    throwWhy(env, e, "ltSgemm");
  }
  return ptrValue(env, out);
}

// ltBf16Gemm(a, b, M, N, K, outF32) -> out
Napi::Value LtBf16Gemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireInit(env);
  int M = inum(info, 2), N = inum(info, 3), K = inum(info, 4);
  bool f32 = bval(info, 5);
  void* out = deviceAlloc(env, (size_t)M * N * (f32 ? 4 : 2));
  cudaError_t e = lt::bf16Gemm(ptrArg(info[0]), ptrArg(info[1]), out, f32, M, N, K, stream());
  if (e != cudaSuccess) {
    deviceFree(out, 0);
    throwWhy(env, e, "ltBf16Gemm");
  }
  return ptrValue(env, out);
}

// ltFp8Info(M, N, K) -> { supported, f32OutNative, paddedM (the M cuBLASLt runs for bf16 out), lastError }
Napi::Value LtFp8Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int M = inum(info, 0), N = inum(info, 1), K = inum(info, 2);
  Napi::Object o = Napi::Object::New(env);
  bool sup = lt::fp8BlockwiseSupported(M, N, K);
  o.Set("supported", sup);
  o.Set("f32OutNative", sup && lt::fp8OutF32Native(M, N, K));
  bool via = false;
  o.Set("paddedM", sup ? lt::fp8BlockwisePaddedM(M, N, K, true, &via) : -1);
  o.Set("lastError", lt::lastError());
  return o;
}

// launchOverhead(n) -> µs per call of the smallest addon launch (fill of 1 element + free), timed
// here in C++ (the JS side measures the same through N-API).
Napi::Value Noop(const Napi::CallbackInfo& info) { return info.Env().Undefined(); }

}  // namespace

void registerBench(Napi::Env env, Napi::Object exports) {
  Napi::Object b = Napi::Object::New(env);
  b.Set("timeFp8Gemm", Napi::Function::New(env, TimeFp8Gemm));
  b.Set("timeMatmul", Napi::Function::New(env, TimeMatmul));
  b.Set("timeGroupedFp8Gemm", Napi::Function::New(env, TimeGroupedFp8Gemm));
  b.Set("timeLtFp8Loop", Napi::Function::New(env, TimeLtFp8Loop));
  b.Set("ltSgemm", Napi::Function::New(env, LtSgemm));
  b.Set("ltBf16Gemm", Napi::Function::New(env, LtBf16Gemm));
  b.Set("ltFp8Info", Napi::Function::New(env, LtFp8Info));
  b.Set("noop", Napi::Function::New(env, Noop));
  exports.Set("bench", b);
}

}  // namespace kiln
