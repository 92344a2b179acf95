// N-API bindings of the kernel launchers. Every op allocates its output from the stream-ordered
// pool, launches on the addon's stream and returns the output address; nothing synchronises.
#include <napi.h>

#include "kernels/api.h"
#include "kernels/fp8_gemm_sm90.cuh"
#include "cublaslt.h"
#include "runtime.h"

namespace kiln {
namespace {

inline double num(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::Number>().DoubleValue(); }
inline int inum(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::Number>().Int32Value(); }
inline int64_t lnum(const Napi::CallbackInfo& info, size_t i) { return (int64_t)num(info, i); }
inline cudaStream_t stream() { return runtime().stream; }

// A strided view arrives as [offset, ndim, shape..., strides...].
Strided stridedArg(Napi::Env env, const Napi::Value& v) {
  Napi::Array a = v.As<Napi::Array>();
  Strided s{};
  s.offset = (int64_t)a.Get((uint32_t)0).As<Napi::Number>().DoubleValue();
  s.ndim = a.Get((uint32_t)1).As<Napi::Number>().Int32Value();
  if (s.ndim < 0 || s.ndim > kMaxDims) {
    Napi::Error e = Napi::Error::New(env, "strided view has " + std::to_string(s.ndim) + " dims; at most " +
                                              std::to_string(kMaxDims) + " are supported");
    e.Set("code", Napi::String::New(env, "KILN_CUDA_UNSUPPORTED"));
    throw e;
  }
  for (int d = 0; d < s.ndim; ++d) {
    s.shape[d] = (int64_t)a.Get((uint32_t)(2 + d)).As<Napi::Number>().DoubleValue();
    s.stride[d] = (int64_t)a.Get((uint32_t)(2 + s.ndim + d)).As<Napi::Number>().DoubleValue();
  }
  return s;
}

#define OUT_ALLOC(bytes)                  \
  const size_t outBytes_ = (size_t)(bytes); \
  void* out = deviceAlloc(env, outBytes_)
#define LAUNCH(expr, what)                       \
  do {                                           \
    cudaError_t err_ = (expr);                   \
    if (err_ != cudaSuccess) {                   \
      deviceFree(out, outBytes_);                \
      throwCuda(env, err_, what);                \
    }                                            \
  } while (0)

Napi::Value Unary(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int op = inum(info, 0), dtype = inum(info, 1), outDtype = inum(info, 2);
  int64_t n = lnum(info, 4);
  OUT_ALLOC(n * dtypeBytes(outDtype));
  LAUNCH(launchUnary(op, dtype, outDtype, ptrArg(info[3]), out, n, stream()), "unary");
  return ptrValue(env, out);
}

Napi::Value Binary(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int op = inum(info, 0), dtype = inum(info, 1), outDtype = inum(info, 2);
  Strided av = stridedArg(env, info[4]), bv = stridedArg(env, info[6]);
  int64_t n = lnum(info, 7);
  bool contiguous = info[8].As<Napi::Boolean>().Value();
  OUT_ALLOC(n * dtypeBytes(outDtype));
  LAUNCH(launchBinary(op, dtype, outDtype, ptrArg(info[3]), av, ptrArg(info[5]), bv, out, n, contiguous, stream()), "binary");
  return ptrValue(env, out);
}

Napi::Value Where(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int eb = inum(info, 0);
  Strided cv = stridedArg(env, info[2]), av = stridedArg(env, info[4]), bv = stridedArg(env, info[6]);
  int64_t n = lnum(info, 7);
  OUT_ALLOC(n * eb);
  LAUNCH(launchWhere(eb, (const uint8_t*)ptrArg(info[1]), cv, ptrArg(info[3]), av, ptrArg(info[5]), bv, out, n, stream()), "where");
  return ptrValue(env, out);
}

Napi::Value Fill(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int eb = inum(info, 0);
  uint32_t code = (uint32_t)num(info, 1);
  int64_t n = lnum(info, 2);
  OUT_ALLOC(n * eb);
  LAUNCH(launchFill(eb, code, out, n, stream()), "fill");
  return ptrValue(env, out);
}

Napi::Value Random(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int dist = inum(info, 0);
  uint32_t seed = (uint32_t)num(info, 1);
  float a = (float)num(info, 2), b = (float)num(info, 3);
  int64_t n = lnum(info, 4);
  OUT_ALLOC(n * 4);
  LAUNCH(launchRandom(dist, seed, a, b, (float*)out, n, stream()), "random");
  return ptrValue(env, out);
}

Napi::Value Cast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int from = inum(info, 0), to = inum(info, 1);
  bool sat = info[2].As<Napi::Boolean>().Value();
  int64_t n = lnum(info, 4);
  OUT_ALLOC(n * dtypeBytes(to));
  LAUNCH(launchCast(from, to, sat, ptrArg(info[3]), out, n, stream()), "cast");
  return ptrValue(env, out);
}

Napi::Value Reduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int op = inum(info, 0), dtype = inum(info, 1), outBytes = inum(info, 2);
  int64_t outer = lnum(info, 4), len = lnum(info, 5), inner = lnum(info, 6);
  OUT_ALLOC(outer * inner * outBytes);
  LAUNCH(launchReduce(op, dtype, ptrArg(info[3]), out, outer, len, inner, stream()), "reduce");
  return ptrValue(env, out);
}

