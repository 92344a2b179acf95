import {
  AMAX_FLOOR,
  E4M3,
  E4M3_MAX,
  E5M2,
  E5M2_MAX,
  encodeMinifloat,
  FP8_DECODE_TABLE,
  fp8GemmReference,
  quantizeBlockwise,
  roundScaleUpToPowerOfTwo,
  roundToMantissaBits,
  type Fp8Format,
  type MinifloatFormat,
  type PrimitiveFp8GemmOptions,
} from '@kiln/core';
import { sgemm } from '../gemm/index.js';
import { newF32 } from '../pool.js';
import { fp8Wasm, type Fp8Wasm } from './fp8-wasm.js';

/**
 * Fine-grained FP8 quantisation, bit for bit `quantizeBlockwise` (tested against it): the same
 * per-block amax, floor and scale, then codes = fp8(f32(x / scale)), with the f32 → FP8
 * rounding (to nearest, ties to even; overflow to NaN for e4m3, to inf for e5m2) done on the
 * f32 bit pattern by integer arithmetic (`encodeFp8Bits`) instead of core's general minifloat
 * encoder, about 30x faster.
 */
export function quantizeKernel(
  x: Float32Array,
  rows: number,
  cols: number,
  block: readonly [number, number],
  format: Fp8Format,
  scaleFormat: 'fp32' | 'ue8m0',
): { codes: Uint8Array; scales: Float32Array } {
  const [br, bc] = block;
  if (!(x.length === rows * cols && Number.isInteger(br) && Number.isInteger(bc) && br > 0 && bc > 0) || (format !== 'e4m3' && format !== 'e5m2')) {
    return quantizeBlockwise(x, [rows, cols], [br, bc], { format, scaleFormat }); // reports what is wrong
  }
  const fmt = format === 'e4m3' ? E4M3 : E5M2;
  const invMax = Math.fround(1 / (format === 'e4m3' ? E4M3_MAX : E5M2_MAX));
  const nr = Math.ceil(rows / br);
  const nc = Math.ceil(cols / bc);
  const codes = new Uint8Array(rows * cols);
  const scales = new Float32Array(nr * nc);
  const q = new Float32Array(Math.min(bc, cols));
  const qBits = new Uint32Array(q.buffer);
  const shift = 23 - fmt.mantissaBits;
  const half = (1 << (shift - 1)) - 1;
  const rebias = (127 - fmt.bias) << fmt.mantissaBits;
  const normalMin = (128 - fmt.bias) << 23;
  const maxFinite = fmt.maxFiniteCode;
  const overflow = fmt.overflowCode;
  for (let bi = 0; bi < nr; bi++) {
    const r0 = bi * br;
    const r1 = Math.min(rows, r0 + br);
    for (let bj = 0; bj < nc; bj++) {
      const c0 = bj * bc;
      const c1 = Math.min(cols, c0 + bc);
      const w = c1 - c0;
      let amax = 0;
      let nan = false;
      for (let r = r0; r < r1; r++) {
        const row = r * cols;
        for (let c = c0; c < c1; c++) {
          const a = Math.abs(x[row + c]);
          if (a > amax) amax = a;
          else if (a !== a) nan = true;
        }
      }
      if (nan) amax = NaN;
      else if (amax < AMAX_FLOOR) amax = AMAX_FLOOR;
      let s = Math.fround(amax * invMax);
      if (scaleFormat === 'ue8m0' && Number.isFinite(s)) s = roundScaleUpToPowerOfTwo(s);
      scales[bi * nc + bj] = s;
      for (let r = r0; r < r1; r++) {
        const row = r * cols + c0;
        for (let j = 0; j < w; j++) q[j] = x[row + j] / s; // the store rounds to f32
        for (let j = 0; j < w; j++) {
          const bits = qBits[j];
          const abs = bits & 0x7fffffff;
          if (abs >= normalMin && abs < 0x7f800000) {
            // encodeFp8Bits' normal case, inlined
            const code = ((abs + half + ((abs >>> shift) & 1)) >>> shift) - rebias;
            codes[row + j] = ((bits >>> 24) & 0x80) | (code > maxFinite ? overflow : code);
          } else {
            codes[row + j] = abs > 0x7f800000 ? encodeMinifloat(q[j], fmt, false) : encodeFp8Bits(bits, fmt);
          }
        }
      }
    }
  }
  return { codes, scales };
}

