import { recordCast } from '../autograd/grads.js';
import { isFloatDType } from '../dtype.js';
import type { DType } from '../dtype.js';
import { backendOf, assertDTypeName, wrap } from './plumbing.js';
import type { Tensor } from '../tensor.js';

export interface CastOptions {
  /** Clamp out-of-range values to the largest finite value (FP8/f16) instead of inf/NaN. */
  saturate?: boolean;
}

/**
 * Converts to `dtype`. Float targets round half to even (FP8 bit-for-bit as PyTorch);
 * float -> int truncates toward zero (NaN -> 0, saturating); -> bool is x != 0.
 * Returns a new tensor even when the dtype is unchanged.
 */
export function cast(x: Tensor, dtype: DType, options: CastOptions = {}): Tensor {
  const backend = backendOf('cast', x);
  assertDTypeName('cast', dtype);
  const y = wrap(backend, backend.cast(x, dtype, { saturate: options.saturate ?? false }), x.shape, dtype);
  if (isFloatDType(x.dtype)) recordCast(x, y);
  return y;
}
