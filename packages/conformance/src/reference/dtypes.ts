/**
 * The dtype rules the suite expects, written out independently of @kiln/core's
 * implementation (from the documented rules):
 *
 * - promotion: equal dtypes stay, except FP8 (a storage format) which computes and results
 *   in f32; a float beats any integer (FP8 then widens to f32); f16 with bf16 -> f32; f32
 *   beats f16/bf16; any FP8 mixed with another float -> f32; among integers i32 > u8 > bool.
 * - float arithmetic computes in f32 and rounds to the result dtype; f16/bf16 results keep
 *   their dtype, FP8 results widen to f32.
 * - integer arithmetic computes in i32 (u8 and bool widen); integer div and pow are f32.
 * - comparisons and logical ops return bool.
 */
import type { BinaryOp, DType, ReduceOp, UnaryOp } from '@kiln/core';

export const ALL_DTYPES: readonly DType[] = ['f32', 'f16', 'bf16', 'e4m3', 'e5m2', 'i32', 'u8', 'bool'];

export type Compute = 'f32' | 'i32' | 'u8' | 'bool';

export const isFloat = (d: DType): boolean => d === 'f32' || d === 'f16' || d === 'bf16' || d === 'e4m3' || d === 'e5m2';
export const isFp8 = (d: DType): boolean => d === 'e4m3' || d === 'e5m2';
export const isHalf = (d: DType): boolean => d === 'f16' || d === 'bf16';

export function bytesOf(d: DType): number {
  return d === 'f32' || d === 'i32' ? 4 : d === 'f16' || d === 'bf16' ? 2 : 1;
}

export function expectedPromotion(a: DType, b: DType): DType {
  if (a === b) return isFp8(a) ? 'f32' : a;
  const fa = isFloat(a);
  const fb = isFloat(b);
  if (fa && !fb) return isFp8(a) ? 'f32' : a;
  if (fb && !fa) return isFp8(b) ? 'f32' : b;
  if (fa && fb) {
    if (isFp8(a) || isFp8(b)) return 'f32';
    return 'f32'; // distinct floats among f32/f16/bf16: f32 wins, f16 x bf16 -> f32
  }
  if (a === 'i32' || b === 'i32') return 'i32';
  if (a === 'u8' || b === 'u8') return 'u8';
  return 'bool';
}

export function computeOf(d: DType): Compute {
  if (isFloat(d)) return 'f32';
  return d as Compute;
}

const COMPARISONS = new Set<BinaryOp>(['eq', 'ne', 'lt', 'le', 'gt', 'ge']);
const LOGICAL = new Set<BinaryOp>(['and', 'or']);
export const isComparison = (op: BinaryOp): boolean => COMPARISONS.has(op);
export const isLogical = (op: BinaryOp): boolean => LOGICAL.has(op);

/** The dtype a binary op computes in and the dtype of its result. */
export function expectedBinary(op: BinaryOp, a: DType, b: DType): { compute: Compute; result: DType } {
  if (isLogical(op)) return { compute: 'bool', result: 'bool' };
  const p = expectedPromotion(a, b);
  let compute = computeOf(p);
  if (isComparison(op)) return { compute, result: 'bool' };
  let result: DType = p;
  if (compute === 'u8' || compute === 'bool') {
    compute = 'i32';
    result = 'i32';
  }
  if ((op === 'div' || op === 'pow') && compute === 'i32') {
    compute = 'f32';
    result = 'f32';
  }
  return { compute, result };
}

const FLOAT_ONLY = new Set<UnaryOp>(['sqrt', 'rsqrt', 'reciprocal', 'exp', 'log', 'sin', 'cos', 'tanh', 'sigmoid', 'erf']);
const ROUNDING = new Set<UnaryOp>(['floor', 'ceil', 'round']);

export function expectedUnary(op: UnaryOp, x: DType): { compute: Compute; result: DType } {
  if (op === 'not') return { compute: 'bool', result: 'bool' };
  if (op === 'isnan') return { compute: 'f32', result: 'bool' };
  if (isFloat(x)) return { compute: 'f32', result: isHalf(x) ? x : 'f32' };
  if (FLOAT_ONLY.has(op)) return { compute: 'f32', result: 'f32' };
  if (ROUNDING.has(op)) return { compute: computeOf(x), result: x };
  return { compute: 'i32', result: 'i32' };
}

export function expectedReduce(op: ReduceOp, x: DType): { compute: Compute; result: DType } {
  let compute = computeOf(x);
  if ((op === 'sum' || op === 'prod') && (compute === 'u8' || compute === 'bool')) compute = 'i32';
  if ((op === 'max' || op === 'min') && compute === 'bool') compute = 'u8';
  if (op === 'argmax' || op === 'argmin') return { compute, result: 'i32' };
  if (isHalf(x)) return { compute, result: x };
  if (x === 'bool' && (op === 'max' || op === 'min')) return { compute, result: 'bool' };
  return { compute, result: compute };
}

export function expectedMatmul(a: DType, b: DType): { compute: Compute; result: DType } {
  const p = expectedPromotion(a, b);
  let compute = computeOf(p);
  if (compute === 'u8') compute = 'i32';
  return { compute, result: p === 'u8' ? 'i32' : p };
}

/** scatterAdd / indexAdd: compute in the promoted dtype (u8 -> i32); result is base's dtype (FP8 -> f32, u8 -> i32). */
export function expectedAccumulate(base: DType, src: DType): { compute: Compute; result: DType } {
  const p = expectedPromotion(base, src);
  let compute = computeOf(p);
  if (compute === 'u8') compute = 'i32';
  const result: DType = isFp8(base) ? 'f32' : base === 'u8' ? 'i32' : base;
  return { compute, result };
}