/**
 * The FP8 code of the f32 with bit pattern `bits` (not NaN), rounded to nearest even, not
 * saturating: what core's `encodeMinifloat` gives, in integer arithmetic on the pattern.
 * RNE of a magnitude m by 2^shift: (m + 2^(shift−1) − 1 + lsb) >>> shift, where lsb is the
 * last kept bit; a carry out of the mantissa moves into the exponent, as it should.
 */
export function encodeFp8Bits(bits: number, fmt: MinifloatFormat): number {
  const sign = (bits >>> 24) & 0x80; // branch-free: signs of data are random
  const abs = bits & 0x7fffffff;
  const mb = fmt.mantissaBits;
  const expField = abs >>> 23;
  let code: number;
  if (expField === 0xff) return sign | ((abs & 0x7fffff) !== 0 ? fmt.nanCode : fmt.infCode);
  if (expField >= 128 - fmt.bias) {
    // normal in the target format (or overflowing): round the magnitude bits, re-bias the exponent
    const shift = 23 - mb;
    code = ((abs + (1 << (shift - 1)) - 1 + ((abs >>> shift) & 1)) >>> shift) - ((127 - fmt.bias) << mb);
  } else {
    // subnormal in the target format: the mantissa with its leading bit, shifted further
    const m = expField === 0 ? abs : (abs & 0x7fffff) | 0x800000;
    const shift = 23 - mb + (128 - fmt.bias - Math.max(expField, 1));
    code = shift > 25 ? 0 : (m + (1 << (shift - 1)) - 1 + ((m >>> shift) & 1)) >>> shift;
  }
  return sign | (code > fmt.maxFiniteCode ? fmt.overflowCode : code);
}

export interface Fp8Operand {
  codes: Uint8Array;
  scales: Float32Array;
  rows: number;
  k: number;
  block: readonly [number, number];
  format: Fp8Format;
}

/**
 * FP8 block-scaled GEMM out = a · bᵀ.
 *
 * Fast path (promotion every K block, exact f32 accumulation inside a block): each 128-wide
 * K slab of a and b is decoded by table into packed f32 panels (FP8 values and their products
 * are exact in f32); the slabs of several K blocks go to the SIMD/threaded f32 GEMM as one
 * batch, one partial [M, N] per K block; then, K block by K block in order, the partials are
 * promoted: out = f32(out + f32(partial · f32(sa · sb))). Decode and promotion run in a small
 * WebAssembly module (kernels/fp8-wasm.ts), the promotion 4 lanes at a time, with the same
 * bits as the scalar definition.
 *
 * Every other option (another promotion interval, the limited-accumulator model) runs the
 * emulation: the scalar loop of core's `fp8GemmReference`, result for result, with the
 * accumulator's rounding done on the bits of the double rather than through log2/pow.
 */
export function matmulFp8Kernel(a: Fp8Operand, b: Fp8Operand, options: PrimitiveFp8GemmOptions): Float32Array {
  const bk = a.block[1];
  const fast = options.accumulatorMantissaBits === undefined && options.promotionInterval === bk && b.block[1] === bk;
  if (!fast) return emulateFp8Gemm(a, b, options);
  if (a.rows === 0 || b.rows === 0) return new Float32Array(a.rows * b.rows);
  const w = fp8Wasm();
  if (w) {
    const out = blockScaledWasm(w, a, b);
    if (out) return out;
  }
  return blockScaledJs(a, b);
}

// ---- fast path ---------------------------------------------------------------------------

/** Most bytes of per-K-block partials held at once (decides how many K blocks one GEMM batch takes). */
const PARTIAL_BYTES = 16 << 20;
const TABLE_BYTES = 1024; // 256 f32
const align64 = (x: number) => Math.ceil(x / 64) * 64;
let tablesIn: ArrayBuffer | undefined;

