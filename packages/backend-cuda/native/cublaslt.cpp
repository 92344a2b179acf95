// cuBLASLt loaded at run time: dlopen("libcublasLt.so.13" / ".12" / "libcublasLt.so"), dlsym the
// dozen entry points used, and our own declarations of the types and enum values they take, so the
// addon compiles with nvcc + cudart alone (no cuBLAS headers or libraries at build time).
//
// ABI values below come from cuBLASLt's public header (cublasLt.h / cublas_api.h of CUDA 13.0,
// the same values as 12.9). Each is checked against the real header by
// native/tools/check_cublaslt_abi.cpp, which includes this file with KILN_LT_ABI_ONLY defined and
// static_asserts every constant and struct layout (build it on a machine with the cuBLAS headers).
//
// Row-major problems map onto cuBLASLt's column-major ones by computing C^T = B^T A^T: a row-major
// [R, C] matrix is a column-major [C, R] one with the same leading dimension.
#include <cuda_runtime.h>
#include <library_types.h>
#include <stddef.h>
#include <stdint.h>

namespace kiln {
namespace lt {
namespace abi {

// Opaque handles (cublasLtHandle_t, cublasLtMatmulDesc_t, cublasLtMatrixLayout_t,
// cublasLtMatmulPreference_t are pointers to opaque structs).
typedef void* Handle;
typedef void* MatmulDesc;
typedef void* MatrixLayout;
typedef void* MatmulPreference;
typedef int Status;  // cublasStatus_t

// cublasLtMatmulAlgo_t: `uint64_t data[8]`.
struct MatmulAlgo {
  uint64_t data[8];
};
// cublasLtMatmulHeuristicResult_t.
struct HeuristicResult {
  MatmulAlgo algo;
  size_t workspaceSize;
  Status state;
  float wavesCount;
  int reserved[4];
};

// cublasStatus_t (cublas_api.h)
constexpr int kStatusSuccess = 0;        // CUBLAS_STATUS_SUCCESS
constexpr int kStatusNotSupported = 15;  // CUBLAS_STATUS_NOT_SUPPORTED
// cublasComputeType_t (cublas_api.h)
constexpr int kCompute32F = 68;  // CUBLAS_COMPUTE_32F (no TF32)
// cublasOperation_t (cublas_api.h)
constexpr int kOpN = 0;  // CUBLAS_OP_N
constexpr int kOpT = 1;  // CUBLAS_OP_T
// cublasLtMatmulDescAttributes_t (cublasLt.h)
constexpr int kDescTransA = 3;         // CUBLASLT_MATMUL_DESC_TRANSA
constexpr int kDescTransB = 4;         // CUBLASLT_MATMUL_DESC_TRANSB
constexpr int kDescAScalePointer = 17; // CUBLASLT_MATMUL_DESC_A_SCALE_POINTER
constexpr int kDescBScalePointer = 18; // CUBLASLT_MATMUL_DESC_B_SCALE_POINTER
constexpr int kDescAScaleMode = 31;    // CUBLASLT_MATMUL_DESC_A_SCALE_MODE
constexpr int kDescBScaleMode = 32;    // CUBLASLT_MATMUL_DESC_B_SCALE_MODE
// cublasLtMatrixLayoutAttribute_t (cublasLt.h)
constexpr int kLayoutBatchCount = 5;          // CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT (int32)
constexpr int kLayoutStridedBatchOffset = 6;  // CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET (int64)
// cublasLtMatmulPreferenceAttributes_t (cublasLt.h)
constexpr int kPrefMaxWorkspaceBytes = 1;  // CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES (uint64)
constexpr int kPrefMinAlignmentA = 5;      // CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES (uint32)
constexpr int kPrefMinAlignmentB = 6;      // CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES
constexpr int kPrefMinAlignmentC = 7;      // CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES
constexpr int kPrefMinAlignmentD = 8;      // CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES
// cublasLtMatmulMatrixScale_t (cublasLt.h, cuBLAS >= 12.9)
constexpr int kScaleVec128_32F = 4;     // CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F
constexpr int kScaleBlk128x128_32F = 5; // CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F
// cudaDataType_t values come from <library_types.h> (part of cudart): CUDA_R_32F, CUDA_R_16BF,
// CUDA_R_8F_E4M3.

// Entry points (cublasLt.h); enum-typed parameters are passed as int (C enums are int-sized).
typedef Status (*PFN_Create)(Handle*);
typedef size_t (*PFN_GetVersion)(void);
typedef Status (*PFN_MatmulDescCreate)(MatmulDesc*, int computeType, cudaDataType_t scaleType);
typedef Status (*PFN_MatmulDescSetAttribute)(MatmulDesc, int attr, const void* buf, size_t size);
typedef Status (*PFN_MatmulDescDestroy)(MatmulDesc);
typedef Status (*PFN_MatrixLayoutCreate)(MatrixLayout*, cudaDataType_t type, uint64_t rows, uint64_t cols, int64_t ld);
typedef Status (*PFN_MatrixLayoutSetAttribute)(MatrixLayout, int attr, const void* buf, size_t size);
typedef Status (*PFN_MatrixLayoutDestroy)(MatrixLayout);
typedef Status (*PFN_MatmulPreferenceCreate)(MatmulPreference*);
typedef Status (*PFN_MatmulPreferenceSetAttribute)(MatmulPreference, int attr, const void* buf, size_t size);
typedef Status (*PFN_MatmulPreferenceDestroy)(MatmulPreference);
typedef Status (*PFN_MatmulAlgoGetHeuristic)(Handle, MatmulDesc, MatrixLayout A, MatrixLayout B, MatrixLayout C,
                                             MatrixLayout D, MatmulPreference, int requested, HeuristicResult* results,
                                             int* returned);
typedef Status (*PFN_Matmul)(Handle, MatmulDesc, const void* alpha, const void* A, MatrixLayout Adesc, const void* B,
                             MatrixLayout Bdesc, const void* beta, const void* C, MatrixLayout Cdesc, void* D,
                             MatrixLayout Ddesc, const MatmulAlgo* algo, void* workspace, size_t workspaceBytes,
                             cudaStream_t stream);

}  // namespace abi
}  // namespace lt
}  // namespace kiln

