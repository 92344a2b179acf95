import { describe, expect, it } from 'vitest';
import { bitsToF32, E4M3, E5M2, encodeMinifloat, FP8_DECODE_TABLE, fp8GemmReference, quantizeBlockwise, roundToMantissaBits, type Fp8Format } from '@kiln/core';
import { accumulatorRounder, blockScaledJs, encodeFp8Bits, matmulFp8Kernel, quantizeKernel, type Fp8Operand } from '../src/kernels/fp8.js';
import { sgemm } from '../src/gemm/index.js';
import { fp8Wasm } from '../src/kernels/fp8-wasm.js';

function normal(n: number, seed: number, std = 1): Float32Array {
  let s = seed >>> 0;
  const u = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 0.5) / 4294967296;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = std * Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

function operand(rows: number, k: number, block: [number, number], seed: number, format: Fp8Format = 'e4m3', std = 1): Fp8Operand {
  const { codes, scales } = quantizeBlockwise(normal(rows * k, seed, std), [rows, k], block, { format });
  return { codes, scales, rows, k, block, format };
}

const ref = (a: Fp8Operand, b: Fp8Operand, o: object) =>
  fp8GemmReference(
    { codes: a.codes, scales: a.scales, shape: [a.rows, a.k], block: a.block, format: a.format },
    { codes: b.codes, scales: b.scales, shape: [b.rows, b.k], block: b.block, format: b.format },
    o,
  );

const bitsOf = (x: Float32Array) => Array.from(new Uint32Array(x.buffer, x.byteOffset, x.length));

/** The fast path's definition with sgemm's own partials: decode, one sgemm per K block, scalar promotion. */
function promotedModel(a: Fp8Operand, b: Fp8Operand): Float32Array {
  const M = a.rows;
  const N = b.rows;
  const K = a.k;
  const bk = a.block[1];
  const out = new Float32Array(M * N);
  const kBlocks = Math.ceil(K / bk);
  for (let kb = 0; kb < kBlocks; kb++) {
    const k0 = kb * bk;
    const kc = Math.min(bk, K - k0);
    const pa = new Float32Array(M * kc);
    const pb = new Float32Array(N * kc);
    for (let m = 0; m < M; m++) for (let j = 0; j < kc; j++) pa[m * kc + j] = FP8_DECODE_TABLE[a.format][a.codes[m * K + k0 + j]];
    for (let n = 0; n < N; n++) for (let j = 0; j < kc; j++) pb[n * kc + j] = FP8_DECODE_TABLE[b.format][b.codes[n * K + k0 + j]];
    const part = new Float32Array(M * N);
    sgemm({ m: M, n: N, k: kc, transA: false, transB: true, a: pa, b: pb, c: part, aOffsets: [0], bOffsets: [0], cOffsets: [0] });
    for (let m = 0; m < M; m++)
      for (let n = 0; n < N; n++) {
        const sa = a.scales[Math.floor(m / a.block[0]) * kBlocks + kb];
        const sb = b.scales[Math.floor(n / b.block[0]) * Math.ceil(K / b.block[1]) + kb];
        out[m * N + n] = Math.fround(out[m * N + n] + Math.fround(part[m * N + n] * Math.fround(sa * sb)));
      }
  }
  return out;
}

