import type { DType } from '@kiln/core';
import { gather, indexAdd, indexSelect, scatterAdd } from '@kiln/core';
import { describeAt, expectCodes, expectNear, fail } from '../check.js';
import type { Area, CaseDef, Ctx } from '../harness.js';
import { codesFor } from '../harness.js';
import { ALL_DTYPES, expectedAccumulate } from '../reference/dtypes.js';
import { EPS32 } from '../reference/float.js';
import { castCode, toCompute } from '../reference/math.js';
import { gatherRef, indexSelectRef, ravel, size, unravel, type Shape } from '../reference/nd.js';
import { readChecked } from './util.js';

/** Random storage codes (any finite or special value) as exact values of `dtype`. */
function data(c: Ctx, shape: Shape, dtype: DType) {
  return c.random(shape, dtype, dtype === 'i32' ? (r) => r.u32() | 0 : dtype === 'u8' ? (r) => r.int(0, 256) : dtype === 'bool' ? undefined : (r) => r.normal() * 100);
}

function randomIndices(c: Ctx, shape: Shape, bound: number): number[] {
  return Array.from({ length: size(shape) }, () => c.rng.int(0, bound));
}

/** scatter-add reference: base + sum of src at indices, accumulated in float64 (f32) or wrapping (i32). */
function accumulateRef(base: Float64Array, targets: (i: number) => number, src: Float64Array, compute: string) {
  const out = Float64Array.from(base);
  const abs = base.map(Math.abs);
  for (let i = 0; i < src.length; i++) {
    const t = targets(i);
    if (compute === 'i32') out[t] = (out[t] + src[i]) | 0;
    else {
      out[t] += src[i];
      abs[t] += Math.abs(src[i]);
    }
  }
  return { exact: out, abs };
}

