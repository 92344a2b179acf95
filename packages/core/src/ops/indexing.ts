import { recordGather, recordIndexAdd, recordIndexSelect, recordScatterAdd } from '../autograd/grads.js';
import { promoteTypes } from '../dtype.js';
import { DTypeError, ShapeError } from '../errors.js';
import { formatShape, normalizeAxis } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { backendOf, castOwned, computeDTypeOf, withDType, wrap } from './plumbing.js';

function assertIndices(op: string, indices: Tensor): void {
  if (indices.dtype !== 'i32') throw new DTypeError(op, `indices must be i32, got ${indices.dtype}`);
}

/**
 * torch.gather: out[..i_axis..] = x[..indices[..]..] along `axis`. indices has x's rank and
 * every other dimension no larger than x's; the output has the indices' shape.
 * Out-of-range index values are an error on the CPU backend and undefined elsewhere.
 */
export function gather(x: Tensor, axis: number, indices: Tensor): Tensor {
  const backend = backendOf('gather', x, indices);
  assertIndices('gather', indices);
  const ax = normalizeAxis(axis, x.rank, 'gather');
  if (indices.rank !== x.rank) throw new ShapeError('gather', `indices ${formatShape(indices.shape)} must have the rank of x ${formatShape(x.shape)}`);
  for (let d = 0; d < x.rank; d++) {
    if (d !== ax && indices.shape[d] > x.shape[d]) {
      throw new ShapeError('gather', `indices ${formatShape(indices.shape)} exceed x ${formatShape(x.shape)} on axis ${d}`);
    }
  }
  const y = wrap(backend, backend.gather(x, ax, indices), indices.shape, x.dtype);
  recordGather(x, ax, indices, y);
  return y;
}

/** x.index_select(axis, indices): picks whole slices along `axis` (indices is 1-D). */
export function indexSelect(x: Tensor, axis: number, indices: Tensor): Tensor {
  const backend = backendOf('indexSelect', x, indices);
  assertIndices('indexSelect', indices);
  const ax = normalizeAxis(axis, x.rank, 'indexSelect');
  if (indices.rank !== 1) throw new ShapeError('indexSelect', `indices must be 1-D, got ${formatShape(indices.shape)}`);
  const outShape = [...x.shape];
  outShape[ax] = indices.shape[0];
  const y = wrap(backend, backend.indexSelect(x, ax, indices), outShape, x.dtype);
  recordIndexSelect(x, ax, indices, y);
  return y;
}

function accumulate(op: 'scatterAdd' | 'indexAdd', base: Tensor, src: Tensor, run: (b: Tensor, s: Tensor) => Tensor): Tensor {
  if (base.dtype === 'bool' || src.dtype === 'bool') throw new DTypeError(op, `bool tensors cannot be accumulated (base ${base.dtype}, src ${src.dtype})`);
  const promoted = promoteTypes(base.dtype, src.dtype);
  let compute = computeDTypeOf(promoted);
  if (compute === 'u8') compute = 'i32';
  const out = withDType(base, compute, (b) => withDType(src, compute, (s) => run(b, s)));
  return castOwned(out, base.dtype === 'e4m3' || base.dtype === 'e5m2' ? 'f32' : base.dtype === 'u8' ? 'i32' : base.dtype);
}

/**
 * torch.scatter_add, out of place: base + src added at `indices` along `axis`. indices has
 * src's shape; duplicates accumulate.
 */
export function scatterAdd(base: Tensor, axis: number, indices: Tensor, src: Tensor): Tensor {
  const backend = backendOf('scatterAdd', base, indices, src);
  assertIndices('scatterAdd', indices);
  const ax = normalizeAxis(axis, base.rank, 'scatterAdd');
  if (indices.rank !== base.rank || src.rank !== base.rank) {
    throw new ShapeError('scatterAdd', `base ${formatShape(base.shape)}, indices ${formatShape(indices.shape)} and src ${formatShape(src.shape)} must share a rank`);
  }
  for (let d = 0; d < base.rank; d++) {
    if (indices.shape[d] !== src.shape[d]) throw new ShapeError('scatterAdd', `indices ${formatShape(indices.shape)} must have src's shape ${formatShape(src.shape)}`);
    if (d !== ax && src.shape[d] > base.shape[d]) throw new ShapeError('scatterAdd', `src ${formatShape(src.shape)} exceeds base ${formatShape(base.shape)} on axis ${d}`);
  }
  const y = accumulate('scatterAdd', base, src, (b, s) => wrap(backend, backend.scatterAdd(b, ax, indices, s), base.shape, b.dtype));
  recordScatterAdd(base, ax, indices, src, y);
  return y;
}

/** torch.index_add, out of place: adds src's slices into base at the 1-D `indices` along `axis`. */
export function indexAdd(base: Tensor, axis: number, indices: Tensor, src: Tensor): Tensor {
  const backend = backendOf('indexAdd', base, indices, src);
  assertIndices('indexAdd', indices);
  const ax = normalizeAxis(axis, base.rank, 'indexAdd');
  if (indices.rank !== 1) throw new ShapeError('indexAdd', `indices must be 1-D, got ${formatShape(indices.shape)}`);
  const expected = [...base.shape];
  expected[ax] = indices.shape[0];
  if (src.rank !== base.rank || src.shape.some((d, i) => d !== expected[i])) {
    throw new ShapeError('indexAdd', `src ${formatShape(src.shape)} must be ${formatShape(expected)} (base ${formatShape(base.shape)} with axis ${ax} = ${indices.shape[0]} indices)`);
  }
  const y = accumulate('indexAdd', base, src, (b, s) => wrap(backend, backend.indexAdd(b, ax, indices, s), base.shape, b.dtype));
  recordIndexAdd(base, ax, indices, src, y);
  return y;
}