/** Null when the module's memory cannot grow to the problem (then the JS loops run). */
function blockScaledWasm(w: Fp8Wasm, a: Fp8Operand, b: Fp8Operand): Float32Array | null {
  const M = a.rows;
  const N = b.rows;
  const K = a.k;
  const bk = a.block[1];
  const kBlocks = Math.ceil(K / bk);
  const fullBlocks = Math.floor(K / bk);
  const mn = M * N;
  const batch = Math.max(1, Math.min(kBlocks, Math.floor(PARTIAL_BYTES / (mn * 4))));
  const nbW = b.block[0];
  const sbCount = Math.ceil(N / nbW);

  // memory layout (bytes): decode tables, codes of a and b, panels of one batch, partials, out, b scales of one K block
  const tableA = a.format === 'e4m3' ? 0 : TABLE_BYTES;
  const tableB = b.format === 'e4m3' ? 0 : TABLE_BYTES;
  const codesA = 2 * TABLE_BYTES;
  const codesB = align64(codesA + M * K);
  const panelA = align64(codesB + N * K);
  const panelB = align64(panelA + batch * M * bk * 4);
  const part = align64(panelB + batch * N * bk * 4);
  const out = align64(part + batch * mn * 4);
  const sbk = align64(out + mn * 4);
  try {
    w.reserve(sbk + sbCount * 4);
  } catch {
    return null;
  }

  const buf = w.memory.buffer;
  const f32 = new Float32Array(buf);
  const u8 = new Uint8Array(buf);
  if (tablesIn !== buf) {
    f32.set(FP8_DECODE_TABLE.e4m3, 0);
    f32.set(FP8_DECODE_TABLE.e5m2, TABLE_BYTES >> 2);
    tablesIn = buf;
  }
  u8.set(a.codes, codesA);
  u8.set(b.codes, codesB);
  f32.fill(0, out >> 2, (out >> 2) + mn);
  const scaleColsA = kBlocks;
  const scaleColsB = Math.ceil(K / b.block[1]);
  const brA = a.block[0];

  for (let kb0 = 0; kb0 < kBlocks; ) {
    // a batch of full K blocks (all of the same width), or the last, narrower block alone
    const count = kb0 < fullBlocks ? Math.min(batch, fullBlocks - kb0) : 1;
    const kc = Math.min(bk, K - kb0 * bk);
    for (let i = 0; i < count; i++) {
      const k0 = (kb0 + i) * bk;
      w.decode(panelA + i * M * kc * 4, codesA + k0, M, K, kc, tableA);
      w.decode(panelB + i * N * kc * 4, codesB + k0, N, K, kc, tableB);
    }
    const offs = (stride: number) => Array.from({ length: count }, (_, i) => i * stride);
    sgemm({
      m: M,
      n: N,
      k: kc,
      transA: false,
      transB: true,
      a: new Float32Array(buf, panelA, count * M * kc),
      b: new Float32Array(buf, panelB, count * N * kc),
      c: new Float32Array(buf, part, count * mn),
      aOffsets: offs(M * kc),
      bOffsets: offs(N * kc),
      cOffsets: offs(mn),
    });
    for (let i = 0; i < count; i++) {
      const kb = kb0 + i;
      for (let j = 0; j < sbCount; j++) f32[(sbk >> 2) + j] = b.scales[j * scaleColsB + kb];
      const pi = part + i * mn * 4;
      for (let m = 0; m < M; m++) {
        w.promote(out + m * N * 4, pi + m * N * 4, N, sbk, nbW, a.scales[Math.floor(m / brA) * scaleColsA + kb]);
      }
    }
    kb0 += count;
  }
  const result = newF32(mn);
  result.set(f32.subarray(out >> 2, (out >> 2) + mn));
  return result;
}