Napi::Value StridedCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int eb = inum(info, 0);
  Strided sv = stridedArg(env, info[2]);
  int64_t n = lnum(info, 3);
  OUT_ALLOC(n * eb);
  LAUNCH(launchStridedCopy(eb, ptrArg(info[1]), sv, out, n, stream()), "stridedCopy");
  return ptrValue(env, out);
}

// stridedCopyTo(elemBytes, src, srcView, dst, dstView, n): writes into existing storage.
Napi::Value StridedCopyTo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Strided sv = stridedArg(env, info[2]), dv = stridedArg(env, info[4]);
  check(env, launchStridedCopyTo(inum(info, 0), ptrArg(info[1]), sv, ptrArg(info[3]), dv, lnum(info, 5), stream()), "stridedCopyTo");
  return env.Undefined();
}

Napi::Value Gather(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int eb = inum(info, 0);
  Strided xv = stridedArg(env, info[2]);
  int64_t axisStride = lnum(info, 3), n = lnum(info, 5);
  OUT_ALLOC(n * eb);
  LAUNCH(launchGather(eb, ptrArg(info[1]), xv, axisStride, (const int32_t*)ptrArg(info[4]), out, n, stream()), "gather");
  return ptrValue(env, out);
}

Napi::Value IndexSelect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int eb = inum(info, 0);
  int64_t outer = lnum(info, 2), len = lnum(info, 3), inner = lnum(info, 4), nIdx = lnum(info, 6);
  OUT_ALLOC(outer * nIdx * inner * eb);
  LAUNCH(launchIndexSelect(eb, ptrArg(info[1]), outer, len, inner, (const int32_t*)ptrArg(info[5]), nIdx, out, stream()), "indexSelect");
  return ptrValue(env, out);
}

// scatterAdd(dtype, base, baseBytes, outView, axisStride, idx, src, n) -> new storage.
Napi::Value ScatterAdd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int dtype = inum(info, 0);
  size_t baseBytes = (size_t)num(info, 2);
  Strided ov = stridedArg(env, info[3]);
  OUT_ALLOC(baseBytes);
  LAUNCH(cudaMemcpyAsync(out, ptrArg(info[1]), baseBytes, cudaMemcpyDeviceToDevice, stream()), "scatterAdd (copy)");
  LAUNCH(launchScatterAdd(dtype, out, ov, lnum(info, 4), (const int32_t*)ptrArg(info[5]), ptrArg(info[6]), lnum(info, 7), stream()), "scatterAdd");
  return ptrValue(env, out);
}

// indexAdd(dtype, base, baseBytes, outer, len, inner, idx, nIdx, src) -> new storage.
Napi::Value IndexAdd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int dtype = inum(info, 0);
  size_t baseBytes = (size_t)num(info, 2);
  OUT_ALLOC(baseBytes);
  LAUNCH(cudaMemcpyAsync(out, ptrArg(info[1]), baseBytes, cudaMemcpyDeviceToDevice, stream()), "indexAdd (copy)");
  LAUNCH(launchIndexAdd(dtype, out, lnum(info, 3), lnum(info, 4), lnum(info, 5), (const int32_t*)ptrArg(info[6]), lnum(info, 7),
                        ptrArg(info[8]), stream()), "indexAdd");
  return ptrValue(env, out);
}

