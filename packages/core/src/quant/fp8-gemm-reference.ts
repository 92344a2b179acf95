import { ArgumentError, ShapeError } from '../errors.js';
import { FP8_DECODE_TABLE, type Fp8Format } from '../codecs/fp8.js';
import { roundToMantissaBits, checkAccumulatorModel, type AccumulatorModel } from './accumulator.js';

/** Options of an FP8 block-scaled GEMM. */
export interface Fp8GemmOptions {
  /**
   * N_C: how many K elements are accumulated in the (limited) accumulator before the partial
   * sum is promoted to f32, multiplied by the two block scales and added to the f32 output.
   * Must be a multiple of... nothing: any positive integer, or Infinity (never promote: one
   * partial over all of K; only meaningful with equal scales along K). Default 128.
   */
  promotionInterval?: number;
  /** Limited-precision accumulator model; default: exact f32 accumulation. */
  accumulatorMantissaBits?: number;
  accumulatorGroupSize?: number;
  accumulatorRounding?: 'truncate' | 'nearest';
}

export interface Fp8GemmOperand {
  readonly codes: Uint8Array;
  readonly scales: Float32Array;
  /** [rows, K] */
  readonly shape: readonly [number, number];
  readonly block: readonly [number, number];
  readonly format?: Fp8Format;
}

export function resolveFp8GemmOptions(op: string, options: Fp8GemmOptions): { nc: number; model: AccumulatorModel } {
  const nc = options.promotionInterval ?? 128;
  if (!(nc === Infinity || (Number.isInteger(nc) && nc > 0))) {
    throw new ArgumentError(op, `promotionInterval must be a positive integer or Infinity, got ${nc}`);
  }
  const model: AccumulatorModel = {
    mantissaBits: options.accumulatorMantissaBits,
    groupSize: options.accumulatorGroupSize,
    rounding: options.accumulatorRounding,
  };
  checkAccumulatorModel(op, model);
  return { nc, model };
}

/**
 * Validates an FP8 GEMM pair: a [M, K] and b [N, K] (b is a Linear weight, out x in), with
 * block scales. The scale of element (r, k) is scales[floor(r/br), floor(k/bk)].
 */
/** What validation needs of an operand: sizes, shape and block. */
export interface Fp8GemmOperandShape {
  readonly codes: { readonly length: number };
  readonly scales: { readonly length: number };
  readonly shape: readonly [number, number];
  readonly block: readonly [number, number];
}

export function checkFp8GemmOperands(op: string, a: Fp8GemmOperandShape, b: Fp8GemmOperandShape): { M: number; N: number; K: number } {
  const [M, K] = a.shape;
  const [N, Kb] = b.shape;
  if (K !== Kb) throw new ShapeError(op, `a is [${M}, ${K}] and b is [${N}, ${Kb}]: K differs (b is [N, K], a Linear weight)`);
  for (const [name, t] of [['a', a], ['b', b]] as const) {
    const [rows, cols] = t.shape;
    const [br, bc] = t.block;
    if (!Number.isInteger(br) || !Number.isInteger(bc) || br <= 0 || bc <= 0) throw new ArgumentError(op, `${name}'s block [${br}, ${bc}] must be positive integers`);
    if (t.codes.length !== rows * cols) throw new ShapeError(op, `${name} has ${t.codes.length} codes for shape [${rows}, ${cols}]`);
    const want = Math.ceil(rows / br) * Math.ceil(cols / bc);
    if (t.scales.length !== want) throw new ShapeError(op, `${name} has ${t.scales.length} scales; shape [${rows}, ${cols}] in [${br}, ${bc}] blocks needs ${want}`);
  }
  if (a.block[1] !== b.block[1]) throw new ShapeError(op, `a's blocks span ${a.block[1]} along K and b's span ${b.block[1]}; they must match`);
  return { M, N, K };
}

/**
 * Reference FP8 GEMM out[m, n] = sum_k a[m,k] b[n,k] as DeepSeek-V3 computes it: the K axis is
 * cut into chunks of N_C; within a chunk the FP8 products accumulate in the modelled
 * accumulator; each chunk's partial is multiplied (in f32) by a's and b's block scales for that
 * chunk and added to the f32 output. With the default options (N_C = block width, exact
 * accumulation) this is exact FP8 arithmetic with f32 promotion. Scalar code: the backends have
 * fast kernels; this is the definition they are tested against, and the emulation path.
 */
export function fp8GemmReference(a: Fp8GemmOperand, b: Fp8GemmOperand, options: Fp8GemmOptions = {}): Float32Array {
  const op = 'matmulFp8';
  const { M, N, K } = checkFp8GemmOperands(op, a, b);
  const { nc, model } = resolveFp8GemmOptions(op, options);
  const bk = a.block[1];
  if (nc !== Infinity && nc % bk !== 0 && bk % nc !== 0) {
    throw new ArgumentError(op, `promotionInterval ${nc} must divide or be a multiple of the K block ${bk}`);
  }
  const ta = FP8_DECODE_TABLE[a.format ?? 'e4m3'];
  const tb = FP8_DECODE_TABLE[b.format ?? 'e4m3'];
  const kbA = Math.ceil(K / bk);
  const kbB = Math.ceil(K / b.block[1]);
  const out = new Float32Array(M * N);
  const chunk = nc === Infinity ? Math.max(K, 1) : nc;
  const bits = model.mantissaBits;
  const group = model.groupSize ?? 1;
  const rounding = model.rounding ?? 'truncate';
  for (let m = 0; m < M; m++) {
    const sRowA = Math.floor(m / a.block[0]) * kbA;
    for (let n = 0; n < N; n++) {
      const sRowB = Math.floor(n / b.block[0]) * kbB;
      let acc32 = 0;
      for (let k0 = 0; k0 < K; k0 += chunk) {
        const k1 = Math.min(K, k0 + chunk);
        // Within a chunk, scales may change only if the chunk spans several K blocks; then the
        // partial is scaled per block (chunk > block happens only with Infinity or N_C > 128,
        // where we model the hardware as applying the scale of the chunk's first block: this
        // is exact when all blocks of the row share a scale, as in the accumulation study).
        const sa = a.scales[sRowA + Math.floor(k0 / bk)];
        const sb = b.scales[sRowB + Math.floor(k0 / b.block[1])];
        let partial = 0;
        let groupSum = 0;
        let inGroup = 0;
        for (let k = k0; k < k1; k++) {
          const p = Math.fround(ta[a.codes[m * K + k]] * tb[b.codes[n * K + k]]);
          if (bits === undefined) {
            partial = Math.fround(partial + p);
          } else {
            groupSum += p;
            if (++inGroup === group) {
              partial = roundToMantissaBits(partial + groupSum, bits, rounding);
              groupSum = 0;
              inGroup = 0;
            }
          }
        }
        if (bits !== undefined && inGroup > 0) partial = roundToMantissaBits(partial + groupSum, bits, rounding);
        acc32 = Math.fround(acc32 + Math.fround(partial * Math.fround(sa * sb)));
      }
      out[m * N + n] = acc32;
    }
  }
  return out;
}