#ifndef KILN_LT_ABI_ONLY

#include <dlfcn.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "cublaslt.h"
#include "kernels/api.h"

namespace kiln {
namespace lt {
namespace {

using namespace abi;

struct Api {
  bool tried = false, ok = false;
  std::string why, version;
  size_t versionNumber = 0;
  void* lib = nullptr;
  Handle handle = nullptr;
  PFN_Create create = nullptr;
  PFN_GetVersion getVersion = nullptr;
  PFN_MatmulDescCreate descCreate = nullptr;
  PFN_MatmulDescSetAttribute descSet = nullptr;
  PFN_MatmulDescDestroy descDestroy = nullptr;
  PFN_MatrixLayoutCreate layoutCreate = nullptr;
  PFN_MatrixLayoutSetAttribute layoutSet = nullptr;
  PFN_MatrixLayoutDestroy layoutDestroy = nullptr;
  PFN_MatmulPreferenceCreate prefCreate = nullptr;
  PFN_MatmulPreferenceSetAttribute prefSet = nullptr;
  PFN_MatmulPreferenceDestroy prefDestroy = nullptr;
  PFN_MatmulAlgoGetHeuristic heuristic = nullptr;
  PFN_Matmul matmul = nullptr;
  // One workspace for every call (all calls are ordered on the addon's one stream).
  void* workspace = nullptr;
  size_t workspaceBytes = 0;
  // Scratch for converted scale layouts and the bf16 staging of f32 outputs: grows, never shrinks.
  void* scratch = nullptr;
  size_t scratchBytes = 0;
  std::string lastError;
};

std::mutex gMutex;

Api& api() {
  static Api a;
  return a;
}

constexpr size_t kWorkspaceBytes = 32u << 20;

template <typename T>
bool sym(Api& a, T& fn, const char* name) {
  fn = (T)dlsym(a.lib, name);
  if (!fn) a.why = std::string("libcublasLt has no symbol ") + name;
  return fn != nullptr;
}

bool load() {
  Api& a = api();
  if (a.tried) return a.ok;
  a.tried = true;
  std::vector<std::string> names;
  if (const char* p = std::getenv("KILN_CUBLASLT_PATH")) names.push_back(p);
  for (const char* n : {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so", "/usr/local/cuda/lib64/libcublasLt.so.13",
                        "/usr/local/cuda/lib64/libcublasLt.so.12"})
    names.push_back(n);
  std::string errors;
  for (const auto& n : names) {
    a.lib = dlopen(n.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (a.lib) break;
    const char* e = dlerror();
    if (errors.size() < 600) errors += (errors.empty() ? "" : "; ") + std::string(e ? e : n.c_str());
  }
  if (!a.lib) {
    a.why = "libcublasLt could not be loaded (" + errors + ")";
    return false;
  }
  if (!(sym(a, a.create, "cublasLtCreate") && sym(a, a.getVersion, "cublasLtGetVersion") &&
        sym(a, a.descCreate, "cublasLtMatmulDescCreate") && sym(a, a.descSet, "cublasLtMatmulDescSetAttribute") &&
        sym(a, a.descDestroy, "cublasLtMatmulDescDestroy") && sym(a, a.layoutCreate, "cublasLtMatrixLayoutCreate") &&
        sym(a, a.layoutSet, "cublasLtMatrixLayoutSetAttribute") &&
        sym(a, a.layoutDestroy, "cublasLtMatrixLayoutDestroy") &&
        sym(a, a.prefCreate, "cublasLtMatmulPreferenceCreate") &&
        sym(a, a.prefSet, "cublasLtMatmulPreferenceSetAttribute") &&
        sym(a, a.prefDestroy, "cublasLtMatmulPreferenceDestroy") &&
        sym(a, a.heuristic, "cublasLtMatmulAlgoGetHeuristic") && sym(a, a.matmul, "cublasLtMatmul")))
    return false;
  a.versionNumber = a.getVersion();
  size_t v = a.versionNumber;
  a.version = std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) + "." + std::to_string(v % 100);
  if (v < 110000) {
    a.why = "libcublasLt " + a.version + " is older than 11.0";
    return false;
  }
  Status st = a.create(&a.handle);
  if (st != kStatusSuccess) {
    a.why = "cublasLtCreate failed with status " + std::to_string(st) + " (no usable GPU?)";
    return false;
  }
  a.ok = true;
  return true;
}

cudaError_t ensureWorkspace(Api& a) {
  if (a.workspace) return cudaSuccess;
  cudaError_t e = cudaMalloc(&a.workspace, kWorkspaceBytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    a.workspace = nullptr;
    return e;
  }
  a.workspaceBytes = kWorkspaceBytes;
  return cudaSuccess;
}

cudaError_t ensureScratch(Api& a, size_t bytes, cudaStream_t s) {
  if (a.scratchBytes >= bytes) return cudaSuccess;
  size_t n = std::max(bytes, a.scratchBytes * 2);
  n = (n + 255) & ~(size_t)255;
  // Stream-ordered: the old buffer is released after the work already queued that reads it.
  if (a.scratch) cudaFreeAsync(a.scratch, s);
  a.scratch = nullptr;
  a.scratchBytes = 0;
  cudaError_t e = cudaMallocAsync(&a.scratch, n, s);
  if (e != cudaSuccess) {
    cudaGetLastError();
    a.scratch = nullptr;
    return e;
  }
  a.scratchBytes = n;
  return cudaSuccess;
}

inline uint32_t alignmentOf(const void* p) {
  uintptr_t v = (uintptr_t)p;
  uint32_t al = 256;
  while (al > 1 && (v % al) != 0) al >>= 1;
  return al;
}

// A cached plan: descriptors plus the heuristic's algorithm, for one problem.
struct Plan {
  bool ok = false;
  std::string why;
  MatmulDesc desc = nullptr;
  MatrixLayout a = nullptr, b = nullptr, c = nullptr;
  MatmulAlgo algo{};
  size_t workspace = 0;
  bool viaBf16 = false;  // fp8 with f32 out: cuBLASLt gives bf16, a cast follows
};

enum Kind : int64_t { KSgemm = 1, KBf16 = 2, KFp8 = 3 };
typedef std::array<int64_t, 14> Key;
std::map<Key, Plan>& plans() {
  static std::map<Key, Plan> m;
  return m;
}

void destroyPlan(Api& a, Plan& p) {
  if (p.desc) a.descDestroy(p.desc);
  if (p.a) a.layoutDestroy(p.a);
  if (p.b) a.layoutDestroy(p.b);
  if (p.c) a.layoutDestroy(p.c);
  p.desc = nullptr;
  p.a = p.b = p.c = nullptr;
}

bool statusOk(Plan& p, Status st, const char* what) {
  if (st == kStatusSuccess) return true;
  p.why = std::string(what) + " returned cuBLAS status " + std::to_string(st);
  return false;
}

// Chooses the algorithm; false (with p.why) when cuBLASLt has none for the problem.
bool pickAlgo(Api& a, Plan& p, const uint32_t align[4]) {
  MatmulPreference pref = nullptr;
  if (!statusOk(p, a.prefCreate(&pref), "cublasLtMatmulPreferenceCreate")) return false;
  uint64_t ws = a.workspaceBytes;
  bool ok = statusOk(p, a.prefSet(pref, kPrefMaxWorkspaceBytes, &ws, sizeof(ws)), "preference workspace");
  const int attrs[4] = {kPrefMinAlignmentA, kPrefMinAlignmentB, kPrefMinAlignmentC, kPrefMinAlignmentD};
  for (int i = 0; ok && i < 4; ++i) ok = statusOk(p, a.prefSet(pref, attrs[i], &align[i], sizeof(uint32_t)), "preference alignment");
  HeuristicResult r[1] = {};
  int got = 0;
  if (ok) ok = statusOk(p, a.heuristic(a.handle, p.desc, p.a, p.b, p.c, p.c, pref, 1, r, &got), "cublasLtMatmulAlgoGetHeuristic");
  a.prefDestroy(pref);
  if (ok && got == 0) {
    p.why = "cuBLASLt has no algorithm for this problem";
    ok = false;
  }
  if (ok) {
    p.algo = r[0].algo;
    p.workspace = r[0].workspaceSize;
  }
  return ok;
}

template <typename T>
bool setDesc(Api& a, Plan& p, int attr, const T& v) {
  return statusOk(p, a.descSet(p.desc, attr, &v, sizeof(T)), "cublasLtMatmulDescSetAttribute");
}

bool makeLayout(Api& a, Plan& p, MatrixLayout* out, cudaDataType_t t, uint64_t rows, uint64_t cols, int64_t ld, int batch,
                int64_t stride) {
  if (!statusOk(p, a.layoutCreate(out, t, rows, cols, ld), "cublasLtMatrixLayoutCreate")) return false;
  if (batch > 1) {
    int32_t bc = batch;
    if (!statusOk(p, a.layoutSet(*out, kLayoutBatchCount, &bc, sizeof(bc)), "layout batch count")) return false;
    if (!statusOk(p, a.layoutSet(*out, kLayoutStridedBatchOffset, &stride, sizeof(stride)), "layout batch stride"))
      return false;
  }
  return true;
}

cudaError_t fail(Api& a, const std::string& why, cudaError_t e = cudaErrorNotSupported) {
  a.lastError = why;
  return e;
}

cudaError_t run(Api& a, Plan& p, const void* A, const void* B, void* D, cudaStream_t s) {
  const float one = 1.f, zero = 0.f;
  Status st = a.matmul(a.handle, p.desc, &one, A, p.a, B, p.b, &zero, D, p.c, D, p.c, &p.algo, a.workspace,
                       a.workspaceBytes, s);
  if (st != kStatusSuccess) {
    cudaGetLastError();
    return fail(a, "cublasLtMatmul returned cuBLAS status " + std::to_string(st),
                st == kStatusNotSupported ? cudaErrorNotSupported : cudaErrorUnknown);
  }
  return cudaGetLastError();
}

// Plan for D [M,N] row-major (type dType) = A [M,K] row-major x B [N,K]^T for bf16 / fp8 (the "TN"
// cuBLASLt problem with cuBLAS A = our B and cuBLAS B = our A).
Plan& ntPlan(Api& a, Kind kind, int M, int N, int K, cudaDataType_t dType, const uint32_t align[4], bool* fresh) {
  Key key{kind, M, N, K, (int64_t)dType, align[0], align[1], align[2], align[3], 0, 0, 0, 0, 0};
  auto it = plans().find(key);
  *fresh = it == plans().end();
  if (!*fresh) return it->second;
  Plan& p = plans()[key];
  cudaDataType_t inType = kind == KFp8 ? CUDA_R_8F_E4M3 : CUDA_R_16BF;
  bool ok = statusOk(p, a.descCreate(&p.desc, kCompute32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
  ok = ok && setDesc(a, p, kDescTransA, (int32_t)kOpT) && setDesc(a, p, kDescTransB, (int32_t)kOpN);
  if (ok && kind == KFp8) {
    ok = setDesc(a, p, kDescAScaleMode, (int32_t)kScaleBlk128x128_32F) && setDesc(a, p, kDescBScaleMode, (int32_t)kScaleVec128_32F);
  }
  ok = ok && makeLayout(a, p, &p.a, inType, K, N, K, 1, 0) && makeLayout(a, p, &p.b, inType, K, M, K, 1, 0) &&
       makeLayout(a, p, &p.c, dType, N, M, N, 1, 0);
  if (ok && kind == KFp8) {
    // Scale pointers take part in the heuristic's checks: give it a plausible (aligned) one.
    static const float* dummy = nullptr;
    if (!dummy) {
      void* d = nullptr;
      if (cudaMalloc(&d, 256) == cudaSuccess) dummy = (const float*)d;
      else cudaGetLastError();
    }
    ok = setDesc(a, p, kDescAScalePointer, dummy) && setDesc(a, p, kDescBScalePointer, dummy);
  }
  ok = ok && pickAlgo(a, p, align);
  p.ok = ok;
  if (!ok) destroyPlan(a, p);
  return p;
}

}  // namespace

bool available() {
  std::lock_guard<std::mutex> g(gMutex);
  return load();
}
std::string why() {
  std::lock_guard<std::mutex> g(gMutex);
  load();
  return api().ok ? std::string() : api().why;
}
std::string version() {
  std::lock_guard<std::mutex> g(gMutex);
  load();
  return api().version;
}
std::string lastError() {
  std::lock_guard<std::mutex> g(gMutex);
  return api().lastError;
}

cudaError_t sgemm(const void* A, const void* B, void* C, int batch, int64_t aStride, int64_t bStride, int M, int N,
                  int K, bool transA, bool transB, cudaStream_t s) {
  std::lock_guard<std::mutex> g(gMutex);
  if (!load()) return cudaErrorNotSupported;
  Api& a = api();
  if (batch <= 0 || M <= 0 || N <= 0 || K <= 0) return fail(a, "sgemm: empty problem");
  cudaError_t e = ensureWorkspace(a);
  if (e != cudaSuccess) return fail(a, "cuBLASLt workspace allocation failed", e);
  const uint32_t align[4] = {alignmentOf(B), alignmentOf(A), alignmentOf(C), alignmentOf(C)};
  Key key{KSgemm, M, N, K, transA, transB, batch, aStride, bStride, align[0], align[1], align[2], 0, 0};
  auto it = plans().find(key);
  if (it == plans().end()) {
    Plan& p = plans()[key];
    // cuBLAS A = our B: op(B)^T is [N, K] column-major.
    int32_t opA = transB ? kOpT : kOpN, opB = transA ? kOpT : kOpN;
    bool ok = statusOk(p, a.descCreate(&p.desc, kCompute32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
    ok = ok && setDesc(a, p, kDescTransA, opA) && setDesc(a, p, kDescTransB, opB);
    // our B: !transB stored [K, N] row-major = col-major [N, K] ld N; transB stored [N, K] = col-major [K, N] ld K.
    ok = ok && makeLayout(a, p, &p.a, CUDA_R_32F, transB ? K : N, transB ? N : K, transB ? K : N, batch, bStride);
    // our A: !transA stored [M, K] = col-major [K, M] ld K; transA stored [K, M] = col-major [M, K] ld M.
    ok = ok && makeLayout(a, p, &p.b, CUDA_R_32F, transA ? M : K, transA ? K : M, transA ? M : K, batch, aStride);
    ok = ok && makeLayout(a, p, &p.c, CUDA_R_32F, N, M, N, batch, (int64_t)M * N);
    ok = ok && pickAlgo(a, p, align);
    p.ok = ok;
    if (!ok) destroyPlan(a, p);
    it = plans().find(key);
  }
  Plan& p = it->second;
  if (!p.ok) return fail(a, "sgemm: " + p.why);
  return run(a, p, B, A, C, s);
}

cudaError_t bf16Gemm(const void* A, const void* B, void* C, bool outF32, int M, int N, int K, cudaStream_t s) {
  std::lock_guard<std::mutex> g(gMutex);
  if (!load()) return cudaErrorNotSupported;
  Api& a = api();
  if (M <= 0 || N <= 0 || K <= 0) return fail(a, "bf16Gemm: empty problem");
  cudaError_t e = ensureWorkspace(a);
  if (e != cudaSuccess) return fail(a, "cuBLASLt workspace allocation failed", e);
  const uint32_t align[4] = {alignmentOf(B), alignmentOf(A), alignmentOf(C), alignmentOf(C)};
  bool fresh;
  Plan& p = ntPlan(a, KBf16, M, N, K, outF32 ? CUDA_R_32F : CUDA_R_16BF, align, &fresh);
  if (!p.ok) return fail(a, "bf16Gemm: " + p.why);
  return run(a, p, B, A, C, s);
}

bool fp8BlockwiseSupported(int M, int N, int K) {
  std::lock_guard<std::mutex> g(gMutex);
  if (!load()) return false;
  // Blockwise scaling needs cuBLASLt >= 12.9 and Hopper (sm_90); FP8 needs 16-byte leading dims.
  if (api().versionNumber < 120900) return false;
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  static int majors[64] = {0};  // per device ordinal, 0 = not asked yet
  if (dev < 0 || dev >= 64) return false;
  if (majors[dev] == 0 && cudaDeviceGetAttribute(&majors[dev], cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
    cudaGetLastError();
    majors[dev] = -1;
  }
  return majors[dev] == 9 && M > 0 && N > 0 && K > 0 && K % 16 == 0 && N % 8 == 0;
}

cudaError_t fp8BlockwiseGemmNative(const uint8_t* A, const float* saKM, const uint8_t* B, const float* sbPadded, void* D,
                                   bool outBf16, int M, int N, int K, cudaStream_t s) {
  std::lock_guard<std::mutex> g(gMutex);
  if (!load()) return cudaErrorNotSupported;
  Api& a = api();
  if (M <= 0 || N <= 0 || K <= 0) return fail(a, "fp8BlockwiseGemm: empty problem");
  cudaError_t e = ensureWorkspace(a);
  if (e != cudaSuccess) return fail(a, "cuBLASLt workspace allocation failed", e);
  const uint32_t align[4] = {alignmentOf(B), alignmentOf(A), 16, 16};
  bool fresh;
  Plan& p = ntPlan(a, KFp8, M, N, K, outBf16 ? CUDA_R_16BF : CUDA_R_32F, align, &fresh);
  if (!p.ok) return fail(a, "fp8BlockwiseGemm: " + p.why);
  // cuBLAS A = our B (128x128 blocks), cuBLAS B = our A (1x128 blocks).
  if (!setDesc(a, p, kDescAScalePointer, sbPadded) || !setDesc(a, p, kDescBScalePointer, saKM))
    return fail(a, "fp8BlockwiseGemm: " + p.why, cudaErrorUnknown);
  return run(a, p, B, A, D, s);
}

namespace {
inline int roundUp(int x, int m) { return (x + m - 1) / m * m; }
// Under gMutex. The smallest M' >= M (M itself, else M rounded up to 4, 8, ..., 128) for which cuBLASLt
// has an algorithm, and whether f32 output needs the bf16 staging; -1 when none.
int paddedM(Api& a, int M, int N, int K, bool outBf16, uint32_t alignA, uint32_t alignB, bool* viaBf16) {
  *viaBf16 = false;
  if (ensureWorkspace(a) != cudaSuccess) return -1;
  int last = -1;
  for (int p : {1, 4, 8, 16, 32, 64, 128}) {
    int c = roundUp(M, p);
    if (c == last) continue;
    last = c;
    // A padded copy lives in the 256-aligned scratch.
    const uint32_t align[4] = {alignB, c == M ? alignA : 256u, 16, 16};
    bool fresh;
    if (!outBf16 && ntPlan(a, KFp8, c, N, K, CUDA_R_32F, align, &fresh).ok) return c;
    if (ntPlan(a, KFp8, c, N, K, CUDA_R_16BF, align, &fresh).ok) {
      *viaBf16 = !outBf16;
      return c;
    }
  }
  return -1;
}
}  // namespace

int fp8BlockwisePaddedM(int M, int N, int K, bool outBf16, bool* viaBf16) {
  bool v = false;
  if (!viaBf16) viaBf16 = &v;
  if (!fp8BlockwiseSupported(M, N, K)) return -1;
  std::lock_guard<std::mutex> g(gMutex);
  return paddedM(api(), M, N, K, outBf16, 256, 256, viaBf16);
}

namespace {
// fp8BlockwiseGemm for M % 4 != 0, M > 4: rows [0, M4) straight into D, rows [M4, M) padded to 4.
cudaError_t fp8SplitTail(const uint8_t* A, const float* sa, const uint8_t* B, const float* sb, void* D, bool outBf16,
                         int M, int M4, int N, int K, cudaStream_t s) {
  const int KB = (K + 127) / 128, NB = (N + 127) / 128, KBp = (KB + 3) / 4 * 4, tail = M - M4;
  const int eb = outBf16 ? 2 : 4;
  const bool sbDirect = KB == KBp && ((uintptr_t)sb % 16) == 0;
  auto r256 = [](size_t x) { return (x + 255) & ~(size_t)255; };
  size_t saBytes = r256((size_t)M4 * KB * 4), stBytes = r256((size_t)4 * KB * 4);
  size_t sbBytes = sbDirect ? 0 : r256((size_t)NB * KBp * 4);
  size_t aBytes = r256((size_t)4 * K), dBytes = (size_t)4 * N * eb;
  char* base;
  {
    std::lock_guard<std::mutex> g(gMutex);
    cudaError_t e = ensureScratch(api(), saBytes + stBytes + sbBytes + aBytes + dBytes, s);
    if (e != cudaSuccess) return fail(api(), "fp8BlockwiseGemm: scratch allocation failed", e);
    base = (char*)api().scratch;
  }
  float* saMain = (float*)base;
  float* saTail = (float*)(base + saBytes);
  float* sbP = sbDirect ? (float*)sb : (float*)(base + saBytes + stBytes);
  uint8_t* aTail = (uint8_t*)(base + saBytes + stBytes + sbBytes);
  char* dTail = base + saBytes + stBytes + sbBytes + aBytes;
  cudaError_t e = launchLtScaleLayoutPadded(sa, M4, KB, saMain, M4, sbDirect ? nullptr : sb, NB, sbP, KBp, s);
  if (e == cudaSuccess) e = launchLtScaleLayoutPadded(sa + (size_t)M4 * KB, tail, KB, saTail, 4, nullptr, 0, nullptr, 0, s);
  if (e == cudaSuccess) e = cudaMemcpyAsync(aTail, A + (size_t)M4 * K, (size_t)tail * K, cudaMemcpyDeviceToDevice, s);
  if (e == cudaSuccess) e = cudaMemsetAsync(aTail + (size_t)tail * K, 0, (size_t)(4 - tail) * K, s);
  if (e == cudaSuccess) e = fp8BlockwiseGemmNative(A, saMain, B, sbP, D, outBf16, M4, N, K, s);
  if (e == cudaSuccess) e = fp8BlockwiseGemmNative(aTail, saTail, B, sbP, dTail, outBf16, 4, N, K, s);
  if (e == cudaSuccess)
    e = cudaMemcpyAsync((char*)D + (size_t)M4 * N * eb, dTail, (size_t)tail * N * eb, cudaMemcpyDeviceToDevice, s);
  return e;
}
}  // namespace

cudaError_t fp8BlockwiseGemm(const uint8_t* A, const float* sa, const uint8_t* B, const float* sb, void* D, bool outBf16,
                             int M, int N, int K, cudaStream_t s) {
  if (!fp8BlockwiseSupported(M, N, K)) {
    std::lock_guard<std::mutex> g(gMutex);
    return fail(api(), "fp8BlockwiseGemm: unsupported here (needs cuBLASLt >= 12.9, sm_90, K % 16 == 0, N % 8 == 0)");
  }
  const int KB = (K + 127) / 128, NB = (N + 127) / 128, KBp = (KB + 3) / 4 * 4;
  bool viaBf16 = false;
  int Mp;
  {
    std::lock_guard<std::mutex> g(gMutex);
    Mp = paddedM(api(), M, N, K, outBf16, alignmentOf(A), alignmentOf(B), &viaBf16);
    if (Mp < 0)
      return fail(api(), "fp8BlockwiseGemm: cuBLASLt has no blockwise algorithm for M=" + std::to_string(M) + " N=" +
                             std::to_string(N) + " K=" + std::to_string(K) + " (nor for M padded up to a multiple of 128)");
  }
  const bool pad = Mp != M;
  const int eb = (outBf16 || viaBf16) ? 2 : 4;
  // A large M that cuBLASLt declines only for M % 4: the first M4 = M & ~3 rows in place and the
  // last 1-3 rows as a separate 4-row GEMM (re-reads B once), instead of copying A and D whole.
  const int M4 = M & ~3;
  if (pad && M4 > 0 && Mp == roundUp(M, 4) && (double)M * K + 2.0 * M * N * eb > (double)N * K) {
    bool via4 = false, viaMain = false;
    int pMain, p4;
    {
      std::lock_guard<std::mutex> g(gMutex);
      pMain = paddedM(api(), M4, N, K, outBf16, alignmentOf(A), alignmentOf(B), &viaMain);
      p4 = paddedM(api(), 4, N, K, outBf16, 256, alignmentOf(B), &via4);
    }
    if (pMain == M4 && p4 == 4 && !viaMain && !via4)
      return fp8SplitTail(A, sa, B, sb, D, outBf16, M, M4, N, K, s);
  }
  // Scratch: transposed activation scales [KB][Mp], padded weight scales (unless kiln's layout is
  // already cuBLASLt's), a zero-padded copy of A, and an [Mp, N] output to stage through.
  const bool sbDirect = KB == KBp && ((uintptr_t)sb % 16) == 0;
  auto r256 = [](size_t x) { return (x + 255) & ~(size_t)255; };
  size_t saBytes = r256((size_t)Mp * KB * 4);
  size_t sbBytes = sbDirect ? 0 : r256((size_t)NB * KBp * 4);
  size_t aBytes = pad ? r256((size_t)Mp * K) : 0;
  size_t dBytes = (pad || viaBf16) ? (size_t)Mp * N * eb : 0;
  char* base;
  {
    std::lock_guard<std::mutex> g(gMutex);
    cudaError_t e = ensureScratch(api(), saBytes + sbBytes + aBytes + dBytes, s);
    if (e != cudaSuccess) return fail(api(), "fp8BlockwiseGemm: scratch allocation failed", e);
    base = (char*)api().scratch;
  }
  float* saT = (float*)base;
  float* sbP = sbDirect ? (float*)sb : (float*)(base + saBytes);
  uint8_t* aPad = (uint8_t*)(base + saBytes + sbBytes);
  void* dTmp = base + saBytes + sbBytes + aBytes;
  cudaError_t e;
  if (pad) {
    e = cudaMemcpyAsync(aPad, A, (size_t)M * K, cudaMemcpyDeviceToDevice, s);
    if (e == cudaSuccess) e = cudaMemsetAsync(aPad + (size_t)M * K, 0, (size_t)(Mp - M) * K, s);
    if (e != cudaSuccess) return e;
  }
  // cuBLASLt's layouts (as PyTorch's blockwise scaled_mm passes them): 1x128 scales K-block-major
  // [KB][M]; 128x128 scales [NB][round_up(KB, 4)].
  e = launchLtScaleLayoutPadded(sa, M, KB, saT, Mp, sbDirect ? nullptr : sb, NB, sbP, KBp, s);
  if (e != cudaSuccess) return e;
  const bool staged = pad || viaBf16;
  e = fp8BlockwiseGemmNative(pad ? aPad : A, saT, B, sbP, staged ? dTmp : D, eb == 2, Mp, N, K, s);
  if (e != cudaSuccess || !staged) return e;
  // The first M rows of the [Mp, N] staging buffer are D.
  if (viaBf16) return launchCast(BF16, F32, false, dTmp, D, (int64_t)M * N, s);
  return cudaMemcpyAsync(D, dTmp, (size_t)M * N * eb, cudaMemcpyDeviceToDevice, s);
}

bool fp8OutF32Native(int M, int N, int K) {
  std::lock_guard<std::mutex> g(gMutex);
  if (!load()) return false;
  Api& a = api();
  if (ensureWorkspace(a) != cudaSuccess) return false;
  const uint32_t align[4] = {256, 256, 256, 256};
  bool fresh;
  return ntPlan(a, KFp8, M, N, K, CUDA_R_32F, align, &fresh).ok;
}

}  // namespace lt
}  // namespace kiln

#endif  // KILN_LT_ABI_ONLY
