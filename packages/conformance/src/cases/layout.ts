import type { DType, Tensor } from '@kiln/core';
import { broadcastTo, clone, concat, expandDims, flatten, reshape, slice, sliceAxis, split, squeeze, stack, swapAxes, transpose } from '@kiln/core';
import { assert, assertShape, describeAt, expectCodes } from '../check.js';
import type { Area, CaseDef, Ctx } from '../harness.js';
import { ALL_DTYPES } from '../reference/dtypes.js';
import { codeCount } from '../reference/formats.js';
import { broadcastIndex, concatRef, size, sliceRef, transposeRef, unravel, type Shape } from '../reference/nd.js';
import { readChecked } from './util.js';

/**
 * Data whose codes cover each dtype's special patterns: every f16/bf16/FP8 code is possible
 * (NaN and inf codes included, copied bit for bit), f32 includes -0, subnormals, inf and NaN.
 */
function codesData(c: Ctx, shape: Shape, dtype: DType): { t: Tensor; codes: number[] } {
  const n = size(shape);
  const codes: number[] = new Array(n);
  for (let i = 0; i < n; i++) {
    switch (dtype) {
      case 'f32':
        codes[i] = c.rng.bool(0.1) ? c.rng.pick([0, -0, Infinity, -Infinity, NaN, 2 ** -149, -(2 ** -130)]) : Math.fround(c.rng.normal() * 2 ** c.rng.int(-30, 30));
        break;
      case 'f16':
      case 'bf16':
      case 'e4m3':
      case 'e5m2':
        codes[i] = c.rng.int(0, codeCount(dtype));
        break;
      case 'i32':
        codes[i] = c.rng.u32() | 0;
        break;
      case 'u8':
        codes[i] = c.rng.int(0, 256);
        break;
      case 'bool':
        codes[i] = c.rng.int(0, 2);
        break;
    }
  }
  const storage = dtype === 'f32' ? Float32Array.from(codes) : dtype === 'f16' || dtype === 'bf16' ? Uint16Array.from(codes) : dtype === 'i32' ? Int32Array.from(codes) : Uint8Array.from(codes);
  return { t: c.fromCodes(storage, shape, dtype), codes };
}

async function expectLayout(c: Ctx, t: Tensor, label: string, dtype: DType, shape: Shape, codes: number[]): Promise<void> {
  const r = await readChecked(c, t, label, dtype, shape);
  expectCodes(label, dtype, r.codes, codes, describeAt(shape));
}

const PERMS: [Shape, number[] | undefined][] = [
  [[], []],
  [[7], [0]],
  [[3, 5], [1, 0]],
  [[3, 5], undefined],
  [[2, 3, 4], [2, 0, 1]],
  [[2, 3, 4], [1, 2, 0]],
  [[2, 3, 4], undefined],
  [[1, 5, 1, 3], [3, 1, 0, 2]],
  [[2, 3, 1, 4, 5], [4, 2, 0, 3, 1]],
  [[0, 3, 2], [2, 0, 1]],
  [[33, 65], [1, 0]],
  [[3, 4, 5], [0, 1, 2]],
];

