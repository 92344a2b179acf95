// cuBLASLt, loaded at run time with dlopen (libcublasLt.so.13 / .12): the addon builds with
// nothing but nvcc and the static CUDA runtime, and runs without cuBLASLt (own kernels) when
// the library is absent. Declarations of the few entry points used live in cublaslt.cpp.
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>
#include <string>

namespace kiln {
namespace lt {

// Loads the library once; false (with the reason in `why()`) when it is not there.
bool available();
std::string why();
std::string version();

// Row-major batched f32 GEMM C[b] = op(A[b]) op(B[b]) with per-batch element strides (0 = broadcast).
// transA: A stored [K, M]; transB: B stored [N, K]. FP32 compute (no TF32).
cudaError_t sgemm(const void* A, const void* B, void* C, int batch, int64_t aStride, int64_t bStride, int M, int N,
                  int K, bool transA, bool transB, cudaStream_t s);
// Row-major bf16 GEMM C [M,N] (bf16 or f32 out) = A [M,K] * B [N,K]^T, f32 accumulate.
cudaError_t bf16Gemm(const void* A, const void* B, void* C, bool outF32, int M, int N, int K, cudaStream_t s);

// DeepSeek-V3 blockwise FP8: A [M,K] e4m3 with 1x128 scales sa [M, K/128], B [N,K] e4m3 with
// 128x128 scales sb [N/128, K/128] (kiln's row-major layouts), D [M,N] f32 or bf16.
bool fp8BlockwiseSupported(int M, int N, int K);
cudaError_t fp8BlockwiseGemm(const uint8_t* A, const float* sa, const uint8_t* B, const float* sb, void* D, bool outBf16,
                             int M, int N, int K, cudaStream_t s);

}  // namespace lt
}  // namespace kiln

// ---- appended: diagnostics, cuBLASLt-native scale layouts, the layout kernel -------------------
namespace kiln {
namespace lt {
// Why the last call on this thread of control declined or failed ("" if none yet).
std::string lastError();
// fp8BlockwiseGemm with the scales already in cuBLASLt's layouts (what PyTorch's blockwise
// scaled_mm passes): saKM [ceil(K/128)][M] (1x128 scales, K-block-major, M contiguous) and
// sbPadded [ceil(N/128)][round_up(ceil(K/128), 4)] (128x128 scales, K blocks contiguous).
cudaError_t fp8BlockwiseGemmNative(const uint8_t* A, const float* saKM, const uint8_t* B, const float* sbPadded, void* D,
                                   bool outBf16, int M, int N, int K, cudaStream_t s);
// Whether cuBLASLt takes f32 output for blockwise FP8 at this shape (else fp8BlockwiseGemm stages bf16 + a cast).
bool fp8OutF32Native(int M, int N, int K);
// lt_scale_layout.cu: kiln's scale layouts -> cuBLASLt's. saT[kb * M + m] = sa[m * KB + kb]; when sb is
// non-null, sbPadded[nb * KBpad + kb] = sb[nb * KB + kb] (zero in the padding).
cudaError_t launchLtScaleLayout(const float* sa, int M, int KB, float* saT, const float* sb, int NB, float* sbPadded,
                                int KBpad, cudaStream_t s);
}  // namespace lt
}  // namespace kiln

// ---- appended: M padding for blockwise FP8 ------------------------------------------------------
namespace kiln {
namespace lt {
// launchLtScaleLayout with the transposed activation scales given leading dimension ldT >= M
// (saT[kb * ldT + m]; rows M..ldT-1 zero): cuBLASLt's blockwise FP8 has no algorithm for some M
// (seen on sm_90 with cuBLASLt 13.1: M = 1, 130, 257), so fp8BlockwiseGemm pads M to the next size
// it takes and needs scales for the padded rows.
cudaError_t launchLtScaleLayoutPadded(const float* sa, int M, int KB, float* saT, int ldT, const float* sb, int NB,
                                      float* sbPadded, int KBpad, cudaStream_t s);
// The M fp8BlockwiseGemm runs cuBLASLt with for this problem (M itself when cuBLASLt takes it, else the
// smallest padding it takes), -1 when none; *viaBf16 tells whether f32 output goes through bf16.
int fp8BlockwisePaddedM(int M, int N, int K, bool outBf16, bool* viaBf16);
}  // namespace lt
}  // namespace kiln
