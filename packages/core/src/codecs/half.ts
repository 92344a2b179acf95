import { bitsToF32, decodeMinifloat, encodeMinifloat, f32Bits, type MinifloatFormat } from './minifloat.js';

/** IEEE binary16. */
export const F16: MinifloatFormat = {
  exponentBits: 5,
  mantissaBits: 10,
  bias: 15,
  maxFiniteCode: 0x7bff,
  overflowCode: 0x7c00,
  nanCode: 0x7e00,
  infCode: 0x7c00,
  totalBits: 16,
};

export function f32ToF16Bits(x: number): number {
  return encodeMinifloat(x, F16, false);
}

const f16Special = (mag: number) => (mag === 0x7c00 ? Infinity : mag > 0x7c00 ? NaN : undefined);

let f16Table: Float32Array | undefined;
/** Exact f16 -> f32 via a 64K table (built on first use). */
export function f16BitsToF32(code: number): number {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let c = 0; c < 65536; c++) f16Table[c] = decodeMinifloat(c, F16, f16Special);
  }
  return f16Table[code & 0xffff];
}

/** f32 -> bf16 with round-half-to-even; NaN becomes the canonical quiet NaN 0x7fc0 (as torch). */
export function f32ToBf16Bits(x: number): number {
  const bits = f32Bits(x);
  if ((bits & 0x7fffffff) > 0x7f800000) return 0x7fc0;
  const lsb = (bits >>> 16) & 1;
  return ((bits + 0x7fff + lsb) >>> 16) & 0xffff;
}

export function bf16BitsToF32(code: number): number {
  return bitsToF32((code & 0xffff) << 16);
}

export function encodeF16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f32ToF16Bits(values[i]);
  return out;
}
export function decodeF16(codes: Uint16Array): Float32Array {
  const out = new Float32Array(codes.length);
  for (let i = 0; i < codes.length; i++) out[i] = f16BitsToF32(codes[i]);
  return out;
}
export function encodeBf16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f32ToBf16Bits(values[i]);
  return out;
}
export function decodeBf16(codes: Uint16Array): Float32Array {
  const out = new Float32Array(codes.length);
  for (let i = 0; i < codes.length; i++) out[i] = bf16BitsToF32(codes[i]);
  return out;
}
