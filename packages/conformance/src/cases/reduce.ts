import type { DType, ReduceOp, Tensor } from '@kiln/core';
import { REDUCE_OPS, ShapeError, argmax, argmin, max, mean, min, prod, sum, variance } from '@kiln/core';
import { assert, describeAt, expectNear } from '../check.js';
import type { Area, CaseDef, Ctx } from '../harness.js';
import { ALL_DTYPES, expectedReduce, isFloat, isHalf, type Compute } from '../reference/dtypes.js';
import { EPS32, ulp32 } from '../reference/float.js';
import { toCompute } from '../reference/math.js';
import { groupsOf, type Shape } from '../reference/nd.js';
import { readChecked } from './util.js';

type Axes = number | number[] | undefined;

const REDUCE_FN: Record<ReduceOp, (x: Tensor, axes?: Axes, o?: { keepDims?: boolean }) => Tensor> = {
  sum,
  prod,
  max,
  min,
  argmax: (x, axes, o) => argmax(x, axes as number, o),
  argmin: (x, axes, o) => argmin(x, axes as number, o),
};

/** Reference of a reduction over one group of elements (in row-major order), with an error bound. */
function reduceGroup(op: ReduceOp, vals: number[], compute: Compute, tol: Ctx['tol']): { exact: number; bound: number } {
  const n = vals.length;
  switch (op) {
    case 'sum': {
      if (compute !== 'f32') {
        let s = 0;
        for (const v of vals) s = (s + v) | 0;
        return { exact: s, bound: 0 };
      }
      let s = 0;
      let abs = 0;
      for (const v of vals) {
        s += v;
        abs += Math.abs(v);
      }
      return { exact: s, bound: tol.matmul * EPS32 * abs };
    }
    case 'prod': {
      if (compute !== 'f32') {
        let p = 1;
        for (const v of vals) p = Math.imul(p, v);
        return { exact: p, bound: 0 };
      }
      let p = 1;
      for (const v of vals) p *= v;
      return { exact: p, bound: Number.isFinite(p) ? tol.f32 * Math.max(1, n) * ulp32(p) : 0 };
    }
    case 'max':
    case 'min': {
      let m = op === 'max' ? -Infinity : Infinity;
      for (const v of vals) {
        if (Number.isNaN(v)) return { exact: NaN, bound: 0 };
        m = op === 'max' ? Math.max(m, v) : Math.min(m, v);
      }
      return { exact: m, bound: 0 };
    }
    case 'argmax':
    case 'argmin': {
      // NaN counts as the largest value; ties go to the first index
      const key = (v: number): number => (Number.isNaN(v) ? Infinity : v);
      const nanMax = (i: number, j: number): boolean => {
        // is vals[i] strictly better than vals[j]?
        const a = vals[i];
        const b = vals[j];
        if (op === 'argmax') {
          if (Number.isNaN(b)) return false;
          if (Number.isNaN(a)) return true;
          return a > b;
        }
        if (Number.isNaN(a)) return false;
        if (Number.isNaN(b)) return true;
        return key(a) < key(b);
      };
      let best = 0;
      for (let i = 1; i < n; i++) if (nanMax(i, best)) best = i;
      return { exact: best, bound: 0 };
    }
  }
}

function reduceRef(op: ReduceOp, values: ArrayLike<number>, dtype: DType, shape: Shape, axes: number[], keepDims: boolean, tol: Ctx['tol']) {
  const { compute, result } = expectedReduce(op, dtype);
  const { outShape, groups } = groupsOf(shape, axes);
  const exact = new Float64Array(groups.length);
  const bound = new Float64Array(groups.length);
  for (let g = 0; g < groups.length; g++) {
    const vals = groups[g].map((i) => toCompute(values[i], dtype, compute));
    const r = reduceGroup(op, vals, compute, tol);
    exact[g] = r.exact;
    bound[g] = r.bound;
  }
  const shapeOut = keepDims ? shape.map((d, i) => (axes.includes(i) ? 1 : d)) : outShape;
  return { exact, bound, result, shape: shapeOut };
}

interface AxisCase {
  shape: Shape;
  axes: Axes;
  keepDims: boolean;
}

