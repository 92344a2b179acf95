import { tidy } from '../engine.js';
import { ArgumentError, DTypeError } from '../errors.js';
import { equal, logicalNot, logicalOr, where } from '../ops/elementwise.js';
import { backendOf } from '../ops/plumbing.js';
import { arange } from '../ops/creation.js';
import { argmax } from '../ops/reduce.js';
import { cast } from '../ops/cast.js';
import { concat, expandDims, sliceAxis } from '../ops/layout.js';
import { gather } from '../ops/indexing.js';
import { isFloatDType } from '../dtype.js';
import type { Tensor } from '../tensor.js';

export interface TopK {
  /** The k largest values along the last axis, descending (f32). */
  values: Tensor;
  /** Their indices (i32); ties resolve to the lower index first. */
  indices: Tensor;
}

/**
 * Top-k along the last axis, composed from argmax + masking (k rounds): what MoE routing
 * needs (k <= 8 of a few hundred experts).
 */
export function topk(x: Tensor, k: number): TopK {
  backendOf('topk', x);
  if (x.rank < 1) throw new ArgumentError('topk', 'x must have at least one axis');
  const n = x.shape[x.rank - 1];
  if (!Number.isInteger(k) || k < 0 || k > n) throw new ArgumentError('topk', `k must be an integer in [0, ${n}], got ${k}`);
  if (!isFloatDType(x.dtype) && x.dtype !== 'i32') throw new DTypeError('topk', `expects a float or i32 tensor, got ${x.dtype}`);
  return tidy(() => {
    let cur = x.dtype === 'f32' ? x : cast(x, 'f32');
    if (k === 0) {
      const values = sliceAxis(cur, -1, 0, 0);
      return { values, indices: cast(values, 'i32') };
    }
    const iota = arange(0, n, 1, 'i32', { backend: x.backend });
    const values: Tensor[] = [];
    const indices: Tensor[] = [];
    let taken: Tensor | undefined;
    for (let i = 0; i < k; i++) {
      let idx = expandDims(argmax(cur, -1), -1);
      if (taken) {
        // Taken slots hold -inf and win ties by their lower index, so argmax lands on one only
        // when every remaining value is -inf: then the answer is the first slot not yet taken.
        const firstFree = expandDims(argmax(cast(logicalNot(taken), 'i32'), -1), -1);
        idx = where(gather(taken, -1, idx), firstFree, idx);
      }
      values.push(gather(cur, -1, idx));
      indices.push(idx);
      if (i + 1 < k) {
        const hit = equal(iota, idx);
        taken = taken ? logicalOr(taken, hit) : hit;
        cur = where(hit, -Infinity, cur);
      }
    }
    return { values: concat(values, -1), indices: concat(indices, -1) };
  });
}
