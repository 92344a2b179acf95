import {
  FP8_DECODE_TABLE,
  fp8GemmReference,
  quantizeBlockwise,
  type Fp8Format,
  type PrimitiveFp8GemmOptions,
} from '@kiln/core';
import { sgemm } from '../gemm/index.js';

/** Block quantisation: core's definition is already a tight host loop; reuse it (bit-exact by construction). */
export function quantizeKernel(
  x: Float32Array,
  rows: number,
  cols: number,
  block: readonly [number, number],
  format: Fp8Format,
  scaleFormat: 'fp32' | 'ue8m0',
): { codes: Uint8Array; scales: Float32Array } {
  return quantizeBlockwise(x, [rows, cols], [block[0], block[1]], { format, scaleFormat });
}

export interface Fp8Operand {
  codes: Uint8Array;
  scales: Float32Array;
  rows: number;
  k: number;
  block: readonly [number, number];
  format: Fp8Format;
}

/**
 * FP8 block-scaled GEMM out = a · bᵀ. Fast path (promotion every K block, exact f32
 * accumulation inside a block): decode each 128-wide K slab of a and b by table into
 * packed f32 panels (FP8 values and their products are exact in f32), multiply the slabs
 * with the SIMD/threaded f32 GEMM, then promote: out += partial · (sa · sb) in f32.
 * Other promotion intervals and the limited-accumulator model run core's scalar definition.
 */
export function matmulFp8Kernel(a: Fp8Operand, b: Fp8Operand, options: PrimitiveFp8GemmOptions): Float32Array {
  const M = a.rows;
  const N = b.rows;
  const K = a.k;
  const bk = a.block[1];
  const fast = options.accumulatorMantissaBits === undefined && options.promotionInterval === bk && b.block[1] === bk;
  if (!fast) {
    return fp8GemmReference(
      { codes: a.codes, scales: a.scales, shape: [M, K], block: a.block, format: a.format },
      { codes: b.codes, scales: b.scales, shape: [N, K], block: b.block, format: b.format },
      {
        promotionInterval: options.promotionInterval,
        accumulatorMantissaBits: options.accumulatorMantissaBits,
        accumulatorGroupSize: options.accumulatorGroupSize,
        accumulatorRounding: options.accumulatorRounding,
      },
    );
  }
  const out = new Float32Array(M * N);
  if (M === 0 || N === 0) return out;
  const ta = FP8_DECODE_TABLE[a.format];
  const tb = FP8_DECODE_TABLE[b.format];
  const kBlocks = Math.ceil(K / bk);
  const scaleColsA = kBlocks;
  const scaleColsB = Math.ceil(K / b.block[1]);
  const panelA = new Float32Array(M * bk);
  const panelB = new Float32Array(N * bk);
  const partial = new Float32Array(M * N);
  const bRowScale = new Float32Array(N);
  for (let kb = 0; kb < kBlocks; kb++) {
    const k0 = kb * bk;
    const kc = Math.min(bk, K - k0);
    for (let m = 0; m < M; m++) {
      const src = m * K + k0;
      const dst = m * kc;
      for (let j = 0; j < kc; j++) panelA[dst + j] = ta[a.codes[src + j]];
    }
    for (let n = 0; n < N; n++) {
      const src = n * K + k0;
      const dst = n * kc;
      for (let j = 0; j < kc; j++) panelB[dst + j] = tb[b.codes[src + j]];
      bRowScale[n] = b.scales[Math.floor(n / b.block[0]) * scaleColsB + kb];
    }
    sgemm({
      m: M,
      n: N,
      k: kc,
      transA: false,
      transB: true,
      a: panelA,
      b: panelB,
      c: partial,
      aOffsets: [0],
      bOffsets: [0],
      cOffsets: [0],
    });
    for (let m = 0; m < M; m++) {
      const sa = a.scales[Math.floor(m / a.block[0]) * scaleColsA + kb];
      const row = m * N;
      for (let n = 0; n < N; n++) {
        out[row + n] = Math.fround(out[row + n] + Math.fround(partial[row + n] * Math.fround(sa * bRowScale[n])));
      }
    }
  }
  return out;
}