const cases: CaseDef[] = [
  {
    name: 'gather along every axis of rank-3 data, all 8 dtypes (bit-exact), duplicate indices, index shapes smaller than the data',
    async run(c) {
      const xs: Shape = [4, 5, 6];
      for (const dtype of ALL_DTYPES) {
        for (const [axis, ishape] of [
          [0, [7, 5, 6]],
          [1, [4, 3, 6]],
          [2, [2, 5, 9]],
          [-1, [3, 2, 1]],
          [1, [4, 0, 6]],
        ] as [number, Shape][]) {
          const x = data(c, xs, dtype);
          const ax = axis < 0 ? axis + 3 : axis;
          const idx = randomIndices(c, ishape, xs[ax]);
          const ti = c.tensor(idx, ishape, 'i32');
          const y = c.run(() => gather(x.t, axis, ti));
          const label = `gather(${dtype} [4, 5, 6], ${axis}, [${ishape.join(', ')}])`;
          const r = await readChecked(c, y, label, dtype, ishape);
          expectCodes(label, dtype, r.codes, codesFor(gatherRef(x.values, xs, ax, idx, ishape), dtype), describeAt(ishape, { index: idx }));
        }
      }
    },
  },
  {
    name: 'indexSelect along each axis, all 8 dtypes (bit-exact), duplicates, reordering, empty index lists',
    async run(c) {
      const xs: Shape = [5, 3, 7];
      for (const dtype of ALL_DTYPES) {
        for (const [axis, n] of [
          [0, 8],
          [1, 3],
          [2, 1],
          [-1, 11],
          [0, 0],
        ] as [number, number][]) {
          const x = data(c, xs, dtype);
          const ax = axis < 0 ? axis + 3 : axis;
          const idx = randomIndices(c, [n], xs[ax]);
          const ti = c.tensor(idx, [n], 'i32');
          const y = c.run(() => indexSelect(x.t, axis, ti));
          const ref = indexSelectRef(x.values, xs, ax, idx);
          const label = `indexSelect(${dtype} [5, 3, 7], ${axis}, [${idx.join(', ')}])`;
          const r = await readChecked(c, y, label, dtype, ref.shape);
          expectCodes(label, dtype, r.codes, codesFor(ref.values, dtype), describeAt(ref.shape));
        }
      }
    },
  },
  {
    name: 'scatterAdd: duplicates accumulate, src smaller than base, every accumulable base dtype with f32/i32/f16 src (dtype rules), f32 within c·eps·Σ|terms|',
    async run(c) {
      const baseShape: Shape = [6, 4, 5];
      for (const bd of ['f32', 'f16', 'bf16', 'e4m3', 'e5m2', 'i32', 'u8'] as DType[]) {
        for (const sd of ['f32', 'i32', 'f16'] as DType[]) {
          for (const [axis, srcShape] of [
            [0, [9, 4, 5]],
            [1, [6, 7, 3]],
            [2, [2, 3, 8]],
          ] as [number, Shape][]) {
            const base = c.random(baseShape, bd, bd === 'u8' ? (r) => r.int(0, 20) : bd === 'i32' ? (r) => r.int(-100, 100) : undefined);
            const src = c.random(srcShape, sd, sd === 'i32' ? (r) => r.int(-100, 100) : undefined);
            const idx = randomIndices(c, srcShape, baseShape[axis]);
            const ti = c.tensor(idx, srcShape, 'i32');
            const { compute, result } = expectedAccumulate(bd, sd);
            const b = base.values.map((v) => toCompute(v, bd, compute));
            const s = src.values.map((v) => toCompute(v, sd, compute));
            const target = (i: number): number => {
              const m = unravel(i, srcShape);
              m[axis] = idx[i];
              return ravel(m, baseShape);
            };
            const ref = accumulateRef(b, target, s, compute);
            // the f32 result is then cast to the result dtype
            const label = `scatterAdd(${bd} base, axis ${axis}, ${sd} src [${srcShape.join(', ')}])`;
            const y = c.run(() => scatterAdd(base.t, axis, ti, src.t));
            const r = await readChecked(c, y, label, result, baseShape);
            if (compute === 'f32' && (result === 'i32' || result === 'u8')) {
              // float accumulation cast (truncated) to the integer base dtype: any truncation of a
              // value within the accumulation bound is acceptable
              const bad: string[] = [];
              for (let i = 0; i < ref.exact.length; i++) {
                const b = c.tol.matmul * EPS32 * ref.abs[i];
                const lo = castCode(ref.exact[i] - b, 'f32', result, false);
                const hi = castCode(ref.exact[i] + b, 'f32', result, false);
                if (!(r.values[i] >= lo && r.values[i] <= hi)) bad.push(`[${unravel(i, baseShape).join(', ')}]: got ${r.values[i]}, expected ${lo === hi ? lo : `${lo}..${hi}`}`);
              }
              if (bad.length) fail(`${label}: ${bad.length} elements wrong; first: ${bad.slice(0, 5).join('; ')}`);
            } else {
              expectNear(label, result, r.values, ref.exact, compute === 'f32' ? ref.abs.map((a) => c.tol.matmul * EPS32 * a) : 0, describeAt(baseShape));
            }
          }
        }
      }
    },
  },
  {
    name: 'indexAdd: duplicate indices accumulate whole slices, every accumulable base dtype, empty index list',
    async run(c) {
      const baseShape: Shape = [5, 6, 3];
      for (const bd of ['f32', 'f16', 'bf16', 'e4m3', 'i32', 'u8'] as DType[]) {
        for (const [axis, n] of [
          [0, 9],
          [1, 4],
          [2, 0],
          [-1, 5],
        ] as [number, number][]) {
          const ax = axis < 0 ? axis + 3 : axis;
          const sd: DType = bd === 'i32' || bd === 'u8' ? 'i32' : 'f32';
          const srcShape = baseShape.map((d, i) => (i === ax ? n : d));
          const base = c.random(baseShape, bd, bd === 'u8' ? (r) => r.int(0, 20) : bd === 'i32' ? (r) => r.int(-100, 100) : undefined);
          const src = c.random(srcShape, sd, sd === 'i32' ? (r) => r.int(0, 50) : undefined);
          const idx = randomIndices(c, [n], baseShape[ax]);
          const ti = c.tensor(idx, [n], 'i32');
          const { compute, result } = expectedAccumulate(bd, sd);
          const b = base.values.map((v) => toCompute(v, bd, compute));
          const s = src.values.map((v) => toCompute(v, sd, compute));
          const target = (i: number): number => {
            const m = unravel(i, srcShape);
            m[ax] = idx[m[ax]];
            return ravel(m, baseShape);
          };
          const ref = accumulateRef(b, target, s, compute);
          const label = `indexAdd(${bd} base, axis ${axis}, [${idx.join(', ')}])`;
          const y = c.run(() => indexAdd(base.t, axis, ti, src.t));
          const r = await readChecked(c, y, label, result, baseShape);
          expectNear(label, result, r.values, ref.exact, compute === 'f32' ? ref.abs.map((a) => c.tol.matmul * EPS32 * a) : 0, describeAt(baseShape));
        }
      }
    },
  },
  {
    name: 'Backend.gather / indexSelect / scatterAdd / indexAdd on 64 KiB+ outputs (f32 [129, 131], u8 [257, 256]), poisoned',
    async run(c) {
      for (const dtype of ['f32', 'u8'] as const) {
        const shape: Shape = dtype === 'f32' ? [129, 131] : [257, 256];
        const x = data(c, shape, dtype);
        const gi = randomIndices(c, shape, shape[1]);
        const gt = c.tensor(gi, shape, 'i32');
        const g = await c.prim(`gather ${dtype}`, dtype, shape, () => c.backend.gather(x.t, 1, gt), [x.t, gt]);
        expectCodes(`Backend.gather ${dtype}`, dtype, g.codes, codesFor(gatherRef(x.values, shape, 1, gi, shape), dtype), describeAt(shape));
        const si = randomIndices(c, [shape[0]], shape[0]);
        const st = c.tensor(si, [shape[0]], 'i32');
        const sel = indexSelectRef(x.values, shape, 0, si);
        const s = await c.prim(`indexSelect ${dtype}`, dtype, sel.shape, () => c.backend.indexSelect(x.t, 0, st), [x.t, st]);
        expectCodes(`Backend.indexSelect ${dtype}`, dtype, s.codes, codesFor(sel.values, dtype), describeAt(sel.shape));
      }
      for (const dtype of ['f32', 'i32'] as const) {
        const shape: Shape = [129, 131];
        const base = c.random(shape, dtype);
        const src = c.random([40, 131], dtype);
        const idx = randomIndices(c, [40, 131], 129);
        const ti = c.tensor(idx, [40, 131], 'i32');
        const target = (i: number): number => {
          const m = unravel(i, [40, 131]);
          m[0] = idx[i];
          return ravel(m, shape);
        };
        const ref = accumulateRef(base.values, target, src.values, dtype);
        const r = await c.prim(`scatterAdd ${dtype}`, dtype, shape, () => c.backend.scatterAdd(base.t, 0, ti, src.t), [base.t, src.t]);
        expectNear(`Backend.scatterAdd ${dtype}`, dtype, r.values, ref.exact, dtype === 'f32' ? ref.abs.map((a) => c.tol.matmul * EPS32 * a) : 0, describeAt(shape));
        const ii = randomIndices(c, [40], 129);
        const it_ = c.tensor(ii, [40], 'i32');
        const ref2 = accumulateRef(
          base.values,
          (i) => {
            const m = unravel(i, [40, 131]);
            m[0] = ii[m[0]];
            return ravel(m, shape);
          },
          src.values,
          dtype,
        );
        const r2 = await c.prim(`indexAdd ${dtype}`, dtype, shape, () => c.backend.indexAdd(base.t, 0, it_, src.t), [base.t, src.t]);
        expectNear(`Backend.indexAdd ${dtype}`, dtype, r2.values, ref2.exact, dtype === 'f32' ? ref2.abs.map((a) => c.tol.matmul * EPS32 * a) : 0, describeAt(shape));
      }
    },
  },
];

export const indexingArea: Area = { name: 'indexing', cases };