/** The same computation in plain JS, for hosts without WebAssembly (exported for tests). */
export function blockScaledJs(a: Fp8Operand, b: Fp8Operand): Float32Array {
  const M = a.rows;
  const N = b.rows;
  const K = a.k;
  const bk = a.block[1];
  const ta = FP8_DECODE_TABLE[a.format];
  const tb = FP8_DECODE_TABLE[b.format];
  const kBlocks = Math.ceil(K / bk);
  const scaleColsA = kBlocks;
  const scaleColsB = Math.ceil(K / b.block[1]);
  const nbW = b.block[0];
  const out = newF32(M * N, true);
  const panelA = new Float32Array(M * bk);
  const panelB = new Float32Array(N * bk);
  const partial = new Float32Array(M * N);
  for (let kb = 0; kb < kBlocks; kb++) {
    const k0 = kb * bk;
    const kc = Math.min(bk, K - k0);
    for (let m = 0; m < M; m++) {
      const src = m * K + k0;
      const dst = m * kc;
      for (let j = 0; j < kc; j++) panelA[dst + j] = ta[a.codes[src + j]];
    }
    for (let n = 0; n < N; n++) {
      const src = n * K + k0;
      const dst = n * kc;
      for (let j = 0; j < kc; j++) panelB[dst + j] = tb[b.codes[src + j]];
    }
    sgemm({ m: M, n: N, k: kc, transA: false, transB: true, a: panelA, b: panelB, c: partial, aOffsets: [0], bOffsets: [0], cOffsets: [0] });
    for (let m = 0; m < M; m++) {
      const sa = a.scales[Math.floor(m / a.block[0]) * scaleColsA + kb];
      const row = m * N;
      for (let n0 = 0; n0 < N; n0 += nbW) {
        const s = Math.fround(sa * b.scales[(n0 / nbW) * scaleColsB + kb]);
        const n1 = Math.min(N, n0 + nbW);
        for (let n = n0; n < n1; n++) out[row + n] = Math.fround(out[row + n] + Math.fround(partial[row + n] * s));
      }
    }
  }
  return out;
}

// ---- emulation -----------------------------------------------------------------------------

const F64 = new Float64Array(1);
const W32 = new Int32Array(F64.buffer);
const HI = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0; // little-endian: high word second

/**
 * `fp8GemmReference` with the same loops, the same operation order and the same results, bit
 * for bit (tested), only faster (about 20x with the limited accumulator): operands are decoded
 * once, and the accumulator's rounding works on the bits of the double (`accumulatorRounder`).
 */
function emulateFp8Gemm(a: Fp8Operand, b: Fp8Operand, options: PrimitiveFp8GemmOptions): Float32Array {
  const M = a.rows;
  const N = b.rows;
  const K = a.k;
  const bk = a.block[1];
  const nc = options.promotionInterval;
  const bits = options.accumulatorMantissaBits;
  const group = options.accumulatorGroupSize ?? 1;
  const rounding = options.accumulatorRounding ?? 'truncate';
  const validShape = a.codes.length === M * K && b.codes.length === N * b.k && b.k === K && b.block[1] === bk;
  const validNc = nc === Infinity || (Number.isInteger(nc) && nc > 0 && (nc % bk === 0 || bk % nc === 0));
  const validBits = bits === undefined || (Number.isInteger(bits) && bits >= 1 && bits <= 23);
  const validGroup = Number.isInteger(group) && group >= 1;
  if (!validShape || !validNc || !validBits || !validGroup || (rounding !== 'truncate' && rounding !== 'nearest')) {
    // the definition reports what is wrong
    return fp8GemmReference(
      { codes: a.codes, scales: a.scales, shape: [M, K], block: a.block, format: a.format },
      { codes: b.codes, scales: b.scales, shape: [N, b.k], block: b.block, format: b.format },
      options,
    );
  }
  const da = decodeAll(a.codes, a.format);
  const db = decodeAll(b.codes, b.format);
  const out = newF32(M * N);
  const chunk = nc === Infinity ? Math.max(K, 1) : nc;
  const kbA = Math.ceil(K / bk);
  const kbB = Math.ceil(K / b.block[1]);
  const r = rounder(bits ?? 23, rounding);
  for (let i = 0; i < M; i++) {
    const sRowA = Math.floor(i / a.block[0]) * kbA;
    const rowA = i * K;
    for (let j = 0; j < N; j++) {
      const sRowB = Math.floor(j / b.block[0]) * kbB;
      const rowB = j * K;
      let acc32 = 0;
      for (let k0 = 0; k0 < K; k0 += chunk) {
        const k1 = Math.min(K, k0 + chunk);
        // as in the reference: a chunk spanning several K blocks takes its first block's scales
        const sa = a.scales[sRowA + Math.floor(k0 / bk)];
        const sb = b.scales[sRowB + Math.floor(k0 / b.block[1])];
        let partial = 0;
        if (bits === undefined) {
          for (let k = k0; k < k1; k++) partial = Math.fround(partial + Math.fround(da[rowA + k] * db[rowB + k]));
        } else if (group === 1) {
          for (let k = k0; k < k1; k++) partial = roundAcc(partial + Math.fround(da[rowA + k] * db[rowB + k]), r);
        } else {
          let groupSum = 0;
          let inGroup = 0;
          for (let k = k0; k < k1; k++) {
            groupSum += Math.fround(da[rowA + k] * db[rowB + k]);
            if (++inGroup === group) {
              partial = roundAcc(partial + groupSum, r);
              groupSum = 0;
              inGroup = 0;
            }
          }
          if (inGroup > 0) partial = roundAcc(partial + groupSum, r);
        }
        acc32 = Math.fround(acc32 + Math.fround(partial * Math.fround(sa * sb)));
      }
      out[i * N + j] = acc32;
    }
  }
  return out;
}

