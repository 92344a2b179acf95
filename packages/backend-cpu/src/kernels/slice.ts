import type { DType, Shape, StorageArray } from '@kiln/core';
import { sizeOf, stridesOf } from '@kiln/core';
import { newStorage } from '../pool.js';
import { codeView } from '../storage.js';
import { Odometer, copyRun } from './plan.js';

/**
 * Copies the block [begin, begin + size). Trailing axes taken whole merge with the last
 * partial axis into one contiguous run; an odometer walks the axes before it.
 */
export function sliceKernel(x: StorageArray, xShape: Shape, dtype: DType, begin: readonly number[], size: readonly number[]): StorageArray {
  const n = sizeOf(size);
  const values = newStorage(dtype, n);
  if (n === 0) return values;
  const out = codeView(values);
  const src = codeView(x);
  const xs = stridesOf(xShape);
  let d0 = xShape.length - 1;
  while (d0 >= 0 && size[d0] === xShape[d0]) d0--;
  if (d0 < 0) {
    copyRun(src, 0, out, 0, n);
    return values;
  }
  let base = 0;
  for (let d = 0; d < xShape.length; d++) base += begin[d] * xs[d];
  const run = size[d0] * xs[d0];
  const dims = size.slice(0, d0);
  let rows = 1;
  for (const d of dims) rows *= d;
  const odo = new Odometer({ dims, strides: [xs.slice(0, d0)], rowLen: run, rowStrides: [1], rows }, [base]);
  const offs = odo.offsets;
  for (let r = 0, o = 0; r < rows; r++, o += run) {
    copyRun(src, offs[0], out, o, run);
    odo.next();
  }
  return values;
}
