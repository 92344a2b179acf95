// Batched f32 / i32 GEMM on CUDA cores: the fallback when cuBLASLt is not loaded and the
// path for i32. 64x64 output tiles, 16x16 threads with 4x4 register blocks, K tiles of 16.
#include "api.h"
#include "common.cuh"

namespace kiln {

constexpr int BM = 64, BN = 64, BK = 16;

template <typename T>
__global__ void gemmKernel(const T* A, const T* B, T* C, int64_t aStride, int64_t bStride, int M, int N, int K,
                           bool transA, bool transB) {
  __shared__ T As[BK][BM + 1];
  __shared__ T Bs[BK][BN + 1];
  const int z = blockIdx.z;
  A += z * aStride;
  B += z * bStride;
  C += (int64_t)z * M * N;
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 16 + tx;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  T acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = (T)0;
  for (int k0 = 0; k0 < K; k0 += BK) {
    for (int t = tid; t < BM * BK; t += 256) {
      int r = t / BK, c = t % BK;  // r: row within tile (m or n), c: k within tile
      int gm = m0 + r, gk = k0 + c;
      As[c][r] = (gm < M && gk < K) ? A[transA ? (int64_t)gk * M + gm : (int64_t)gm * K + gk] : (T)0;
      int gn = n0 + r;
      Bs[c][r] = (gn < N && gk < K) ? B[transB ? (int64_t)gn * K + gk : (int64_t)gk * N + gn] : (T)0;
    }
    __syncthreads();
#pragma unroll
    for (int c = 0; c < BK; ++c) {
      T av[4], bv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) av[i] = As[c][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) bv[j] = Bs[c][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += av[i] * bv[j];
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      int m = m0 + ty + 16 * i, n = n0 + tx + 16 * j;
      if (m < M && n < N) C[(int64_t)m * N + n] = acc[i][j];
    }
}

// i32 products wrap like int32 (Math.imul); unsigned arithmetic makes that defined.
__global__ void gemmI32Kernel(const int32_t* A, const int32_t* B, int32_t* C, int64_t aStride, int64_t bStride, int M,
                              int N, int K, bool transA, bool transB) {
  const int z = blockIdx.z;
  A += z * aStride;
  B += z * bStride;
  C += (int64_t)z * M * N;
  int m = blockIdx.y * 16 + threadIdx.y, n = blockIdx.x * 16 + threadIdx.x;
  if (m >= M || n >= N) return;
  uint32_t acc = 0;
  for (int k = 0; k < K; ++k) {
    uint32_t a = (uint32_t)A[transA ? (int64_t)k * M + m : (int64_t)m * K + k];
    uint32_t b = (uint32_t)B[transB ? (int64_t)n * K + k : (int64_t)k * N + n];
    acc += a * b;
  }
  C[(int64_t)m * N + n] = (int32_t)acc;
}

cudaError_t launchMatmul(int dtype, const void* a, const void* b, void* c, int batch, int64_t aBatchStride,
                         int64_t bBatchStride, int M, int N, int K, bool transA, bool transB, cudaStream_t s) {
  if (batch == 0 || M == 0 || N == 0) return cudaSuccess;
  if (K == 0) return cudaMemsetAsync(c, 0, (size_t)batch * M * N * 4, s);
  if (dtype == F32) {
    dim3 grid((N + BN - 1) / BN, (M + BM - 1) / BM, batch);
    gemmKernel<float><<<grid, dim3(16, 16), 0, s>>>((const float*)a, (const float*)b, (float*)c, aBatchStride, bBatchStride,
                                                    M, N, K, transA, transB);
  } else {
    dim3 grid((N + 15) / 16, (M + 15) / 16, batch);
    gemmI32Kernel<<<grid, dim3(16, 16), 0, s>>>((const int32_t*)a, (const int32_t*)b, (int32_t*)c, aBatchStride,
                                               bBatchStride, M, N, K, transA, transB);
  }
  return cudaGetLastError();
}

}  // namespace kiln
