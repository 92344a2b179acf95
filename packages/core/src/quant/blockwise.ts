import { ArgumentError, ShapeError } from '../errors.js';
import { E4M3, E5M2, FP8_DECODE_TABLE, type Fp8Format } from '../codecs/fp8.js';
import { encodeMinifloat, f32Bits, bitsToF32 } from '../codecs/minifloat.js';

/** How block scales are stored: plain f32, or rounded up to a power of two (UE8M0, exponent only). */
export type ScaleFormat = 'fp32' | 'ue8m0';

export interface QuantizeBlockwiseOptions {
  scaleFormat?: ScaleFormat;
  format?: Fp8Format;
}

export interface BlockwiseQuantized {
  /** FP8 codes, row-major like the input. */
  codes: Uint8Array;
  /** Row-major [ceil(rows/blockRows), ceil(cols/blockCols)]; code * scale recovers the value. */
  scales: Float32Array;
}

const FP8_MAX: Record<Fp8Format, number> = { e4m3: 448, e5m2: 57344 };
/** Lower bound on a block's amax, so all-zero blocks get a finite scale (DeepSeek-V3's 1e-4). */
export const AMAX_FLOOR = Math.fround(1e-4);

/** 2^ceil(log2(s)) for a positive finite f32, exactly (on the bit pattern). */
export function roundScaleUpToPowerOfTwo(s: number): number {
  const bits = f32Bits(s);
  const exp = (bits >>> 23) & 0xff;
  const frac = bits & 0x7fffff;
  if (exp === 0) {
    // Subnormal: the next power of two at or above it.
    let p = 2 ** -149;
    while (p < s) p *= 2;
    return p;
  }
  if (frac === 0) return s;
  return bitsToF32(((exp + 1) << 23) >>> 0);
}

export function checkBlockArgs(op: string, length: number, shape: readonly number[], block: readonly number[]): [number, number, number, number] {
  if (!Array.isArray(shape) || shape.length !== 2 || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new ShapeError(op, `shape must be [rows, cols] of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  if (!Array.isArray(block) || block.length !== 2 || !block.every((d) => Number.isInteger(d) && d > 0)) {
    throw new ArgumentError(op, `block must be [blockRows, blockCols] of positive integers, got ${JSON.stringify(block)}`);
  }
  const [rows, cols] = shape;
  if (length !== rows * cols) {
    throw new ShapeError(op, `x has ${length} elements but shape [${rows}, ${cols}] needs ${rows * cols}`);
  }
  return [rows, cols, block[0], block[1]];
}

function checkFormat(op: string, format: unknown): Fp8Format {
  if (format !== 'e4m3' && format !== 'e5m2') throw new ArgumentError(op, `format must be 'e4m3' or 'e5m2', got ${JSON.stringify(format)}`);
  return format;
}

/**
 * Fine-grained FP8 quantisation as in DeepSeek-V3: one scale per [blockRows, blockCols] block
 * ([1,128] activation tiles, [128,128] weight blocks). Per block, in f32 arithmetic:
 * amax = max(max|x|, 1e-4); scale = amax * f32(1/max_fp8) (ue8m0: rounded up to 2^k);
 * codes = fp8(x / scale). Edge blocks use only their real elements.
 */
export function quantizeBlockwise(
  x: Float32Array,
  shape: readonly [number, number] | number[],
  block: readonly [number, number] | number[],
  options: QuantizeBlockwiseOptions = {},
): BlockwiseQuantized {
  const op = 'quantizeBlockwise';
  if (!(x instanceof Float32Array)) throw new ArgumentError(op, `x must be a Float32Array, got ${(x as object)?.constructor?.name ?? typeof x}`);
  const [rows, cols, br, bc] = checkBlockArgs(op, x.length, shape, block);
  const format = checkFormat(op, options.format ?? 'e4m3');
  const scaleFormat = options.scaleFormat ?? 'fp32';
  if (scaleFormat !== 'fp32' && scaleFormat !== 'ue8m0') throw new ArgumentError(op, `scaleFormat must be 'fp32' or 'ue8m0', got ${JSON.stringify(scaleFormat)}`);
  const fmt = format === 'e4m3' ? E4M3 : E5M2;
  const invMax = Math.fround(1 / FP8_MAX[format]);
  const nr = Math.ceil(rows / br);
  const nc = Math.ceil(cols / bc);
  const codes = new Uint8Array(rows * cols);
  const scales = new Float32Array(nr * nc);
  for (let bi = 0; bi < nr; bi++) {
    const r0 = bi * br;
    const r1 = Math.min(rows, r0 + br);
    for (let bj = 0; bj < nc; bj++) {
      const c0 = bj * bc;
      const c1 = Math.min(cols, c0 + bc);
      let amax = 0;
      let nan = false;
      for (let r = r0; r < r1; r++) {
        for (let c = c0; c < c1; c++) {
          const a = Math.abs(x[r * cols + c]);
          if (a > amax) amax = a;
          else if (a !== a) nan = true;
        }
      }
      // torch's amax propagates NaN; clamp(min) keeps NaN.
      if (nan) amax = NaN;
      else if (amax < AMAX_FLOOR) amax = AMAX_FLOOR;
      let s = Math.fround(amax * invMax);
      if (scaleFormat === 'ue8m0' && Number.isFinite(s)) s = roundScaleUpToPowerOfTwo(s);
      scales[bi * nc + bj] = s;
      for (let r = r0; r < r1; r++) {
        for (let c = c0; c < c1; c++) {
          const i = r * cols + c;
          codes[i] = encodeMinifloat(Math.fround(x[i] / s), fmt, false);
        }
      }
    }
  }
  return { codes, scales };
}

/** Inverse of quantizeBlockwise: value = decode(code) * scale, in f32. */
export function dequantizeBlockwise(
  codes: Uint8Array,
  scales: Float32Array,
  shape: readonly [number, number] | number[],
  block: readonly [number, number] | number[],
  format: Fp8Format = 'e4m3',
): Float32Array {
  const op = 'dequantizeBlockwise';
  if (!(codes instanceof Uint8Array)) throw new ArgumentError(op, 'codes must be a Uint8Array');
  const [rows, cols, br, bc] = checkBlockArgs(op, codes.length, shape, block);
  checkFormat(op, format);
  const nr = Math.ceil(rows / br);
  const nc = Math.ceil(cols / bc);
  if (!(scales instanceof Float32Array) || scales.length !== nr * nc) {
    throw new ShapeError(op, `scales must be a Float32Array of ${nr}x${nc} = ${nr * nc} block scales for shape [${rows}, ${cols}] and block [${br}, ${bc}], got ${scales?.length}`);
  }
  const table = FP8_DECODE_TABLE[format];
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const srow = Math.floor(r / br) * nc;
    for (let c = 0; c < cols; c++) out[r * cols + c] = table[codes[r * cols + c]] * scales[srow + Math.floor(c / bc)];
  }
  return out;
}
