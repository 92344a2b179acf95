// Checks the cuBLASLt ABI that native/cublaslt.cpp declares by hand (it builds without cuBLAS headers)
// against the real header: every enum value, the struct layouts and the entry points' signatures.
// Build and run on a machine with the CUDA toolkit's cuBLAS headers (no GPU needed to compile):
//   g++ -std=c++17 -I/usr/local/cuda/include -I<dir of cublasLt.h> \
//       packages/backend-cuda/native/tools/check_cublaslt_abi.cpp -ldl -o /tmp/check_abi && /tmp/check_abi
// A wrong value fails to compile; the program then prints the values and the loaded library's version.
#include <cublasLt.h>
#include <dlfcn.h>

#include <cstddef>
#include <cstdio>
#include <type_traits>

#define KILN_LT_ABI_ONLY
#include "../cublaslt.cpp"

namespace abi = kiln::lt::abi;

static_assert(abi::kStatusSuccess == CUBLAS_STATUS_SUCCESS, "CUBLAS_STATUS_SUCCESS");
static_assert(abi::kStatusNotSupported == CUBLAS_STATUS_NOT_SUPPORTED, "CUBLAS_STATUS_NOT_SUPPORTED");
static_assert(abi::kCompute32F == CUBLAS_COMPUTE_32F, "CUBLAS_COMPUTE_32F");
static_assert(abi::kOpN == CUBLAS_OP_N && abi::kOpT == CUBLAS_OP_T, "cublasOperation_t");
static_assert(abi::kDescTransA == CUBLASLT_MATMUL_DESC_TRANSA, "CUBLASLT_MATMUL_DESC_TRANSA");
static_assert(abi::kDescTransB == CUBLASLT_MATMUL_DESC_TRANSB, "CUBLASLT_MATMUL_DESC_TRANSB");
static_assert(abi::kDescAScalePointer == CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, "A_SCALE_POINTER");
static_assert(abi::kDescBScalePointer == CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, "B_SCALE_POINTER");
static_assert(abi::kDescAScaleMode == CUBLASLT_MATMUL_DESC_A_SCALE_MODE, "A_SCALE_MODE");
static_assert(abi::kDescBScaleMode == CUBLASLT_MATMUL_DESC_B_SCALE_MODE, "B_SCALE_MODE");
static_assert(abi::kLayoutBatchCount == CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, "LAYOUT_BATCH_COUNT");
static_assert(abi::kLayoutStridedBatchOffset == CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, "STRIDED_BATCH_OFFSET");
static_assert(abi::kPrefMaxWorkspaceBytes == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, "PREF_MAX_WORKSPACE_BYTES");
static_assert(abi::kPrefMinAlignmentA == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, "MIN_ALIGNMENT_A");
static_assert(abi::kPrefMinAlignmentB == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, "MIN_ALIGNMENT_B");
static_assert(abi::kPrefMinAlignmentC == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, "MIN_ALIGNMENT_C");
static_assert(abi::kPrefMinAlignmentD == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, "MIN_ALIGNMENT_D");
static_assert(abi::kScaleVec128_32F == CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F, "SCALE_VEC128_32F");
static_assert(abi::kScaleBlk128x128_32F == CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F, "SCALE_BLK128x128_32F");

// Struct layouts.
static_assert(sizeof(abi::MatmulAlgo) == sizeof(cublasLtMatmulAlgo_t), "cublasLtMatmulAlgo_t size");
static_assert(sizeof(abi::HeuristicResult) == sizeof(cublasLtMatmulHeuristicResult_t), "heuristic result size");
static_assert(offsetof(abi::HeuristicResult, workspaceSize) == offsetof(cublasLtMatmulHeuristicResult_t, workspaceSize),
              "workspaceSize offset");
static_assert(offsetof(abi::HeuristicResult, state) == offsetof(cublasLtMatmulHeuristicResult_t, state), "state offset");
static_assert(offsetof(abi::HeuristicResult, wavesCount) == offsetof(cublasLtMatmulHeuristicResult_t, wavesCount),
              "wavesCount offset");
static_assert(sizeof(cublasStatus_t) == sizeof(abi::Status) && sizeof(cublasComputeType_t) == sizeof(int) &&
                  sizeof(cublasLtMatmulDescAttributes_t) == sizeof(int) && sizeof(cublasLtMatrixLayoutAttribute_t) == sizeof(int) &&
                  sizeof(cublasLtMatmulPreferenceAttributes_t) == sizeof(int),
              "enum sizes");
