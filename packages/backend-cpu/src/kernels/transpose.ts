import type { DType, Shape, StorageArray } from '@kiln/core';
import { sizeOf, stridesOf } from '@kiln/core';
import { newStorage } from '../pool.js';
import { codeView, type CodeArray } from '../storage.js';
import { Odometer, copyRun } from './plan.js';

const TILE = 32;

/**
 * Permutes axes (moves codes, any dtype). The permutation is first simplified: size-1
 * axes are dropped and input axes that stay adjacent in the output are merged. Then
 *  - identity: one copy;
 *  - input's last axis stays last: contiguous row copies;
 *  - otherwise: a blocked 2-D transpose between the input's contiguous axis and the
 *    output's contiguous axis (TILE x TILE tiles, so reads and writes both stay in cache),
 *    repeated over the remaining axes. This covers the common swap of the last two axes.
 */
export function transposeKernel(x: StorageArray, xShape: Shape, dtype: DType, perm: readonly number[]): StorageArray {
  const n = sizeOf(xShape);
  const values = newStorage(dtype, n);
  if (n === 0) return values;
  const out = codeView(values);
  const src = codeView(x);
  const { shape, perm: p } = simplify(xShape, perm);
  const r = shape.length;
  let identity = true;
  for (let i = 0; i < r; i++) if (p[i] !== i) identity = false;
  if (identity) {
    copyRun(src, 0, out, 0, n);
    return values;
  }
  const inStrides = stridesOf(shape);
  const outShape = p.map((a) => shape[a]);
  const outStrides = stridesOf(outShape);
  const lastIn = r - 1;
  if (p[r - 1] === lastIn) {
    // Rows of the input's last axis stay contiguous.
    const run = shape[lastIn];
    const dims = outShape.slice(0, r - 1);
    const strides = [p.slice(0, r - 1).map((a) => inStrides[a])];
    const rows = n / run;
    const odo = new Odometer({ dims, strides, rowLen: run, rowStrides: [1], rows });
    for (let i = 0, o = 0; i < rows; i++, o += run) {
      copyRun(src, odo.offsets[0], out, o, run);
      odo.next();
    }
    return values;
  }
  // q: output position of the input's contiguous axis; the output's last axis reads input
  // stride s. Tiles span (input axis lastIn) x (output axis r-1).
  const q = p.indexOf(lastIn);
  const a = shape[lastIn];
  const osq = outStrides[q];
  const b = outShape[r - 1];
  const s = inStrides[p[r - 1]];
  const restPos: number[] = [];
  for (let i = 0; i < r - 1; i++) if (i !== q) restPos.push(i);
  const dims = restPos.map((i) => outShape[i]);
  const strides = [restPos.map((i) => inStrides[p[i]]), restPos.map((i) => outStrides[i])];
  let count = 1;
  for (const d of dims) count *= d;
  const odo = new Odometer({ dims, strides, rowLen: 1, rowStrides: [0, 0], rows: count });
  for (let c = 0; c < count; c++) {
    tile2d(src, odo.offsets[0], s, out, odo.offsets[1], osq, a, b);
    odo.next();
  }
  return values;
}

/** out[ob + i*osq + j] = src[ib + j*s + i] for i < a, j < b, in TILE x TILE blocks. */
function tile2d(src: CodeArray, ib: number, s: number, out: CodeArray, ob: number, osq: number, a: number, b: number): void {
  for (let i0 = 0; i0 < a; i0 += TILE) {
    const iEnd = i0 + TILE < a ? i0 + TILE : a;
    for (let j0 = 0; j0 < b; j0 += TILE) {
      const jEnd = j0 + TILE < b ? j0 + TILE : b;
      for (let i = i0; i < iEnd; i++) {
        let si = ib + i + j0 * s;
        let di = ob + i * osq + j0;
        for (let j = j0; j < jEnd; j++, si += s) out[di++] = src[si];
      }
    }
  }
}

/** Drops size-1 axes and merges input axes that remain adjacent and in order in the output. */
function simplify(shape: Shape, perm: readonly number[]): { shape: number[]; perm: number[] } {
  // Keep axes of size > 1, renumbered.
  const keep: number[] = [];
  const renum = new Array<number>(shape.length).fill(-1);
  for (let i = 0; i < shape.length; i++) {
    if (shape[i] !== 1) {
      renum[i] = keep.length;
      keep.push(i);
    }
  }
  const s1 = keep.map((i) => shape[i]);
  const p1 = perm.filter((a) => renum[a] >= 0).map((a) => renum[a]);
  if (p1.length === 0) return { shape: [], perm: [] };
  // Groups of consecutive input axes in output order.
  const groups: number[][] = [[p1[0]]];
  for (let i = 1; i < p1.length; i++) {
    const g = groups[groups.length - 1];
    if (p1[i] === g[g.length - 1] + 1) g.push(p1[i]);
    else groups.push([p1[i]]);
  }
  // New input axis order: groups sorted by their first input axis.
  const order = groups.map((_, i) => i).sort((x, y) => groups[x][0] - groups[y][0]);
  const newIndex = new Array<number>(groups.length);
  order.forEach((gi, k) => (newIndex[gi] = k));
  const shapeOut = order.map((gi) => groups[gi].reduce((acc, a) => acc * s1[a], 1));
  const permOut = groups.map((_, gi) => newIndex[gi]);
  return { shape: shapeOut, perm: permOut };
}
