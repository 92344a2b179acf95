import type { PrimitiveMatmulOptions, Shape } from '@kiln/core';
import { broadcastStrides } from '@kiln/core';
import { sgemm } from '../gemm/index.js';
import { newF32, newI32 } from '../pool.js';
import { prod } from './plan.js';

/**
 * Batched matmul with broadcast batch dimensions. f32 goes to the GEMM engine (`sgemm`)
 * with one (a, b, c) offset triple per output matrix; i32 uses an exact wrapping loop.
 */
export function matmulKernel(
  a: Float32Array | Int32Array,
  aShape: Shape,
  b: Float32Array | Int32Array,
  bShape: Shape,
  options: PrimitiveMatmulOptions,
  outShape: Shape,
): Float32Array | Int32Array {
  const isF32 = a instanceof Float32Array;
  const rank = outShape.length;
  const m = outShape[rank - 2];
  const n = outShape[rank - 1];
  const k = options.transposeA ? aShape[aShape.length - 2] : aShape[aShape.length - 1];
  const batchShape = outShape.slice(0, -2);
  const batch = prod(batchShape);
  // sgemm overwrites its output; the i32 loop accumulates and an empty product is zeros.
  const zeroed = !isF32 || k === 0;
  const out = isF32 ? newF32(batch * m * n, zeroed) : newI32(batch * m * n, zeroed);
  if (out.length === 0 || k === 0) return out; // empty product: zeros

  const { aOffsets, bOffsets } = batchMatrixOffsets(aShape, bShape, batchShape, m * k, k * n);
  const cOffsets = new Float64Array(batch);
  for (let e = 0; e < batch; e++) cOffsets[e] = e * m * n;

  if (isF32) {
    sgemm({
      m,
      n,
      k,
      transA: options.transposeA,
      transB: options.transposeB,
      a: a as Float32Array,
      b: b as Float32Array,
      c: out as Float32Array,
      aOffsets,
      bOffsets,
      cOffsets,
    });
    return out;
  }
  imatmul(a as Int32Array, b as Int32Array, out as Int32Array, m, n, k, options, aOffsets, bOffsets, cOffsets);
  return out;
}

/** Exact int32 GEMM with wrap-around (Math.imul products, |0 sums), i-p-j order. */
function imatmul(
  a: Int32Array,
  b: Int32Array,
  c: Int32Array,
  m: number,
  n: number,
  k: number,
  options: PrimitiveMatmulOptions,
  aOffsets: Float64Array,
  bOffsets: Float64Array,
  cOffsets: Float64Array,
): void {
  // Element (i, p) of op(A) is at ao + i*ars + p*acs; (p, j) of op(B) at bo + p*brs + j*bcs.
  const ars = options.transposeA ? 1 : k;
  const acs = options.transposeA ? m : 1;
  const brs = options.transposeB ? 1 : n;
  const bcs = options.transposeB ? k : 1;
  for (let e = 0; e < cOffsets.length; e++) {
    const ao = aOffsets[e];
    const bo = bOffsets[e];
    const co = cOffsets[e];
    for (let i = 0; i < m; i++) {
      const crow = co + i * n;
      for (let p = 0; p < k; p++) {
        const av = a[ao + i * ars + p * acs];
        if (av === 0) continue;
        const brow = bo + p * brs;
        for (let j = 0; j < n; j++) c[crow + j] = (c[crow + j] + Math.imul(av, b[brow + j * bcs])) | 0;
      }
    }
  }
}

/**
 * Element offsets of each output matrix's A and B operands under broadcast batch dimensions
 * (an odometer over the batch dims, with strides counted in matrices of aMat / bMat elements).
 */
export function batchMatrixOffsets(aShape: Shape, bShape: Shape, batchShape: Shape, aMat: number, bMat: number): { aOffsets: Float64Array; bOffsets: Float64Array } {
  const batch = prod(batchShape);
  const aOffsets = new Float64Array(batch);
  const bOffsets = new Float64Array(batch);
  const aStr = broadcastStrides(aShape.slice(0, -2), batchShape);
  const bStr = broadcastStrides(bShape.slice(0, -2), batchShape);
  const idx = new Array<number>(batchShape.length).fill(0);
  let ao = 0;
  let bo = 0;
  for (let e = 0; e < batch; e++) {
    aOffsets[e] = ao * aMat;
    bOffsets[e] = bo * bMat;
    for (let d = batchShape.length - 1; d >= 0; d--) {
      ao += aStr[d];
      bo += bStr[d];
      if (++idx[d] < batchShape[d]) break;
      ao -= aStr[d] * batchShape[d];
      bo -= bStr[d] * batchShape[d];
      idx[d] = 0;
    }
  }
  return { aOffsets, bOffsets };
}
