import { recordReduce } from '../autograd/grads.js';
import { noGrad } from '../autograd/tape.js';
import { tidy } from '../engine.js';
import { cast } from './cast.js';
import { square, sub } from './elementwise.js';
import type { ReduceOp } from '../backend.js';
import { isFloatDType, type DType } from '../dtype.js';
import { DTypeError, ShapeError } from '../errors.js';
import { formatShape, normalizeAxis } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { div } from './elementwise.js';
import { reshape } from './layout.js';
import { backendOf, castOwned, computeDTypeOf, withDType, wrap } from './plumbing.js';

export interface ReduceOptions {
  keepDims?: boolean;
}

type Axes = number | readonly number[] | undefined;

/** Normalised axes, highest first (so reducing one does not shift the others). */
function resolveAxes(x: Tensor, axes: Axes, op: string): number[] {
  if (axes === undefined) return x.shape.map((_, i) => x.rank - 1 - i);
  const list = typeof axes === 'number' ? [axes] : [...axes];
  const norm = list.map((a) => normalizeAxis(a, x.rank, op));
  if (new Set(norm).size !== norm.length) throw new ShapeError(op, `axes [${list.join(', ')}] repeat an axis`);
  return norm.sort((a, b) => b - a);
}

function reducedShape(shape: readonly number[], axes: number[], keepDims: boolean): number[] {
  const out: number[] = [];
  for (let i = 0; i < shape.length; i++) {
    if (axes.includes(i)) {
      if (keepDims) out.push(1);
    } else out.push(shape[i]);
  }
  return out;
}

/** Reduction over one or more axes (all when omitted). */
export function reduce(op: ReduceOp, x: Tensor, axes?: Axes, options: ReduceOptions = {}): Tensor {
  const backend = backendOf(op, x);
  const list = resolveAxes(x, axes, op);
  if (op === 'argmax' || op === 'argmin') {
    if (list.length !== 1) throw new ShapeError(op, `needs exactly one axis, got ${list.length} for ${formatShape(x.shape)}`);
  }
  if (op !== 'sum' && op !== 'prod') {
    for (const a of list) {
      if (x.shape[a] === 0) throw new ShapeError(op, `cannot reduce the empty axis ${a} of ${formatShape(x.shape)} (no identity for ${op})`);
    }
  }
  let compute = computeDTypeOf(x.dtype);
  if ((op === 'sum' || op === 'prod') && (compute === 'u8' || compute === 'bool')) compute = 'i32';
  if ((op === 'max' || op === 'min') && compute === 'bool') compute = 'u8';
  let result: DType;
  if (op === 'argmax' || op === 'argmin') result = 'i32';
  else if (x.dtype === 'f16' || x.dtype === 'bf16') result = x.dtype;
  else if (x.dtype === 'bool' && (op === 'max' || op === 'min')) result = 'bool';
  else result = compute;

  const out = withDType(x, compute, (v) => {
    let cur = v;
    let owned = false;
    for (const a of list) {
      const shape = cur.shape.filter((_, i) => i !== a);
      const outDtype = op === 'argmax' || op === 'argmin' ? 'i32' : cur.dtype;
      const next = wrap(backend, backend.reduce(op, cur, a), shape, outDtype);
      if (owned) cur.dispose();
      cur = next;
      owned = true;
    }
    if (!owned) cur = wrap(backend, backend.cast(v, v.dtype, { saturate: false }), v.shape, v.dtype);
    return cur;
  });
  const finalShape = reducedShape(x.shape, list, options.keepDims ?? false);
  const shaped = noGrad(() => reshape(out, finalShape));
  out.dispose();
  const y = castOwned(shaped, result);
  recordReduce(op, x, list, y);
  return y;
}

export const sum = (x: Tensor, axes?: Axes, options?: ReduceOptions) => reduce('sum', x, axes, options);
export const prod = (x: Tensor, axes?: Axes, options?: ReduceOptions) => reduce('prod', x, axes, options);
export const max = (x: Tensor, axes?: Axes, options?: ReduceOptions) => reduce('max', x, axes, options);
export const min = (x: Tensor, axes?: Axes, options?: ReduceOptions) => reduce('min', x, axes, options);
/** Index of the first maximum along `axis` (i32). */
export const argmax = (x: Tensor, axis = -1, options?: ReduceOptions) => reduce('argmax', x, axis, options);
export const argmin = (x: Tensor, axis = -1, options?: ReduceOptions) => reduce('argmin', x, axis, options);

/** Arithmetic mean (float result). */
export function mean(x: Tensor, axes?: Axes, options: ReduceOptions = {}): Tensor {
  const list = resolveAxes(x, axes, 'mean');
  let count = 1;
  for (const a of list) count *= x.shape[a];
  const asFloat = isFloatDType(x.dtype) ? x : null;
  const s = withDType(x, asFloat ? x.dtype : 'f32', (v) => sum(v, axes, options));
  const out = div(s, count);
  s.dispose();
  return out;
}

/** Population variance (divides by N), float result. */
export function variance(x: Tensor, axes?: Axes, options: ReduceOptions = {}): Tensor {
  if (!isFloatDType(x.dtype) && x.dtype !== 'i32' && x.dtype !== 'u8') throw new DTypeError('variance', `dtype ${x.dtype} is not numeric`);
  backendOf('variance', x);
  return tidy(() => {
    const v = x.dtype === 'f32' ? x : cast(x, 'f32'); // always an f32 result
    return mean(square(sub(v, mean(v, axes, { keepDims: true }))), axes, options);
  });
}
