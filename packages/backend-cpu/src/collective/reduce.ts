/**
 * allReduce arithmetic. Contributions are folded in rank order 0..N-1 on every rank, so
 * every rank computes bit-identical results. Floats accumulate in f32 (each addition rounded
 * to f32); f16/bf16/FP8 are decoded exactly to f32, reduced, then rounded back (round half to
 * even, no saturation, as a cast). Integer sums wrap (i32 mod 2^32, u8 mod 2^8).
 */
import {
  DTypeError,
  FP8_DECODE_TABLE,
  bf16BitsToF32,
  encodeFp8Value,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
  type DType,
  type ReduceKind,
  type StorageArray,
} from '@kiln/core';

export const REDUCE_KINDS: readonly ReduceKind[] = ['sum', 'max', 'min', 'mean'];

/** Throws a DTypeError when `op` is not defined for `dtype`. */
export function checkReducible(dtype: DType, op: ReduceKind, opName: string): void {
  if (op === 'mean' && (dtype === 'i32' || dtype === 'u8' || dtype === 'bool')) {
    throw new DTypeError(opName, `'mean' is not defined for ${dtype} tensors (the mean of integers is not an integer); cast to f32 first, or use 'sum' and divide`);
  }
  if (op === 'sum' && dtype === 'bool') {
    throw new DTypeError(opName, `'sum' is not defined for bool tensors; use 'max' (logical or), 'min' (logical and), or cast to i32 first`);
  }
}

export interface Reducer {
  /**
   * Folds `count` elements of one rank's contribution, stored at `byteOffset` of `buffer`,
   * into accumulator elements [start, start + count). Call with ranks in order 0..N-1 for
   * each range; `first` is true for rank 0.
   */
  fold(buffer: ArrayBufferLike, byteOffset: number, count: number, start: number, first: boolean): void;
  /** The result in the storage format of the dtype. */
  finish(): StorageArray;
}

type Combine = (a: number, b: number) => number;

const floatCombine = (op: ReduceKind): Combine => {
  switch (op) {
    case 'max':
      return Math.max;
    case 'min':
      return Math.min;
    default:
      return (a, b) => a + b;
  }
};

function f32Reducer(size: number, op: ReduceKind, worldSize: number): Reducer {
  const acc = new Float32Array(size);
  const combine = floatCombine(op);
  return {
    fold(buffer, byteOffset, count, start, first) {
      const src = new Float32Array(buffer, byteOffset, count);
      if (first) acc.set(src, start);
      // the Float32Array store rounds each result to f32
      else for (let i = 0; i < count; i++) acc[start + i] = combine(acc[start + i], src[i]);
    },
    finish() {
      if (op === 'mean') for (let i = 0; i < size; i++) acc[i] = acc[i] / worldSize;
      return acc;
    },
  };
}

function encodedReducer(dtype: 'f16' | 'bf16' | 'e4m3' | 'e5m2', size: number, op: ReduceKind, worldSize: number): Reducer {
  const acc = new Float32Array(size);
  const combine = floatCombine(op);
  const wide = dtype === 'f16' || dtype === 'bf16';
  let decode: (code: number) => number;
  let encode: (x: number) => number;
  if (dtype === 'f16') {
    decode = f16BitsToF32;
    encode = f32ToF16Bits;
  } else if (dtype === 'bf16') {
    decode = bf16BitsToF32;
    encode = f32ToBf16Bits;
  } else {
    const table = FP8_DECODE_TABLE[dtype];
    decode = (c) => table[c];
    encode = (x) => encodeFp8Value(x, dtype, false);
  }
  return {
    fold(buffer, byteOffset, count, start, first) {
      const src = wide ? new Uint16Array(buffer, byteOffset, count) : new Uint8Array(buffer, byteOffset, count);
      if (first) for (let i = 0; i < count; i++) acc[start + i] = decode(src[i]);
      else for (let i = 0; i < count; i++) acc[start + i] = combine(acc[start + i], decode(src[i]));
    },
    finish() {
      const out = wide ? new Uint16Array(size) : new Uint8Array(size);
      for (let i = 0; i < size; i++) out[i] = encode(op === 'mean' ? Math.fround(acc[i] / worldSize) : acc[i]);
      return out;
    },
  };
}

function intReducer(dtype: 'i32' | 'u8' | 'bool', size: number, op: ReduceKind): Reducer {
  const acc = dtype === 'i32' ? new Int32Array(size) : new Uint8Array(size);
  let combine: Combine;
  if (dtype === 'bool') combine = op === 'max' ? (a, b) => a | b : (a, b) => a & b;
  else if (op === 'max') combine = Math.max;
  else if (op === 'min') combine = Math.min;
  // the typed-array store wraps (i32 mod 2^32, u8 mod 2^8)
  else combine = (a, b) => a + b;
  return {
    fold(buffer, byteOffset, count, start, first) {
      const src = dtype === 'i32' ? new Int32Array(buffer, byteOffset, count) : new Uint8Array(buffer, byteOffset, count);
      if (first) acc.set(src, start);
      else for (let i = 0; i < count; i++) acc[start + i] = combine(acc[start + i], src[i]);
    },
    finish() {
      return acc;
    },
  };
}

/** A reducer for `size` elements; `checkReducible` must have accepted (dtype, op). */
export function createReducer(dtype: DType, op: ReduceKind, size: number, worldSize: number): Reducer {
  switch (dtype) {
    case 'f32':
      return f32Reducer(size, op, worldSize);
    case 'f16':
    case 'bf16':
    case 'e4m3':
    case 'e5m2':
      return encodedReducer(dtype, size, op, worldSize);
    default:
      return intReducer(dtype, size, op);
  }
}
