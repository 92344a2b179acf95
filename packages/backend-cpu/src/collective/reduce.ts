/**
 * allReduce arithmetic. Every element is folded in rank order 0..N-1, whichever rank does
 * the folding, so every rank gets bit-identical results. Floats accumulate in f32 (each
 * addition rounded to f32); f16/bf16/FP8 are decoded exactly to f32, reduced, then rounded
 * back (round half to even, no saturation, like a cast). 'mean' is the f32 sum divided by N
 * in f32. Integer sums wrap (i32 mod 2^32, u8 mod 2^8); bool has max (or) and min (and).
 * max/min propagate NaN.
 */
import {
  DTypeError,
  FP8_DECODE_TABLE,
  encodeFp8Value,
  f16BitsToF32,
  f32ToF16Bits,
  type DType,
  type ReduceKind,
} from '@kiln/core';

export const REDUCE_KINDS: readonly ReduceKind[] = ['sum', 'max', 'min', 'mean'];

/** Throws a DTypeError when `op` is not defined for `dtype` (core's, shared with the host-staged group). */
export { checkReducible } from '@kiln/core';

/**
 * Reduces `count` elements across ranks: `srcOffsets[q]` is the byte offset in `src` of rank
 * q's elements (storage codes, rank order). Writes the result's storage codes to `dst` at
 * byte offset `dstOffset`. Offsets are multiples of the element size.
 */
export type Reduce = (src: ArrayBufferLike, srcOffsets: readonly number[], count: number, dst: ArrayBufferLike, dstOffset: number) => void;

type NumArray = Float32Array | Int32Array | Uint8Array;

// f32 scratch for the decoded accumulator and operand, kept across calls: fresh multi-MB
// arrays cost more than the reduction (the OS maps and zeroes new pages). Reductions are
// synchronous, so ranks sharing a thread never use it at the same time.
let scratchAcc = new Float32Array(0);
let scratchTmp = new Float32Array(0);
function scratch(count: number): [Float32Array, Float32Array] {
  if (scratchAcc.length < count) {
    scratchAcc = new Float32Array(count);
    scratchTmp = new Float32Array(count);
  }
  return [scratchAcc.subarray(0, count), scratchTmp.subarray(0, count)];
}
type ArrayCtor = new (buffer: ArrayBufferLike, byteOffset: number, length: number) => NumArray;

/** acc[i] = acc[i] (op) src[i]; typed-array stores round (f32) or wrap (ints). */
function fold(acc: NumArray, src: NumArray, n: number, op: ReduceKind | 'or' | 'and'): void {
  switch (op) {
    case 'max':
      for (let i = 0; i < n; i++) acc[i] = Math.max(acc[i], src[i]);
      break;
    case 'min':
      for (let i = 0; i < n; i++) acc[i] = Math.min(acc[i], src[i]);
      break;
    case 'or':
      for (let i = 0; i < n; i++) acc[i] |= src[i];
      break;
    case 'and':
      for (let i = 0; i < n; i++) acc[i] &= src[i];
      break;
    default:
      for (let i = 0; i < n; i++) acc[i] += src[i];
  }
}

/** Reduction in the storage array type itself (f32, i32, u8, bool): accumulates in `dst`. */
function directReduce(Ctor: ArrayCtor, op: ReduceKind | 'or' | 'and', worldSize: number): Reduce {
  return (src, offs, count, dst, dstOffset) => {
    const acc = new Ctor(dst, dstOffset, count);
    acc.set(new Ctor(src, offs[0], count));
    for (let q = 1; q < worldSize; q++) fold(acc, new Ctor(src, offs[q], count), count, op);
    if (op === 'mean') for (let i = 0; i < count; i++) acc[i] /= worldSize;
  };
}

/** f16/FP8: decode to an f32 scratch accumulator, reduce, round back into dst. */
function encodedReduce(dtype: 'f16' | 'e4m3' | 'e5m2', op: ReduceKind, worldSize: number): Reduce {
  const wide = dtype === 'f16';
  let decode: (code: number) => number;
  let encode: (x: number) => number;
  if (dtype === 'f16') {
    decode = f16BitsToF32;
    encode = f32ToF16Bits;
  } else {
    const table = FP8_DECODE_TABLE[dtype];
    decode = (c) => table[c];
    encode = (x) => encodeFp8Value(x, dtype, false);
  }
  return (src, offs, count, dst, dstOffset) => {
    const [acc, tmp] = scratch(count);
    for (let q = 0; q < worldSize; q++) {
      const codes = wide ? new Uint16Array(src, offs[q], count) : new Uint8Array(src, offs[q], count);
      const target = q === 0 ? acc : tmp;
      for (let i = 0; i < count; i++) target[i] = decode(codes[i]);
      if (q > 0) fold(acc, tmp, count, op);
    }
    if (op === 'mean') for (let i = 0; i < count; i++) acc[i] /= worldSize;
    const out = wide ? new Uint16Array(dst, dstOffset, count) : new Uint8Array(dst, dstOffset, count);
    for (let i = 0; i < count; i++) out[i] = encode(acc[i]);
  };
}

/**
 * bf16 fast path: decoding is a 16-bit shift and rounding is integer arithmetic on the f32
 * bits (the same round-half-to-even and canonical NaN as core's f32ToBf16Bits).
 */
function bf16Reduce(op: ReduceKind, worldSize: number): Reduce {
  return (src, offs, count, dst, dstOffset) => {
    const [acc, tmp] = scratch(count);
    const accBits = new Uint32Array(acc.buffer, 0, count);
    const tmpBits = new Uint32Array(tmp.buffer, 0, count);
    for (let q = 0; q < worldSize; q++) {
      const codes = new Uint16Array(src, offs[q], count);
      const target = q === 0 ? accBits : tmpBits;
      for (let i = 0; i < count; i++) target[i] = codes[i] << 16;
      if (q > 0) fold(acc, tmp, count, op);
    }
    if (op === 'mean') for (let i = 0; i < count; i++) acc[i] /= worldSize;
    const out = new Uint16Array(dst, dstOffset, count);
    for (let i = 0; i < count; i++) {
      const bits = accBits[i];
      out[i] = (bits & 0x7fffffff) > 0x7f800000 ? 0x7fc0 : (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16;
    }
  };
}

// One long-lived function per (dtype, op, worldSize): a closure created per call would start
// cold every time (V8 optimises each new closure's loops anew), several times slower.
const cache = new Map<string, Reduce>();

/** The reduction of `op` over `dtype`; `checkReducible` must have accepted the pair. */
export function createReduce(dtype: DType, op: ReduceKind, worldSize: number): Reduce {
  const key = `${dtype}/${op}/${worldSize}`;
  let reduce = cache.get(key);
  if (!reduce) cache.set(key, (reduce = makeReduce(dtype, op, worldSize)));
  return reduce;
}

function makeReduce(dtype: DType, op: ReduceKind, worldSize: number): Reduce {
  switch (dtype) {
    case 'f32':
      return directReduce(Float32Array, op, worldSize);
    case 'i32':
      return directReduce(Int32Array, op, worldSize);
    case 'u8':
      return directReduce(Uint8Array, op, worldSize);
    case 'bool':
      return directReduce(Uint8Array, op === 'max' ? 'or' : 'and', worldSize);
    case 'bf16':
      return bf16Reduce(op, worldSize);
    default:
      return encodedReduce(dtype, op, worldSize);
  }
}
