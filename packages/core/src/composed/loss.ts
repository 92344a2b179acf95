import { tidy } from '../engine.js';
import { DTypeError, ShapeError } from '../errors.js';
import { div, neg, notEqual, square, sub, where } from '../ops/elementwise.js';
import { cast } from '../ops/cast.js';
import { expandDims, squeeze } from '../ops/layout.js';
import { gather } from '../ops/indexing.js';
import { maximum } from '../ops/elementwise.js';
import { mean, sum } from '../ops/reduce.js';
import { formatShape } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { logSoftmax } from './softmax.js';
import { backendOf } from '../ops/plumbing.js';

export interface CrossEntropyOptions {
  /** Targets equal to this are skipped (default -100, as PyTorch). */
  ignoreIndex?: number;
  /** 'mean' over non-ignored targets (default), 'sum', or 'none' (per position). */
  reduction?: 'mean' | 'sum' | 'none';
}

/**
 * Cross-entropy of logits [..., C] against i32 class targets [...], computed through a
 * stable log-softmax in f32 (DeepSeek-V3 keeps the output head in high precision).
 */
export function crossEntropy(logits: Tensor, targets: Tensor, options: CrossEntropyOptions = {}): Tensor {
  backendOf('crossEntropy', logits, targets);
  const ignoreIndex = options.ignoreIndex ?? -100;
  const reduction = options.reduction ?? 'mean';
  if (targets.dtype !== 'i32') throw new DTypeError('crossEntropy', `targets must be i32, got ${targets.dtype}`);
  if (logits.rank !== targets.rank + 1 || targets.shape.some((d, i) => d !== logits.shape[i])) {
    throw new ShapeError('crossEntropy', `targets ${formatShape(targets.shape)} must be logits ${formatShape(logits.shape)} without the class axis`);
  }
  return tidy(() => {
    const logp = logSoftmax(logits, -1);
    const valid = notEqual(targets, ignoreIndex);
    const safeTargets = where(valid, targets, 0);
    const picked = squeeze(gather(logp, -1, expandDims(safeTargets, -1)), -1);
    const losses = where(valid, neg(picked), 0);
    if (reduction === 'none') return losses;
    const total = sum(losses);
    if (reduction === 'sum') return total;
    const count = maximum(sum(cast(valid, 'f32')), 1);
    return div(total, count);
  });
}

/** Mean squared error over all elements, f32. */
export function mse(a: Tensor, b: Tensor): Tensor {
  backendOf('mse', a, b);
  return tidy(() => mean(square(sub(cast(a, 'f32'), cast(b, 'f32')))));
}
