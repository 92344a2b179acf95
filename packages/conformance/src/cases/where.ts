import type { DType } from '@kiln/core';
import { where } from '@kiln/core';
import { describeAt, expectCodes, expectNear } from '../check.js';
import { codesFor, type Area, type CaseDef } from '../harness.js';
import { ALL_DTYPES, computeOf, expectedPromotion } from '../reference/dtypes.js';
import { castCode, toCompute } from '../reference/math.js';
import { broadcast, mapBroadcast, type Shape } from '../reference/nd.js';
import { readChecked } from './util.js';

const SHAPES: [Shape, Shape, Shape][] = [
  [[3, 1, 5], [4, 1], [5]],
  [[], [2, 3], [2, 3]],
  [[2, 3], [], [1, 3]],
  [[7], [7], [7]],
  [[4, 1], [1, 6], []],
  [[0, 3], [3], [1, 3]],
  [[1], [0], [1]],
];

const cases: CaseDef[] = [
  {
    name: 'where(cond, a, b): all 64 dtype pairs of a/b, broadcasting cond/a/b (rank-0, empty): output dtype is the promotion, values selected exactly',
    async run(c) {
      let k = 0;
      for (const da of ALL_DTYPES) {
        for (const db of ALL_DTYPES) {
          const [sc, sa, sb] = SHAPES[k++ % SHAPES.length];
          const cond = c.random(sc, 'bool');
          // finite values (NaN codes of f16/FP8 are canonicalised by the f32 round trip)
          const a = c.random(sa, da);
          const b = c.random(sb, db);
          const result = expectedPromotion(da, db);
          const compute = computeOf(result);
          const out = broadcast(sc, sa, sb);
          const label = `where(bool [${sc.join(', ')}], ${da} [${sa.join(', ')}], ${db} [${sb.join(', ')}])`;
          const y = c.run(() => where(cond.t, a.t, b.t));
          const r = await readChecked(c, y, label, result, out);
          const ref = mapBroadcast([sc, sa, sb], [cond.values, a.values, b.values], (cv, x, z) => {
            const v = cv ? toCompute(x, da, compute) : toCompute(z, db, compute);
            return castCode(v, compute, result, false);
          });
          expectCodes(label, result, r.codes, ref.values, describeAt(out));
        }
      }
    },
  },
  {
    name: 'where casts a non-bool cond with != 0 (NaN is true, -0 is false) for f32, i32 and u8 conditions',
    async run(c) {
      const condVals: [DType, number[]][] = [
        ['f32', [0, -0, NaN, 1, -2.5, Infinity]],
        ['i32', [0, 1, -1, 0, 7, 2147483647]],
        ['u8', [0, 255, 1, 0, 2, 0]],
      ];
      const a = c.tensor([1, 2, 3, 4, 5, 6], [6], 'f32');
      const b = c.tensor([-1, -2, -3, -4, -5, -6], [6], 'f32');
      for (const [dtype, vals] of condVals) {
        const cond = c.tensor(vals, [6], dtype);
        const y = c.run(() => where(cond, a, b));
        const r = await readChecked(c, y, `where(${dtype} cond)`, 'f32', [6]);
        expectNear(`where(${dtype} cond)`, 'f32', r.values, vals.map((v, i) => (v !== 0 ? i + 1 : -(i + 1))), 0, describeAt([6], { cond: vals }));
      }
    },
  },
  {
    name: 'where with number operands: where(c, x, 0), where(c, 1.5, -2), where(c, i32, 7), where(c, f16, 0) stays f16',
    async run(c) {
      const cond = c.tensor([1, 0, 1, 0], [4], 'bool');
      const x = c.tensor([0.5, NaN, -Infinity, 3], [4], 'f32');
      const y1 = c.run(() => where(cond, x, 0));
      expectNear('where(c, x, 0)', 'f32', (await readChecked(c, y1, 'where(c, x, 0)', 'f32', [4])).values, [0.5, 0, -Infinity, 0], 0);
      const y2 = c.run(() => where(cond, 1.5, -2));
      expectNear('where(c, 1.5, -2)', 'f32', (await readChecked(c, y2, 'where(c, 1.5, -2)', 'f32', [4])).values, [1.5, -2, 1.5, -2], 0);
      const xi = c.tensor([10, 20, 30, 40], [4], 'i32');
      const y3 = c.run(() => where(cond, xi, 7));
      expectNear('where(c, i32, 7)', 'i32', (await readChecked(c, y3, 'where(c, i32, 7)', 'i32', [4])).values, [10, 7, 30, 7], 0);
      const xh = c.tensor([0.5, -1, 2, 3], [4], 'f16');
      const y4 = c.run(() => where(cond, 0.1, xh));
      expectCodes('where(c, 0.1, f16)', 'f16', (await readChecked(c, y4, 'where(c, 0.1, f16)', 'f16', [4])).codes, codesFor([0.1, -1, 0.1, 3], 'f16'));
    },
  },
  {
    name: 'Backend.where on [129, 131] with broadcast operands for f32, i32, u8 and [257, 256] bool, poisoned',
    async run(c) {
      for (const dtype of ['f32', 'i32', 'u8', 'bool'] as const) {
        const out = dtype === 'bool' || dtype === 'u8' ? [257, 256] : [129, 131];
        const sc = [out[0], 1];
        const sa = out;
        const sb = [out[1]];
        const cond = c.random(sc, 'bool');
        const a = c.random(sa, dtype);
        const b = c.random(sb, dtype);
        const r = await c.prim(`where ${dtype}`, dtype, out, () => c.backend.where(cond.t, a.t, b.t, out), [cond.t, a.t, b.t]);
        const ref = mapBroadcast([sc, sa, sb], [cond.values, a.values, b.values], (cv, x, z) => (cv ? x : z));
        expectCodes(`Backend.where ${dtype}`, dtype, r.codes, codesFor(ref.values, dtype), describeAt(out));
      }
    },
  },
];

export const whereArea: Area = { name: 'where', cases };
