// Fused row kernels over the last axis: softmax / log-softmax, RMSNorm, and SwiGLU.
// Row statistics accumulate in double so results match the composed CPU reference closely.
#include <math.h>
#include "api.h"
#include "common.cuh"

namespace kiln {

__device__ __forceinline__ double blockReduce(double v, bool isMax, double* scratch) {
  for (int off = 16; off > 0; off >>= 1) {
    double o = __shfl_down_sync(0xffffffffu, v, off);
    v = isMax ? fmax(v, o) : v + o;
  }
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    double r = scratch[0];
    for (int i = 1; i < (int)(blockDim.x >> 5); ++i) r = isMax ? fmax(r, scratch[i]) : r + scratch[i];
    scratch[32] = r;
  }
  __syncthreads();
  double r = scratch[32];
  __syncthreads();
  return r;
}

// Same rounding steps as the CPU reference: e = f32(exp(f32(x - max))), f32(sum e) in double.
__global__ void softmaxKernel(const float* x, float* out, int64_t cols, bool logMode) {
  __shared__ double scratch[33];
  const float* row = x + blockIdx.x * cols;
  float* o = out + blockIdx.x * cols;
  double m = -INFINITY, nan = 0;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    float v = row[j];
    if (v != v) nan = 1;
    else m = fmax(m, (double)v);
  }
  m = blockReduce(m, true, scratch);
  nan = blockReduce(nan, true, scratch);
  const float mf = nan > 0 ? __int_as_float(0x7fc00000) : (float)m;
  double sum = 0;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) sum += (double)(float)exp((double)__fsub_rn(row[j], mf));
  const float sf = (float)blockReduce(sum, false, scratch);
  const float lse = __fadd_rn((float)log((double)sf), mf);
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    if (logMode) o[j] = __fsub_rn(row[j], lse);
    else o[j] = __fdiv_rn((float)exp((double)__fsub_rn(row[j], mf)), sf);
  }
}

cudaError_t launchSoftmax(const float* x, float* out, int64_t rows, int64_t cols, bool log, cudaStream_t s) {
  if (rows == 0 || cols == 0) return cudaSuccess;
  int threads = cols >= 1024 ? 512 : cols >= 256 ? 256 : 128;
  softmaxKernel<<<(unsigned)rows, threads, 0, s>>>(x, out, cols, log);
  return cudaGetLastError();
}

__global__ void rmsNormKernel(const float* x, const float* w, float* out, int64_t cols, float eps) {
  __shared__ double scratch[33];
  const float* row = x + blockIdx.x * cols;
  float* o = out + blockIdx.x * cols;
  double ss = 0;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) ss += (double)__fmul_rn(row[j], row[j]);
  ss = blockReduce(ss, false, scratch);
  // As the CPU reference: f32(f32(sum) / f32(cols)), then f32(1 / sqrt(f32(meanSq + eps))).
  const float meanSq = __fdiv_rn((float)ss, (float)cols);
  const float inv = (float)(1.0 / sqrt((double)__fadd_rn(meanSq, eps)));
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) o[j] = __fmul_rn(__fmul_rn(row[j], inv), w[j]);
}

cudaError_t launchRmsNorm(const float* x, const float* w, float* out, int64_t rows, int64_t cols, float eps,
                          cudaStream_t s) {
  if (rows == 0 || cols == 0) return cudaSuccess;
  int threads = cols >= 1024 ? 512 : cols >= 256 ? 256 : 128;
  rmsNormKernel<<<(unsigned)rows, threads, 0, s>>>(x, w, out, cols, eps);
  return cudaGetLastError();
}

__global__ void swigluKernel(const float* g, const float* u, float* out, int64_t n) {
  KILN_GRID_STRIDE(i, n) {
    double gv = g[i];
    double sig = gv >= 0 ? 1.0 / (1.0 + exp(-gv)) : exp(gv) / (1.0 + exp(gv));
    float silu = __fmul_rn((float)gv, (float)sig);
    out[i] = __fmul_rn(silu, u[i]);
  }
}
cudaError_t launchSwiglu(const float* g, const float* u, float* out, int64_t n, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  swigluKernel<<<gridFor(n), kThreads, 0, s>>>(g, u, out, n);
  return cudaGetLastError();
}

}  // namespace kiln
