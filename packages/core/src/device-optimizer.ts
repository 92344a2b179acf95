import type { Backend } from './backend.js';
import type { Tensor } from './tensor.js';

/**
 * An optional capability of GPU backends: the optimizer's update on the device, so a trainer
 * can keep master weights and moments resident instead of copying them through the host each
 * step (the CUDA backend offers it; the trainer's DeviceAdamW uses it).
 */

/** AdamW hyper-parameters of one update (bias corrections precomputed; decay = 1 - lr·wd or 1). */
export interface AdamwHyper {
  readonly beta1: number;
  readonly beta2: number;
  readonly bc1: number;
  readonly bc2: number;
  readonly eps: number;
  readonly lr: number;
  readonly decay: number;
  /** Gradient clipping factor applied first (f32(g · scale)), 1 for none. */
  readonly gradScale?: number;
}

export interface DeviceOptimizerBackend {
  /** AdamW in place on f32 `master` and f32 or bf16 moments `m`, `v` (the optimizer's own storage). */
  adamwStep(master: Tensor, m: Tensor, v: Tensor, grad: Tensor, h: AdamwHyper): void;
  /** Σ x² over f32 tensors, with one readback. */
  sumSquares(ts: readonly Tensor[]): number;
}

/** The backend's device-optimizer support, or undefined. */
export function deviceOptimizerOf(backend: Backend): (Backend & DeviceOptimizerBackend) | undefined {
  const b = backend as Backend & Partial<DeviceOptimizerBackend>;
  return typeof b.adamwStep === 'function' && typeof b.sumSquares === 'function' ? (b as Backend & DeviceOptimizerBackend) : undefined;
}
