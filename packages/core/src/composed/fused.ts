import type { DataId, FusedKernels, TensorView } from '../backend.js';
import type { Tensor } from '../tensor.js';
import { castOwned, wrap } from '../ops/plumbing.js';

/**
 * Runs a backend's fused kernel when it has one, on f32 inputs; returns undefined otherwise
 * so the caller composes the op from primitives.
 */
export function tryFused<K extends keyof FusedKernels>(
  name: K,
  x: Tensor,
  call: (kernel: NonNullable<FusedKernels[K]>, f32: TensorView) => DataId,
): Tensor | undefined {
  const kernel = x.backend.fused?.[name];
  if (!kernel || x.dtype !== 'f32') return undefined;
  const out = wrap(x.backend, call(kernel as NonNullable<FusedKernels[K]>, x), x.shape, 'f32');
  return castOwned(out, 'f32');
}
