import type { Shape } from '@kiln/core';
import { stridesOf } from '@kiln/core';

/** A strided view as the kernels read it: [offset, nd, dims[nd], strides[nd]]. */
export type StridedView = number[];

/**
 * Strides of `shape` read at the coordinates of `outShape` (numpy broadcasting, aligned on the
 * right): broadcast dimensions get stride 0.
 */
export function broadcastStrides(shape: Shape, outShape: Shape): number[] {
  const own = stridesOf(shape);
  const off = outShape.length - shape.length;
  return outShape.map((_d, i) => {
    const j = i - off;
    return j < 0 || shape[j] === 1 ? 0 : own[j];
  });
}

/**
 * Strided views of several operands over one iteration shape, with size-1 dimensions dropped
 * and neighbouring dimensions merged wherever every operand is contiguous across them, so the
 * kernels' index arithmetic runs over as few dimensions as possible.
 */
export function collapseDims(shape: Shape, strides: readonly (readonly number[])[]): StridedView[] {
  const dims: number[] = [];
  const st: number[][] = strides.map(() => []);
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const last = dims.length - 1;
    if (last >= 0 && strides.every((s, k) => st[k][last] === s[d] * shape[d])) {
      dims[last] *= shape[d];
      strides.forEach((s, k) => (st[k][last] = s[d]));
    } else {
      dims.push(shape[d]);
      strides.forEach((s, k) => st[k].push(s[d]));
    }
  }
  return st.map((s) => [0, dims.length, ...dims, ...s]);
}

/**
 * The `meta` words of a strided kernel over nops operands: [n (filled in later), nd,
 * dims[nd], strides of each operand [nd] ..., base offset of each operand].
 */
export function stridedMeta(shape: Shape, strides: readonly (readonly number[])[], offsets?: readonly number[]): number[] {
  const views = collapseDims(shape, strides);
  const nd = views[0][1];
  const meta = [0, nd, ...views[0].slice(2, 2 + nd)];
  for (const v of views) meta.push(...v.slice(2 + nd, 2 + 2 * nd));
  for (let k = 0; k < strides.length; k++) meta.push(offsets?.[k] ?? 0);
  return meta;
}
