import type { DType, StorageArray } from '@kiln/core';
import { cast } from '@kiln/core';
import { assert, describeAt, expectCodes } from '../check.js';
import type { Area, CaseDef, Ctx } from '../harness.js';
import { ALL_DTYPES } from '../reference/dtypes.js';
import { f32BitsOf, f32FromBits, fmtF32 } from '../reference/float.js';
import { codeCount, decode, grid, isLowDType, signBit, type LowDType } from '../reference/formats.js';
import { castCode } from '../reference/math.js';
import { readChecked } from './util.js';

/** An input set as storage codes plus, per element, its exact value and NaN sign. */
interface Inputs {
  dtype: DType;
  codes: StorageArray;
  values: number[];
  negNaN: boolean[];
  label: (i: number) => string;
}

function f32Inputs(bits: number[]): Inputs {
  const u = Uint32Array.from(bits.map((b) => b >>> 0));
  const codes = new Float32Array(u.buffer);
  return {
    dtype: 'f32',
    codes,
    values: Array.from(u, (b) => f32FromBits(b)),
    negNaN: Array.from(u, (b) => b >>> 31 === 1),
    label: (i) => fmtF32(f32FromBits(u[i])),
  };
}

function lowInputs(dtype: LowDType, codeList: number[]): Inputs {
  const codes = codeCount(dtype) === 65536 ? Uint16Array.from(codeList) : Uint8Array.from(codeList);
  return {
    dtype,
    codes,
    values: codeList.map((c) => decode(dtype, c)),
    negNaN: codeList.map((c) => (c & signBit(dtype)) !== 0),
    label: (i) => `0x${codeList[i].toString(16)} (${decode(dtype, codeList[i])})`,
  };
}

function intInputs(dtype: 'i32' | 'u8' | 'bool', values: number[]): Inputs {
  const codes = dtype === 'i32' ? Int32Array.from(values) : Uint8Array.from(values);
  return { dtype, codes, values: Array.from(codes), negNaN: values.map(() => false), label: (i) => String(codes[i]) };
}

const up = (x: number): number => {
  // next f32 above x (finite, x > 0 path sufficient for magnitudes)
  const b = f32BitsOf(x);
  return f32FromBits(x >= 0 ? b + 1 : b - 1);
};
const down = (x: number): number => {
  const b = f32BitsOf(x);
  return x > 0 ? f32FromBits(b - 1) : x === 0 ? -(2 ** -149) : f32FromBits(b + 1);
};

/**
 * f32 bit patterns probing every rounding decision of `d`: each grid value, each midpoint
 * between neighbours (a tie) and the f32 values just either side of it; also the overflow
 * threshold region, both signs. `every` thins the neighbour pairs for 16-bit formats.
 */
function boundaryBits(d: LowDType, every: number): number[] {
  const g = grid(d);
  const mags: number[] = [];
  const add = (k: number): void => {
    const lo = g[k];
    const hi = k + 1 < g.length ? g[k + 1] : g[k] + (g[k] - g[k - 1]);
    const mid = (lo + hi) / 2;
    mags.push(lo, mid, up(mid), down(mid));
  };
  for (let k = 0; k < g.length; k++) {
    if (k < 40 || k > g.length - 40 || k % every === 0) add(k);
  }
  const top = g[g.length - 1];
  const next = top + (top - g[g.length - 2]);
  mags.push(top, up(top), next, up(next), Math.fround(top * 4), 3.4028234663852886e38);
  const bits: number[] = [];
  for (const m of mags) {
    if (!Number.isFinite(Math.fround(m))) continue;
    const b = f32BitsOf(m);
    bits.push(b, (b | 0x80000000) >>> 0);
  }
  return bits;
}

const SPECIAL_F32_BITS = [
  0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, 0xffbfffff, 0x7fa5a5a5,
  0x00000001, 0x80000001, 0x007fffff, 0x00800000, 0x80800000, 0x7f7fffff, 0xff7fffff, 0x3f800000, 0xbf000000,
];

async function checkCast(c: Ctx, inp: Inputs, to: DType, saturate: boolean): Promise<void> {
  const n = inp.values.length;
  const x = c.fromCodes(inp.codes, [n], inp.dtype);
  const y = c.run(() => cast(x, to, { saturate }));
  const label = `cast(${inp.dtype} -> ${to}${saturate ? ', saturate' : ''})`;
  const r = await readChecked(c, y, label, to, [n]);
  // a same-dtype cast is a copy: codes (NaN payloads included) are kept
  const want = inp.dtype === to ? Array.from(inp.codes) : inp.values.map((v, i) => castCode(v, inp.dtype, to, saturate, inp.negNaN[i]));
  expectCodes(label, to, r.codes, want, (i) => `input ${inp.label(i)}`);
}

