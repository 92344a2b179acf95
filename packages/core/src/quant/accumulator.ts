import { ArgumentError } from '../errors.js';

/**
 * A limited-precision accumulator, the model kiln uses for Hopper's FP8 tensor-core
 * accumulation (DeepSeek-V3 §3.3.2: about 14 bits are retained).
 *
 * Model: products are formed exactly (an FP8 x FP8 product fits in f32), summed exactly in
 * groups of `groupSize` (the width the tensor core adds at once), and each group sum is added
 * to the running accumulator, which is then rounded to `mantissaBits` bits after the leading
 * one. Rounding is toward zero by default: aligning addends to the larger exponent and
 * dropping the shifted-out bits is what a narrow hardware adder does, and its systematic bias
 * is what makes the error grow with K. 'nearest' (half to even) is offered for comparison.
 */
export interface AccumulatorModel {
  /** Mantissa bits kept after the leading one; undefined = exact f32 accumulation. */
  readonly mantissaBits?: number;
  /** Products summed exactly before each rounded add (1, 4, 32 ...). Default 1. */
  readonly groupSize?: number;
  readonly rounding?: 'truncate' | 'nearest';
}

/** Rounds a double to `bits` mantissa bits (after the leading one). */
export function roundToMantissaBits(x: number, bits: number, rounding: 'truncate' | 'nearest'): number {
  if (x === 0 || !Number.isFinite(x)) return x;
  const e = Math.floor(Math.log2(Math.abs(x)));
  // Guard against log2 imprecision at exact powers of two.
  let exp = e;
  if (2 ** exp > Math.abs(x)) exp -= 1;
  else if (2 ** (exp + 1) <= Math.abs(x)) exp += 1;
  const quantum = 2 ** (exp - bits);
  const q = x / quantum;
  let r: number;
  if (rounding === 'truncate') r = Math.trunc(q);
  else {
    const f = Math.floor(q);
    const d = q - f;
    r = d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
  }
  return r * quantum;
}

export function checkAccumulatorModel(op: string, model: AccumulatorModel): void {
  const { mantissaBits, groupSize } = model;
  if (mantissaBits !== undefined && (!Number.isInteger(mantissaBits) || mantissaBits < 1 || mantissaBits > 23)) {
    throw new ArgumentError(op, `accumulatorMantissaBits must be an integer in 1..23, got ${mantissaBits}`);
  }
  if (groupSize !== undefined && (!Number.isInteger(groupSize) || groupSize < 1)) {
    throw new ArgumentError(op, `accumulatorGroupSize must be a positive integer, got ${groupSize}`);
  }
  if (model.rounding !== undefined && model.rounding !== 'truncate' && model.rounding !== 'nearest') {
    throw new ArgumentError(op, `accumulatorRounding must be 'truncate' or 'nearest', got ${JSON.stringify(model.rounding)}`);
  }
}