static_assert(sizeof(cublasLtHandle_t) == sizeof(void*) && sizeof(cublasLtMatmulDesc_t) == sizeof(void*) &&
                  sizeof(cublasLtMatrixLayout_t) == sizeof(void*) && sizeof(cublasLtMatmulPreference_t) == sizeof(void*),
              "handles are pointers");

// Signatures: the real prototype, with its opaque pointer / enum types replaced by ours, must equal
// our function pointer type. Checked by parameter count, each parameter's size, and return type.
template <typename R, typename... A, typename R2, typename... B>
constexpr bool sameShape(R (*)(A...), R2 (*)(B...)) {
  if (sizeof...(A) != sizeof...(B) || sizeof(R) != sizeof(R2)) return false;
  constexpr size_t a[] = {sizeof(A)..., 0}, b[] = {sizeof(B)..., 0};
  for (size_t i = 0; i < sizeof...(A); ++i)
    if (a[i] != b[i]) return false;
  return true;
}
#define SIG(fn, pfn) static_assert(sameShape(&fn, (abi::pfn) nullptr), #fn " signature")
SIG(cublasLtCreate, PFN_Create);
SIG(cublasLtGetVersion, PFN_GetVersion);
SIG(cublasLtMatmulDescCreate, PFN_MatmulDescCreate);
SIG(cublasLtMatmulDescSetAttribute, PFN_MatmulDescSetAttribute);
SIG(cublasLtMatmulDescDestroy, PFN_MatmulDescDestroy);
SIG(cublasLtMatrixLayoutCreate, PFN_MatrixLayoutCreate);
SIG(cublasLtMatrixLayoutSetAttribute, PFN_MatrixLayoutSetAttribute);
SIG(cublasLtMatrixLayoutDestroy, PFN_MatrixLayoutDestroy);
SIG(cublasLtMatmulPreferenceCreate, PFN_MatmulPreferenceCreate);
SIG(cublasLtMatmulPreferenceSetAttribute, PFN_MatmulPreferenceSetAttribute);
SIG(cublasLtMatmulPreferenceDestroy, PFN_MatmulPreferenceDestroy);
SIG(cublasLtMatmulAlgoGetHeuristic, PFN_MatmulAlgoGetHeuristic);
SIG(cublasLtMatmul, PFN_Matmul);
// Exact parameter types where ours are not opaque.
static_assert(std::is_same<decltype(&cublasLtGetVersion), abi::PFN_GetVersion>::value, "cublasLtGetVersion type");

int main() {
  std::printf("cublasLt.h CUBLAS_VERSION %d: all %s ABI checks passed at compile time\n", (int)CUBLAS_VERSION, "kiln cuBLASLt");
  std::printf("TRANSA=%d TRANSB=%d A_SCALE_POINTER=%d B_SCALE_POINTER=%d A_SCALE_MODE=%d B_SCALE_MODE=%d\n",
              (int)CUBLASLT_MATMUL_DESC_TRANSA, (int)CUBLASLT_MATMUL_DESC_TRANSB, (int)CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
              (int)CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, (int)CUBLASLT_MATMUL_DESC_A_SCALE_MODE,
              (int)CUBLASLT_MATMUL_DESC_B_SCALE_MODE);
  std::printf("VEC128_32F=%d BLK128x128_32F=%d COMPUTE_32F=%d BATCH_COUNT=%d STRIDED_BATCH_OFFSET=%d MAX_WORKSPACE=%d "
              "MIN_ALIGN_A..D=%d,%d,%d,%d sizeof(algo)=%zu sizeof(heuristic)=%zu CUDA_R_8F_E4M3=%d CUDA_R_16BF=%d\n",
              (int)CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F, (int)CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F,
              (int)CUBLAS_COMPUTE_32F, (int)CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, (int)CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
              (int)CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, (int)CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
              (int)CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, (int)CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
              (int)CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, sizeof(cublasLtMatmulAlgo_t),
              sizeof(cublasLtMatmulHeuristicResult_t), (int)CUDA_R_8F_E4M3, (int)CUDA_R_16BF);
  void* lib = dlopen("libcublasLt.so.13", RTLD_NOW);
  if (!lib) lib = dlopen("libcublasLt.so.12", RTLD_NOW);
  if (lib) {
    auto v = (size_t(*)())dlsym(lib, "cublasLtGetVersion");
    std::printf("loaded libcublasLt version %zu\n", v ? v() : (size_t)0);
  } else {
    std::printf("libcublasLt not loadable by soname: %s\n", dlerror());
  }
  return 0;
}
