import { recordLogSoftmax, recordSoftmax } from '../autograd/grads.js';
import { isFloatDType } from '../dtype.js';
import { DTypeError } from '../errors.js';
import { tidy } from '../engine.js';
import { exp, log, sub, div, add } from '../ops/elementwise.js';
import { max, sum } from '../ops/reduce.js';
import { cast } from '../ops/cast.js';
import { normalizeAxis } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { tryFused } from './fused.js';
import { backendOf } from '../ops/plumbing.js';

function asF32(x: Tensor, op: string): Tensor {
  if (!isFloatDType(x.dtype)) throw new DTypeError(op, `expects a float tensor, got ${x.dtype}`);
  return x.dtype === 'f32' ? x : cast(x, 'f32');
}

/** Numerically stable softmax along `axis` (default last). f32 result. */
export function softmax(x: Tensor, axis = -1): Tensor {
  backendOf('softmax', x);
  const ax = normalizeAxis(axis, x.rank, 'softmax');
  return tidy(() => {
    const v = asF32(x, 'softmax');
    if (ax === x.rank - 1) {
      const fused = tryFused('softmax', v, (k, t) => k(t));
      if (fused) {
        recordSoftmax(v, fused);
        return fused;
      }
    }
    const m = max(v, ax, { keepDims: true });
    const e = exp(sub(v, m));
    return div(e, sum(e, ax, { keepDims: true }));
  });
}

/** log(sum(exp(x))) along `axis`, stable. */
export function logSumExp(x: Tensor, axis = -1, keepDims = false): Tensor {
  backendOf('logSumExp', x);
  const ax = normalizeAxis(axis, x.rank, 'logSumExp');
  return tidy(() => {
    const v = asF32(x, 'logSumExp');
    const m = max(v, ax, { keepDims: true });
    const s = sum(exp(sub(v, m)), ax, { keepDims: true });
    const out = add(log(s), m);
    return keepDims ? out : sum(out, ax);
  });
}

/** log(softmax(x)) along `axis`, stable. f32 result. */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  backendOf('logSoftmax', x);
  const ax = normalizeAxis(axis, x.rank, 'logSoftmax');
  return tidy(() => {
    const v = asF32(x, 'logSoftmax');
    if (ax === x.rank - 1) {
      const fused = tryFused('logSoftmax', v, (k, t) => k(t));
      if (fused) {
        recordLogSoftmax(v, fused);
        return fused;
      }
    }
    return sub(v, logSumExp(v, ax, true));
  });
}