function boundaryCase(d: LowDType, every: number, extra: string): CaseDef {
  return {
    name: `f32 -> ${d} bit-exact at every rounding boundary (grid values, ties to even, tie ± 1 f32 ulp), subnormals, ${extra}, ±inf, NaN with sign; saturate off and on`,
    async run(c) {
      const inp = f32Inputs([...SPECIAL_F32_BITS, ...boundaryBits(d, every)]);
      for (const saturate of [false, true]) await checkCast(c, inp, d, saturate);
    },
  };
}

function randomF32Bits(c: Ctx, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    // mostly values around the low-precision ranges, plus arbitrary bit patterns
    if (c.rng.bool(0.7)) {
      const v = Math.fround(c.rng.normal() * 2 ** c.rng.int(-28, 20));
      out.push(f32BitsOf(v));
    } else out.push(c.rng.u32());
  }
  return out;
}

const cases: CaseDef[] = [
  boundaryCase('f16', 1, 'overflow (65504, 65519.99 -> 65504, 65520 -> inf)'),
  boundaryCase('bf16', 61, 'overflow at the top of the f32 range'),
  boundaryCase('e4m3', 1, 'e4m3fn overflow (449 -> 448, 464 -> 448 by ties-to-even, above 464 -> NaN 0x7f|sign, inf -> NaN)'),
  boundaryCase('e5m2', 1, 'overflow (61439 -> 57344, 61440 -> inf 0x7c)'),
  {
    name: 'the documented FP8 / f16 / bf16 special conversions hold exactly',
    async run(c) {
      const table: [number, DType, boolean, number][] = [
        [449, 'e4m3', false, 0x7e],
        [464, 'e4m3', false, 0x7e],
        [470, 'e4m3', false, 0x7f],
        [-470, 'e4m3', false, 0xff],
        [470, 'e4m3', true, 0x7e],
        [Infinity, 'e4m3', false, 0x7f],
        [-Infinity, 'e4m3', true, 0xfe],
        [NaN, 'e4m3', true, 0x7f],
        [61440, 'e5m2', false, 0x7c],
        [-61440, 'e5m2', false, 0xfc],
        [61440, 'e5m2', true, 0x7b],
        [Infinity, 'e5m2', true, 0x7b],
        [NaN, 'e5m2', false, 0x7f],
        [65520, 'f16', false, 0x7c00],
        [65520, 'f16', true, 0x7bff],
        [NaN, 'f16', false, 0x7e00],
        [NaN, 'bf16', false, 0x7fc0],
        [Infinity, 'bf16', true, 0x7f80],
        [2 ** -25, 'f16', false, 0x0000],
        [3 * 2 ** -26, 'f16', false, 0x0001],
      ];
      for (const [v, d, sat, code] of table) {
        const x = c.tensor([v], [1], 'f32');
        const y = c.run(() => cast(x, d, { saturate: sat }));
        const r = await readChecked(c, y, `cast(${v} -> ${d})`, d, [1]);
        expectCodes(`cast(${v} -> ${d}${sat ? ', saturate' : ''})`, d, r.codes, [code]);
        // and the suite's own encoder agrees with the table
        assert(isLowDType(d) && castCode(v, 'f32', d, sat) === code, `reference encoder disagrees on ${v} -> ${d}`);
      }
      // negative NaN keeps its sign in f16 and FP8, not in bf16
      const neg = f32Inputs([0xffc00000]);
      for (const [d, code] of [
        ['f16', 0xfe00],
        ['e4m3', 0xff],
        ['e5m2', 0xff],
        ['bf16', 0x7fc0],
      ] as [DType, number][]) {
        const x = c.fromCodes(neg.codes, [1], 'f32');
        const r = await c.read(c.run(() => cast(x, d)));
        expectCodes(`cast(-NaN -> ${d})`, d, r.codes, [code]);
      }
    },
  },
  {
    name: 'f32 -> i32 / u8 / bool: truncation toward zero, NaN -> 0, saturation at the integer range, bool is x != 0 (NaN true, -0 false)',
    async run(c) {
      const vals = [0, -0, 0.5, -0.5, 1.9, -1.9, 254.99, 255, 255.5, 256, -1, -300, 2147483520, 2147483648, -2147483648, -2147483904, 1e10, -1e10, 1e-40, Infinity, -Infinity, NaN];
      for (let i = 0; i < 200; i++) vals.push(c.rng.uniform(-3e9, 3e9), c.rng.uniform(-300, 600));
      const inp = f32Inputs(vals.map(f32BitsOf));
      for (const to of ['i32', 'u8', 'bool'] as const) for (const sat of [false, true]) await checkCast(c, inp, to, sat);
    },
  },
  {
    name: 'random f32 values over the whole exponent range and arbitrary bit patterns -> every dtype (saturate off and on)',
    async run(c) {
      const inp = f32Inputs([...SPECIAL_F32_BITS, ...randomF32Bits(c, 3000)]);
      for (const to of ALL_DTYPES) for (const sat of [false, true]) await checkCast(c, inp, to, sat);
    },
  },
  {
    name: 'every f16 code -> every dtype (NaN codes keep their sign into FP8/f16), saturate off and on',
    async run(c) {
      const inp = lowInputs('f16', Array.from({ length: 65536 }, (_, i) => i));
      for (const to of ALL_DTYPES) for (const sat of [false, true]) if (sat === false || isLowDType(to)) await checkCast(c, inp, to, sat);
    },
    timeout: 120_000,
  },
  {
    name: 'every bf16 code -> every dtype, saturate off and on',
    async run(c) {
      const inp = lowInputs('bf16', Array.from({ length: 65536 }, (_, i) => i));
      for (const to of ALL_DTYPES) for (const sat of [false, true]) if (sat === false || isLowDType(to)) await checkCast(c, inp, to, sat);
    },
    timeout: 120_000,
  },
  {
    name: 'every e4m3 and e5m2 code -> every dtype, saturate off and on',
    async run(c) {
      for (const d of ['e4m3', 'e5m2'] as const) {
        const inp = lowInputs(d, Array.from({ length: 256 }, (_, i) => i));
        for (const to of ALL_DTYPES) for (const sat of [false, true]) await checkCast(c, inp, to, sat);
      }
    },
  },
  {
    name: 'i32 -> every dtype: through f32 first (2^24 + 1 -> 2^24; bf16 double rounding of 2^24 + 2^16 + 1), int -> int wraps, f16 overflow and saturation',
    async run(c) {
      const vals = [0, 1, -1, 255, 256, -256, 65504, 65519, 65520, 70000, -70000, 448, 465, 16777217, 16777216 + 65536 + 1, 2147483647, -2147483648, 123456789];
      for (let i = 0; i < 300; i++) vals.push(c.rng.bool() ? c.rng.int(-70000, 70000) : c.rng.u32() | 0);
      const inp = intInputs('i32', vals);
      for (const to of ALL_DTYPES) for (const sat of [false, true]) await checkCast(c, inp, to, sat);
    },
  },
  {
    name: 'u8 and bool -> every dtype',
    async run(c) {
      const u8 = intInputs('u8', Array.from({ length: 256 }, (_, i) => i));
      const b = intInputs('bool', [0, 1, 1, 0]);
      for (const to of ALL_DTYPES) {
        for (const sat of [false, true]) {
          await checkCast(c, u8, to, sat);
          await checkCast(c, b, to, sat);
        }
      }
    },
  },
  {
    name: 'cast to the same dtype is a bit-exact copy in new storage, every dtype',
    async run(c) {
      for (const d of ALL_DTYPES) {
        const x = c.random([3, 5], d);
        const y = c.run(() => cast(x.t, d));
        assert(y.dataId !== x.t.dataId, `cast(${d} -> ${d}) must return new storage`);
        const r = await readChecked(c, y, `cast(${d} -> ${d})`, d, [3, 5]);
        expectCodes(`cast(${d} -> ${d})`, d, r.codes, await x.t.data());
      }
    },
  },
  {
    name: 'Backend.cast on 64 KiB+ outputs (f32 -> f16/bf16 [181, 181], f16 -> f32 [129, 131], f32 -> u8/bool/e4m3 [257, 256], i32 -> f32), poisoned',
    async run(c) {
      for (const [from, to, shape] of [
        ['f32', 'f16', [181, 181]],
        ['f32', 'bf16', [181, 181]],
        ['f16', 'f32', [129, 131]],
        ['f32', 'u8', [257, 256]],
        ['f32', 'bool', [257, 256]],
        ['f32', 'e4m3', [257, 256]],
        ['e5m2', 'f32', [129, 131]],
        ['i32', 'f32', [129, 131]],
      ] as [DType, DType, number[]][]) {
        const x = c.random(shape, from, from === 'i32' ? (r) => r.u32() | 0 : from === 'f32' ? (r) => r.normal() * 2 ** r.int(-20, 18) : undefined);
        const n = shape[0] * shape[1];
        const r = await c.prim(`cast ${from} -> ${to}`, to, shape, () => c.backend.cast(x.t, to, { saturate: false }), [x.t]);
        const want = Array.from(x.values, (v) => castCode(v, from, to, false));
        expectCodes(`Backend.cast(${from} -> ${to})`, to, r.codes, want, describeAt(shape, { x: x.values }));
        assert(r.codes.length === n, 'length');
      }
    },
  },
];

export const castArea: Area = { name: 'cast', cases };
