import type { DType } from '@kiln/core';
import { arange, full, normalAt, ones, randomNormal, randomUniform, scalar, tensor, uniformAt, zeros } from '@kiln/core';
import { assert, expectCodes, expectNear, fail } from '../check.js';
import type { Area, CaseDef } from '../harness.js';
import { ALL_DTYPES } from '../reference/dtypes.js';
import { EPS32 } from '../reference/float.js';
import { encode, isLowDType } from '../reference/formats.js';
import { size } from '../reference/nd.js';
import { readChecked } from './util.js';

/** The code a fill / tensor() stores for an f32-representable value. */
function storedCode(v: number, dtype: DType): number {
  if (dtype === 'f32') return Math.fround(v);
  if (isLowDType(dtype)) return encode(dtype, Math.fround(v));
  if (dtype === 'i32') return Math.trunc(v) | 0;
  if (dtype === 'u8') return Math.trunc(v) & 0xff;
  return v !== 0 ? 1 : 0;
}

/** f32-representable fill values per dtype, including overflow and specials where defined. */
const FILL_VALUES: Record<DType, number[]> = {
  f32: [0, -0, 1.5, -3.25, Math.fround(0.1), 3.4028234663852886e38, -Infinity, Infinity, NaN, 2 ** -149],
  f16: [0, -0, 1.5, -65504, 65520, 70000, Math.fround(1e-7), 2 ** -25, Math.fround(0.1), -Infinity, NaN],
  bf16: [0, -0, 1.5, Math.fround(0.1), 3.4028234663852886e38, -Infinity, NaN, 2 ** -140],
  e4m3: [0, -0, 448, 464, 470, -500, Math.fround(0.1), 2 ** -10, -Infinity, NaN],
  e5m2: [0, -0, 57344, 61440, -61439, Math.fround(0.1), 2 ** -17, Infinity, NaN],
  i32: [0, -7, 2147483647, -2147483648, 12345],
  u8: [0, 1, 200, 255],
  bool: [0, 1],
};

/** uniform: a + (b - a) * u with every step rounded to f32 (u = core's uniformAt, exact in f32). */
function uniformRef(seed: number, n: number, a: number, b: number): Float32Array {
  const out = new Float32Array(n);
  const lo = Math.fround(a);
  const range = Math.fround(Math.fround(b) - lo);
  for (let i = 0; i < n; i++) out[i] = Math.fround(lo + Math.fround(range * uniformAt(seed, i)));
  return out;
}

const UNIFORM_SPECS: [number, number][] = [
  [0, 1],
  [-3, 5],
  [-0.1, 0.1],
  [2.5, 2.5],
  [-1e-3, 1e3],
  [1, -1],
];

