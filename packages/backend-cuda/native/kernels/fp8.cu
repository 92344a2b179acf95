// Fine-grained FP8 quantisation and the exact (CUDA-core) block-scaled FP8 GEMM. Both follow
// core's definitions operation for operation, so they are bit-exact with the CPU reference;
// the tensor-core GEMM (fp8_gemm_sm90.cu) is the fast path for the shapes it supports.
#include <math.h>
#include "api.h"
#include "common.cuh"

namespace kiln {

__device__ __forceinline__ float roundScaleUpToPow2(float s) {
  uint32_t bits = floatBits(s);
  uint32_t exp = (bits >> 23) & 0xff, frac = bits & 0x7fffff;
  if (exp == 0) {
    float p = 1.40129846e-45f;  // 2^-149
    while (p < s) p *= 2.f;
    return p;
  }
  if (frac == 0) return s;
  return bitsToFloat((exp + 1) << 23);
}

// One block per [br, bc] quantisation block.
__global__ void quantizeBlockwiseKernel(const float* x, int rows, int cols, int br, int bc, int format, int ue8m0,
                                        uint8_t* codes, float* scales, int nc, float invMax, float amaxFloor) {
  const int bi = blockIdx.y, bj = blockIdx.x;
  const int r0 = bi * br, r1 = min(rows, r0 + br), c0 = bj * bc, c1 = min(cols, c0 + bc);
  const int w = c1 - c0, count = (r1 - r0) * w;
  float amax = 0.f;
  int nan = 0;
  for (int t = threadIdx.x; t < count; t += blockDim.x) {
    float a = fabsf(x[(int64_t)(r0 + t / w) * cols + c0 + t % w]);
    if (a != a) nan = 1;
    else amax = fmaxf(amax, a);
  }
  __shared__ float sMax[32];
  __shared__ int sNan[32];
  for (int off = 16; off > 0; off >>= 1) {
    amax = fmaxf(amax, __shfl_down_sync(0xffffffffu, amax, off));
    nan |= __shfl_down_sync(0xffffffffu, nan, off);
  }
  if ((threadIdx.x & 31) == 0) { sMax[threadIdx.x >> 5] = amax; sNan[threadIdx.x >> 5] = nan; }
  __syncthreads();
  __shared__ float sScale;
  if (threadIdx.x == 0) {
    float m = 0.f;
    int anyNan = 0;
    for (int i = 0; i < (int)(blockDim.x >> 5); ++i) { m = fmaxf(m, sMax[i]); anyNan |= sNan[i]; }
    if (anyNan) m = __int_as_float(0x7fc00000);
    else if (m < amaxFloor) m = amaxFloor;
    float s = __fmul_rn(m, invMax);
    if (ue8m0 && isfinite(s)) s = roundScaleUpToPow2(s);
    scales[bi * nc + bj] = s;
    sScale = s;
  }
  __syncthreads();
  const float s = sScale;
  for (int t = threadIdx.x; t < count; t += blockDim.x) {
    int64_t i = (int64_t)(r0 + t / w) * cols + c0 + t % w;
    float q = __fdiv_rn(x[i], s);
    codes[i] = format == E4M3 ? encodeE4M3(q, false) : encodeE5M2(q, false);
  }
}

cudaError_t launchQuantizeBlockwise(const float* x, int rows, int cols, int br, int bc, int format, int ue8m0,
                                    uint8_t* codes, float* scales, cudaStream_t s) {
  if (rows == 0 || cols == 0) return cudaSuccess;
  int nr = (rows + br - 1) / br, nc = (cols + bc - 1) / bc;
  int per = br * bc;
  int threads = per >= 1024 ? 512 : per >= 256 ? 256 : 128;
  // f32(1 / max_fp8) and f32(1e-4), rounded on the host exactly as core rounds them.
  const float invMax = (float)(1.0 / (format == E4M3 ? 448.0 : 57344.0));
  const float amaxFloor = (float)1e-4;
  quantizeBlockwiseKernel<<<dim3(nc, nr), threads, 0, s>>>(x, rows, cols, br, bc, format, ue8m0, codes, scales, nc,
                                                           invMax, amaxFloor);
  return cudaGetLastError();
}

// ---- exact / emulated GEMM -------------------------------------------------------------------------
__device__ __forceinline__ double roundToMantissaBits(double x, int bits, int nearest) {
  if (x == 0 || !isfinite(x)) return x;
  int e;
  frexp(fabs(x), &e);  // |x| = m * 2^e, m in [0.5, 1)
  double quantum = ldexp(1.0, (e - 1) - bits);
  double q = x / quantum;
  double r = nearest ? rint(q) : trunc(q);
  return r * quantum;
}

constexpr int TILE = 16, TK = 32;

// Each thread owns one output and walks K in order (so its sums round exactly as the
// reference's); the block stages decoded 16x32 tiles of A and B in shared memory.
__global__ void fp8GemmReferenceKernel(const uint8_t* a, const float* sa, int aFormat, int abr, int abc,
                                       const uint8_t* b, const float* sb, int bFormat, int bbr, int bbc, float* out,
                                       int M, int N, int K, int chunk, int mantBits, int groupSize, int nearest,
                                       float* partials) {
  // With `partials`, block z computes promotion chunk z alone and stores its scaled partial
  // (the value the reference adds to its f32 accumulator); a second pass adds them in order.
  const int kStart = partials ? blockIdx.z * chunk : 0;
  const int kStop = partials ? min(K, kStart + chunk) : K;
  __shared__ float As[TILE][TK + 1];
  __shared__ float Bs[TILE][TK + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int m = blockIdx.y * TILE + ty, n = blockIdx.x * TILE + tx;
  const int kbA = (K + abc - 1) / abc, kbB = (K + bbc - 1) / bbc;
  float acc32 = 0.f, partial = 0.f;
  double partialD = 0.0, groupSum = 0.0;
  int inGroup = 0;
  int k0 = kStart;  // start of the current promotion chunk
  const int tid = ty * TILE + tx;
  for (int kt = kStart; kt < kStop; kt += TK) {
    for (int t = tid; t < TILE * TK; t += TILE * TILE) {
      int r = t / TK, c = t % TK;
      int gm = blockIdx.y * TILE + r, gn = blockIdx.x * TILE + r, gk = kt + c;
      As[r][c] = (gm < M && gk < kStop) ? (aFormat == E4M3 ? decodeE4M3(a[(int64_t)gm * K + gk]) : decodeE5M2(a[(int64_t)gm * K + gk])) : 0.f;
      Bs[r][c] = (gn < N && gk < kStop) ? (bFormat == E4M3 ? decodeE4M3(b[(int64_t)gn * K + gk]) : decodeE5M2(b[(int64_t)gn * K + gk])) : 0.f;
    }
    __syncthreads();
    if (m < M && n < N) {
      const int kEnd = min(TK, kStop - kt);
      for (int c = 0; c < kEnd; ++c) {
        const int k = kt + c;
        const float p = __fmul_rn(As[ty][c], Bs[tx][c]);
        if (mantBits < 0) partial = __fadd_rn(partial, p);
        else {
          groupSum += (double)p;
          if (++inGroup == groupSize) {
            partialD = roundToMantissaBits(partialD + groupSum, mantBits, nearest);
            groupSum = 0.0;
            inGroup = 0;
          }
        }
        if (k + 1 == kStop || k + 1 - k0 == chunk) {
          if (mantBits >= 0 && inGroup > 0) {
            partialD = roundToMantissaBits(partialD + groupSum, mantBits, nearest);
            groupSum = 0.0;
            inGroup = 0;
          }
          const float s = __fmul_rn(sa[(m / abr) * kbA + k0 / abc], sb[(n / bbr) * kbB + k0 / bbc]);
          const float pv = mantBits < 0 ? partial : (float)partialD;
          acc32 = __fadd_rn(acc32, mantBits < 0 ? __fmul_rn(pv, s) : (float)(partialD * (double)s));
          partial = 0.f;
          partialD = 0.0;
          k0 = k + 1;
        }
      }
    }
    __syncthreads();
  }
  if (m < M && n < N) {
    if (partials) partials[(int64_t)blockIdx.z * M * N + (int64_t)m * N + n] = acc32;
    else out[(int64_t)m * N + n] = acc32;
  }
}

// out = (((0 + p_0) + p_1) + ...) in f32, chunk by chunk in order: the reference's accumulator.
__global__ void sumChunkPartials(const float* partials, float* out, int64_t mn, int chunks) {
  KILN_GRID_STRIDE(i, mn) {
    float acc = 0.f;
    for (int c = 0; c < chunks; ++c) acc = __fadd_rn(acc, partials[(int64_t)c * mn + i]);
    out[i] = acc;
  }
}

cudaError_t launchFp8GemmReference(const uint8_t* a, const float* sa, int aFormat, int abr, int abc,
                                   const uint8_t* b, const float* sb, int bFormat, int bbr, int bbc, float* out,
                                   int M, int N, int K, int promotion, int mantBits, int groupSize, int nearest,
                                   cudaStream_t s) {
  if (M == 0 || N == 0) return cudaSuccess;
  if (K == 0) return cudaMemsetAsync(out, 0, (size_t)M * N * sizeof(float), s);
  int chunk = promotion <= 0 ? K : promotion;
  const int chunks = (K + chunk - 1) / chunk;
  const int64_t mn = (int64_t)M * N;
  dim3 grid((N + TILE - 1) / TILE, (M + TILE - 1) / TILE);
  // Long K with few outputs (the Wgrad GEMM: K = tokens): one block per (tile, chunk), so the
  // chunks run in parallel; the in-order sum keeps the result bit-exact.
  if (chunks >= 4 && (size_t)chunks * mn * 4 <= ((size_t)256 << 20)) {
    float* partials = nullptr;
    cudaError_t err = cudaMallocAsync((void**)&partials, (size_t)chunks * mn * 4, s);
    if (err != cudaSuccess) return err;
    grid.z = chunks;
    fp8GemmReferenceKernel<<<grid, dim3(TILE, TILE), 0, s>>>(a, sa, aFormat, abr, abc, b, sb, bFormat, bbr, bbc, out, M, N, K,
                                                            chunk, mantBits, groupSize < 1 ? 1 : groupSize, nearest, partials);
    sumChunkPartials<<<gridFor(mn), kThreads, 0, s>>>(partials, out, mn, chunks);
    cudaFreeAsync(partials, s);
    return cudaGetLastError();
  }
  fp8GemmReferenceKernel<<<grid, dim3(TILE, TILE), 0, s>>>(a, sa, aFormat, abr, abc, b, sb, bFormat, bbr, bbc, out, M, N, K,
                                                          chunk, mantBits, groupSize < 1 ? 1 : groupSize, nearest, nullptr);
  return cudaGetLastError();
}

}  // namespace kiln