// How many f32 GEMMs took cuBLASLt and how many kiln's kernel, and cuBLASLt's last refusal.
struct MatmulStats {
  double lt = 0, own = 0;
  std::string lastRefusal;
};
MatmulStats& matmulStats() {
  static MatmulStats s;
  return s;
}

Napi::Value MatmulStatsValue(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("cublasLt", matmulStats().lt);
  o.Set("own", matmulStats().own);
  o.Set("lastRefusal", matmulStats().lastRefusal);
  return o;
}

// matmul(dtype, a, b, batch, aBatchStride, bBatchStride, M, N, K, transA, transB, useLt) -> c
Napi::Value Matmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int dtype = inum(info, 0);
  int batch = inum(info, 3), M = inum(info, 6), N = inum(info, 7), K = inum(info, 8);
  int64_t as = lnum(info, 4), bs = lnum(info, 5);
  bool tA = info[9].As<Napi::Boolean>().Value(), tB = info[10].As<Napi::Boolean>().Value();
  bool useLt = info[11].As<Napi::Boolean>().Value();
  OUT_ALLOC((int64_t)batch * M * N * 4);
  if (dtype == F32 && useLt && K > 0 && M > 0 && N > 0 && batch > 0 && lt::available()) {
    cudaError_t err = lt::sgemm(ptrArg(info[1]), ptrArg(info[2]), out, batch, as, bs, M, N, K, tA, tB, stream());
    if (err == cudaSuccess) {
      matmulStats().lt += 1;
      return ptrValue(env, out);
    }
    // cuBLASLt declined this problem: fall through to our kernel.
    cudaGetLastError();
    matmulStats().lastRefusal = lt::lastError();
  }
  matmulStats().own += 1;
  LAUNCH(launchMatmul(dtype, ptrArg(info[1]), ptrArg(info[2]), out, batch, as, bs, M, N, K, tA, tB, stream()), "matmul");
  return ptrValue(env, out);
}

// quantizeBlockwise(x, rows, cols, br, bc, format, ue8m0) -> [codes, scales]
Napi::Value QuantizeBlockwise(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int rows = inum(info, 1), cols = inum(info, 2), br = inum(info, 3), bc = inum(info, 4);
  int nr = (rows + br - 1) / br, nc = (cols + bc - 1) / bc;
  const size_t codeBytes = (size_t)rows * cols, scaleBytes = (size_t)nr * nc * 4;
  void* codes = deviceAlloc(env, codeBytes);
  void* out = deviceAlloc(env, scaleBytes);
  cudaError_t err = launchQuantizeBlockwise((const float*)ptrArg(info[0]), rows, cols, br, bc, inum(info, 5), inum(info, 6),
                                            (uint8_t*)codes, (float*)out, stream());
  if (err != cudaSuccess) {
    deviceFree(codes, codeBytes);
    deviceFree(out, scaleBytes);
    throwCuda(env, err, "quantizeBlockwise");
  }
  Napi::Array r = Napi::Array::New(env, 2);
  r.Set((uint32_t)0, ptrValue(env, codes));
  r.Set((uint32_t)1, ptrValue(env, out));
  return r;
}

