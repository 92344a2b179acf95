/**
 * Float64 references for the elementwise ops and the value conversions between dtypes.
 * Inputs are the exact values a backend computes on (f32 compute values, i32 integers).
 */
import type { BinaryOp, DType, UnaryOp } from '@kiln/core';
import { roundHalfEven } from './float.js';
import { encode, isLowDType } from './formats.js';
import type { Compute } from './dtypes.js';
import { isFloat } from './dtypes.js';

/**
 * erf in float64 from the everywhere-positive series
 * erf(x) = 2/sqrt(pi) * exp(-x^2) * sum_n 2^n x^(2n+1) / (1*3*...*(2n+1)),
 * which has no cancellation, so it is accurate to a few float64 ulps; |x| >= 6 gives +-1.
 */
export function erf64(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const a = Math.abs(x);
  if (a >= 6) return Math.sign(x);
  if (a === 0) return x;
  const x2 = a * a;
  let term = a;
  let sum = a;
  for (let n = 1; n < 400; n++) {
    term *= (2 * x2) / (2 * n + 1);
    sum += term;
    if (term < sum * 1e-18) break;
  }
  const r = (2 / Math.sqrt(Math.PI)) * Math.exp(-x2) * sum;
  return x < 0 ? -r : r;
}

export function sigmoid64(x: number): number {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

/** Floored modulo (result has the divisor's sign), exact in float64 for f32 inputs. */
export function floorMod64(a: number, b: number): number {
  const r = a % b;
  if (r !== 0 && r < 0 !== b < 0) return r + b;
  return r;
}

function floorModInt(a: number, b: number): number {
  const r = a % b;
  return r !== 0 && r < 0 !== b < 0 ? r + b : r;
}

/** Unary op on a compute value. f32: exact float64 result; i32: wrapping int32. */
export function unary64(op: UnaryOp, x: number, compute: Compute): number {
  if (compute === 'i32') {
    switch (op) {
      case 'neg':
        return -x | 0;
      case 'abs':
        return Math.abs(x) | 0;
      case 'sign':
        return Math.sign(x);
      case 'square':
        return Math.imul(x, x);
      case 'relu':
        return x > 0 ? x : 0;
      default:
        throw new Error(`no i32 reference for ${op}`);
    }
  }
  switch (op) {
    case 'neg':
      return -x;
    case 'abs':
      return Math.abs(x);
    case 'sign':
      return x > 0 ? 1 : x < 0 ? -1 : x;
    case 'square':
      return x * x;
    case 'sqrt':
      return Math.sqrt(x);
    case 'rsqrt':
      return 1 / Math.sqrt(x);
    case 'reciprocal':
      return 1 / x;
    case 'exp':
      return Math.exp(x);
    case 'log':
      return Math.log(x);
    case 'sin':
      return Math.sin(x);
    case 'cos':
      return Math.cos(x);
    case 'tanh':
      return Math.tanh(x);
    case 'sigmoid':
      return sigmoid64(x);
    case 'relu':
      return Number.isNaN(x) ? NaN : x > 0 ? x : 0;
    case 'erf':
      return erf64(x);
    case 'floor':
      return Math.floor(x);
    case 'ceil':
      return Math.ceil(x);
    case 'round':
      return roundHalfEven(x);
    case 'not':
      return x !== 0 ? 0 : 1;
    case 'isnan':
      return Number.isNaN(x) ? 1 : 0;
  }
}

/** Binary op on compute values; comparisons/logical give 0/1. */
export function binary64(op: BinaryOp, a: number, b: number, compute: Compute): number {
  switch (op) {
    case 'eq':
      return a === b ? 1 : 0;
    case 'ne':
      return a !== b ? 1 : 0;
    case 'lt':
      return a < b ? 1 : 0;
    case 'le':
      return a <= b ? 1 : 0;
    case 'gt':
      return a > b ? 1 : 0;
    case 'ge':
      return a >= b ? 1 : 0;
    case 'and':
      return a !== 0 && b !== 0 ? 1 : 0;
    case 'or':
      return a !== 0 || b !== 0 ? 1 : 0;
  }
  if (compute === 'i32') {
    switch (op) {
      case 'add':
        return (a + b) | 0;
      case 'sub':
        return (a - b) | 0;
      case 'mul':
        return Math.imul(a, b);
      case 'maximum':
        return Math.max(a, b);
      case 'minimum':
        return Math.min(a, b);
      case 'mod':
        return floorModInt(a, b);
      default:
        throw new Error(`no i32 reference for ${op}`);
    }
  }
  switch (op) {
    case 'add':
      return a + b;
    case 'sub':
      return a - b;
    case 'mul':
      return a * b;
    case 'div':
      return a / b;
    case 'pow':
      return Math.pow(a, b);
    case 'maximum':
      return Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.max(a, b);
    case 'minimum':
      return Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.min(a, b);
    case 'mod':
      return floorMod64(a, b);
  }
  throw new Error(`no reference for ${op}`);
}

/** A stored value (decoded) converted to a compute dtype, as core's inserted casts do. */
export function toCompute(v: number, from: DType, compute: Compute): number {
  if (compute === 'f32') return isFloat(from) ? v : Math.fround(v);
  if (compute === 'bool') return v !== 0 ? 1 : 0;
  if (isFloat(from)) throw new Error(`unexpected float ${from} -> ${compute} compute conversion`);
  if (compute === 'u8') return v & 0xff;
  return v | 0;
}

/**
 * The storage code a cast writes for a value `v` of dtype `from` (decoded, exact). For float
 * targets the code is the f32 value itself (compare bit patterns / NaN-ness). `negativeNaN`
 * carries the sign of a NaN source.
 */
export function castCode(v: number, from: DType, to: DType, saturate: boolean, negativeNaN = false): number {
  if (to === 'bool') return v !== 0 ? 1 : 0; // NaN !== 0
  const fromFloat = isFloat(from);
  if (to === 'i32') {
    if (!fromFloat) return v | 0;
    if (Number.isNaN(v)) return 0;
    if (v >= 2147483647) return 2147483647;
    if (v <= -2147483648) return -2147483648;
    return Math.trunc(v) | 0;
  }
  if (to === 'u8') {
    if (!fromFloat) return v & 0xff;
    if (Number.isNaN(v)) return 0;
    if (v >= 255) return 255;
    if (v <= 0) return 0;
    return Math.trunc(v);
  }
  // float targets: integers go through f32 first (PyTorch's conversions)
  const f = fromFloat ? v : Math.fround(v);
  if (to === 'f32') return Math.fround(f);
  if (isLowDType(to)) return encode(to, f, { saturate, negativeNaN });
  throw new Error(`unknown dtype ${to}`);
}
