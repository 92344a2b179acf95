import { describe, expect, it } from 'vitest';
import {
  bf16BitsToF32,
  decodeFp8,
  encodeFp8,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
  FP8_DECODE_TABLE,
} from '@kiln/core';

// Independent float64 references: values decoded from the bit layout with 2**e, and
// round-half-to-even by searching the value grid (no shared code with the codecs under test).

interface Spec {
  ebits: number;
  mbits: number;
  bias: number;
  /** Codes (magnitude) that are not finite numbers. */
  nonFinite: (mag: number) => boolean;
  /** Magnitude code overflow rounds to (inf for IEEE-like, NaN for e4m3fn). */
  overflowMag: number;
  nanMag: number;
}

const E4M3: Spec = { ebits: 4, mbits: 3, bias: 7, nonFinite: (m) => m === 0x7f, overflowMag: 0x7f, nanMag: 0x7f };
const E5M2: Spec = { ebits: 5, mbits: 2, bias: 15, nonFinite: (m) => m >= 0x7c, overflowMag: 0x7c, nanMag: 0x7f };
const F16: Spec = { ebits: 5, mbits: 10, bias: 15, nonFinite: (m) => m >= 0x7c00, overflowMag: 0x7c00, nanMag: 0x7e00 };

function refValue(spec: Spec, mag: number): number {
  const e = mag >> spec.mbits;
  const m = mag & ((1 << spec.mbits) - 1);
  return e === 0 ? m * 2 ** (1 - spec.bias - spec.mbits) : (1 + m / 2 ** spec.mbits) * 2 ** (e - spec.bias);
}

/** Finite magnitudes ascending, plus the first magnitude past the largest finite (overflow point). */
const grids = new Map<Spec, { values: number[]; codes: number[] }>();
function grid(spec: Spec): { values: number[]; codes: number[] } {
  const cached = grids.get(spec);
  if (cached) return cached;
  const values: number[] = [];
  const codes: number[] = [];
  const total = 1 << (spec.ebits + spec.mbits);
  for (let mag = 0; mag < total; mag++) {
    if (spec.nonFinite(mag)) continue;
    values.push(refValue(spec, mag));
    codes.push(mag);
  }
  // Virtual next value: same spacing as the top binade; its code is last finite + 1.
  const last = codes[codes.length - 1];
  const e = last >> spec.mbits;
  values.push(values[values.length - 1] + 2 ** (e - spec.bias - spec.mbits));
  codes.push(last + 1);
  grids.set(spec, { values, codes });
  return { values, codes };
}

function refEncode(spec: Spec, x: number, saturate = false): number {
  const signBit = 1 << (spec.ebits + spec.mbits);
  const sign = x < 0 || Object.is(x, -0) ? signBit : 0;
  if (Number.isNaN(x)) return (x < 0 ? signBit : 0) | spec.nanMag; // sign of NaN handled by caller
  const a = Math.abs(x);
  const { values, codes } = grid(spec);
  const maxFinite = codes[codes.length - 2];
  if (a === Infinity) return sign | (saturate ? maxFinite : spec.overflowMag);
  // Binary search for the largest grid value <= a.
  let lo = 0;
  let hi = values.length - 1;
  if (a >= values[hi]) lo = hi;
  else {
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (values[mid] <= a) lo = mid;
      else hi = mid;
    }
  }
  let code: number;
  if (lo === values.length - 1) code = codes[lo];
  else {
    const dLo = a - values[lo];
    const dHi = values[lo + 1] - a;
    if (dLo < dHi) code = codes[lo];
    else if (dHi < dLo) code = codes[lo + 1];
    else code = codes[lo] % 2 === 0 ? codes[lo] : codes[lo + 1];
  }
  if (code > maxFinite) code = saturate ? maxFinite : spec.overflowMag;
  return sign | code;
}