// fp8Gemm(a, sa, aFmt, abr, abc, b, sb, bFmt, bbr, bbc, M, N, K, promotion, mantBits, group, nearest, path)
// path: 0 = exact CUDA-core kernel, 1 = kiln's sm90 tensor-core kernel, 2 = cuBLASLt blockwise.
// Returns [out, pathTaken]; a path that cannot take the problem falls back to the exact kernel.
Napi::Value Fp8Gemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint8_t* a = (const uint8_t*)ptrArg(info[0]);
  const float* sa = (const float*)ptrArg(info[1]);
  int aFmt = inum(info, 2), abr = inum(info, 3), abc = inum(info, 4);
  const uint8_t* b = (const uint8_t*)ptrArg(info[5]);
  const float* sb = (const float*)ptrArg(info[6]);
  int bFmt = inum(info, 7), bbr = inum(info, 8), bbc = inum(info, 9);
  int M = inum(info, 10), N = inum(info, 11), K = inum(info, 12);
  int promotion = inum(info, 13), mantBits = inum(info, 14), group = inum(info, 15), nearest = inum(info, 16);
  int path = inum(info, 17);
  OUT_ALLOC((size_t)M * N * 4);
  // The fast paths implement exactly DeepSeek-V3's recipe: E4M3 x E4M3, 1x128 x 128x128 blocks,
  // promotion every 128, no accumulator emulation.
  bool recipe = aFmt == E4M3 && bFmt == E4M3 && abr == 1 && abc == 128 && bbr == 128 && bbc == 128 && promotion == 128 &&
                mantBits < 0;
  int taken = 0;
  if (recipe && path == 1 && kiln_fp8_gemm_sm90_available() &&
      kiln_fp8_gemm_sm90_supported(M, N, K, nullptr, 0)) {
    LAUNCH(kiln_fp8_gemm_sm90(a, sa, b, sb, out, 0, M, N, K, stream()), "fp8 gemm (sm90)");
    taken = 1;
  } else if (recipe && path == 2 && lt::available() && lt::fp8BlockwiseSupported(M, N, K)) {
    cudaError_t err = lt::fp8BlockwiseGemm(a, sa, b, sb, out, /*outBf16=*/false, M, N, K, stream());
    if (err == cudaSuccess) taken = 2;
  }
  if (taken == 0) {
    LAUNCH(launchFp8GemmReference(a, sa, aFmt, abr, abc, b, sb, bFmt, bbr, bbc, (float*)out, M, N, K, promotion, mantBits,
                                  group, nearest, stream()), "fp8 gemm (exact)");
  }
  Napi::Array r = Napi::Array::New(env, 2);
  r.Set((uint32_t)0, ptrValue(env, out));
  r.Set((uint32_t)1, Napi::Number::New(env, taken));
  return r;
}

// fp8GroupedGemm(layout, a, sa, b, sb, groupInfo, G, rows, N, K, expectedM) -> out (f32)
// layout 0 = contiguous (groupInfo: int32 offsets [G+1], rows = total M), 1 = masked (groupInfo:
// int32 masked_m [G], rows = Mmax per group). One launch of kiln's sm90 grouped kernel; rows
// outside every group are zero.
Napi::Value Fp8GroupedGemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int layout = inum(info, 0), G = inum(info, 6), rows = inum(info, 7), N = inum(info, 8), K = inum(info, 9);
  int expectedM = inum(info, 10);
  if (!kiln_fp8_gemm_sm90_available() || !kiln_fp8_grouped_gemm_sm90_supported(G, N, K, nullptr, 0)) {
    Napi::Error e = Napi::Error::New(env, "the grouped FP8 GEMM needs an sm_90 GPU and K % 16 == 0, N % 8 == 0, G <= " +
                                              std::to_string(KILN_FP8_GEMM_MAX_GROUPS));
    e.Set("code", Napi::String::New(env, "KILN_CUDA_UNSUPPORTED"));
    throw e;
  }
  size_t outRows = layout == 0 ? (size_t)rows : (size_t)G * rows;
  OUT_ALLOC(outRows * N * 4);
  LAUNCH(cudaMemsetAsync(out, 0, outRows * N * 4, stream()), "grouped fp8 gemm (zero)");
  const uint8_t* a = (const uint8_t*)ptrArg(info[1]);
  const float* sa = (const float*)ptrArg(info[2]);
  const uint8_t* b = (const uint8_t*)ptrArg(info[3]);
  const float* sb = (const float*)ptrArg(info[4]);
  const int* groups = (const int*)ptrArg(info[5]);
  if (layout == 0) {
    LAUNCH(kiln_fp8_grouped_gemm_contiguous_sm90(a, sa, b, sb, out, 0, groups, G, rows, N, K, stream()), "grouped fp8 gemm");
  } else {
    LAUNCH(kiln_fp8_grouped_gemm_masked_sm90(a, sa, b, sb, out, 0, groups, G, rows, N, K, expectedM, stream()), "grouped fp8 gemm (masked)");
  }
  return ptrValue(env, out);
}

// adamw(p, m, v, g, n, bf16Moments, b1, b2, bc1, bc2, eps, lr, decay, gradScale): in place.
Napi::Value Adamw(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  check(env, launchAdamw((float*)ptrArg(info[0]), ptrArg(info[1]), ptrArg(info[2]), (const float*)ptrArg(info[3]), lnum(info, 4),
                         inum(info, 5), num(info, 6), num(info, 7), num(info, 8), num(info, 9), num(info, 10), num(info, 11),
                         num(info, 12), num(info, 13), stream()),
        "adamw");
  return env.Undefined();
}

