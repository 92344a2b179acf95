// Layout copies (slice, transpose, concat, broadcast-expand are all one strided gather into a
// contiguous output) and the indexing primitives.
#include "api.h"
#include "common.cuh"

namespace kiln {

template <typename T>
__global__ void stridedCopyKernel(const T* src, Strided sv, T* dst, int64_t n) {
  KILN_GRID_STRIDE(i, n) dst[i] = src[stridedOffset(sv, i)];
}
template <typename T>
__global__ void contiguousRowsCopy(const T* src, int64_t offset, T* dst, int64_t n) {
  KILN_GRID_STRIDE(i, n) dst[i] = src[offset + i];
}

cudaError_t launchStridedCopy(int elemBytes, const void* src, const Strided& sv, void* dst, int64_t n, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  // A view that is contiguous in the source is one memcpy.
  bool contiguous = true;
  int64_t expect = 1;
  for (int d = sv.ndim - 1; d >= 0; --d) {
    if (sv.shape[d] != 1 && sv.stride[d] != expect) { contiguous = false; break; }
    expect *= sv.shape[d];
  }
  if (contiguous)
    return cudaMemcpyAsync(dst, (const char*)src + sv.offset * elemBytes, n * elemBytes, cudaMemcpyDeviceToDevice, s);
  unsigned g = gridFor(n);
  switch (elemBytes) {
    case 4: stridedCopyKernel<uint32_t><<<g, kThreads, 0, s>>>((const uint32_t*)src, sv, (uint32_t*)dst, n); break;
    case 2: stridedCopyKernel<uint16_t><<<g, kThreads, 0, s>>>((const uint16_t*)src, sv, (uint16_t*)dst, n); break;
    default: stridedCopyKernel<uint8_t><<<g, kThreads, 0, s>>>((const uint8_t*)src, sv, (uint8_t*)dst, n); break;
  }
  return cudaGetLastError();
}

template <typename T>
__global__ void stridedCopyToKernel(const T* src, Strided sv, T* dst, Strided dv, int64_t n) {
  KILN_GRID_STRIDE(i, n) dst[stridedOffset(dv, i)] = src[stridedOffset(sv, i)];
}
cudaError_t launchStridedCopyTo(int elemBytes, const void* src, const Strided& sv, void* dst, const Strided& dv, int64_t n,
                                cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  unsigned g = gridFor(n);
  switch (elemBytes) {
    case 4: stridedCopyToKernel<uint32_t><<<g, kThreads, 0, s>>>((const uint32_t*)src, sv, (uint32_t*)dst, dv, n); break;
    case 2: stridedCopyToKernel<uint16_t><<<g, kThreads, 0, s>>>((const uint16_t*)src, sv, (uint16_t*)dst, dv, n); break;
    default: stridedCopyToKernel<uint8_t><<<g, kThreads, 0, s>>>((const uint8_t*)src, sv, (uint8_t*)dst, dv, n); break;
  }
  return cudaGetLastError();
}

template <typename T>
__global__ void gatherKernel(const T* x, Strided xv, int64_t axisStride, const int32_t* idx, T* out, int64_t n) {
  KILN_GRID_STRIDE(i, n) out[i] = x[stridedOffset(xv, i) + (int64_t)idx[i] * axisStride];
}
cudaError_t launchGather(int elemBytes, const void* x, const Strided& xv, int64_t axisStride, const int32_t* idx,
                         void* out, int64_t n, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  unsigned g = gridFor(n);
  switch (elemBytes) {
    case 4: gatherKernel<uint32_t><<<g, kThreads, 0, s>>>((const uint32_t*)x, xv, axisStride, idx, (uint32_t*)out, n); break;
    case 2: gatherKernel<uint16_t><<<g, kThreads, 0, s>>>((const uint16_t*)x, xv, axisStride, idx, (uint16_t*)out, n); break;
    default: gatherKernel<uint8_t><<<g, kThreads, 0, s>>>((const uint8_t*)x, xv, axisStride, idx, (uint8_t*)out, n); break;
  }
  return cudaGetLastError();
}

template <typename T>
__global__ void indexSelectKernel(const T* x, int64_t len, int64_t inner, const int32_t* idx, int64_t nIdx, T* out,
                                  int64_t n) {
  KILN_GRID_STRIDE(i, n) {
    int64_t j = i % inner, r = i / inner;
    int64_t k = r % nIdx, o = r / nIdx;
    out[i] = x[(o * len + idx[k]) * inner + j];
  }
}
cudaError_t launchIndexSelect(int elemBytes, const void* x, int64_t outer, int64_t len, int64_t inner,
                              const int32_t* idx, int64_t nIdx, void* out, cudaStream_t s) {
  int64_t n = outer * nIdx * inner;
  if (n == 0) return cudaSuccess;
  unsigned g = gridFor(n);
  switch (elemBytes) {
    case 4: indexSelectKernel<uint32_t><<<g, kThreads, 0, s>>>((const uint32_t*)x, len, inner, idx, nIdx, (uint32_t*)out, n); break;
    case 2: indexSelectKernel<uint16_t><<<g, kThreads, 0, s>>>((const uint16_t*)x, len, inner, idx, nIdx, (uint16_t*)out, n); break;
    default: indexSelectKernel<uint8_t><<<g, kThreads, 0, s>>>((const uint8_t*)x, len, inner, idx, nIdx, (uint8_t*)out, n); break;
  }
  return cudaGetLastError();
}

// Additions race on repeated indices, so they are atomic (f32 sums then depend on arrival
// order: equal to the CPU's sequential sum within f32 rounding, not bit for bit).
__global__ void scatterAddF32(float* out, Strided ov, int64_t axisStride, const int32_t* idx, const float* src, int64_t n) {
  KILN_GRID_STRIDE(i, n) atomicAdd(out + stridedOffset(ov, i) + (int64_t)idx[i] * axisStride, src[i]);
}
__global__ void scatterAddI32(int32_t* out, Strided ov, int64_t axisStride, const int32_t* idx, const int32_t* src, int64_t n) {
  KILN_GRID_STRIDE(i, n) atomicAdd(out + stridedOffset(ov, i) + (int64_t)idx[i] * axisStride, src[i]);
}
cudaError_t launchScatterAdd(int dtype, void* out, const Strided& outv, int64_t axisStride, const int32_t* idx,
                             const void* src, int64_t n, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  if (dtype == F32) scatterAddF32<<<gridFor(n), kThreads, 0, s>>>((float*)out, outv, axisStride, idx, (const float*)src, n);
  else scatterAddI32<<<gridFor(n), kThreads, 0, s>>>((int32_t*)out, outv, axisStride, idx, (const int32_t*)src, n);
  return cudaGetLastError();
}

template <typename T>
__global__ void indexAddKernel(T* out, int64_t len, int64_t inner, const int32_t* idx, int64_t nIdx, const T* src, int64_t n) {
  KILN_GRID_STRIDE(i, n) {
    int64_t j = i % inner, r = i / inner;
    int64_t k = r % nIdx, o = r / nIdx;
    atomicAdd(out + (o * len + idx[k]) * inner + j, src[i]);
  }
}
cudaError_t launchIndexAdd(int dtype, void* out, int64_t outer, int64_t len, int64_t inner, const int32_t* idx,
                           int64_t nIdx, const void* src, cudaStream_t s) {
  int64_t n = outer * nIdx * inner;
  if (n == 0) return cudaSuccess;
  if (dtype == F32) indexAddKernel<float><<<gridFor(n), kThreads, 0, s>>>((float*)out, len, inner, idx, nIdx, (const float*)src, n);
  else indexAddKernel<int32_t><<<gridFor(n), kThreads, 0, s>>>((int32_t*)out, len, inner, idx, nIdx, (const int32_t*)src, n);
  return cudaGetLastError();
}

}  // namespace kiln
