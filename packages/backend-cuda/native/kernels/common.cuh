// Shared device code for kiln's CUDA kernels: dtype codes, exact codecs, index helpers.
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>
#include "types.h"

namespace kiln {

__device__ __forceinline__ int64_t stridedOffset(const Strided& s, int64_t linear) {
  int64_t off = s.offset;
  for (int d = s.ndim - 1; d >= 0; --d) {
    int64_t i = linear % s.shape[d];
    linear /= s.shape[d];
    off += i * s.stride[d];
  }
  return off;
}

__device__ __forceinline__ float bitsToFloat(uint32_t b) { return __uint_as_float(b); }
__device__ __forceinline__ uint32_t floatBits(float f) { return __float_as_uint(f); }

// ---- exact decoders -------------------------------------------------------------------
__device__ __forceinline__ float decodeF16(uint16_t c) {
  uint32_t sign = (c & 0x8000u) << 16, e = (c >> 10) & 0x1f, m = c & 0x3ff;
  if (e == 0x1f) return bitsToFloat(sign | 0x7f800000u | (m << 13));
  if (e == 0) {
    float v = (float)m * 5.9604644775390625e-8f;  // m * 2^-24, exact
    return sign ? -v : v;
  }
  return bitsToFloat(sign | ((e + 112) << 23) | (m << 13));
}
__device__ __forceinline__ float decodeBf16(uint16_t c) { return bitsToFloat((uint32_t)c << 16); }
__device__ __forceinline__ float decodeE4M3(uint8_t c) {
  uint32_t mag = c & 0x7f;
  float v;
  if (mag == 0x7f) v = __int_as_float(0x7fc00000);
  else {
    uint32_t e = mag >> 3, m = mag & 7;
    v = e == 0 ? (float)m * 0.001953125f /* 2^-9 */ : bitsToFloat(((e + 120) << 23) | (m << 20));
  }
  return (c & 0x80) ? -v : v;
}
__device__ __forceinline__ float decodeE5M2(uint8_t c) {
  return decodeF16((uint16_t)c << 8);
}

// ---- exact round-half-to-even encoders (the rules of core's encodeMinifloat) -------------
// mantBits/bias/maxFinite/overflow/nan/inf/totalBits describe the target format.
__device__ __forceinline__ uint32_t encodeMinifloat(float x, int mantBits, int bias, uint32_t maxFinite,
                                                     uint32_t overflowCode, uint32_t nanCode, uint32_t infCode,
                                                     int totalBits, bool saturate) {
  uint32_t bits = floatBits(x);
  uint32_t sign = (bits >> 31) ? (1u << (totalBits - 1)) : 0u;
  uint32_t a = bits & 0x7fffffffu;
  uint32_t expField = a >> 23, frac = a & 0x7fffffu;
  if (expField == 0xff) {
    if (frac) return sign | nanCode;
    return sign | (saturate ? maxFinite : infCode);
  }
  if (a == 0) return sign;
  int e;
  uint32_t m;
  if (expField == 0) { e = -126; m = frac; } else { e = (int)expField - 127; m = frac | 0x800000u; }
  while (m < 0x800000u) { m <<= 1; e -= 1; }
  int eminTarget = 1 - bias;
  int te = e < eminTarget ? eminTarget : e;
  int shift = 23 - mantBits + (te - e);
  uint32_t q;
  if (shift > 25) q = 0;
  else {
    q = m >> shift;
    uint32_t rem = m - (q << shift);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q += 1;
  }
  uint32_t code = (uint32_t)(te + bias - 1) * (1u << mantBits) + q;
  if (code > maxFinite) return sign | (saturate ? maxFinite : overflowCode);
  return sign | code;
}
__device__ __forceinline__ uint8_t encodeE4M3(float x, bool sat) {
  return (uint8_t)encodeMinifloat(x, 3, 7, 0x7e, 0x7f, 0x7f, 0x7f, 8, sat);
}
__device__ __forceinline__ uint8_t encodeE5M2(float x, bool sat) {
  return (uint8_t)encodeMinifloat(x, 2, 15, 0x7b, 0x7c, 0x7f, 0x7c, 8, sat);  // NaN -> 0x7f, as torch
}
__device__ __forceinline__ uint16_t encodeF16(float x, bool sat) {
  return (uint16_t)encodeMinifloat(x, 10, 15, 0x7bff, 0x7c00, 0x7e00, 0x7c00, 16, sat);
}
__device__ __forceinline__ uint16_t encodeBf16(float x) {
  uint32_t b = floatBits(x);
  if ((b & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
  uint32_t lsb = (b >> 16) & 1u;
  return (uint16_t)((b + 0x7fffu + lsb) >> 16);
}

// Reads element i of a float-valued storage dtype as f32.
__device__ __forceinline__ float loadAsFloat(const void* p, int dtype, int64_t i) {
  switch (dtype) {
    case F32: return ((const float*)p)[i];
    case F16: return decodeF16(((const uint16_t*)p)[i]);
    case BF16: return decodeBf16(((const uint16_t*)p)[i]);
    case E4M3: return decodeE4M3(((const uint8_t*)p)[i]);
    case E5M2: return decodeE5M2(((const uint8_t*)p)[i]);
    case I32: return __int2float_rn(((const int32_t*)p)[i]);
    default: return (float)((const uint8_t*)p)[i];
  }
}

// ---- launch geometry --------------------------------------------------------------------
constexpr int kThreads = 256;
inline unsigned gridFor(int64_t n, int threads = kThreads) {
  int64_t g = (n + threads - 1) / threads;
  if (g > 65535LL * 32) g = 65535LL * 32;  // grid-stride loops cover the rest
  return (unsigned)(g < 1 ? 1 : g);
}
#define KILN_GRID_STRIDE(i, n) \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

}  // namespace kiln
