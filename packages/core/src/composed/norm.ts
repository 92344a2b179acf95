import { recordRmsNorm } from '../autograd/grads.js';
import { isFloatDType } from '../dtype.js';
import { DTypeError, ShapeError } from '../errors.js';
import { tidy } from '../engine.js';
import { add, mul, rsqrt, square } from '../ops/elementwise.js';
import { cast } from '../ops/cast.js';
import { mean } from '../ops/reduce.js';
import { formatShape } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { tryFused } from './fused.js';
import { backendOf } from '../ops/plumbing.js';

/**
 * RMSNorm over the last axis: x / sqrt(mean(x^2) + eps) * weight, computed in f32
 * (as DeepSeek-V3 keeps normalisation in higher precision). f32 result.
 */
export function rmsNorm(x: Tensor, weight: Tensor, eps = 1e-6): Tensor {
  backendOf('rmsNorm', x, weight);
  if (!isFloatDType(x.dtype) || !isFloatDType(weight.dtype)) {
    throw new DTypeError('rmsNorm', `expects float tensors, got x ${x.dtype} and weight ${weight.dtype}`);
  }
  const d = x.shape[x.rank - 1];
  if (x.rank < 1 || weight.rank !== 1 || weight.shape[0] !== d) {
    throw new ShapeError('rmsNorm', `weight must be [${d}] for x ${formatShape(x.shape)}, got ${formatShape(weight.shape)}`);
  }
  return tidy(() => {
    const v = x.dtype === 'f32' ? x : cast(x, 'f32');
    const w = weight.dtype === 'f32' ? weight : cast(weight, 'f32');
    const fused = tryFused('rmsNorm', v, (k, t) => k(t, w, eps));
    if (fused) {
      recordRmsNorm(v, w, eps, fused);
      return fused;
    }
    const inv = rsqrt(add(mean(square(v), -1, { keepDims: true }), eps));
    return mul(mul(v, inv), w);
  });
}
