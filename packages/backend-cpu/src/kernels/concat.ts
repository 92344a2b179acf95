import type { DType, Shape, StorageArray } from '@kiln/core';
import { newStorage } from '../pool.js';
import { codeView } from '../storage.js';
import { copyRun, prod } from './plan.js';

/** Joins along `axis`: for each outer index, each input contributes one contiguous block. */
export function concatKernel(xs: readonly { values: StorageArray; shape: Shape }[], axis: number, outShape: Shape, dtype: DType): StorageArray {
  const outer = prod(outShape, 0, axis);
  const inner = prod(outShape, axis + 1);
  const outBlock = outShape[axis] * inner;
  const values = newStorage(dtype, outer * outBlock);
  if (values.length === 0) return values;
  const out = codeView(values);
  const srcs = xs.map((x) => codeView(x.values));
  const blocks = xs.map((x) => x.shape[axis] * inner);
  for (let o = 0; o < outer; o++) {
    let dst = o * outBlock;
    for (let i = 0; i < srcs.length; i++) {
      const block = blocks[i];
      if (block > 0) copyRun(srcs[i], o * block, out, dst, block);
      dst += block;
    }
  }
  return values;
}