// sumSquares([ptr...], [n...]) -> Σ x² over all buffers (double accumulation, one readback).
Napi::Value SumSquares(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array ptrs = info[0].As<Napi::Array>(), ns = info[1].As<Napi::Array>();
  double* acc = (double*)deviceAlloc(env, sizeof(double));
  cudaError_t err = cudaMemsetAsync(acc, 0, sizeof(double), stream());
  for (uint32_t i = 0; err == cudaSuccess && i < ptrs.Length(); ++i) {
    err = launchSumSquares((const float*)ptrArg(ptrs.Get(i)), (int64_t)ns.Get(i).As<Napi::Number>().DoubleValue(), acc, stream());
  }
  double host = 0;
  if (err == cudaSuccess) err = cudaMemcpyAsync(&host, acc, sizeof(double), cudaMemcpyDeviceToHost, stream());
  if (err == cudaSuccess) err = cudaStreamSynchronize(stream());
  deviceFree(acc, sizeof(double));
  if (err != cudaSuccess) throwCuda(env, err, "sumSquares");
  return Napi::Number::New(env, host);
}

Napi::Value Softmax(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t rows = lnum(info, 1), cols = lnum(info, 2);
  OUT_ALLOC(rows * cols * 4);
  LAUNCH(launchSoftmax((const float*)ptrArg(info[0]), (float*)out, rows, cols, info[3].As<Napi::Boolean>().Value(), stream()), "softmax");
  return ptrValue(env, out);
}
Napi::Value RmsNorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t rows = lnum(info, 2), cols = lnum(info, 3);
  OUT_ALLOC(rows * cols * 4);
  LAUNCH(launchRmsNorm((const float*)ptrArg(info[0]), (const float*)ptrArg(info[1]), (float*)out, rows, cols, (float)num(info, 4), stream()), "rmsNorm");
  return ptrValue(env, out);
}
Napi::Value Swiglu(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t n = lnum(info, 2);
  OUT_ALLOC(n * 4);
  LAUNCH(launchSwiglu((const float*)ptrArg(info[0]), (const float*)ptrArg(info[1]), (float*)out, n, stream()), "swiglu");
  return ptrValue(env, out);
}

}  // namespace

void registerKernels(Napi::Env env, Napi::Object exports) {
  exports.Set("unary", Napi::Function::New(env, Unary));
  exports.Set("binary", Napi::Function::New(env, Binary));
  exports.Set("where", Napi::Function::New(env, Where));
  exports.Set("fill", Napi::Function::New(env, Fill));
  exports.Set("random", Napi::Function::New(env, Random));
  exports.Set("cast", Napi::Function::New(env, Cast));
  exports.Set("reduce", Napi::Function::New(env, Reduce));
  exports.Set("stridedCopy", Napi::Function::New(env, StridedCopy));
  exports.Set("stridedCopyTo", Napi::Function::New(env, StridedCopyTo));
  exports.Set("gather", Napi::Function::New(env, Gather));
  exports.Set("indexSelect", Napi::Function::New(env, IndexSelect));
  exports.Set("scatterAdd", Napi::Function::New(env, ScatterAdd));
  exports.Set("indexAdd", Napi::Function::New(env, IndexAdd));
  exports.Set("matmul", Napi::Function::New(env, Matmul));
  exports.Set("matmulStats", Napi::Function::New(env, MatmulStatsValue));
  exports.Set("quantizeBlockwise", Napi::Function::New(env, QuantizeBlockwise));
  exports.Set("fp8Gemm", Napi::Function::New(env, Fp8Gemm));
  exports.Set("fp8GroupedGemm", Napi::Function::New(env, Fp8GroupedGemm));
  exports.Set("adamw", Napi::Function::New(env, Adamw));
  exports.Set("sumSquares", Napi::Function::New(env, SumSquares));
  exports.Set("softmax", Napi::Function::New(env, Softmax));
  exports.Set("rmsNorm", Napi::Function::New(env, RmsNorm));
  exports.Set("swiglu", Napi::Function::New(env, Swiglu));
}

}  // namespace kiln
