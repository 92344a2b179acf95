// Single-axis reductions over x viewed as [outer, len, inner]. f32 sums and products
// accumulate in double and round once (as the CPU reference); i32 wraps; max/min propagate
// NaN; argmax/argmin take the first index on ties and treat NaN as the largest value.
#include <math.h>
#include "api.h"
#include "common.cuh"

namespace kiln {

enum ReduceOp { SUM, PROD, MAX, MIN, ARGMAX, ARGMIN };

struct Acc {
  double v;    // f32 sums/products and extremes
  int64_t iv;  // integer sums/products/extremes (wrapped at the end)
  int64_t idx;
};

__device__ __forceinline__ double loadD(const void* x, int dtype, int64_t i) {
  return dtype == F32 ? (double)((const float*)x)[i]
         : dtype == I32 ? (double)((const int32_t*)x)[i] : (double)((const uint8_t*)x)[i];
}
__device__ __forceinline__ int64_t loadI(const void* x, int dtype, int64_t i) {
  return dtype == I32 ? (int64_t)((const int32_t*)x)[i] : (int64_t)((const uint8_t*)x)[i];
}

__device__ __forceinline__ Acc initAcc(int op) {
  Acc a;
  a.idx = -1;
  a.v = op == SUM ? 0.0 : op == PROD ? 1.0 : op == MAX ? -INFINITY : INFINITY;
  a.iv = op == SUM ? 0 : op == PROD ? 1 : op == MAX ? INT64_MIN : INT64_MAX;
  return a;
}
// Is candidate (v, i) preferred over the current best for argmax/argmin?
__device__ __forceinline__ bool argBetter(bool isMax, double v, int64_t i, double bv, int64_t bi) {
  if (bi < 0) return true;
  bool vn = v != v, bn = bv != bv;
  if (isMax) {
    if (vn != bn) return vn;
  } else {
    if (vn != bn) return !vn;
  }
  if (vn && bn) return i < bi;
  if (v == bv) return i < bi;
  return isMax ? v > bv : v < bv;
}
__device__ __forceinline__ void accumulate(int op, int dtype, Acc& a, const void* x, int64_t i, int64_t k) {
  if (dtype == F32 || op == ARGMAX || op == ARGMIN) {
    double v = loadD(x, dtype, i);
    switch (op) {
      case SUM: a.v += v; break;
      case PROD: a.v *= v; break;
      case MAX: if (v != v || a.v != a.v) a.v = NAN; else if (v > a.v) a.v = v; break;
      case MIN: if (v != v || a.v != a.v) a.v = NAN; else if (v < a.v) a.v = v; break;
      default: if (argBetter(op == ARGMAX, v, k, a.v, a.idx)) { a.v = v; a.idx = k; }
    }
  } else {
    int64_t v = loadI(x, dtype, i);
    switch (op) {
      case SUM: a.iv = (int64_t)(uint32_t)((uint32_t)a.iv + (uint32_t)v); break;
      case PROD: a.iv = (int64_t)(uint32_t)((uint32_t)a.iv * (uint32_t)v); break;
      case MAX: if (v > a.iv) a.iv = v; break;
      default: if (v < a.iv) a.iv = v; break;
    }
  }
}
__device__ __forceinline__ void combine(int op, int dtype, Acc& a, const Acc& b) {
  if (dtype == F32 || op == ARGMAX || op == ARGMIN) {
    switch (op) {
      case SUM: a.v += b.v; break;
      case PROD: a.v *= b.v; break;
      case MAX: if (b.v != b.v || a.v != a.v) a.v = NAN; else if (b.v > a.v) a.v = b.v; break;
      case MIN: if (b.v != b.v || a.v != a.v) a.v = NAN; else if (b.v < a.v) a.v = b.v; break;
      default: if (b.idx >= 0 && argBetter(op == ARGMAX, b.v, b.idx, a.v, a.idx)) { a.v = b.v; a.idx = b.idx; }
    }
  } else {
    switch (op) {
      case SUM: a.iv = (int64_t)(uint32_t)((uint32_t)a.iv + (uint32_t)b.iv); break;
      case PROD: a.iv = (int64_t)(uint32_t)((uint32_t)a.iv * (uint32_t)b.iv); break;
      case MAX: if (b.iv > a.iv) a.iv = b.iv; break;
      default: if (b.iv < a.iv) a.iv = b.iv; break;
    }
  }
}
__device__ __forceinline__ void store(int op, int dtype, const Acc& a, void* out, int64_t o) {
  if (op == ARGMAX || op == ARGMIN) { ((int32_t*)out)[o] = a.idx < 0 ? 0 : (int32_t)a.idx; return; }
  if (dtype == F32) { ((float*)out)[o] = (float)a.v; return; }
  if (dtype == I32) ((int32_t*)out)[o] = (int32_t)(uint32_t)a.iv;
  else ((uint8_t*)out)[o] = (uint8_t)a.iv;
}

// One thread per output; consecutive threads take consecutive inner positions (coalesced).
__global__ void reduceColumns(int op, int dtype, const void* x, void* out, int64_t outer, int64_t len, int64_t inner) {
  KILN_GRID_STRIDE(o, outer * inner) {
    int64_t b = o / inner, j = o % inner;
    Acc a = initAcc(op);
    const int64_t base = b * len * inner + j;
    for (int64_t k = 0; k < len; ++k) accumulate(op, dtype, a, x, base + k * inner, k);
    store(op, dtype, a, out, o);
  }
}

__device__ Acc shuffleAcc(const Acc& a, int offset) {
  Acc b;
  b.v = __shfl_down_sync(0xffffffffu, a.v, offset);
  b.iv = __shfl_down_sync(0xffffffffu, a.iv, offset);
  b.idx = __shfl_down_sync(0xffffffffu, a.idx, offset);
  return b;
}

// One block per contiguous row (inner == 1): strided partials, then a tree (order of a
// double-precision tree is invisible after the final rounding to f32).
__global__ void reduceRows(int op, int dtype, const void* x, void* out, int64_t len) {
  __shared__ Acc warpAcc[32];
  const int64_t row = blockIdx.x;
  Acc a = initAcc(op);
  for (int64_t k = threadIdx.x; k < len; k += blockDim.x) accumulate(op, dtype, a, x, row * len + k, k);
  for (int off = 16; off > 0; off >>= 1) {
    Acc b = shuffleAcc(a, off);
    combine(op, dtype, a, b);
  }
  if ((threadIdx.x & 31) == 0) warpAcc[threadIdx.x >> 5] = a;
  __syncthreads();
  if (threadIdx.x < 32) {
    a = threadIdx.x < (blockDim.x >> 5) ? warpAcc[threadIdx.x] : initAcc(op);
    for (int off = 16; off > 0; off >>= 1) {
      Acc b = shuffleAcc(a, off);
      combine(op, dtype, a, b);
    }
    if (threadIdx.x == 0) store(op, dtype, a, out, row);
  }
}

// Long reductions with few outputs (e.g. a bias gradient: [tokens, hidden] over tokens) would
// leave most of the GPU idle with one thread per output: split the axis into chunks, reduce
// each chunk in parallel, then combine the chunks in order.
__global__ void reducePartials(int op, int dtype, const void* x, Acc* partial, int64_t outer, int64_t len, int64_t inner,
                               int64_t chunk, int64_t chunks) {
  KILN_GRID_STRIDE(t, outer * chunks * inner) {
    int64_t j = t % inner, r = t / inner;
    int64_t c = r % chunks, o = r / chunks;
    Acc a = initAcc(op);
    int64_t k0 = c * chunk, k1 = min(len, k0 + chunk);
    for (int64_t k = k0; k < k1; ++k) accumulate(op, dtype, a, x, (o * len + k) * inner + j, k);
    partial[t] = a;
  }
}
__global__ void reduceFinish(int op, int dtype, const Acc* partial, void* out, int64_t outer, int64_t chunks, int64_t inner) {
  KILN_GRID_STRIDE(t, outer * inner) {
    int64_t j = t % inner, o = t / inner;
    Acc a = initAcc(op);
    for (int64_t c = 0; c < chunks; ++c) combine(op, dtype, a, partial[(o * chunks + c) * inner + j]);
    store(op, dtype, a, out, t);
  }
}

cudaError_t launchReduce(int op, int dtype, const void* x, void* out, int64_t outer, int64_t len, int64_t inner,
                         cudaStream_t s) {
  int64_t n = outer * inner;
  if (n == 0) return cudaSuccess;
  if (inner == 1 && len >= 128 && outer <= 2147483647LL) {
    reduceRows<<<(unsigned)outer, 256, 0, s>>>(op, dtype, x, out, len);
  } else if (n < 32768 && len >= 256) {
    const int64_t chunk = 64, chunks = (len + chunk - 1) / chunk;
    Acc* partial = nullptr;
    cudaError_t err = cudaMallocAsync((void**)&partial, (size_t)(outer * chunks * inner) * sizeof(Acc), s);
    if (err != cudaSuccess) return err;
    reducePartials<<<gridFor(outer * chunks * inner), kThreads, 0, s>>>(op, dtype, x, partial, outer, len, inner, chunk, chunks);
    reduceFinish<<<gridFor(n), kThreads, 0, s>>>(op, dtype, partial, out, outer, chunks, inner);
    cudaFreeAsync(partial, s);
  } else reduceColumns<<<gridFor(n), kThreads, 0, s>>>(op, dtype, x, out, outer, len, inner);
  return cudaGetLastError();
}

}  // namespace kiln
