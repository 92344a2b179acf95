// kiln: Hopper (sm_90a) FP8 E4M3 block-scaled GEMM and grouped GEMM (DeepSeek-V3 fine-grained scaling).
//
// Plain C++ header: no Node-API, no driver API. Implementation in fp8_gemm_sm90.cu.
//
// Semantics (all tensors row-major, device memory):
//   A  : [M, K]  FP8 E4M3 codes (K contiguous)
//   sa : [M, ceil(K/128)] f32, one scale per 1x128 activation tile
//   B  : [N, K]  FP8 E4M3 codes (K contiguous), i.e. D = A * B^T ("NT")
//   sb : [ceil(N/128), ceil(K/128)] f32, one scale per 128x128 weight block
//   D[m,n] = sum_kb ( sum_{k in block kb} a[m,k] * b[n,k] ) * sa[m,kb] * sb[n/128,kb]
//   The inner 128-wide sums run on the tensor cores (FP8 WGMMA); each is promoted into an FP32
//   register accumulator with its two scales. D is f32 (outIsBf16 = 0) or bf16 RNE (outIsBf16 != 0).
//
// Requirements (checked; otherwise cudaErrorInvalidValue / cudaErrorNotSupported):
//   * kiln_fp8_gemm_sm90_supported(M, N, K): K % 16 == 0 (TMA row stride), K > 0, N % 8 == 0, N > 0,
//     M >= 0, and sizes below 2^31 elements per dimension.
//   * A, B 16-byte aligned; D 8-byte aligned (cudaMalloc pointers are fine); sa/sb 4-byte aligned.
//   * Grouped: 1 <= G <= KILN_FP8_GEMM_MAX_GROUPS.
//   * The device must be sm_90 and this file must have been compiled for sm_90a
//     (kiln_fp8_gemm_sm90_available()).
//
// Grouped, contiguous layout (MoE experts, tokens sorted by expert):
//   A: [totalM, K], sa: [totalM, ceil(K/128)], B: [G, N, K], sb: [G, ceil(N/128), ceil(K/128)],
//   D: [totalM, N]. groupOffsetsDevice: int32[G+1] on the device, non-decreasing, offsets[0] >= 0,
//   offsets[G] <= totalM; group g owns rows [offsets[g], offsets[g+1]). There is NO alignment
//   requirement on the group starts (any row offset works; empty groups are allowed). Rows outside
//   every group are not written.
// Grouped, masked layout:
//   A: [G, Mmax, K], sa: [G, Mmax, ceil(K/128)], B: [G, N, K], sb: [G, ceil(N/128), ceil(K/128)],
//   D: [G, Mmax, N]. maskedMDevice: int32[G] on the device; group g computes rows [0, min(masked_m[g], Mmax)).
//   Rows beyond masked_m are not written. expectedM (a host-side hint of the typical masked_m) only
//   chooses the tile shape; any value >= 0 is correct.
//
// All entry points are asynchronous on `stream` and capture-safe once kiln_fp8_gemm_sm90_available()
// has been called once outside capture (it runs a one-time probe kernel and caches the answer).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cuda_runtime.h>

#define KILN_FP8_GEMM_MAX_GROUPS 1024

#ifdef __cplusplus
extern "C" {
#endif

// True when the current device is compute capability 9.0 and the sm_90a kernels are present in this
// binary. Cached per device after the first call.
bool kiln_fp8_gemm_sm90_available(void);

// Shape predicate for the dense GEMM (and, with M = rows, for the grouped entry points). Writes a
// reason into why (if non-null) when false.
bool kiln_fp8_gemm_sm90_supported(int M, int N, int K, char* why, size_t whyLen);

// Grouped predicate: shape predicate plus the group count limit.
bool kiln_fp8_grouped_gemm_sm90_supported(int G, int N, int K, char* why, size_t whyLen);

cudaError_t kiln_fp8_gemm_sm90(const uint8_t* A, const float* sa, const uint8_t* B, const float* sb,
                               void* D, int outIsBf16, int M, int N, int K, cudaStream_t stream);

cudaError_t kiln_fp8_grouped_gemm_contiguous_sm90(const uint8_t* A, const float* sa, const uint8_t* B,
                                                  const float* sb, void* D, int outIsBf16,
                                                  const int* groupOffsetsDevice, int G, int totalM,
                                                  int N, int K, cudaStream_t stream);

cudaError_t kiln_fp8_grouped_gemm_masked_sm90(const uint8_t* A, const float* sa, const uint8_t* B,
                                              const float* sb, void* D, int outIsBf16,
                                              const int* maskedMDevice, int G, int Mmax, int N, int K,
                                              int expectedM, cudaStream_t stream);

// Testing / tuning hook: force a tile configuration for subsequent calls on this thread
// (-1 = automatic). Index into the internal config table; returns the number of configs.
// kiln_fp8_gemm_sm90_config_name(i) describes config i ("BMxBN").
int kiln_fp8_gemm_sm90_force_config(int index);
const char* kiln_fp8_gemm_sm90_config_name(int index);
// The config index the last call on this thread used (for reporting).
int kiln_fp8_gemm_sm90_last_config(void);

#ifdef __cplusplus
}
#endif
