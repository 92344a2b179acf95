import type { DType, StorageArray } from '@kiln/core';
import { copyOf, newF32, newI32, newU16, newU8 } from '../pool.js';
import { E4M3, E5M2, F16, FP8_DECODE_TABLE, bitsToF32, encodeMinifloat, f16BitsToF32, type MinifloatFormat } from '@kiln/core';

/**
 * Casts between all 8x8 dtype pairs, per the Backend contract:
 *  - float targets round half to even: f16 via a bit-level encoder (checked against core's
 *    `encodeMinifloat`), bf16 by rounding the f32 bit pattern (NaN -> 0x7fc0, as core and
 *    torch), FP8 via per-format tables derived from core's `encodeMinifloat` (bit-for-bit
 *    PyTorch). `saturate` clamps overflow and infinities to the largest finite value for
 *    f16 and FP8; bf16 shares f32's range and ignores it.
 *  - integer and f16/bf16/FP8 sources reach other float formats through their exact f32
 *    value (so i32 -> f16/bf16/FP8 rounds to f32 first, as PyTorch's conversions do);
 *  - float -> int truncates toward zero, NaN -> 0, saturating to the target range
 *    ([-2^31, 2^31-1] for i32, [0, 255] for u8);
 *  - int -> int wraps modulo the target width (i32 -> u8 keeps the low byte), bool -> 0/1;
 *  - anything -> bool is x != 0 (NaN -> true, -0 -> false);
 *  - same dtype: a bit-exact copy.
 */
export function castKernel(x: StorageArray, from: DType, to: DType, saturate: boolean): StorageArray {
  if (from === to) return copyOf(x);
  const n = x.length;
  if (to === 'bool') return toBool(x, from);
  // Integer sources.
  if (from === 'i32' || from === 'u8' || from === 'bool') {
    const src = from === 'bool' ? normalizedBool(x as Uint8Array) : (x as Int32Array | Uint8Array);
    switch (to) {
      case 'i32': {
        const out = newI32(n);
        out.set(src);
        return out;
      }
      case 'u8': {
        const out = newU8(n);
        for (let i = 0; i < n; i++) out[i] = src[i]; // ToUint8: the low byte
        return out;
      }
      case 'f32':
        return toF32(src, 'i32');
      default:
        return fromF32(toF32(src, 'i32'), to, saturate);
    }
  }
  // Float sources: go through the exact f32 value (free for f32 itself).
  const f = from === 'f32' ? (x as Float32Array) : toF32(x, from);
  if (to === 'f32') return f;
  if (to === 'i32') {
    const out = newI32(n);
    for (let i = 0; i < n; i++) {
      const v = f[i];
      out[i] = v !== v ? 0 : v >= 2147483647 ? 2147483647 : v <= -2147483648 ? -2147483648 : Math.trunc(v);
    }
    return out;
  }
  if (to === 'u8') {
    const out = newU8(n);
    for (let i = 0; i < n; i++) {
      const v = f[i];
      out[i] = v !== v ? 0 : v >= 255 ? 255 : v <= 0 ? 0 : Math.trunc(v);
    }
    return out;
  }
  return fromF32(f, to, saturate);
}

function normalizedBool(x: Uint8Array): Uint8Array {
  const out = newU8(x.length);
  for (let i = 0; i < x.length; i++) out[i] = +(x[i] !== 0);
  return out;
}