interface Rounder {
  readonly bits: number;
  readonly nearest: boolean;
  /** by biased exponent field ex: nearest: 1.5·2^(e−bits+52); truncate: the quantum 2^(e−bits) */
  readonly big: Float64Array;
  /** truncate: 1 / quantum */
  readonly inv: Float64Array;
}

function rounder(bits: number, rounding: 'truncate' | 'nearest'): Rounder {
  const nearest = rounding === 'nearest';
  // exponent fields 64..1990 (2^-959 <= |x| < 2^968): outside, 1/quantum or 1.5·2^(e−bits+52) could overflow
  const big = new Float64Array(2048);
  const inv = new Float64Array(2048);
  for (let ex = 64; ex <= 1990; ex++) {
    const e = ex - 1023;
    big[ex] = nearest ? 1.5 * 2 ** (e - bits + 52) : 2 ** (e - bits);
    inv[ex] = 2 ** (bits - e);
  }
  return { bits, nearest, big, inv };
}

/**
 * roundToMantissaBits(x, r.bits, rounding), for a normal double x = 1.f·2^e without log2 or
 * pow: e comes from the exponent field; truncation scales by 2^(bits−e), truncates and scales
 * back by the quantum 2^(e−bits); round to nearest (ties to even) adds and subtracts
 * 1.5·2^(e−bits+52), whose ulp is the quantum, so that the double addition does the rounding.
 * Zeros, subnormals, infinities, NaN and values near either end of the double range take
 * core's function.
 */
function roundAcc(x: number, r: Rounder): number {
  F64[0] = x;
  const ex = (W32[HI] >>> 20) & 0x7ff;
  if (ex < 64 || ex > 1990) return roundToMantissaBits(x, r.bits, r.nearest ? 'nearest' : 'truncate');
  const c = r.big[ex];
  // both exact but for the one rounding: x·2^(bits−e) is x's mantissa scaled, trunc drops its fraction
  return r.nearest ? x + c - c : Math.trunc(x * r.inv[ex]) * c;
}

/** `x => roundToMantissaBits(x, bits, rounding)`, as the emulation computes it (exported for tests). */
export function accumulatorRounder(bits: number, rounding: 'truncate' | 'nearest'): (x: number) => number {
  const r = rounder(bits, rounding);
  return (x) => roundAcc(x, r);
}

function decodeAll(codes: Uint8Array, format: Fp8Format): Float32Array {
  const t = FP8_DECODE_TABLE[format];
  const out = new Float32Array(codes.length);
  for (let i = 0; i < codes.length; i++) out[i] = t[codes[i]];
  return out;
}