const cases: CaseDef[] = [
  {
    name: 'transpose: permutations of ranks 0-5 (default reverses), size-1 and size-0 axes, all 8 dtypes bit for bit',
    async run(c) {
      for (const dtype of ALL_DTYPES) {
        for (const [shape, perm] of PERMS) {
          const x = codesData(c, shape, dtype);
          const p = perm ?? shape.map((_, i) => shape.length - 1 - i);
          const ref = transposeRef(x.codes, shape, p);
          const y = c.run(() => transpose(x.t, perm));
          await expectLayout(c, y, `transpose(${dtype} [${shape.join(', ')}], ${perm ? `[${perm.join(', ')}]` : 'default'})`, dtype, ref.shape, ref.values);
        }
        const x = codesData(c, [2, 3, 4], dtype);
        const y = c.run(() => swapAxes(x.t, 0, -1));
        const ref = transposeRef(x.codes, [2, 3, 4], [2, 1, 0]);
        await expectLayout(c, y, `swapAxes(${dtype}, 0, -1)`, dtype, ref.shape, ref.values);
      }
    },
  },
  {
    name: 'slice and sliceAxis: random blocks, -1 sizes, begin/size shorter than the rank, empty slices, all 8 dtypes',
    async run(c) {
      for (const dtype of ALL_DTYPES) {
        const shape: Shape = [5, 7, 3];
        const x = codesData(c, shape, dtype);
        for (let k = 0; k < 6; k++) {
          const begin = shape.map((d) => c.rng.int(0, d + 1));
          const sz = shape.map((d, i) => c.rng.int(0, d - begin[i] + 1));
          const y = c.run(() => slice(x.t, begin, sz));
          await expectLayout(c, y, `slice(${dtype}, [${begin.join(', ')}], [${sz.join(', ')}])`, dtype, sz, sliceRef(x.codes, shape, begin, sz));
        }
        const y1 = c.run(() => slice(x.t, [1, 2], [-1, 3]));
        await expectLayout(c, y1, `slice(${dtype}, [1, 2], [-1, 3])`, dtype, [4, 3, 3], sliceRef(x.codes, shape, [1, 2, 0], [4, 3, 3]));
        const y2 = c.run(() => slice(x.t, [2]));
        await expectLayout(c, y2, `slice(${dtype}, [2])`, dtype, [3, 7, 3], sliceRef(x.codes, shape, [2, 0, 0], [3, 7, 3]));
        const y3 = c.run(() => sliceAxis(x.t, -2, 3, 4));
        await expectLayout(c, y3, `sliceAxis(${dtype}, -2, 3, 4)`, dtype, [5, 4, 3], sliceRef(x.codes, shape, [0, 3, 0], [5, 4, 3]));
        const y4 = c.run(() => slice(x.t, [5, 0, 0], [0, 7, 3]));
        await expectLayout(c, y4, `slice(${dtype}) empty`, dtype, [0, 7, 3], []);
      }
    },
  },
  {
    name: 'concat along each axis: 1-4 tensors, members of size 0 along the axis, all 8 dtypes bit for bit',
    async run(c) {
      for (const dtype of ALL_DTYPES) {
        for (const [axis, sizes] of [
          [0, [2, 3]],
          [1, [1, 0, 4, 2]],
          [2, [3]],
          [-1, [1, 1, 5]],
          [1, [0, 0]],
        ] as [number, number[]][]) {
          const ax = axis < 0 ? axis + 3 : axis;
          const parts = sizes.map((s) => {
            const shape = [2, 3, 4];
            shape[ax] = s;
            return { shape, ...codesData(c, shape, dtype) };
          });
          const ref = concatRef(
            parts.map((p) => ({ values: p.codes, shape: p.shape })),
            ax,
          );
          const y = c.run(() => concat(parts.map((p) => p.t), axis));
          await expectLayout(c, y, `concat(${dtype} x${sizes.length}, axis ${axis}, sizes [${sizes.join(', ')}])`, dtype, ref.shape, ref.values);
        }
      }
    },
  },
  {
    name: 'stack along new axes and split into equal or given sizes (including 0), all 8 dtypes',
    async run(c) {
      for (const dtype of ALL_DTYPES) {
        const xs = [0, 1, 2].map(() => codesData(c, [2, 3], dtype));
        for (const axis of [0, 1, 2, -1]) {
          const ax = axis < 0 ? axis + 3 : axis;
          const y = c.run(() => stack(xs.map((x) => x.t), axis));
          const es = [2, 3];
          es.splice(ax, 0, 1);
          const expanded = xs.map((x) => ({ values: x.codes, shape: es }));
          const ref = concatRef(expanded, ax);
          await expectLayout(c, y, `stack(${dtype}, ${axis})`, dtype, ref.shape, ref.values);
        }
        const x = codesData(c, [6, 4], dtype);
        const parts = c.run(() => split(x.t, 3, 0));
        assert(parts.length === 3, `split into 3 gave ${parts.length}`);
        for (let i = 0; i < 3; i++) await expectLayout(c, parts[i], `split(${dtype}, 3)[${i}]`, dtype, [2, 4], sliceRef(x.codes, [6, 4], [2 * i, 0], [2, 4]));
        const parts2 = c.run(() => split(x.t, [1, 0, 3], -1));
        const starts = [0, 1, 1];
        const widths = [1, 0, 3];
        for (let i = 0; i < 3; i++) await expectLayout(c, parts2[i], `split(${dtype}, [1, 0, 3], -1)[${i}]`, dtype, [6, widths[i]], sliceRef(x.codes, [6, 4], [0, starts[i]], [6, widths[i]]));
      }
    },
  },
  {
    name: 'broadcastTo materialises broadcasts (leading axes, size-1 axes, rank-0, to size 0) and clone copies, all 8 dtypes',
    async run(c) {
      for (const dtype of ALL_DTYPES) {
        for (const [from, to] of [
          [[3, 1], [2, 3, 4]],
          [[], [2, 2]],
          [[1, 5], [3, 5]],
          [[4], [4]],
          [[1], [0]],
          [[2, 1, 1], [2, 3, 2]],
        ] as [Shape, Shape][]) {
          const x = codesData(c, from, dtype);
          const y = c.run(() => broadcastTo(x.t, to));
          const want = Array.from({ length: size(to) }, (_, i) => x.codes[broadcastIndex(unravel(i, to), from)]);
          await expectLayout(c, y, `broadcastTo(${dtype} [${from.join(', ')}], [${to.join(', ')}])`, dtype, to, want);
          assert(y.dataId !== x.t.dataId, 'broadcastTo must return new storage');
        }
        const x = codesData(c, [3, 2], dtype);
        const y = c.run(() => clone(x.t));
        await expectLayout(c, y, `clone(${dtype})`, dtype, [3, 2], x.codes);
        assert(y.dataId !== x.t.dataId, 'clone must return new storage');
      }
    },
  },
  {
    name: 'reshape, flatten, expandDims, squeeze: shapes (with -1), same storage, values unchanged',
    async run(c) {
      for (const dtype of ['f32', 'bf16', 'e5m2', 'bool'] as const) {
        const x = codesData(c, [2, 3, 4], dtype);
        for (const [label, f, shape] of [
          ['reshape [4, -1]', (t: Tensor) => reshape(t, [4, -1]), [4, 6]],
          ['reshape [24]', (t: Tensor) => reshape(t, [24]), [24]],
          ['reshape [1, 2, 1, 12]', (t: Tensor) => reshape(t, [1, 2, 1, 12]), [1, 2, 1, 12]],
          ['flatten', (t: Tensor) => flatten(t), [24]],
          ['expandDims 0', (t: Tensor) => expandDims(t, 0), [1, 2, 3, 4]],
          ['expandDims -1', (t: Tensor) => expandDims(t, -1), [2, 3, 4, 1]],
          ['expandDims 1', (t: Tensor) => expandDims(t, 1), [2, 1, 3, 4]],
        ] as [string, (t: Tensor) => Tensor, Shape][]) {
          const y = c.run(() => f(x.t));
          assertShape(label, y.shape, shape);
          assert(y.dataId === x.t.dataId, `${label}: reshape-like ops share storage`);
          await expectLayout(c, y, `${label} (${dtype})`, dtype, shape, x.codes);
        }
        const s = codesData(c, [1, 3, 1, 2], dtype);
        await expectLayout(c, c.run(() => squeeze(s.t)), `squeeze(${dtype})`, dtype, [3, 2], s.codes);
        await expectLayout(c, c.run(() => squeeze(s.t, 2)), `squeeze(${dtype}, 2)`, dtype, [1, 3, 2], s.codes);
        await expectLayout(c, c.run(() => squeeze(s.t, -4)), `squeeze(${dtype}, -4)`, dtype, [3, 1, 2], s.codes);
        const e = codesData(c, [0, 5], dtype);
        await expectLayout(c, c.run(() => reshape(e.t, [5, 0, 3])), `reshape empty (${dtype})`, dtype, [5, 0, 3], []);
        const sc = codesData(c, [], dtype);
        await expectLayout(c, c.run(() => reshape(sc.t, [1, 1])), `reshape rank-0 (${dtype})`, dtype, [1, 1], sc.codes);
      }
    },
  },
  {
    name: 'Backend.transpose / slice / concat on 64 KiB+ outputs (f32 [129, 131], u8 and bool [257, 256], f16 [181, 181]), poisoned',
    async run(c) {
      for (const [dtype, shape] of [
        ['f32', [131, 129]],
        ['u8', [256, 257]],
        ['bool', [256, 257]],
        ['f16', [181, 181]],
      ] as [DType, number[]][]) {
        const x = codesData(c, shape, dtype);
        const tr = transposeRef(x.codes, shape, [1, 0]);
        const r = await c.prim(`transpose ${dtype}`, dtype, tr.shape, () => c.backend.transpose(x.t, [1, 0]), [x.t]);
        expectCodes(`Backend.transpose ${dtype} [${shape.join(', ')}]`, dtype, r.codes, tr.values, describeAt(tr.shape));
        const big = codesData(c, [shape[0] + 3, shape[1] + 2], dtype);
        const sl = await c.prim(`slice ${dtype}`, dtype, shape, () => c.backend.slice(big.t, [2, 1], shape), [big.t]);
        expectCodes(`Backend.slice ${dtype}`, dtype, sl.codes, sliceRef(big.codes, [shape[0] + 3, shape[1] + 2], [2, 1], shape), describeAt(shape));
        const a = codesData(c, [shape[0], 5], dtype);
        const b = codesData(c, [shape[0], shape[1] - 5], dtype);
        const ref = concatRef(
          [
            { values: a.codes, shape: [shape[0], 5] },
            { values: b.codes, shape: [shape[0], shape[1] - 5] },
          ],
          1,
        );
        const cc = await c.prim(`concat ${dtype}`, dtype, ref.shape, () => c.backend.concat([a.t, b.t], 1, ref.shape), [a.t, b.t]);
        expectCodes(`Backend.concat ${dtype}`, dtype, cc.codes, ref.values, describeAt(ref.shape));
      }
    },
  },
];

export const layoutArea: Area = { name: 'layout', cases };
