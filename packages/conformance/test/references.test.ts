/**
 * Self-checks of the suite's references against @kiln/core's codecs and FP8 references (which
 * are verified against PyTorch fixtures in core's tests). The two sides are written
 * independently, so agreement here is evidence that both are right.
 */
import { describe, expect, it } from 'vitest';
import { E4M3, E5M2, F16, encodeMinifloat, f32ToBf16Bits, fp8GemmReference, quantizeBlockwise, roundToMantissaBits } from '@kiln/core';
import { erf64 } from '../src/reference/math.js';
import { decode, encode } from '../src/reference/formats.js';
import { f32BitsOf, f32FromBits } from '../src/reference/float.js';
import { matmulFp8Ref, quantizeRef, roundMantissa } from '../src/reference/fp8.js';
import { Rng } from '../src/prng.js';

const rng = new Rng(7);
const randomF32 = (n: number): number[] => Array.from({ length: n }, () => (rng.bool(0.6) ? Math.fround(rng.normal() * 2 ** rng.int(-30, 20)) : f32FromBits(rng.u32())));

describe('suite references', () => {
  it('encode() agrees with core for f16 / e4m3 / e5m2 (both saturate modes) and bf16 on random and boundary f32 values', () => {
    const values = randomF32(20000);
    for (let code = 0; code < 0x7c00; code += 7) {
      const v = decode('f16', code);
      values.push(v, Math.fround(v * (1 + 2 ** -11)), Math.fround(v * (1 - 2 ** -12)));
    }
    for (const v of values) {
      // a JS NaN keeps the sign bit of the f32 it came from; pass it explicitly
      const negativeNaN = f32BitsOf(v) >>> 31 === 1;
      for (const saturate of [false, true]) {
        expect(encode('f16', v, { saturate, negativeNaN })).toBe(encodeMinifloat(v, F16, saturate));
        expect(encode('e4m3', v, { saturate, negativeNaN })).toBe(encodeMinifloat(v, E4M3, saturate));
        expect(encode('e5m2', v, { saturate, negativeNaN })).toBe(encodeMinifloat(v, E5M2, saturate));
      }
      expect(encode('bf16', v)).toBe(f32ToBf16Bits(v));
    }
  });

  it('decode() is exact for every code (re-encoding a finite value gives its code back, up to the sign of zero)', () => {
    for (const d of ['f16', 'bf16', 'e4m3', 'e5m2'] as const) {
      const n = d === 'f16' || d === 'bf16' ? 65536 : 256;
      for (let code = 0; code < n; code++) {
        const v = decode(d, code);
        if (Number.isNaN(v)) continue;
        expect(encode(d, v)).toBe(code);
        expect(f32BitsOf(v) === f32BitsOf(Math.fround(v))).toBe(true);
      }
    }
  });

  it('erf64 matches tabulated values to 1e-15', () => {
    const table: [number, number][] = [
      [0.1, 0.1124629160182849],
      [0.5, 0.5204998778130465],
      [1, 0.8427007929497149],
      [2, 0.9953222650189527],
      [3, 0.9999779095030014],
      [-0.7, -0.6778011938374184],
    ];
    for (const [x, want] of table) expect(Math.abs(erf64(x) - want)).toBeLessThan(1e-15);
  });

  it("quantizeRef and matmulFp8Ref agree bit for bit with core's quantizeBlockwise and fp8GemmReference", () => {
    const rows = 5;
    const K = 300;
    const x = Float32Array.from({ length: rows * K }, () => rng.normal() * 2 ** rng.int(-10, 10));
    for (const [block, format, scaleFormat] of [
      [[1, 128], 'e4m3', 'fp32'],
      [[128, 128], 'e5m2', 'ue8m0'],
      [[2, 16], 'e4m3', 'ue8m0'],
    ] as const) {
      const mine = quantizeRef(x, rows, K, block, format, scaleFormat);
      const core = quantizeBlockwise(x, [rows, K], [...block], { format, scaleFormat });
      expect(mine.codes).toEqual(Array.from(core.codes));
      expect(mine.scales).toEqual(Array.from(core.scales));
    }
    const qa = quantizeBlockwise(x, [rows, K], [1, 128]);
    const w = Float32Array.from({ length: 3 * K }, () => rng.normal());
    const qb = quantizeBlockwise(w, [3, K], [128, 128]);
    for (const model of [
      { promotionInterval: 128 },
      { promotionInterval: 32, bits: 13, group: 4, rounding: 'truncate' as const },
      { promotionInterval: 128, bits: 10, group: 1, rounding: 'nearest' as const },
    ]) {
      const mine = matmulFp8Ref(
        { codes: qa.codes, scales: qa.scales, rows, K, block: [1, 128], format: 'e4m3' },
        { codes: qb.codes, scales: qb.scales, rows: 3, K, block: [128, 128], format: 'e4m3' },
        model,
      );
      const core = fp8GemmReference(
        { codes: qa.codes, scales: qa.scales, shape: [rows, K], block: [1, 128] },
        { codes: qb.codes, scales: qb.scales, shape: [3, K], block: [128, 128] },
        { promotionInterval: model.promotionInterval, accumulatorMantissaBits: model.bits, accumulatorGroupSize: model.group, accumulatorRounding: model.rounding },
      );
      expect(Array.from(mine.emulated)).toEqual(Array.from(core));
    }
    for (let i = 0; i < 2000; i++) {
      const v = rng.normal() * 2 ** rng.int(-40, 40);
      for (const bits of [3, 10, 13]) for (const mode of ['truncate', 'nearest'] as const) expect(roundMantissa(v, bits, mode)).toBe(roundToMantissaBits(v, bits, mode));
    }
  });
});