// Deterministic float32 test values: edge cases, every grid point, midpoints and their f32
// neighbours, and random bit patterns across all exponents.
function testValues(spec: Spec, seed: number): Float32Array {
  const out: number[] = [0, -0, Infinity, -Infinity, 1e-45, -1e-45, 3.4e38, -3.4e38];
  const { values } = grid(spec);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  const neighbours = (v: number) => {
    f[0] = v;
    const b = u[0];
    for (const d of [-2, -1, 0, 1, 2]) {
      u[0] = (b + d) >>> 0;
      out.push(f[0], -f[0]);
    }
  };
  const step = values.length > 1000 ? 7 : 1; // f16 has 31K grid points: sample every 7th
  for (let i = 0; i < values.length; i += i + step < values.length ? step : 1) {
    neighbours(values[i]);
    if (i + 1 < values.length) neighbours((values[i] + values[i + 1]) / 2);
  }
  let s = seed >>> 0;
  for (let i = 0; i < 4000; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    u[0] = s;
    if (!Number.isNaN(f[0])) out.push(f[0]);
  }
  return Float32Array.from(out.filter((v) => !Number.isNaN(v)));
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

describe.each([
  ['e4m3', E4M3],
  ['e5m2', E5M2],
] as const)('FP8 %s codec', (format, spec) => {
  it('decodes all 256 codes exactly', () => {
    const codes = Uint8Array.from({ length: 256 }, (_, i) => i);
    const decoded = decodeFp8(codes, format);
    for (let c = 0; c < 256; c++) {
      const mag = c & 0x7f;
      const neg = c & 0x80;
      if (format === 'e4m3' && mag === 0x7f) expect(decoded[c]).toBeNaN();
      else if (format === 'e5m2' && mag > 0x7c) expect(decoded[c]).toBeNaN();
      else if (format === 'e5m2' && mag === 0x7c) expect(decoded[c]).toBe(neg ? -Infinity : Infinity);
      else expect(Object.is(decoded[c], neg ? -refValue(spec, mag) : refValue(spec, mag))).toBe(true);
    }
    expect(FP8_DECODE_TABLE[format][0x7e]).toBe(format === 'e4m3' ? 448 : NaN);
  });

  for (const saturate of [false, true]) {
    it(`encodes f32 with round-half-to-even (saturate=${saturate})`, () => {
      const xs = testValues(spec, 12345);
      const got = encodeFp8(xs, format, { saturate });
      let bad = 0;
      const msgs: string[] = [];
      for (let i = 0; i < xs.length; i++) {
        const want = refEncode(spec, xs[i], saturate);
        if (got[i] !== want) {
          bad++;
          if (msgs.length < 5) msgs.push(`${xs[i]} -> ${hex(got[i])}, want ${hex(want)}`);
        }
      }
      expect(msgs).toEqual([]);
      expect(bad).toBe(0);
    });
  }

  it('round-trips every finite code', () => {
    const codes = Uint8Array.from({ length: 256 }, (_, i) => i).filter((c) => !spec.nonFinite(c & 0x7f));
    expect(Array.from(encodeFp8(decodeFp8(codes, format), format))).toEqual(Array.from(codes));
  });

  it('writes the NaN byte torch writes, keeping the sign', () => {
    const nan = new Float32Array([NaN]);
    expect(encodeFp8(nan, format)[0]).toBe(0x7f);
    const negNan = new Float32Array(new Uint32Array([0xffc00000]).buffer);
    expect(encodeFp8(negNan, format)[0]).toBe(0xff);
    expect(encodeFp8(nan, format, { saturate: true })[0]).toBe(0x7f);
  });
});

describe('FP8 e4m3 published boundary values', () => {
  it('matches torch on the values around 448', () => {
    const xs = new Float32Array([448, 449, 464, 465, 470, 480, 1e6, -449, -470, Infinity, -Infinity]);
    expect(Array.from(encodeFp8(xs, 'e4m3'))).toEqual([0x7e, 0x7e, 0x7e, 0x7f, 0x7f, 0x7f, 0x7f, 0xfe, 0xff, 0x7f, 0xff]);
    expect(Array.from(encodeFp8(xs, 'e4m3', { saturate: true }))).toEqual([0x7e, 0x7e, 0x7e, 0x7e, 0x7e, 0x7e, 0x7e, 0xfe, 0xfe, 0x7e, 0xfe]);
  });
  it('e5m2 overflows to infinity', () => {
    const xs = new Float32Array([57344, 61439, 61440, 65536, -1e9, Infinity]);
    expect(Array.from(encodeFp8(xs, 'e5m2'))).toEqual([0x7b, 0x7b, 0x7c, 0x7c, 0xfc, 0x7c]);
  });
  it('smallest subnormals round half to even', () => {
    // e4m3 smallest subnormal 2^-9; half of it (2^-10) ties to 0, just above rounds up.
    const xs = new Float32Array([2 ** -9, 2 ** -10, 2 ** -10 * 1.0000001, 3 * 2 ** -10, -(2 ** -10)]);
    expect(Array.from(encodeFp8(xs, 'e4m3'))).toEqual([0x01, 0x00, 0x01, 0x02, 0x80]);
  });
});

describe('f16 codec', () => {
  it('decodes all 65536 codes exactly', () => {
    for (let c = 0; c < 65536; c++) {
      const mag = c & 0x7fff;
      const neg = (c & 0x8000) !== 0;
      const got = f16BitsToF32(c);
      if (mag > 0x7c00) expect(got).toBeNaN();
      else if (mag === 0x7c00) expect(got).toBe(neg ? -Infinity : Infinity);
      else if (!Object.is(got, neg ? -refValue(F16, mag) : refValue(F16, mag))) throw new Error(`code ${hex(c)} -> ${got}`);
    }
  });
  it('encodes with round-half-to-even, overflow to inf, NaN 0x7e00', () => {
    const xs = testValues(F16, 777);
    const msgs: string[] = [];
    for (let i = 0; i < xs.length; i++) {
      const want = refEncode(F16, xs[i]);
      const got = f32ToF16Bits(xs[i]);
      if (got !== want && msgs.length < 5) msgs.push(`${xs[i]} -> ${hex(got)}, want ${hex(want)}`);
    }
    expect(msgs).toEqual([]);
    expect(f32ToF16Bits(NaN)).toBe(0x7e00);
    expect(f32ToF16Bits(65519.99)).toBe(0x7bff);
    expect(f32ToF16Bits(65520)).toBe(0x7c00);
  });
});

describe('bf16 codec', () => {
  it('is the top half of f32 with round-half-to-even', () => {
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    let s = 99;
    for (let i = 0; i < 20000; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      u[0] = s;
      const x = f[0];
      const got = f32ToBf16Bits(x);
      if (Number.isNaN(x)) {
        expect(got).toBe(0x7fc0);
        continue;
      }
      // Reference: the two bf16 neighbours and exact float64 distances.
      const lo = s >>> 16;
      const hi = (lo + 1) & 0xffff;
      const vLo = bf16BitsToF32(lo);
      // Past the largest finite bf16 the next grid point is 2^128 (encoded as inf).
      const vHi = (hi & 0x7fff) === 0x7f80 ? Math.sign(x) * 2 ** 128 : bf16BitsToF32(hi);
      const dLo = Math.abs(x - vLo);
      const dHi = Math.abs(vHi - x);
      const want = dLo < dHi ? lo : dHi < dLo ? hi : lo % 2 === 0 ? lo : hi;
      if (got !== want) throw new Error(`${x} -> ${hex(got)}, want ${hex(want)}`);
    }
  });
});
