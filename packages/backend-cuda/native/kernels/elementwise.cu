// Elementwise kernels: unary, broadcasting binary, where, fill, counter-based random, casts.
// Float math runs in double and rounds once to f32, as the CPU reference does, so results
// agree to the last bit for the IEEE ops and within an ulp for the transcendental ones.
#include <math.h>
#include "api.h"
#include "common.cuh"

namespace kiln {

enum Unary { NEG, ABS, SIGN, SQUARE, SQRT, RSQRT, RECIP, EXP, LOG, SIN, COS, TANH, SIGMOID, RELU, ERF, FLOOR, CEIL,
             ROUND, NOT, ISNAN };
enum Binary { ADD, SUB, MUL, DIV, POW, MAXIMUM, MINIMUM, MOD, EQ, NE, LT, LE, GT, GE, AND, OR };

__device__ __forceinline__ float unaryF(int op, float x) {
  switch (op) {
    case NEG: return -x;
    case ABS: return fabsf(x);
    case SIGN: return x > 0.f ? 1.f : (x < 0.f ? -1.f : x);  // keeps +-0 and NaN
    case SQUARE: return __fmul_rn(x, x);
    case SQRT: return __fsqrt_rn(x);
    case RSQRT: return (float)(1.0 / sqrt((double)x));
    case RECIP: return __frcp_rn(x);
    case EXP: return (float)exp((double)x);
    case LOG: return (float)log((double)x);
    case SIN: return (float)sin((double)x);
    case COS: return (float)cos((double)x);
    case TANH: return (float)tanh((double)x);
    case SIGMOID: {
      double d = x;
      if (d >= 0) return (float)(1.0 / (1.0 + exp(-d)));
      double e = exp(d);
      return (float)(e / (1.0 + e));
    }
    case RELU: return x > 0.f ? x : (x != x ? x : 0.f);
    case ERF: return (float)erf((double)x);
    case FLOOR: return floorf(x);
    case CEIL: return ceilf(x);
    case ROUND: return rintf(x);  // half to even
    default: return x;
  }
}

__device__ __forceinline__ bool floatOnly(int op) {
  return op == SQRT || op == RSQRT || op == RECIP || op == EXP || op == LOG || op == SIN || op == COS || op == TANH ||
         op == SIGMOID || op == ERF;
}

__device__ __forceinline__ int32_t unaryI(int op, int32_t x) {
  switch (op) {
    case NEG: return (int32_t)(0u - (uint32_t)x);
    case ABS: return x < 0 ? (int32_t)(0u - (uint32_t)x) : x;
    case SIGN: return x > 0 ? 1 : (x < 0 ? -1 : 0);
    case SQUARE: return (int32_t)((uint32_t)x * (uint32_t)x);
    case RELU: return x > 0 ? x : 0;
    default: return x;  // floor/ceil/round are the identity on integers
  }
}

__global__ void unaryKernel(int op, int dtype, int outDtype, const void* x, void* out, int64_t n) {
  KILN_GRID_STRIDE(i, n) {
    if (op == ISNAN) {
      ((uint8_t*)out)[i] = dtype == F32 ? (uint8_t)(((const float*)x)[i] != ((const float*)x)[i]) : 0;
      continue;
    }
    if (op == NOT) {
      bool z = dtype == F32 ? ((const float*)x)[i] == 0.f
               : dtype == I32 ? ((const int32_t*)x)[i] == 0 : ((const uint8_t*)x)[i] == 0;
      ((uint8_t*)out)[i] = z;
      continue;
    }
    if (dtype == F32) {
      ((float*)out)[i] = unaryF(op, ((const float*)x)[i]);
      continue;
    }
    int32_t v = dtype == I32 ? ((const int32_t*)x)[i] : (int32_t)((const uint8_t*)x)[i];
    if (floatOnly(op)) {
      ((float*)out)[i] = unaryF(op, __int2float_rn(v));
      continue;
    }
    int32_t r = unaryI(op, v);
    if (outDtype == I32) ((int32_t*)out)[i] = r;
    else ((uint8_t*)out)[i] = (uint8_t)(r & 0xff);
  }
}

cudaError_t launchUnary(int op, int dtype, int outDtype, const void* x, void* out, int64_t n, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  unaryKernel<<<gridFor(n), kThreads, 0, s>>>(op, dtype, outDtype, x, out, n);
  return cudaGetLastError();
}

// ---- binary -------------------------------------------------------------------------------
__device__ __forceinline__ float maxF(float a, float b) {
  if (a != a || b != b) return __int_as_float(0x7fc00000);
  if (a > b) return a;
  if (b > a) return b;
  return (signbit(a) && signbit(b)) ? a : fabsf(a);  // max(-0, 0) = 0
}
__device__ __forceinline__ float minF(float a, float b) {
  if (a != a || b != b) return __int_as_float(0x7fc00000);
  if (a < b) return a;
  if (b < a) return b;
  return (signbit(a) || signbit(b)) ? -fabsf(a) : a;  // min(-0, 0) = -0
}
__device__ __forceinline__ float floorModF(float af, float bf) {
  double a = af, b = bf;
  double r = fmod(a, b);
  if (r != 0) {
    if ((r < 0) != (b < 0)) r += b;
  } else {
    r = b < 0 ? -0.0 : 0.0;
  }
  return (float)r;
}
__device__ __forceinline__ float binaryF(int op, float a, float b) {
  switch (op) {
    case ADD: return __fadd_rn(a, b);
    case SUB: return __fsub_rn(a, b);
    case MUL: return __fmul_rn(a, b);
    case DIV: return __fdiv_rn(a, b);
    case POW: return (float)pow((double)a, (double)b);
    case MAXIMUM: return maxF(a, b);
    case MINIMUM: return minF(a, b);
    case MOD: return floorModF(a, b);
    default: return 0.f;
  }
}
// JavaScript's ToInt32 of a double (wraps modulo 2^32; NaN/inf -> 0).
__device__ __forceinline__ int32_t toInt32Wrap(double d) {
  if (!isfinite(d)) return 0;
  d = trunc(d);
  double m = fmod(d, 4294967296.0);
  if (m < 0) m += 4294967296.0;
  return (int32_t)(uint32_t)m;
}
__device__ __forceinline__ int32_t binaryI(int op, int32_t a, int32_t b) {
  switch (op) {
    case ADD: return (int32_t)((uint32_t)a + (uint32_t)b);
    case SUB: return (int32_t)((uint32_t)a - (uint32_t)b);
    case MUL: return (int32_t)((uint32_t)a * (uint32_t)b);
    case DIV:
      if (b == 0) return 0;
      if (a == INT32_MIN && b == -1) return INT32_MIN;
      return a / b;
    case POW: return toInt32Wrap(pow((double)a, (double)b));
    case MAXIMUM: return a > b ? a : b;
    case MINIMUM: return a < b ? a : b;
    case MOD: {
      if (b == 0) return 0;
      if (b == -1) return 0;
      int32_t r = a % b;
      if (r != 0 && ((r < 0) != (b < 0))) r += b;
      return r;
    }
    default: return 0;
  }
}
template <typename T>
__device__ __forceinline__ uint8_t compare(int op, T a, T b) {
  switch (op) {
    case EQ: return a == b;
    case NE: return a != b;
    case LT: return a < b;
    case LE: return a <= b;
    case GT: return a > b;
    case GE: return a >= b;
    case AND: return (a != (T)0) & (b != (T)0);
    default: return (a != (T)0) | (b != (T)0);
  }
}

template <bool Contig>
__global__ void binaryKernel(int op, int dtype, int outDtype, const void* a, Strided av, const void* b, Strided bv,
                             void* out, int64_t n) {
  KILN_GRID_STRIDE(i, n) {
    int64_t ia = Contig ? i : stridedOffset(av, i);
    int64_t ib = Contig ? i : stridedOffset(bv, i);
    if (dtype == F32) {
      float x = ((const float*)a)[ia], y = ((const float*)b)[ib];
      if (op >= EQ) ((uint8_t*)out)[i] = compare<float>(op, x, y);
      else ((float*)out)[i] = binaryF(op, x, y);
    } else {
      int32_t x = dtype == I32 ? ((const int32_t*)a)[ia] : (int32_t)((const uint8_t*)a)[ia];
      int32_t y = dtype == I32 ? ((const int32_t*)b)[ib] : (int32_t)((const uint8_t*)b)[ib];
      if (op >= EQ) ((uint8_t*)out)[i] = compare<int32_t>(op, x, y);
      else if (outDtype == I32) ((int32_t*)out)[i] = binaryI(op, x, y);
      else ((uint8_t*)out)[i] = (uint8_t)(binaryI(op, x, y) & 0xff);
    }
  }
}

cudaError_t launchBinary(int op, int dtype, int outDtype, const void* a, const Strided& av, const void* b,
                         const Strided& bv, void* out, int64_t n, bool contiguous, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  if (contiguous) binaryKernel<true><<<gridFor(n), kThreads, 0, s>>>(op, dtype, outDtype, a, av, b, bv, out, n);
  else binaryKernel<false><<<gridFor(n), kThreads, 0, s>>>(op, dtype, outDtype, a, av, b, bv, out, n);
  return cudaGetLastError();
}

// ---- where ---------------------------------------------------------------------------------
template <typename T>
__global__ void whereKernel(const uint8_t* c, Strided cv, const T* a, Strided av, const T* b, Strided bv, T* out,
                            int64_t n) {
  KILN_GRID_STRIDE(i, n) {
    out[i] = c[stridedOffset(cv, i)] ? a[stridedOffset(av, i)] : b[stridedOffset(bv, i)];
  }
}
cudaError_t launchWhere(int elemBytes, const uint8_t* cond, const Strided& cv, const void* a, const Strided& av,
                        const void* b, const Strided& bv, void* out, int64_t n, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  unsigned g = gridFor(n);
  if (elemBytes == 4)
    whereKernel<uint32_t><<<g, kThreads, 0, s>>>(cond, cv, (const uint32_t*)a, av, (const uint32_t*)b, bv, (uint32_t*)out, n);
  else if (elemBytes == 2)
    whereKernel<uint16_t><<<g, kThreads, 0, s>>>(cond, cv, (const uint16_t*)a, av, (const uint16_t*)b, bv, (uint16_t*)out, n);
  else
    whereKernel<uint8_t><<<g, kThreads, 0, s>>>(cond, cv, (const uint8_t*)a, av, (const uint8_t*)b, bv, (uint8_t*)out, n);
  return cudaGetLastError();
}

// ---- fill / random -----------------------------------------------------------------------------
template <typename T>
__global__ void fillKernel(T code, T* out, int64_t n) {
  KILN_GRID_STRIDE(i, n) out[i] = code;
}
cudaError_t launchFill(int elemBytes, uint32_t code, void* out, int64_t n, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  if (elemBytes == 4) fillKernel<uint32_t><<<gridFor(n), kThreads, 0, s>>>(code, (uint32_t*)out, n);
  else if (elemBytes == 2) fillKernel<uint16_t><<<gridFor(n), kThreads, 0, s>>>((uint16_t)code, (uint16_t*)out, n);
  else fillKernel<uint8_t><<<gridFor(n), kThreads, 0, s>>>((uint8_t)code, (uint8_t*)out, n);
  return cudaGetLastError();
}

// core's random.ts: a 32-bit xor-shift-multiply mixer keyed by the seed, one counter per value.
__device__ __forceinline__ uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}
__device__ __forceinline__ uint32_t randomBits(uint32_t key, uint32_t counter) { return mix32((counter * 0x85ebca6bu) ^ key); }

