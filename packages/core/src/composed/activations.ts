import { recordSwiglu } from '../autograd/grads.js';
import { tidy } from '../engine.js';
import { DTypeError, ShapeError } from '../errors.js';
import { add, erf, mul, sigmoid } from '../ops/elementwise.js';
import { cast } from '../ops/cast.js';
import { formatShape, shapesEqual } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { isFloatDType } from '../dtype.js';
import { tryFused } from './fused.js';
import { backendOf } from '../ops/plumbing.js';

/** SiLU (swish): x * sigmoid(x). */
export function silu(x: Tensor): Tensor {
  backendOf('silu', x);
  return tidy(() => mul(x, sigmoid(x)));
}

/** GELU, exact form: x * (1 + erf(x / sqrt 2)) / 2. */
export function gelu(x: Tensor): Tensor {
  backendOf('gelu', x);
  return tidy(() => mul(mul(x, add(erf(mul(x, Math.SQRT1_2)), 1)), 0.5));
}

/** SwiGLU's gate: silu(gate) * up (the two halves of DeepSeek's expert FFN). f32 result. */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  backendOf('swiglu', gate, up);
  if (!isFloatDType(gate.dtype) || !isFloatDType(up.dtype)) throw new DTypeError('swiglu', `expects float tensors, got ${gate.dtype} and ${up.dtype}`);
  if (!shapesEqual(gate.shape, up.shape)) throw new ShapeError('swiglu', `gate ${formatShape(gate.shape)} and up ${formatShape(up.shape)} must have one shape`);
  return tidy(() => {
    const g = gate.dtype === 'f32' ? gate : cast(gate, 'f32');
    const u = up.dtype === 'f32' ? up : cast(up, 'f32');
    const fused = tryFused('swiglu', g, (k, t) => k(t, u));
    if (fused) {
      recordSwiglu(g, u, fused);
      return fused;
    }
    return mul(silu(g), u);
  });
}
