// The optimizer's update on the device: AdamW over FP32 master weights with FP32 or BF16
// moments, in place, one launch per parameter. The arithmetic is the host optimizer's
// (apps/trainer/src/optim/adamw.ts): double intermediates, rounded to f32 where the host stores
// to a Float32Array, BF16 moments rounded to nearest even from that f32, and the update taken
// with the stored (rounded) moments, so both paths agree bit for bit given the same gradients.
#include <math.h>
#include "api.h"
#include "common.cuh"

namespace kiln {

// Explicit round-to-nearest double ops: nvcc would otherwise contract a*b + c into an FMA,
// which rounds once where the host's JavaScript rounds twice.
__device__ __forceinline__ double mul(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ double add(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ double sub(double a, double b) { return __dsub_rn(a, b); }
__device__ __forceinline__ double dv(double a, double b) { return __ddiv_rn(a, b); }

__global__ void adamwKernel(float* p, void* m, void* v, const float* g, int64_t n, int bf16Moments, double b1, double b2,
                            double bc1, double bc2, double eps, double lr, double decay, double gradScale) {
  KILN_GRID_STRIDE(i, n) {
    float gi = g[i];
    if (gradScale != 1.0) gi = (float)mul((double)gi, gradScale);
    const double gd = gi;
    double mq, vq;
    if (bf16Moments) {
      uint16_t* mm = (uint16_t*)m;
      uint16_t* vv = (uint16_t*)v;
      const float mf = (float)add(mul(b1, (double)decodeBf16(mm[i])), mul(sub(1, b1), gd));
      const uint16_t mc = encodeBf16(mf);
      mm[i] = mc;
      const float vf = (float)add(mul(b2, (double)decodeBf16(vv[i])), mul(mul(sub(1, b2), gd), gd));
      const uint16_t vc = encodeBf16(vf);
      vv[i] = vc;
      mq = decodeBf16(mc);
      vq = decodeBf16(vc);
    } else {
      float* mm = (float*)m;
      float* vv = (float*)v;
      const float mf = (float)add(mul(b1, (double)mm[i]), mul(sub(1, b1), gd));
      const float vf = (float)add(mul(b2, (double)vv[i]), mul(mul(sub(1, b2), gd), gd));
      mm[i] = mf;
      vv[i] = vf;
      mq = mf;
      vq = vf;
    }
    p[i] = (float)sub(mul((double)p[i], decay), mul(lr, dv(dv(mq, bc1), add(__dsqrt_rn(dv(vq, bc2)), eps))));
  }
}

cudaError_t launchAdamw(float* p, void* m, void* v, const float* g, int64_t n, int bf16Moments, double b1, double b2,
                        double bc1, double bc2, double eps, double lr, double decay, double gradScale, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  adamwKernel<<<gridFor(n), kThreads, 0, s>>>(p, m, v, g, n, bf16Moments, b1, b2, bc1, bc2, eps, lr, decay, gradScale);
  return cudaGetLastError();
}

// acc[0] += Σ x² (double), for the global gradient norm: one readback for all parameters.
__global__ void sumSquaresKernel(const float* x, int64_t n, double* acc) {
  __shared__ double part[32];
  double s = 0;
  KILN_GRID_STRIDE(i, n) {
    const double d = x[i];
    s += d * d;
  }
  for (int off = 16; off > 0; off >>= 1) s += __shfl_down_sync(0xffffffffu, s, off);
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0;
    for (int w = 0; w < (int)(blockDim.x >> 5); ++w) t += part[w];
    atomicAdd(acc, t);
  }
}

cudaError_t launchSumSquares(const float* x, int64_t n, double* acc, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  unsigned g = gridFor(n);
  if (g > 1024) g = 1024;
  sumSquaresKernel<<<g, kThreads, 0, s>>>(x, n, acc);
  return cudaGetLastError();
}

}  // namespace kiln