__global__ void randomKernel(int distribution, uint32_t key, float a, float b, float* out, int64_t n) {
  KILN_GRID_STRIDE(i, n) {
    if (distribution == 0) {
      float u = (float)(randomBits(key, (uint32_t)i) >> 8) * 5.9604644775390625e-8f;
      float range = __fsub_rn(b, a);
      out[i] = __fadd_rn(a, __fmul_rn(range, u));
    } else {
      double u1 = ((double)(randomBits(key, (uint32_t)(2 * i)) >> 8) + 1.0) * 5.9604644775390625e-8;
      double u2 = (double)(randomBits(key, (uint32_t)(2 * i + 1)) >> 8) * 5.9604644775390625e-8;
      double z = sqrt(-2.0 * log(u1)) * cos(2.0 * 3.141592653589793 * u2);
      out[i] = (float)((double)a + (double)b * z);
    }
  }
}
cudaError_t launchRandom(int distribution, uint32_t seed, float a, float b, float* out, int64_t n, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  // key = mix32(seed ^ 0x9e3779b9), computed on the host with the same mixer.
  uint32_t k = seed ^ 0x9e3779b9u;
  k ^= k >> 16; k *= 0x7feb352du; k ^= k >> 15; k *= 0x846ca68bu; k ^= k >> 16;
  randomKernel<<<gridFor(n), kThreads, 0, s>>>(distribution, k, a, b, out, n);
  return cudaGetLastError();
}

