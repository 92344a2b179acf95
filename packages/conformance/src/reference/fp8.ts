/**
 * Independent references for DeepSeek-V3's fine-grained FP8 recipe, from its definition:
 *
 * quantizeBlockwise, per [br, bc] block (edge blocks use only their real elements), in f32:
 *   amax = max(max |x|, f32(1e-4)); s = f32(amax * f32(1 / FP8_MAX)) (ue8m0: s rounded up to
 *   a power of two); code = encode(f32(x / s)) with round-half-to-even.
 * matmulFp8 a [M, K] x b [N, K]^T: per chunk of `promotionInterval` along K the FP8 products
 *   (exact in f32) accumulate in f32 (or in the limited accumulator: products summed exactly
 *   in groups, each group added to the partial which is then rounded to `bits` mantissa bits,
 *   toward zero or to nearest even), then acc = f32(acc + f32(partial * f32(sa * sb))).
 */
import { exponentOf } from './float.js';
import { decode, encode } from './formats.js';

export type Fp8 = 'e4m3' | 'e5m2';
export const FP8_MAX: Record<Fp8, number> = { e4m3: 448, e5m2: 57344 };

/** 2^ceil(log2 s) for positive finite s. */
export function pow2Ceil(s: number): number {
  const e = exponentOf(s);
  return 2 ** e === s ? s : 2 ** (e + 1);
}

export function quantizeRef(
  x: ArrayLike<number>,
  rows: number,
  cols: number,
  block: readonly [number, number],
  format: Fp8,
  scaleFormat: 'fp32' | 'ue8m0',
): { codes: number[]; scales: number[] } {
  const [br, bc] = block;
  const nr = Math.ceil(rows / br);
  const nc = Math.ceil(cols / bc);
  const codes = new Array<number>(rows * cols).fill(0);
  const scales = new Array<number>(nr * nc).fill(0);
  const inv = Math.fround(1 / FP8_MAX[format]);
  const floor = Math.fround(1e-4);
  for (let bi = 0; bi < nr; bi++) {
    for (let bj = 0; bj < nc; bj++) {
      let amax = 0;
      for (let r = bi * br; r < Math.min(rows, (bi + 1) * br); r++) for (let c = bj * bc; c < Math.min(cols, (bj + 1) * bc); c++) amax = Math.max(amax, Math.abs(x[r * cols + c]));
      amax = Math.max(amax, floor);
      let s = Math.fround(amax * inv);
      if (scaleFormat === 'ue8m0') s = pow2Ceil(s);
      scales[bi * nc + bj] = s;
      for (let r = bi * br; r < Math.min(rows, (bi + 1) * br); r++) {
        for (let c = bj * bc; c < Math.min(cols, (bj + 1) * bc); c++) codes[r * cols + c] = encode(format, Math.fround(x[r * cols + c] / s));
      }
    }
  }
  return { codes, scales };
}

export interface Fp8Operand {
  codes: ArrayLike<number>;
  scales: ArrayLike<number>;
  rows: number;
  K: number;
  block: readonly [number, number];
  format: Fp8;
}

/** Rounds x to `bits` mantissa bits after the leading one. */
export function roundMantissa(x: number, bits: number, mode: 'truncate' | 'nearest'): number {
  if (x === 0 || !Number.isFinite(x)) return x;
  const q = 2 ** (exponentOf(Math.abs(x)) - bits);
  const y = x / q; // exact: a power-of-two scaling
  let r: number;
  if (mode === 'truncate') r = Math.trunc(y);
  else {
    const f = Math.floor(y);
    const d = y - f;
    r = d > 0.5 ? f + 1 : d < 0.5 ? f : f % 2 === 0 ? f : f + 1;
  }
  return r * q;
}

export interface GemmModel {
  promotionInterval: number;
  bits?: number;
  group?: number;
  rounding?: 'truncate' | 'nearest';
}

/**
 * out[m, n] per the definition (bit-exact emulation), plus the float64 exact product of the
 * dequantised operands and sum |terms| for tolerance checks of the exact-accumulation mode.
 */
export function matmulFp8Ref(a: Fp8Operand, b: Fp8Operand, model: GemmModel): { emulated: Float64Array; exact: Float64Array; absSum: Float64Array } {
  const M = a.rows;
  const N = b.rows;
  const K = a.K;
  const bk = a.block[1];
  const kbA = Math.ceil(K / bk);
  const kbB = Math.ceil(K / b.block[1]);
  const chunk = model.promotionInterval === Infinity ? Math.max(K, 1) : model.promotionInterval;
  const emulated = new Float64Array(M * N);
  const exact = new Float64Array(M * N);
  const absSum = new Float64Array(M * N);
  const da = Array.from(a.codes, (c) => decode(a.format, c));
  const db = Array.from(b.codes, (c) => decode(b.format, c));
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let acc = 0;
      let ex = 0;
      let abs = 0;
      for (let k0 = 0; k0 < K; k0 += chunk) {
        const k1 = Math.min(K, k0 + chunk);
        const sa = a.scales[Math.floor(m / a.block[0]) * kbA + Math.floor(k0 / bk)];
        const sb = b.scales[Math.floor(n / b.block[0]) * kbB + Math.floor(k0 / b.block[1])];
        let partial = 0;
        let groupSum = 0;
        let inGroup = 0;
        for (let k = k0; k < k1; k++) {
          const p = da[m * K + k] * db[n * K + k]; // exact (few significant bits)
          const t = p * a.scales[Math.floor(m / a.block[0]) * kbA + Math.floor(k / bk)] * b.scales[Math.floor(n / b.block[0]) * kbB + Math.floor(k / b.block[1])];
          ex += t;
          abs += Math.abs(t);
          if (model.bits === undefined) partial = Math.fround(partial + p);
          else {
            groupSum += p;
            if (++inGroup === (model.group ?? 1)) {
              partial = roundMantissa(partial + groupSum, model.bits, model.rounding ?? 'truncate');
              groupSum = 0;
              inGroup = 0;
            }
          }
        }
        if (model.bits !== undefined && inGroup > 0) partial = roundMantissa(partial + groupSum, model.bits, model.rounding ?? 'truncate');
        acc = Math.fround(acc + Math.fround(partial * Math.fround(sa * sb)));
      }
      emulated[m * N + n] = acc;
      exact[m * N + n] = ex;
      absSum[m * N + n] = abs;
    }
  }
  return { emulated, exact, absSum };
}