const cases: CaseDef[] = [
  {
    name: 'fill (full/zeros/ones/scalar) stores each value in every dtype, including overflow, NaN and inf, through Backend.fill with a poisoned allocator',
    async run(c) {
      for (const dtype of ALL_DTYPES) {
        for (const v of FILL_VALUES[dtype]) {
          for (const shape of [[], [0], [5], [3, 1, 7], [129, 131]]) {
            const n = size(shape);
            const r = await c.prim(`fill ${dtype} ${v}`, dtype, shape, () => c.backend.fill(shape, dtype, v));
            expectCodes(`fill([${shape.join(', ')}], ${dtype}, ${v})`, dtype, r.codes, new Array(n).fill(storedCode(v, dtype)));
          }
        }
        for (const [label, make, v] of [
          ['zeros', () => zeros([2, 3], dtype), 0],
          ['ones', () => ones([2, 3], dtype), 1],
          ['full', () => full([4], dtype === 'bool' ? 1 : 3, dtype), dtype === 'bool' ? 1 : 3],
          ['scalar', () => scalar(dtype === 'bool' ? 1 : 2, dtype), dtype === 'bool' ? 1 : 2],
        ] as const) {
          const t = c.run(make);
          const r = await readChecked(c, t, `${label} ${dtype}`, dtype, t.shape);
          expectCodes(`${label}(${dtype})`, dtype, r.codes, new Array(t.size).fill(storedCode(v, dtype)));
        }
      }
    },
  },
  {
    name: 'tensor() stores JS numbers per dtype: f32 rounding, f16/bf16/FP8 round half to even (via f32), i32/u8 truncation, bool as != 0',
    async run(c) {
      const specials = [0, -0, 0.5, 1.5, 2.5, -2.5, 65504, 65519, 65520, 448, 449, 464, 470, 57344, 61440, 1e-8, -1e-8, 2 ** -24, 3 * 2 ** -26, 1 / 3, Math.PI, -Math.E];
      for (const dtype of ['f32', 'f16', 'bf16', 'e4m3', 'e5m2'] as const) {
        const values = [...specials];
        for (let i = 0; i < 400; i++) values.push(c.rng.normal() * 2 ** c.rng.int(-20, 20));
        const t = c.run(() => tensor(values, [values.length], dtype));
        const r = await readChecked(c, t, `tensor ${dtype}`, dtype, [values.length]);
        expectCodes(`tensor(..., ${dtype})`, dtype, r.codes, values.map((v) => storedCode(v, dtype)), (i) => `value ${values[i]}`);
      }
      const ints = [0, 1, -1, 2.9, -2.9, 127, 255, 100000, -100000];
      for (const dtype of ['i32', 'u8', 'bool'] as const) {
        const vals = dtype === 'u8' ? ints.filter((v) => v >= 0 && v < 256) : ints;
        const t = c.run(() => tensor(vals, [vals.length], dtype));
        const r = await readChecked(c, t, `tensor ${dtype}`, dtype, [vals.length]);
        expectCodes(`tensor(..., ${dtype})`, dtype, r.codes, vals.map((v) => storedCode(v, dtype)), (i) => `value ${vals[i]}`);
      }
      const nested = c.run(() => tensor([[1, 2, 3], [4, 5, 6]]));
      const r = await readChecked(c, nested, 'nested tensor', 'f32', [2, 3]);
      expectCodes('tensor([[1,2,3],[4,5,6]])', 'f32', r.codes, [1, 2, 3, 4, 5, 6]);
      const s = c.run(() => tensor(7.5));
      await readChecked(c, s, 'tensor(7.5)', 'f32', []);
    },
  },
  {
    name: 'arange: default i32, float steps, negative steps, empty ranges',
    async run(c) {
      const cases: [number, number | undefined, number, DType, number[]][] = [
        [5, undefined, 1, 'i32', [0, 1, 2, 3, 4]],
        [2, 9, 3, 'i32', [2, 5, 8]],
        [5, 0, -1, 'i32', [5, 4, 3, 2, 1]],
        [0, 1, 0.25, 'f32', [0, 0.25, 0.5, 0.75]],
        [3, 3, 1, 'i32', []],
        [3, 1, 1, 'f32', []],
        [-1, 1, 0.5, 'f16', [-1, -0.5, 0, 0.5]],
      ];
      for (const [start, stop, step, dtype, want] of cases) {
        const t = c.run(() => arange(start, stop, step, dtype));
        const r = await readChecked(c, t, `arange(${start}, ${stop}, ${step}, ${dtype})`, dtype, [want.length]);
        expectCodes(`arange(${start}, ${stop}, ${step}, ${dtype})`, dtype, r.codes, want.map((v) => storedCode(v, dtype)));
      }
    },
  },
  {
    name: 'randomUniform is bit-identical to a + (b - a) * u in f32 with u = uniformAt(seed, i), through Backend.random with a poisoned allocator',
    async run(c) {
      for (const seed of [0, 1, 42, 0x9e3779b9, 0xffffffff]) {
        for (const [a, b] of UNIFORM_SPECS) {
          for (const shape of [[0], [1], [7, 3], [129, 131]]) {
            const n = size(shape);
            const r = await c.prim(`random uniform seed ${seed} [${a}, ${b})`, 'f32', shape, () => c.backend.random(shape, { distribution: 'uniform', seed, a, b }));
            expectCodes(`uniform seed ${seed} [${a}, ${b}) [${shape.join(', ')}]`, 'f32', r.codes, uniformRef(seed, n, a, b));
          }
        }
      }
      const t = c.run(() => randomUniform([3, 5], 7, -2, 2));
      const r = await readChecked(c, t, 'randomUniform', 'f32', [3, 5]);
      expectCodes('randomUniform([3, 5], 7, -2, 2)', 'f32', r.codes, uniformRef(7, 15, -2, 2));
      const d = c.run(() => randomUniform([4], 9));
      expectCodes('randomUniform default range [0, 1)', 'f32', (await c.read(d)).codes, uniformRef(9, 4, 0, 1));
    },
  },
  {
    name: 'random values depend only on (seed, element index): deterministic per seed, different across seeds, independent of shape',
    async run(c) {
      const a = await c.read(c.run(() => randomUniform([1000], 123)));
      const b = await c.read(c.run(() => randomUniform([10, 100], 123)));
      expectCodes('same seed, other shape', 'f32', b.codes, a.codes);
      const prefix = await c.read(c.run(() => randomUniform([10], 123)));
      expectCodes('prefix of a longer draw', 'f32', prefix.codes, a.codes.slice(0, 10));
      const other = await c.read(c.run(() => randomUniform([1000], 124)));
      let same = 0;
      for (let i = 0; i < 1000; i++) if (other.codes[i] === a.codes[i]) same++;
      assert(same < 10, `seeds 123 and 124 share ${same} of 1000 uniform values`);
      const n1 = await c.read(c.run(() => randomNormal([500], 5, 1, 2)));
      const n2 = await c.read(c.run(() => randomNormal([500], 5, 1, 2)));
      expectCodes('randomNormal same seed', 'f32', n2.codes, n1.codes);
      const n3 = await c.read(c.run(() => randomNormal([500], 6, 1, 2)));
      let sameN = 0;
      for (let i = 0; i < 500; i++) if (n3.codes[i] === n1.codes[i]) sameN++;
      assert(sameN < 5, `normal seeds 5 and 6 share ${sameN} of 500 values`);
    },
  },
  {
    name: 'randomNormal: mean and std within statistical bounds (n = 2^18), every value within the transcendental tolerance of mean + std * normalAt(seed, i)',
    async run(c) {
      const n = 1 << 18;
      for (const [mean, std, seed] of [
        [0, 1, 11],
        [3, 0.5, 12],
        [-2, 4, 0xdeadbeef],
      ] as const) {
        const r = await c.prim(`random normal(${mean}, ${std})`, 'f32', [n], () => c.backend.random([n], { distribution: 'normal', seed, a: mean, b: std }));
        const v = r.values;
        let s = 0;
        let s2 = 0;
        let within1 = 0;
        for (let i = 0; i < n; i++) {
          if (!Number.isFinite(v[i])) fail(`normal(${mean}, ${std}) element ${i} is ${v[i]}`);
          s += v[i];
        }
        const m = s / n;
        for (let i = 0; i < n; i++) {
          s2 += (v[i] - m) ** 2;
          if (Math.abs(v[i] - mean) < std) within1++;
        }
        const sd = Math.sqrt(s2 / n);
        // 6-sigma bounds: sd(mean) = std/sqrt(n), sd(sample std) ~ std/sqrt(2n), sd(fraction) = sqrt(p(1-p)/n)
        assert(Math.abs(m - mean) <= (6 * std) / Math.sqrt(n), `normal(${mean}, ${std}): sample mean ${m}`);
        assert(Math.abs(sd - std) <= (6 * std) / Math.sqrt(2 * n), `normal(${mean}, ${std}): sample std ${sd}`);
        const p = 0.6826894921370859;
        assert(Math.abs(within1 / n - p) <= 6 * Math.sqrt((p * (1 - p)) / n), `normal(${mean}, ${std}): ${within1 / n} of values within one std (expected ${p})`);
        const exact = new Float64Array(n);
        const bound = new Float64Array(n);
        for (let i = 0; i < n; i++) {
          const z = normalAt(seed, i);
          exact[i] = mean + std * z;
          bound[i] = c.tol.transcendental * EPS32 * (Math.abs(mean) + std * (8 + 4 * Math.abs(z)));
        }
        expectNear(`normal(${mean}, ${std}) vs normalAt`, 'f32', v, exact, bound);
      }
    },
  },
];

export const creationAndRandom: Area = { name: 'creation-and-random', cases };