// ---- casts ---------------------------------------------------------------------------------------
__device__ __forceinline__ void storeFromFloat(void* out, int to, int64_t i, float v, bool sat) {
  switch (to) {
    case F32: ((float*)out)[i] = v; break;
    case F16: ((uint16_t*)out)[i] = encodeF16(v, sat); break;
    case BF16: ((uint16_t*)out)[i] = encodeBf16(v); break;
    case E4M3: ((uint8_t*)out)[i] = encodeE4M3(v, sat); break;
    case E5M2: ((uint8_t*)out)[i] = encodeE5M2(v, sat); break;
    case I32: ((int32_t*)out)[i] = v != v ? 0 : v >= 2147483647.f ? 2147483647 : v <= -2147483648.f ? INT32_MIN : (int32_t)truncf(v); break;
    case U8: ((uint8_t*)out)[i] = v != v ? 0 : v >= 255.f ? 255 : v <= 0.f ? 0 : (uint8_t)truncf(v); break;
    default: ((uint8_t*)out)[i] = v != 0.f; break;
  }
}
__global__ void castKernel(int from, int to, bool sat, const void* x, void* out, int64_t n) {
  KILN_GRID_STRIDE(i, n) {
    if (to == BOOL) {
      bool nz;
      switch (from) {
        case F16: case BF16: nz = (((const uint16_t*)x)[i] & 0x7fff) != 0; break;
        case E4M3: case E5M2: nz = (((const uint8_t*)x)[i] & 0x7f) != 0; break;
        case F32: nz = ((const float*)x)[i] != 0.f; break;
        case I32: nz = ((const int32_t*)x)[i] != 0; break;
        default: nz = ((const uint8_t*)x)[i] != 0;
      }
      ((uint8_t*)out)[i] = nz;
      continue;
    }
    if (from == I32 || from == U8 || from == BOOL) {
      int32_t v = from == I32 ? ((const int32_t*)x)[i] : (int32_t)((const uint8_t*)x)[i];
      if (from == BOOL) v = v != 0;
      if (to == I32) ((int32_t*)out)[i] = v;
      else if (to == U8) ((uint8_t*)out)[i] = (uint8_t)(v & 0xff);
      else storeFromFloat(out, to, i, __int2float_rn(v), sat);
      continue;
    }
    storeFromFloat(out, to, i, loadAsFloat(x, from, i), sat);
  }
}
cudaError_t launchCast(int from, int to, bool saturate, const void* x, void* out, int64_t n, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  if (from == to) return cudaMemcpyAsync(out, x, n * dtypeBytes(from), cudaMemcpyDeviceToDevice, s);
  castKernel<<<gridFor(n), kThreads, 0, s>>>(from, to, saturate, x, out, n);
  return cudaGetLastError();
}

}  // namespace kiln
