/**
 * allReduce as host arithmetic on storage codes, with the CPU collective's numerics
 * (packages/backend-cpu/src/collective/reduce.ts), so every rank of every collective gets the
 * same bits: contributions folded in rank order; floats accumulate in f32 (each step rounded
 * to f32); f16/bf16/FP8 decoded exactly to f32 and rounded back once (round half to even, no
 * saturation, like a cast); 'mean' = f32 sum / N; integer sums wrap; bool max = or, min = and;
 * max/min propagate NaN.
 */
import { FP8_DECODE_TABLE, encodeFp8Value } from '../codecs/fp8.js';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../codecs/half.js';
import type { ReduceKind } from '../collective.js';
import { allocStorage, type DType, type StorageArray } from '../dtype.js';
import { DTypeError } from '../errors.js';

export const REDUCE_KINDS: readonly ReduceKind[] = ['sum', 'max', 'min', 'mean'];

/** Throws a DTypeError when `op` is not defined for `dtype` (as the CPU collective). */
export function checkReducible(dtype: DType, op: ReduceKind, opName: string): void {
  if (op === 'mean' && (dtype === 'i32' || dtype === 'u8' || dtype === 'bool')) {
    throw new DTypeError(opName, `'mean' is not defined for ${dtype} tensors (the mean of integers is not an integer); cast to f32 first, or use 'sum' and divide`);
  }
  if (op === 'sum' && dtype === 'bool') {
    throw new DTypeError(opName, `'sum' is not defined for bool tensors; use 'max' (logical or), 'min' (logical and), or cast to i32 first`);
  }
}

type NumArray = Float32Array | Int32Array | Uint8Array;
type Fold = ReduceKind | 'or' | 'and';

/** acc[i] = acc[i] (op) src[i]; typed-array stores round (f32) or wrap (ints). */
function foldInto(acc: NumArray, src: ArrayLike<number>, op: Fold): void {
  const n = acc.length;
  if (op === 'max') for (let i = 0; i < n; i++) acc[i] = Math.max(acc[i], src[i]);
  else if (op === 'min') for (let i = 0; i < n; i++) acc[i] = Math.min(acc[i], src[i]);
  else if (op === 'or') for (let i = 0; i < n; i++) acc[i] = acc[i] | src[i] ? 1 : 0;
  else if (op === 'and') for (let i = 0; i < n; i++) acc[i] = acc[i] & src[i] ? 1 : 0;
  else for (let i = 0; i < n; i++) acc[i] += src[i];
}

function codecOf(dtype: 'f16' | 'bf16' | 'e4m3' | 'e5m2'): { decode: (code: number) => number; encode: (x: number) => number } {
  if (dtype === 'bf16') return { decode: bf16BitsToF32, encode: f32ToBf16Bits };
  if (dtype === 'f16') return { decode: f16BitsToF32, encode: f32ToF16Bits };
  const table = FP8_DECODE_TABLE[dtype];
  return { decode: (c) => table[c], encode: (x) => encodeFp8Value(x, dtype, false) };
}

/**
 * The allReduce of equally long payloads (storage codes, rank order), as new storage codes.
 * `checkReducible` must have accepted (dtype, op).
 */
export function allReduceCodes(dtype: DType, op: ReduceKind, payloads: readonly StorageArray[]): StorageArray {
  const N = payloads.length;
  const n = payloads[0].length;
  if (dtype === 'f32' || dtype === 'i32' || dtype === 'u8' || dtype === 'bool') {
    const acc = (payloads[0] as NumArray).slice();
    const kind: Fold = dtype === 'bool' ? (op === 'max' ? 'or' : 'and') : op;
    for (let q = 1; q < N; q++) foldInto(acc, payloads[q], kind);
    if (op === 'mean') for (let i = 0; i < n; i++) acc[i] /= N;
    return acc;
  }
  const { decode, encode } = codecOf(dtype);
  const acc = new Float32Array(n);
  const tmp = new Float32Array(n);
  for (let q = 0; q < N; q++) {
    const codes = payloads[q];
    const target = q === 0 ? acc : tmp;
    for (let i = 0; i < n; i++) target[i] = decode(codes[i]);
    if (q > 0) foldInto(acc, tmp, op);
  }
  if (op === 'mean') for (let i = 0; i < n; i++) acc[i] /= N;
  const out = allocStorage(dtype, n);
  for (let i = 0; i < n; i++) out[i] = encode(acc[i]);
  return out;
}
