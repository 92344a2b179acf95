import { recordConcat, recordReshape, recordSlice, recordTranspose, sumToShape } from '../autograd/grads.js';
import { noGrad, recordGrad } from '../autograd/tape.js';
import { DTypeError, ShapeError } from '../errors.js';
import { assertPermutation, broadcastShapes, formatShape, inferReshape, normalizeAxis, shapesEqual, type Shape } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { backendOf, wrap } from './plumbing.js';

/** Same storage, new shape (one dimension may be -1). No copy. */
export function reshape(x: Tensor, shape: Shape): Tensor {
  const backend = backendOf('reshape', x);
  const target = inferReshape(x.size, shape, 'reshape');
  const y = wrap(backend, x.dataId, target, x.dtype);
  recordReshape(x, y);
  return y;
}

export function flatten(x: Tensor): Tensor {
  return reshape(x, [x.size]);
}

export function expandDims(x: Tensor, axis: number): Tensor {
  const ax = normalizeAxis(axis, x.rank + 1, 'expandDims');
  const shape = [...x.shape];
  shape.splice(ax, 0, 1);
  return reshape(x, shape);
}

/** Removes size-1 axes (all of them, or the one given). */
export function squeeze(x: Tensor, axis?: number): Tensor {
  if (axis === undefined) return reshape(x, x.shape.filter((d) => d !== 1));
  const ax = normalizeAxis(axis, x.rank, 'squeeze');
  if (x.shape[ax] !== 1) throw new ShapeError('squeeze', `axis ${axis} of ${formatShape(x.shape)} has size ${x.shape[ax]}, not 1`);
  const shape = [...x.shape];
  shape.splice(ax, 1);
  return reshape(x, shape);
}

/** Permutes axes (default: reverses them). Copies. */
export function transpose(x: Tensor, perm?: readonly number[]): Tensor {
  const backend = backendOf('transpose', x);
  const p = perm ?? x.shape.map((_, i) => x.rank - 1 - i);
  assertPermutation(p, x.rank, 'transpose');
  const outShape = p.map((a) => x.shape[a]);
  const y = wrap(backend, backend.transpose(x, p), outShape, x.dtype);
  recordTranspose(x, p, y);
  return y;
}

/** Swaps two axes. */
export function swapAxes(x: Tensor, a: number, b: number): Tensor {
  const perm = x.shape.map((_, i) => i);
  const ia = normalizeAxis(a, x.rank, 'swapAxes');
  const ib = normalizeAxis(b, x.rank, 'swapAxes');
  perm[ia] = ib;
  perm[ib] = ia;
  return transpose(x, perm);
}

/**
 * Copies the block starting at `begin` with extent `size` (-1 = to the end). Both may be
 * shorter than the rank: missing axes are taken whole.
 */
export function slice(x: Tensor, begin: readonly number[], size?: readonly number[]): Tensor {
  const backend = backendOf('slice', x);
  if (begin.length > x.rank || (size && size.length > x.rank)) {
    throw new ShapeError('slice', `begin [${begin.join(', ')}] / size [${size?.join(', ') ?? ''}] have more axes than the tensor ${formatShape(x.shape)}`);
  }
  const b: number[] = [];
  const s: number[] = [];
  for (let i = 0; i < x.rank; i++) {
    const bi = begin[i] ?? 0;
    let si = size?.[i] ?? -1;
    if (!Number.isInteger(bi) || bi < 0 || bi > x.shape[i]) {
      throw new ShapeError('slice', `begin ${bi} is out of range for axis ${i} of ${formatShape(x.shape)}`);
    }
    if (si === -1) si = x.shape[i] - bi;
    if (!Number.isInteger(si) || si < 0 || bi + si > x.shape[i]) {
      throw new ShapeError('slice', `size ${si} from ${bi} overruns axis ${i} of ${formatShape(x.shape)}`);
    }
    b.push(bi);
    s.push(si);
  }
  const y = wrap(backend, backend.slice(x, b, s), s, x.dtype);
  recordSlice(x, b, s, y);
  return y;
}

/** Slice of `length` elements from `start` along one axis. */
export function sliceAxis(x: Tensor, axis: number, start: number, length: number): Tensor {
  const ax = normalizeAxis(axis, x.rank, 'sliceAxis');
  const begin = x.shape.map(() => 0);
  const size = [...x.shape];
  begin[ax] = start;
  size[ax] = length;
  return slice(x, begin, size);
}

