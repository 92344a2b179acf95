import type { DType, Shape, StorageArray } from '@kiln/core';
import { sizeOf, stridesOf } from '@kiln/core';
import { newStorage } from '../pool.js';
import { codeView, type CodeArray } from '../storage.js';
import { indexError } from './indexing-util.js';
import { Odometer } from './plan.js';

/**
 * torch.gather: out[p] = x[p with its `axis` coordinate replaced by indices[p]].
 * The output has the indices' shape (each of its other dims no larger than x's).
 */
export function gatherKernel(x: StorageArray, xShape: Shape, dtype: DType, axis: number, indices: Int32Array, idxShape: Shape): StorageArray {
  const size = sizeOf(idxShape);
  const values = newStorage(dtype, size);
  if (size === 0) return values;
  const out = codeView(values);
  const src = codeView(x);
  const rank = xShape.length;
  const last = rank - 1;
  const xs = stridesOf(xShape);
  const bound = xShape[axis];
  const axisStride = xs[axis];
  // Rows along the indices' last dim; the odometer walks x's offset over the other dims,
  // leaving out the gathered axis (its contribution comes from the index values).
  const dims = idxShape.slice(0, last);
  const outerStrides = dims.map((_, d) => (d === axis ? 0 : xs[d]));
  const rowLen = idxShape[last];
  const jStride = axis === last ? 0 : xs[last];
  let rows = 1;
  for (const d of dims) rows *= d;
  const odo = new Odometer({ dims, strides: [outerStrides], rowLen, rowStrides: [jStride], rows });
  const offs = odo.offsets;
  for (let r = 0, p = 0; r < rows; r++) {
    gatherRow(src, offs[0], jStride, axisStride, bound, indices, out, p, rowLen, axis);
    p += rowLen;
    odo.next();
  }
  return values;
}

function gatherRow(
  src: CodeArray,
  base: number,
  jStride: number,
  axisStride: number,
  bound: number,
  indices: Int32Array,
  out: CodeArray,
  p: number,
  n: number,
  axis: number,
): void {
  for (let j = 0; j < n; j++, p++, base += jStride) {
    const k = indices[p];
    if (k < 0 || k >= bound) throw indexError('gather', k, axis, bound);
    out[p] = src[base + k * axisStride];
  }
}