function toBool(x: StorageArray, from: DType): Uint8Array {
  const n = x.length;
  const out = newU8(n);
  switch (from) {
    case 'f16':
    case 'bf16': {
      const c = x as Uint16Array;
      for (let i = 0; i < n; i++) out[i] = +((c[i] & 0x7fff) !== 0);
      break;
    }
    case 'e4m3':
    case 'e5m2': {
      const c = x as Uint8Array;
      for (let i = 0; i < n; i++) out[i] = +((c[i] & 0x7f) !== 0);
      break;
    }
    default: {
      const v = x as Float32Array | Int32Array | Uint8Array;
      for (let i = 0; i < n; i++) out[i] = +(v[i] !== 0); // NaN !== 0
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Decoding to f32 (exact).

let f16Table: Float32Array | undefined;
function f16DecodeTable(): Float32Array {
  if (!f16Table) {
    const t = new Float32Array(65536);
    for (let c = 0; c < 65536; c++) t[c] = f16BitsToF32(c);
    f16Table = t;
  }
  return f16Table;
}

/** Decodes f16/bf16/FP8 codes to exact f32 values (NaN codes become NaN). */
export function toF32(x: StorageArray, from: DType): Float32Array {
  const n = x.length;
  const out = newF32(n);
  switch (from) {
    case 'f16': {
      const t = f16DecodeTable();
      const c = x as Uint16Array;
      for (let i = 0; i < n; i++) out[i] = t[c[i]];
      return out;
    }
    case 'bf16': {
      const c = x as Uint16Array;
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = c[i] << 16;
      return out;
    }
    case 'e4m3':
    case 'e5m2': {
      const t = FP8_DECODE_TABLE[from];
      const c = x as Uint8Array;
      for (let i = 0; i < n; i++) out[i] = t[c[i]];
      return out;
    }
    case 'f32':
      return copyOf(x as Float32Array);
    default: {
      const v = x as Int32Array | Uint8Array;
      for (let i = 0; i < n; i++) out[i] = v[i];
      return out;
    }
  }
}

// ---------------------------------------------------------------------------------------
// Encoding from f32.

/** f32 values -> codes of the float format `to` (f16, bf16, e4m3, e5m2). */
export function fromF32(f: Float32Array, to: DType, saturate: boolean): StorageArray {
  switch (to) {
    case 'f16':
      return encodeF16(f, saturate);
    case 'bf16':
      return encodeBf16(f);
    case 'e4m3':
    case 'e5m2':
      return encodeFp8(f, to, saturate);
    default:
      return copyOf(f);
  }
}

function bitsOf(f: Float32Array): Uint32Array {
  return new Uint32Array(f.buffer, f.byteOffset, f.length);
}

/** f32 -> bf16, round half to even on the bit pattern; NaN -> 0x7fc0 (as core's f32ToBf16Bits). */
export function encodeBf16(f: Float32Array): Uint16Array {
  const n = f.length;
  const bits = bitsOf(f);
  const out = newU16(n);
  for (let i = 0; i < n; i++) {
    const u = bits[i];
    if ((u & 0x7fffffff) > 0x7f800000) out[i] = 0x7fc0;
    else out[i] = (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
  }
  return out;
}

/**
 * f32 -> f16 with round half to even, same codes as core's encodeMinifloat(x, F16, saturate):
 * NaN -> sign | 0x7e00; |x| >= 65520 (and inf) -> sign | (saturate ? 0x7bff : 0x7c00).
 */
export function encodeF16(f: Float32Array, saturate: boolean): Uint16Array {
  const n = f.length;
  const bits = bitsOf(f);
  const out = newU16(n);
  const overflow = saturate ? 0x7bff : 0x7c00;
  for (let i = 0; i < n; i++) {
    const u = bits[i];
    const sign = (u >>> 16) & 0x8000;
    const abs = u & 0x7fffffff;
    let h: number;
    if (abs >= 0x38800000) {
      if (abs < 0x477ff000) {
        // Normal f16: rebias the exponent (127 -> 15) and round off 13 mantissa bits.
        const r = abs - 0x38000000;
        h = (r + 0xfff + ((r >>> 13) & 1)) >>> 13;
      } else {
        h = abs > 0x7f800000 ? 0x7e00 : overflow;
      }
    } else if (abs <= 0x33000000) {
      h = 0; // at most half the smallest subnormal (2^-25): ties go to even (0)
    } else {
      // Subnormal f16: multiples of 2^-24. |x| * 2^24 is exact in float64.
      const t = Math.abs(f[i]) * 16777216;
      let q = Math.floor(t);
      const rem = t - q;
      if (rem > 0.5 || (rem === 0.5 && (q & 1) === 1)) q++;
      h = q;
    }
    out[i] = sign | h;
  }
  return out;
}

// FP8 through tables: for FP8 targets the rounding position always lies in the top 16 bits
// of the f32 pattern, and the low 16 bits only matter as a sticky bit. So the code is
// table[hi16] when the low half is zero and stickyTable[hi16] otherwise. Both tables come
// from core's encodeMinifloat (built lazily per format and saturate mode).
const fp8Tables = new Map<string, { exact: Uint8Array; sticky: Uint8Array }>();

function fp8TablesFor(format: 'e4m3' | 'e5m2', saturate: boolean): { exact: Uint8Array; sticky: Uint8Array } {
  const key = `${format}:${saturate ? 1 : 0}`;
  let t = fp8Tables.get(key);
  if (!t) {
    const fmt: MinifloatFormat = format === 'e4m3' ? E4M3 : E5M2;
    const exact = new Uint8Array(65536);
    const sticky = new Uint8Array(65536);
    for (let hi = 0; hi < 65536; hi++) {
      exact[hi] = encodeMinifloat(bitsToF32(hi << 16), fmt, saturate);
      sticky[hi] = encodeMinifloat(bitsToF32((hi << 16) | 1), fmt, saturate);
    }
    t = { exact, sticky };
    fp8Tables.set(key, t);
  }
  return t;
}

export function encodeFp8(f: Float32Array, format: 'e4m3' | 'e5m2', saturate: boolean): Uint8Array {
  const n = f.length;
  const bits = bitsOf(f);
  const out = newU8(n);
  const { exact, sticky } = fp8TablesFor(format, saturate);
  for (let i = 0; i < n; i++) {
    const u = bits[i];
    out[i] = (u & 0xffff) === 0 ? exact[u >>> 16] : sticky[u >>> 16];
  }
  return out;
}

/** Encodes one f32 value into `dtype`'s code (for fill). */
export function encodeScalar(value: number, dtype: DType): number {
  const v = Math.fround(value);
  switch (dtype) {
    case 'f16':
      return encodeMinifloat(v, F16, false);
    case 'bf16':
      return encodeBf16(new Float32Array([v]))[0];
    case 'e4m3':
      return encodeMinifloat(v, E4M3, false);
    case 'e5m2':
      return encodeMinifloat(v, E5M2, false);
    default:
      return v;
  }
}
