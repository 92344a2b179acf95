import { ArgumentError } from '../errors.js';
import { decodeMinifloat, encodeMinifloat, type MinifloatFormat } from './minifloat.js';

export type Fp8Format = 'e4m3' | 'e5m2';

/** OCP E4M3 "fn": no infinities, 0x7f/0xff are NaN, max finite 448. Overflow is NaN (as torch). */
export const E4M3: MinifloatFormat = {
  exponentBits: 4,
  mantissaBits: 3,
  bias: 7,
  maxFiniteCode: 0x7e,
  overflowCode: 0x7f,
  nanCode: 0x7f,
  infCode: 0x7f,
  totalBits: 8,
};

/** E5M2: IEEE-like, 0x7c is +inf, 0x7d..0x7f NaN, max finite 57344. */
export const E5M2: MinifloatFormat = {
  exponentBits: 5,
  mantissaBits: 2,
  bias: 15,
  maxFiniteCode: 0x7b,
  overflowCode: 0x7c,
  nanCode: 0x7f,
  infCode: 0x7c,
  totalBits: 8,
};

export const E4M3_MAX = 448;
export const E5M2_MAX = 57344;

function formatOf(format: Fp8Format, op: string): MinifloatFormat {
  if (format === 'e4m3') return E4M3;
  if (format === 'e5m2') return E5M2;
  throw new ArgumentError(op, `unknown FP8 format ${JSON.stringify(format)}; expected 'e4m3' or 'e5m2'`);
}

function buildTable(format: Fp8Format): Float32Array {
  const fmt = formatOf(format, 'decodeFp8');
  const special =
    format === 'e4m3'
      ? (mag: number) => (mag === 0x7f ? NaN : undefined)
      : (mag: number) => (mag === 0x7c ? Infinity : mag > 0x7c ? NaN : undefined);
  const table = new Float32Array(256);
  for (let c = 0; c < 256; c++) table[c] = decodeMinifloat(c, fmt, special);
  return table;
}

/** All 256 decoded values of each format, exact. */
export const FP8_DECODE_TABLE: Readonly<Record<Fp8Format, Float32Array>> = {
  e4m3: buildTable('e4m3'),
  e5m2: buildTable('e5m2'),
};

export interface EncodeFp8Options {
  /** Clamp out-of-range values to +-max finite instead of NaN (e4m3) / inf (e5m2). NaN stays NaN. */
  saturate?: boolean;
}

/**
 * float32 -> FP8 codes with round-half-to-even; by default bit-for-bit what
 * PyTorch's `.to(torch.float8_e4m3fn)` / `.to(torch.float8_e5m2)` produce.
 */
export function encodeFp8(values: Float32Array, format: Fp8Format, options: EncodeFp8Options = {}): Uint8Array {
  const fmt = formatOf(format, 'encodeFp8');
  const saturate = options.saturate ?? false;
  const out = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = encodeMinifloat(values[i], fmt, saturate);
  return out;
}

export function decodeFp8(codes: Uint8Array, format: Fp8Format): Float32Array {
  const table = FP8_DECODE_TABLE[format] ?? formatOf(format, 'decodeFp8');
  const out = new Float32Array(codes.length);
  for (let i = 0; i < codes.length; i++) out[i] = (table as Float32Array)[codes[i]];
  return out;
}

/** Encodes one value; the hot loops in backends use this with a cached format. */
export function encodeFp8Value(x: number, format: Fp8Format, saturate = false): number {
  return encodeMinifloat(x, format === 'e4m3' ? E4M3 : E5M2, saturate);
}
