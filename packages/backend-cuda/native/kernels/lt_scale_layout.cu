// Scale-layout conversion for cuBLASLt's blockwise FP8 GEMM (see cublaslt.cpp). kiln keeps the 1x128
// activation scales row-major [M][KB]; cuBLASLt (VEC128_32F) reads them K-block-major [KB][M]. The
// 128x128 weight scales are row-major [NB][KB] in both, but cuBLASLt (BLK128x128_32F) wants each row
// padded to a multiple of 4 K blocks.
#include "../cublaslt.h"

namespace kiln {
namespace lt {

// 32x32 tiles through shared memory: coalesced reads along kb, coalesced writes along m. Rows
// m in [M, ldT) (padding up to the M cuBLASLt accepts) get zero scales.
__global__ void transposeScalesKernel(const float* __restrict__ sa, int M, int KB, float* __restrict__ saT, int ldT) {
  __shared__ float tile[32][33];
  const int m0 = blockIdx.x * 32, k0 = blockIdx.y * 32;
  for (int r = threadIdx.y; r < 32; r += 8) {
    int m = m0 + r, k = k0 + threadIdx.x;
    tile[r][threadIdx.x] = (m < M && k < KB) ? sa[(int64_t)m * KB + k] : 0.f;
  }
  __syncthreads();
  for (int r = threadIdx.y; r < 32; r += 8) {
    int k = k0 + r, m = m0 + threadIdx.x;
    if (m < ldT && k < KB) saT[(int64_t)k * ldT + m] = tile[threadIdx.x][r];
  }
}

__global__ void padWeightScalesKernel(const float* __restrict__ sb, int NB, int KB, float* __restrict__ out, int KBpad) {
  int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (int64_t)NB * KBpad) return;
  int nb = (int)(i / KBpad), kb = (int)(i % KBpad);
  out[i] = kb < KB ? sb[(int64_t)nb * KB + kb] : 0.f;
}

cudaError_t launchLtScaleLayoutPadded(const float* sa, int M, int KB, float* saT, int ldT, const float* sb, int NB,
                                      float* sbPadded, int KBpad, cudaStream_t s) {
  if (ldT < M) return cudaErrorInvalidValue;
  if (ldT > 0 && KB > 0) {
    dim3 grid((ldT + 31) / 32, (KB + 31) / 32);
    transposeScalesKernel<<<grid, dim3(32, 8), 0, s>>>(sa, M, KB, saT, ldT);
  }
  if (sb && NB > 0 && KBpad > 0) {
    int64_t n = (int64_t)NB * KBpad;
    padWeightScalesKernel<<<(unsigned)((n + 255) / 256), 256, 0, s>>>(sb, NB, KB, sbPadded, KBpad);
  }
  return cudaGetLastError();
}

cudaError_t launchLtScaleLayout(const float* sa, int M, int KB, float* saT, const float* sb, int NB, float* sbPadded,
                                int KBpad, cudaStream_t s) {
  return launchLtScaleLayoutPadded(sa, M, KB, saT, M, sb, NB, sbPadded, KBpad, s);
}

}  // namespace lt
}  // namespace kiln
