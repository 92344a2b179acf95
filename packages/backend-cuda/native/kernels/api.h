// Host-side launchers of kiln's CUDA kernels. All are stream-ordered and never synchronise;
// they return the launch error (cudaGetLastError) for the caller to turn into a kiln error.
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>
#include "types.h"

namespace kiln {

// Elementwise (elementwise.cu). Ops use the index of the name in core's UNARY_OPS / BINARY_OPS.
cudaError_t launchUnary(int op, int dtype, int outDtype, const void* x, void* out, int64_t n, cudaStream_t s);
// a/b are read through strided views over the output shape (broadcast dims have stride 0).
cudaError_t launchBinary(int op, int dtype, int outDtype, const void* a, const Strided& av, const void* b,
                         const Strided& bv, void* out, int64_t n, bool contiguous, cudaStream_t s);
cudaError_t launchWhere(int elemBytes, const uint8_t* cond, const Strided& cv, const void* a, const Strided& av,
                        const void* b, const Strided& bv, void* out, int64_t n, cudaStream_t s);
cudaError_t launchFill(int elemBytes, uint32_t code, void* out, int64_t n, cudaStream_t s);
// distribution 0 = uniform [a, b), 1 = normal(mean a, std b).
cudaError_t launchRandom(int distribution, uint32_t seed, float a, float b, float* out, int64_t n, cudaStream_t s);
cudaError_t launchCast(int from, int to, bool saturate, const void* x, void* out, int64_t n, cudaStream_t s);

// Reductions (reduce.cu): x viewed as [outer, len, inner], reduced over len.
cudaError_t launchReduce(int op, int dtype, const void* x, void* out, int64_t outer, int64_t len, int64_t inner,
                         cudaStream_t s);

// Layout and indexing (layout.cu).
cudaError_t launchStridedCopy(int elemBytes, const void* src, const Strided& sv, void* dst, int64_t n, cudaStream_t s);
// dst[dv(i)] = src[sv(i)]: writes into a strided region of dst (concat's destination slices).
cudaError_t launchStridedCopyTo(int elemBytes, const void* src, const Strided& sv, void* dst, const Strided& dv, int64_t n,
                                cudaStream_t s);
// gather: out (the shape of indices) reads x at the same coordinates except along the axis,
// whose coordinate comes from indices. xv: shape = indices' shape, strides = x's strides with
// the axis stride set to 0; axisStride = x's stride along the axis.
cudaError_t launchGather(int elemBytes, const void* x, const Strided& xv, int64_t axisStride, const int32_t* idx,
                         void* out, int64_t n, cudaStream_t s);
// indexSelect: x [outer, len, inner] -> out [outer, nIdx, inner].
cudaError_t launchIndexSelect(int elemBytes, const void* x, int64_t outer, int64_t len, int64_t inner,
                              const int32_t* idx, int64_t nIdx, void* out, cudaStream_t s);
// scatterAdd into out (a copy of base): out[... idx ...] += src; src and indices share a shape,
// outv/axisStride describe out as xv/axisStride do for gather.
cudaError_t launchScatterAdd(int dtype, void* out, const Strided& outv, int64_t axisStride, const int32_t* idx,
                             const void* src, int64_t n, cudaStream_t s);
// indexAdd into out (a copy of base) viewed [outer, len, inner]; src [outer, nIdx, inner].
cudaError_t launchIndexAdd(int dtype, void* out, int64_t outer, int64_t len, int64_t inner, const int32_t* idx,
                           int64_t nIdx, const void* src, cudaStream_t s);

// Matmul (matmul.cu): batched, per-batch element offsets given by strides (0 = broadcast).
cudaError_t launchMatmul(int dtype, const void* a, const void* b, void* c, int batch, int64_t aBatchStride,
                         int64_t bBatchStride, int M, int N, int K, bool transA, bool transB, cudaStream_t s);

// FP8 (fp8.cu).
cudaError_t launchQuantizeBlockwise(const float* x, int rows, int cols, int br, int bc, int format, int ue8m0,
                                    uint8_t* codes, float* scales, cudaStream_t s);
// Exact-f32 (or limited-accumulator model) block-scaled FP8 GEMM on CUDA cores: a [M,K] x b [N,K]^T.
// promotion <= 0 means Infinity; mantBits < 0 means exact f32 accumulation.
cudaError_t launchFp8GemmReference(const uint8_t* a, const float* sa, int aFormat, int abr, int abc,
                                   const uint8_t* b, const float* sb, int bFormat, int bbr, int bbc, float* out,
                                   int M, int N, int K, int promotion, int mantBits, int groupSize, int nearest,
                                   cudaStream_t s);

// Fused (fused.cu): rows x cols, last axis.
cudaError_t launchSoftmax(const float* x, float* out, int64_t rows, int64_t cols, bool log, cudaStream_t s);
cudaError_t launchRmsNorm(const float* x, const float* w, float* out, int64_t rows, int64_t cols, float eps,
                          cudaStream_t s);
cudaError_t launchSwiglu(const float* g, const float* u, float* out, int64_t n, cudaStream_t s);

// Optimizer (optim.cu): AdamW in place on master p and moments m, v (f32, or bf16 codes).
cudaError_t launchAdamw(float* p, void* m, void* v, const float* g, int64_t n, int bf16Moments, double b1, double b2,
                        double bc1, double bc2, double eps, double lr, double decay, double gradScale, cudaStream_t s);
cudaError_t launchSumSquares(const float* x, int64_t n, double* acc, cudaStream_t s);

}  // namespace kiln