const AXIS_CASES: AxisCase[] = [
  { shape: [7], axes: undefined, keepDims: false },
  { shape: [3, 5, 7], axes: 1, keepDims: false },
  { shape: [3, 5, 7], axes: -1, keepDims: true },
  { shape: [3, 5, 7], axes: [0, 2], keepDims: false },
  { shape: [3, 5, 7], axes: [2, 0], keepDims: true },
  { shape: [4, 1, 6], axes: undefined, keepDims: true },
  { shape: [2, 3, 4, 5], axes: [-3, -1], keepDims: false },
  { shape: [127, 3], axes: 0, keepDims: false },
  { shape: [1], axes: 0, keepDims: false },
  { shape: [], axes: undefined, keepDims: false },
];

function normAxes(axes: Axes, rank: number): number[] {
  if (axes === undefined) return Array.from({ length: rank }, (_, i) => i);
  const list = typeof axes === 'number' ? [axes] : axes;
  return list.map((a) => (a < 0 ? a + rank : a));
}

async function checkReduce(c: Ctx, op: ReduceOp, dtype: DType, ac: AxisCase): Promise<void> {
  const argOp = op === 'argmax' || op === 'argmin';
  if (argOp && (ac.axes === undefined || Array.isArray(ac.axes))) return; // arg reductions take one axis
  if (argOp && ac.shape.length === 0) return;
  const gen =
    dtype === 'bool'
      ? undefined
      : op === 'prod'
        ? (r: import('../prng.js').Rng) => (dtype === 'i32' ? r.int(-3, 4) : dtype === 'u8' ? r.int(0, 4) : r.uniform(0.5, 1.8) * (r.bool() ? 1 : -1))
        : argOp || op === 'max' || op === 'min'
          ? (r: import('../prng.js').Rng) => (dtype === 'u8' ? r.int(0, 6) : r.int(-5, 6) / (isFloat(dtype) ? 2 : 1)) // ties
          : undefined;
  const x = c.random(ac.shape, dtype, gen);
  const axes = normAxes(ac.axes, ac.shape.length);
  const ref = reduceRef(op, x.values, dtype, ac.shape, axes, ac.keepDims, c.tol);
  const label = `${op}(${dtype} [${ac.shape.join(', ')}], axes ${JSON.stringify(ac.axes)}, keepDims ${ac.keepDims})`;
  const y = c.run(() => REDUCE_FN[op](x.t, ac.axes, { keepDims: ac.keepDims }));
  const r = await readChecked(c, y, label, ref.result, ref.shape);
  expectNear(label, ref.result, r.values, ref.exact, ref.bound, describeAt(ref.shape));
}

function opCase(op: ReduceOp): CaseDef {
  return {
    name: `${op}: every dtype over single, negative, multiple and all axes with and without keepDims (output dtype, shape, values; ties → first index)`,
    async run(c) {
      for (const dtype of ALL_DTYPES) for (const ac of AXIS_CASES) await checkReduce(c, op, dtype, ac);
    },
  };
}