/** Joins tensors of one dtype along an existing axis. */
export function concat(xs: readonly Tensor[], axis = 0): Tensor {
  if (!Array.isArray(xs) || xs.length === 0) throw new ShapeError('concat', 'expected a non-empty array of tensors');
  const backend = backendOf('concat', ...xs);
  const first = xs[0];
  const ax = normalizeAxis(axis, first.rank, 'concat');
  const outShape = [...first.shape];
  outShape[ax] = 0;
  for (const [i, t] of xs.entries()) {
    if (t.dtype !== first.dtype) throw new DTypeError('concat', `tensor ${i} has dtype ${t.dtype}, tensor 0 has ${first.dtype}; cast first`);
    if (t.rank !== first.rank) throw new ShapeError('concat', `tensor ${i} has shape ${formatShape(t.shape)}, tensor 0 has ${formatShape(first.shape)} (ranks differ)`);
    for (let d = 0; d < t.rank; d++) {
      if (d !== ax && t.shape[d] !== first.shape[d]) {
        throw new ShapeError('concat', `tensor ${i} has shape ${formatShape(t.shape)}, tensor 0 has ${formatShape(first.shape)}; only axis ${ax} may differ`);
      }
    }
    outShape[ax] += t.shape[ax];
  }
  const y = wrap(backend, backend.concat(xs, ax, outShape), outShape, first.dtype);
  recordConcat(xs, ax, y);
  return y;
}

/** Joins equally shaped tensors along a new axis. */
export function stack(xs: readonly Tensor[], axis = 0): Tensor {
  if (!Array.isArray(xs) || xs.length === 0) throw new ShapeError('stack', 'expected a non-empty array of tensors');
  for (const [i, t] of xs.entries()) {
    if (!shapesEqual(t.shape, xs[0].shape)) throw new ShapeError('stack', `tensor ${i} has shape ${formatShape(t.shape)}, tensor 0 has ${formatShape(xs[0].shape)}`);
  }
  const expanded = xs.map((t) => expandDims(t, axis));
  try {
    return concat(expanded, axis);
  } finally {
    for (const t of expanded) t.dispose();
  }
}

/** Splits along an axis into pieces of the given sizes (or `n` equal pieces). */
export function split(x: Tensor, sizes: number | readonly number[], axis = 0): Tensor[] {
  const ax = normalizeAxis(axis, x.rank, 'split');
  const dim = x.shape[ax];
  let parts: number[];
  if (typeof sizes === 'number') {
    if (!Number.isInteger(sizes) || sizes <= 0 || dim % sizes !== 0) throw new ShapeError('split', `axis ${ax} of ${formatShape(x.shape)} does not split into ${sizes} equal parts`);
    parts = new Array<number>(sizes).fill(dim / sizes);
  } else {
    parts = [...sizes];
    if (parts.reduce((a, b) => a + b, 0) !== dim) throw new ShapeError('split', `sizes [${parts.join(', ')}] do not sum to axis ${ax} of ${formatShape(x.shape)}`);
  }
  const out: Tensor[] = [];
  let start = 0;
  for (const p of parts) {
    out.push(sliceAxis(x, ax, start, p));
    start += p;
  }
  return out;
}

/** Materialises `x` broadcast to `shape`. */
export function broadcastTo(x: Tensor, shape: Shape): Tensor {
  const backend = backendOf('broadcastTo', x);
  const out = broadcastShapes(x.shape, shape, 'broadcastTo');
  if (!shapesEqual(out, shape)) throw new ShapeError('broadcastTo', `cannot broadcast ${formatShape(x.shape)} to ${formatShape(shape)}`);
  if (shapesEqual(x.shape, shape)) return clone(x);
  const y = noGrad(() => broadcastCopy(x, shape));
  recordGrad('broadcastTo', [x], y, (dy, [xs]) => [sumToShape(dy, xs.shape)]);
  return y;
}

function broadcastCopy(x: Tensor, shape: Shape): Tensor {
  const backend = x.backend;
  // Broadcast by gathering with zero strides: index_select of row 0 along every size-1 axis.
  let cur = reshape(x, [...new Array(shape.length - x.rank).fill(1), ...x.shape]);
  for (let d = 0; d < shape.length; d++) {
    if (cur.shape[d] === 1 && shape[d] !== 1) {
      const idx = wrap(backend, backend.fill([shape[d]], 'i32', 0), [shape[d]], 'i32');
      const nextShape = [...cur.shape];
      nextShape[d] = shape[d];
      const next = wrap(backend, backend.indexSelect(cur, d, idx), nextShape, x.dtype);
      idx.dispose();
      cur.dispose();
      cur = next;
    }
  }
  return cur;
}

/** A copy with its own storage. */
export function clone(x: Tensor): Tensor {
  const backend = backendOf('clone', x);
  const y = wrap(backend, backend.slice(x, x.shape.map(() => 0), x.shape), x.shape, x.dtype);
  recordGrad('clone', [x], y, (dy) => [dy]);
  return y;
}
