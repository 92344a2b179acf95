import type { DType, Shape, StorageArray } from '@kiln/core';
import { newStorage } from '../pool.js';
import { codeView } from '../storage.js';
import { checkIndices } from './indexing-util.js';
import { copyRun, prod } from './plan.js';

/** x.index_select(axis, indices): whole slices along `axis`, copied as contiguous runs. */
export function indexSelectKernel(x: StorageArray, xShape: Shape, dtype: DType, axis: number, indices: Int32Array): StorageArray {
  const outer = prod(xShape, 0, axis);
  const len = xShape[axis];
  const inner = prod(xShape, axis + 1);
  const m = indices.length;
  checkIndices('indexSelect', indices, axis, len);
  const values = newStorage(dtype, outer * m * inner);
  if (values.length === 0) return values;
  const out = codeView(values);
  const src = codeView(x);
  if (inner === 1) {
    for (let o = 0; o < outer; o++) {
      const sb = o * len;
      const ob = o * m;
      for (let j = 0; j < m; j++) out[ob + j] = src[sb + indices[j]];
    }
    return values;
  }
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < m; j++) copyRun(src, (o * len + indices[j]) * inner, out, (o * m + j) * inner, inner);
  }
  return values;
}
