import type { Shape } from './shape.js';

/**
 * Strided views for backend packages: how a GPU kernel walks broadcast operands or a slice,
 * transpose or concat destination of a contiguous tensor (with `broadcastStrides` from shape.ts).
 * A view is [offset, ndim, ...dims, ...strides], in elements.
 */
export type StridedView = number[];

/**
 * Views of several operands over one iteration shape, with size-1 dimensions dropped and
 * neighbouring dimensions merged wherever every operand is contiguous across them, so kernels'
 * index arithmetic runs over as few dimensions as possible. Offsets start at 0.
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