const cases: CaseDef[] = [
  ...REDUCE_OPS.map(opCase),
  {
    name: 'empty axes: sum over a size-0 axis is 0, prod is 1, mean is NaN; max/min/argmax/argmin of a size-0 axis throw ShapeError; other axes of an empty tensor give empty results',
    async run(c) {
      for (const dtype of ['f32', 'i32', 'f16', 'bool'] as const) {
        const x = c.random([2, 0, 3], dtype);
        const s = c.run(() => sum(x.t, 1));
        const { result } = expectedReduce('sum', dtype);
        expectNear(`sum(${dtype} [2, 0, 3], 1)`, result, (await readChecked(c, s, 'sum empty', result, [2, 3])).values, new Array(6).fill(0), 0);
        const p = c.run(() => prod(x.t, [1], { keepDims: true }));
        expectNear(`prod(${dtype} [2, 0, 3], 1)`, result, (await readChecked(c, p, 'prod empty', result, [2, 1, 3])).values, new Array(6).fill(1), 0);
        const all = c.run(() => sum(x.t));
        expectNear(`sum(${dtype} [2, 0, 3])`, result, (await readChecked(c, all, 'sum all empty', result, [])).values, [0], 0);
        const other = c.run(() => sum(x.t, 2));
        await readChecked(c, other, 'sum over a non-empty axis of an empty tensor', result, [2, 0]);
        for (const [name, f] of [
          ['max', () => max(x.t, 1)],
          ['min', () => min(x.t, [0, 1])],
          ['argmax', () => argmax(x.t, 1)],
          ['argmin', () => argmin(x.t, 1)],
          ['max', () => max(x.t)],
        ] as const) {
          let err: unknown;
          try {
            c.run(f);
          } catch (e) {
            err = e;
          }
          assert(err instanceof ShapeError, `${name} over an empty axis of ${dtype} [2, 0, 3] should throw ShapeError, got ${String(err)}`);
          assert((err as ShapeError).op === name, `${name}: error names op ${(err as ShapeError).op}`);
        }
        // reducing a non-empty axis of an empty tensor is fine
        const m = c.run(() => max(x.t, 2));
        await readChecked(c, m, 'max over a non-empty axis of an empty tensor', expectedReduce('max', dtype).result, [2, 0]);
      }
      const m = c.run(() => mean(c.random([3, 0], 'f32').t, 1));
      expectNear('mean over an empty axis', 'f32', (await readChecked(c, m, 'mean empty', 'f32', [3])).values, [NaN, NaN, NaN], 0);
    },
  },
  {
    name: 'NaN: max/min propagate NaN; argmax picks the first NaN, argmin skips NaN unless the row is all NaN',
    async run(c) {
      const rows = [
        [1, NaN, 3, NaN],
        [NaN, 2, 1, 1],
        [NaN, NaN, NaN, NaN],
        [-Infinity, 5, 5, -1],
        [0, -0, Infinity, -Infinity],
      ];
      const x = c.tensor(rows.flat(), [5, 4], 'f32');
      const want = {
        max: [NaN, NaN, NaN, 5, Infinity],
        min: [NaN, NaN, NaN, -Infinity, -Infinity],
        argmax: [1, 0, 0, 1, 2],
        argmin: [0, 2, 0, 0, 3],
      };
      for (const op of ['max', 'min', 'argmax', 'argmin'] as const) {
        const y = c.run(() => REDUCE_FN[op](x, -1));
        const dt = op === 'max' || op === 'min' ? 'f32' : 'i32';
        const r = await readChecked(c, y, op, dt, [5]);
        expectNear(`${op} with NaN rows`, dt, r.values, want[op], 0, describeAt([5], { row: (i) => JSON.stringify(rows[i]) }));
      }
    },
  },
  {
    name: 'axes = [] reduces nothing (a copy in new storage); sum of a rank-0 tensor is itself',
    async run(c) {
      for (const dtype of ['f32', 'i32', 'bf16'] as const) {
        const x = c.random([2, 3], dtype);
        const y = c.run(() => sum(x.t, []));
        const { result } = expectedReduce('sum', dtype);
        const r = await readChecked(c, y, `sum(${dtype}, [])`, result, [2, 3]);
        expectNear(`sum(${dtype}, [])`, result, r.values, x.values, 0);
        assert(y.dataId !== x.t.dataId, 'sum(x, []) must not alias x');
      }
      const s = c.tensor([2.5], [], 'f32');
      expectNear('sum(rank-0)', 'f32', (await readChecked(c, c.run(() => sum(s)), 'sum rank-0', 'f32', [])).values, [2.5], 0);
      expectNear('max(rank-0)', 'f32', (await readChecked(c, c.run(() => max(s)), 'max rank-0', 'f32', [])).values, [2.5], 0);
    },
  },
  {
    name: 'mean and variance: every numeric dtype, axes and keepDims; mean keeps f16/bf16, otherwise f32; variance is f32',
    async run(c) {
      for (const dtype of ['f32', 'f16', 'bf16', 'e4m3', 'i32', 'u8'] as const) {
        for (const ac of [
          { shape: [3, 5, 7], axes: 1 as Axes, keepDims: false },
          { shape: [3, 5, 7], axes: [0, 2] as Axes, keepDims: true },
          { shape: [11], axes: undefined as Axes, keepDims: false },
        ]) {
          const x = c.random(ac.shape, dtype);
          const axes = normAxes(ac.axes, ac.shape.length);
          const { outShape, groups } = groupsOf(ac.shape, axes);
          const shapeOut = ac.keepDims ? ac.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : outShape;
          const m = c.run(() => mean(x.t, ac.axes, { keepDims: ac.keepDims }));
          const v = c.run(() => variance(x.t, ac.axes, { keepDims: ac.keepDims }));
          const exactM = new Float64Array(groups.length);
          const boundM = new Float64Array(groups.length);
          const exactV = new Float64Array(groups.length);
          const boundV = new Float64Array(groups.length);
          for (let g = 0; g < groups.length; g++) {
            const vals = groups[g].map((i) => x.values[i]);
            const n = vals.length;
            let s = 0;
            let abs = 0;
            for (const val of vals) {
              s += val;
              abs += Math.abs(val);
            }
            exactM[g] = s / n;
            // the sum is rounded to f16/bf16 before the division when the input is f16/bf16
            const halfUlp = isHalf(dtype) ? (dtype === 'f16' ? 2 ** -11 : 2 ** -8) * Math.abs(s) / n : 0;
            boundM[g] = (c.tol.matmul * EPS32 * abs) / n + c.tol.f32 * ulp32(exactM[g]) + halfUlp;
            let s2 = 0;
            let abs2 = 0;
            for (const val of vals) {
              s2 += (val - exactM[g]) ** 2;
              abs2 += (Math.abs(val) + Math.abs(exactM[g])) ** 2;
            }
            exactV[g] = s2 / n;
            boundV[g] = ((2 * c.tol.matmul + 4 * c.tol.f32) * EPS32 * abs2) / n;
          }
          const label = `${dtype} [${ac.shape.join(', ')}] axes ${JSON.stringify(ac.axes)}`;
          const meanDtype = isHalf(dtype) ? dtype : 'f32';
          const rm = await readChecked(c, m, `mean ${label}`, meanDtype, shapeOut);
          expectNear(`mean ${label}`, meanDtype, rm.values, exactM, boundM, describeAt(shapeOut));
          // variance is documented as a float result: f32, or (composed in the input's dtype)
          // f16/bf16 for f16/bf16 inputs, whose intermediate roundings then enter the bound
          const varDtype = isHalf(dtype) && v.dtype === dtype ? dtype : 'f32';
          const rv = await readChecked(c, v, `variance ${label}`, varDtype, shapeOut);
          const uh = dtype === 'f16' ? 2 ** -11 : 2 ** -8;
          // roundings of the mean, the differences, the squares, the sum and the quotient
          const boundVh = varDtype === 'f32' ? boundV : boundV.map((b, g) => b + uh * (8 * exactV[g] + 4 * Math.abs(exactM[g]) * Math.sqrt(exactV[g])));
          expectNear(`variance ${label}`, varDtype, rv.values, exactV, boundVh, describeAt(shapeOut));
        }
      }
    },
  },
  {
    name: 'sum accuracy over long rows (n = 10007, mixed signs) is within c·eps·Σ|x| for every element',
    async run(c) {
      const shape = [5, 10007];
      const x = c.random(shape, 'f32', (r) => r.normal() * 10);
      const ref = reduceRef('sum', x.values, 'f32', shape, [1], false, c.tol);
      const y = c.run(() => sum(x.t, 1));
      expectNear('sum [5, 10007] axis 1', 'f32', (await readChecked(c, y, 'sum long rows', 'f32', [5])).values, ref.exact, ref.bound);
      const ref0 = reduceRef('sum', x.values, 'f32', shape, [0], false, c.tol);
      const y0 = c.run(() => sum(x.t, 0));
      expectNear('sum [5, 10007] axis 0', 'f32', (await readChecked(c, y0, 'sum axis 0', 'f32', [10007])).values, ref0.exact, ref0.bound);
    },
  },
  {
    name: 'Backend.reduce: every op over each axis of [5, 7, 9] and over axis 0 of [2, 16411] (64 KiB+ output), f32 / i32 / u8, poisoned',
    async run(c) {
      for (const dtype of ['f32', 'i32', 'u8'] as const) {
        for (const op of REDUCE_OPS) {
          if (dtype === 'u8' && (op === 'sum' || op === 'prod')) continue; // core widens u8 to i32 before sum/prod
          for (const [shape, axis] of [
            [[5, 7, 9], 0],
            [[5, 7, 9], 1],
            [[5, 7, 9], 2],
            [[2, 16411], 0],
          ] as [number[], number][]) {
            const x = c.random(shape, dtype, op === 'prod' && dtype !== 'f32' ? (r) => r.int(dtype === 'u8' ? 0 : -3, 4) : undefined);
            const ref = reduceRef(op, x.values, dtype, shape, [axis], false, c.tol);
            const outShape = shape.filter((_, i) => i !== axis);
            const outDtype = op === 'argmax' || op === 'argmin' ? 'i32' : dtype;
            const r = await c.prim(`reduce ${op} ${dtype}`, outDtype, outShape, () => c.backend.reduce(op, x.t, axis), [x.t]);
            expectNear(`Backend.reduce(${op}, ${dtype} [${shape.join(', ')}], ${axis})`, outDtype, r.values, ref.exact, ref.bound, describeAt(outShape));
          }
        }
      }
    },
  },
];

export const reduceArea: Area = { name: 'reduce', cases };