describe('cpu FP8 GEMM kernel', () => {
  for (const [M, N, K, fa, fb] of [
    [1, 1, 1, 'e4m3', 'e4m3'],
    [3, 5, 127, 'e4m3', 'e5m2'],
    [17, 130, 300, 'e5m2', 'e4m3'],
    [64, 256, 512, 'e4m3', 'e4m3'],
    [33, 129, 1000, 'e4m3', 'e4m3'],
    [200, 300, 1030, 'e4m3', 'e4m3'],
  ] as const) {
    it(`fast path ${M}x${N}x${K} (${fa} x ${fb}): decode and promotion give the bits of the scalar definition`, () => {
      const a = operand(M, K, [1, 128], 1, fa);
      const b = operand(N, K, [128, 128], 2, fb, 0.05);
      const want = bitsOf(promotedModel(a, b));
      expect(bitsOf(matmulFp8Kernel(a, b, { promotionInterval: 128 }))).toEqual(want);
      expect(bitsOf(blockScaledJs(a, b))).toEqual(want);
    });
  }

  it('fast path with per-row weight scales and column blocks narrower than 4', () => {
    for (const bw of [1, 3, 7]) {
      const a = operand(9, 260, [1, 128], 3);
      const b = operand(23, 260, [bw, 128], 4);
      const want = bitsOf(promotedModel(a, b));
      expect(bitsOf(matmulFp8Kernel(a, b, { promotionInterval: 128 }))).toEqual(want);
      expect(bitsOf(blockScaledJs(a, b))).toEqual(want);
    }
  });

  it('the emulation gives the bits of fp8GemmReference for every accumulator model and promotion interval', () => {
    const cases: [number, number, number, [number, number], [number, number]][] = [
      [5, 7, 1000, [1, 128], [128, 128]],
      [4, 6, 512, [1, 512], [6, 512]],
      [3, 4, 300, [1, 300], [4, 300]],
    ];
    for (const [M, N, K, ba, bb] of cases) {
      const a = operand(M, K, ba, 11);
      const b = operand(N, K, bb, 12);
      for (const promotionInterval of [Infinity, ba[1] >= 512 ? 512 : 128, 64, 256]) {
        if (promotionInterval !== Infinity && promotionInterval % ba[1] !== 0 && ba[1] % promotionInterval !== 0) continue;
        for (const accumulatorMantissaBits of [undefined, 1, 7, 13, 14, 19, 20, 21, 23]) {
          for (const accumulatorGroupSize of [1, 4, 32]) {
            for (const accumulatorRounding of ['truncate', 'nearest'] as const) {
              const o = { promotionInterval, accumulatorMantissaBits, accumulatorGroupSize, accumulatorRounding };
              if (accumulatorMantissaBits === undefined && promotionInterval === ba[1]) continue; // the fast path (sgemm's summation order)
              expect(bitsOf(matmulFp8Kernel(a, b, o)), JSON.stringify(o)).toEqual(bitsOf(ref(a, b, o)));
            }
          }
        }
      }
    }
  });

  it('the fast path and the emulation agree with the definition to f32 rounding', () => {
    const a = operand(8, 640, [1, 128], 21);
    const b = operand(16, 640, [128, 128], 22);
    const fast = matmulFp8Kernel(a, b, { promotionInterval: 128 });
    const exact = ref(a, b, { promotionInterval: 128 });
    // N_C = 64 with exact accumulation runs the emulation; it differs from N_C = 128 only by f32 rounding
    const emu = matmulFp8Kernel(a, b, { promotionInterval: 64 });
    expect(bitsOf(emu)).toEqual(bitsOf(ref(a, b, { promotionInterval: 64 })));
    for (let i = 0; i < fast.length; i++) {
      expect(Math.abs(fast[i] - exact[i])).toBeLessThanOrEqual(1e-5 * (Math.abs(exact[i]) + 1));
      expect(Math.abs(emu[i] - exact[i])).toBeLessThanOrEqual(1e-5 * (Math.abs(exact[i]) + 1));
    }
  });

  it('accumulatorRounder equals roundToMantissaBits on normal, subnormal, tied, huge and special doubles', () => {
    const xs: number[] = [0, -0, Infinity, -Infinity, NaN, 5e-324, -1e-310, 2.2250738585072014e-308, 1.7976931348623157e308, -1e300, 1, -1, 0.75, 3];
    let s = 12345;
    const u = () => {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      return s / 4294967296;
    };
    for (let i = 0; i < 4000; i++) {
      const sign = u() < 0.5 ? -1 : 1;
      xs.push(sign * (1 + u()) * 2 ** Math.floor(u() * 80 - 40));
      // values on a tie at 13 bits: odd multiples of 2^(e-14)
      xs.push(sign * (2 ** 13 + Math.floor(u() * 2 ** 13) + 0.5) * 2 ** Math.floor(u() * 20 - 10));
    }
    for (const bits of [1, 7, 12, 13, 14, 19, 20, 21, 22, 23]) {
      for (const rounding of ['truncate', 'nearest'] as const) {
        const r = accumulatorRounder(bits, rounding);
        for (const x of xs) expect(Object.is(r(x), roundToMantissaBits(x, bits, rounding)), `${x} ${bits} ${rounding}`).toBe(true);
      }
    }
  });

  it('the emulation handles zero products (zero codes) like the reference', () => {
    const x = normal(4 * 384, 41);
    for (let i = 0; i < x.length; i += 3) x[i] = 0;
    const { codes, scales } = quantizeBlockwise(x, [4, 384], [1, 384]);
    const a: Fp8Operand = { codes, scales, rows: 4, k: 384, block: [1, 384], format: 'e4m3' };
    const b = operand(5, 384, [5, 384], 42);
    for (const accumulatorRounding of ['truncate', 'nearest'] as const) {
      for (const promotionInterval of [Infinity, 128]) {
        const o = { promotionInterval, accumulatorMantissaBits: 13, accumulatorRounding };
        expect(bitsOf(matmulFp8Kernel(a, b, o))).toEqual(bitsOf(ref(a, b, o)));
      }
    }
  });

  it('encodeFp8Bits equals encodeMinifloat on f32 patterns around every rounding boundary and on a sweep of all patterns', () => {
    for (const fmt of [E4M3, E5M2]) {
      const check = (bits: number) => {
        const x = bitsToF32(bits >>> 0);
        if (Number.isNaN(x)) return;
        const got = encodeFp8Bits(bits >>> 0, fmt);
        const want = encodeMinifloat(x, fmt, false);
        if (got !== want) expect(got, `bits 0x${(bits >>> 0).toString(16)} (${x})`).toBe(want);
      };
      for (let b = 0; b < 2 ** 32; b += 4099) check(b);
      const shiftN = 23 - fmt.mantissaBits;
      for (let exp = 0; exp < 256; exp++) {
        for (let top = 0; top < 1 << fmt.mantissaBits; top++) {
          const base = (exp << 23) | (top << shiftN);
          for (let sh = shiftN; sh <= 26; sh++) {
            // around the half-way point of a quantum of 2^sh (the subnormal targets use larger shifts)
            const half = 2 ** (sh - 1);
            for (const d of [0, 1, half - 1, half, half + 1, 2 * half - 1]) {
              for (const sign of [0, 0x80000000]) check((sign | base) + d);
            }
          }
        }
      }
      check(0x7f800000);
      check(0xff800000);
    }
  });

  it('quantizeKernel is bit-exact with quantizeBlockwise (formats, scale formats, blocks, special values)', () => {
    const x = normal(37 * 300, 51, 3);
    x[5] = 0;
    x[7] = -0;
    x[300] = 1e-30; // f32 range but far below the block's scale
    x[301] = -2e-45;
    for (let i = 600; i < 900; i++) x[i] = 0; // an all-zero row: amax floor
    for (let i = 900; i < 1200; i++) x[i] = (i - 1050) * 1e-7; // tiny values: subnormal codes
    x[1500] = 3e38;
    x[2000] = Infinity;
    x[2101] = -Infinity;
    x[2500] = NaN;
    for (const format of ['e4m3', 'e5m2'] as const) {
      for (const scaleFormat of ['fp32', 'ue8m0'] as const) {
        for (const block of [[1, 128], [128, 128], [5, 7], [37, 300], [1, 1]] as [number, number][]) {
          const got = quantizeKernel(x, 37, 300, block, format, scaleFormat);
          const want = quantizeBlockwise(x, [37, 300], block, { format, scaleFormat });
          expect(Array.from(got.codes), `${format} ${scaleFormat} ${block}`).toEqual(Array.from(want.codes));
          expect(bitsOf(got.scales)).toEqual(bitsOf(want.scales));
        }
      }
    }
  });

  it('the wasm decode gives every code of both formats its table value', () => {
    const w = fp8Wasm();
    expect(w).not.toBeNull();
    if (!w) return;
    for (const format of ['e4m3', 'e5m2'] as const) {
      for (const width of [256, 131, 5]) {
        const rows = 3;
        const stride = 300;
        const src = 4096;
        const dst = 8192;
        w.reserve(dst + rows * width * 4 + 64);
        const u8 = new Uint8Array(w.memory.buffer);
        const f32 = new Float32Array(w.memory.buffer);
        f32.set(FP8_DECODE_TABLE[format], 0);
        for (let r = 0; r < rows; r++) for (let j = 0; j < stride; j++) u8[src + r * stride + j] = (j * 7 + r * 101) & 0xff;
        w.decode(dst, src, rows, stride, width, 0);
        for (let r = 0; r < rows; r++)
          for (let j = 0; j < width; j++) {
            const want = FP8_DECODE_TABLE[format][(j * 7 + r * 101) & 0xff];
            const got = f32[dst / 4 + r * width + j];
            if (Number.isNaN(want)) expect(got).toBeNaN();
            else expect(Object.is(got, want), `${format} code ${(j * 7 + r * 101) & 0xff}: ${got} vs ${want}`).toBe(true);
          }
      }
    }
  });
});
