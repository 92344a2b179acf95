import { tidy } from '../engine.js';
import { DTypeError, ShapeError } from '../errors.js';
import { add, mul, sub } from '../ops/elementwise.js';
import { cast } from '../ops/cast.js';
import { concat, reshape, sliceAxis } from '../ops/layout.js';
import { formatShape } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { isFloatDType } from '../dtype.js';
import { backendOf, wrap } from '../ops/plumbing.js';
import { recordGrad } from '../autograd/tape.js';
import { sumToShape } from '../autograd/grads.js';

export interface RotaryOptions {
  /**
   * 'interleaved': pairs are (x[2i], x[2i+1]) (DeepSeek-V3's released weights, `rope_interleave`).
   * 'half': pairs are (x[i], x[i + d/2]) (GPT-NeoX / Llama layout).
   */
  layout?: 'interleaved' | 'half';
}

/**
 * Rotates pairs of the last axis of x [..., T, d] by angles whose cos/sin are given as
 * [T, d/2] (broadcast over leading axes): (a, b) -> (a cos - b sin, a sin + b cos).
 * The output keeps x's pair layout. f32 result.
 */
export function rotary(x: Tensor, cos: Tensor, sin: Tensor, options: RotaryOptions = {}): Tensor {
  backendOf('rotary', x, cos, sin);
  const layout = options.layout ?? 'interleaved';
  if (!isFloatDType(x.dtype)) throw new DTypeError('rotary', `x must be float, got ${x.dtype}`);
  const d = x.shape[x.rank - 1];
  const T = x.shape[x.rank - 2];
  if (x.rank < 2 || d % 2 !== 0) throw new ShapeError('rotary', `x must be [..., T, d] with even d, got ${formatShape(x.shape)}`);
  for (const [name, t] of [['cos', cos], ['sin', sin]] as const) {
    if (t.rank !== 2 || t.shape[0] !== T || t.shape[1] !== d / 2) {
      throw new ShapeError('rotary', `${name} must be [${T}, ${d / 2}] for x ${formatShape(x.shape)}, got ${formatShape(t.shape)}`);
    }
  }
  return tidy(() => {
    const v = x.dtype === 'f32' ? x : cast(x, 'f32');
    const c = cos.dtype === 'f32' ? cos : cast(cos, 'f32');
    const s = sin.dtype === 'f32' ? sin : cast(sin, 'f32');
    const kernel = v.backend.fused?.rotary;
    if (kernel) {
      // one kernel instead of ~10 ops; the gradient is recorded here, composed (rotary by -sin
      // for x, pair products summed over the leading axes for the tables)
      const y = wrap(v.backend, kernel(v, c, s, layout === 'interleaved'), x.shape, 'f32');
      recordGrad('rotary', [v, c, s], y, (dy, [xv, cv, sv]) => rotaryGrads(dy, xv, cv, sv, layout));
      return y;
    }
    return rotate(v, c, s, layout);
  });
}

/** The pair halves a, b of x [..., T, d] ([..., T, d/2] each) in either layout. */
function halves(v: Tensor, layout: 'interleaved' | 'half'): [Tensor, Tensor] {
  const d = v.shape[v.rank - 1];
  const lead = v.shape.slice(0, -1);
  if (layout === 'interleaved') {
    const pairs = reshape(v, [...lead, d / 2, 2]);
    return [reshape(sliceAxis(pairs, -1, 0, 1), [...lead, d / 2]), reshape(sliceAxis(pairs, -1, 1, 1), [...lead, d / 2])];
  }
  return [sliceAxis(v, -1, 0, d / 2), sliceAxis(v, -1, d / 2, d / 2)];
}

/** Inverse of `halves`: x [..., T, d] from its pair halves. */
function joinHalves(a: Tensor, b: Tensor, layout: 'interleaved' | 'half'): Tensor {
  if (layout === 'half') return concat([a, b], -1);
  const shape1 = [...a.shape, 1];
  return reshape(concat([reshape(a, shape1), reshape(b, shape1)], -1), [...a.shape.slice(0, -1), a.shape[a.rank - 1] * 2]);
}

/** The composed rotation of f32 x by f32 tables. */
function rotate(v: Tensor, c: Tensor, s: Tensor, layout: 'interleaved' | 'half'): Tensor {
  const [a, b] = halves(v, layout);
  return joinHalves(sub(mul(a, c), mul(b, s)), add(mul(a, s), mul(b, c)), layout);
}

/** Gradients of the rotation for x, cos and sin (the fused path's backward). */
function rotaryGrads(dy: Tensor, x: Tensor, c: Tensor, s: Tensor, layout: 'interleaved' | 'half'): Tensor[] {
  // y = R(θ) x, so dx = R(-θ) dy; ya = a c - b s, yb = a s + b c give the tables' gradients
  const dx = rotate(dy, c, mul(s, -1), layout);
  const [a, b] = halves(x, layout);
  const [ga, gb] = halves(dy, layout);
  const dc = sumToShape(add(mul(ga, a), mul(gb, b)), c.shape);
  const ds = sumToShape(sub(mul(gb, a), mul(ga, b)), s.shape);
  return [dx, dc, ds];
}

/** cos/sin tables [T, d/2] for positions 0..T-1 (or `positions`) with inverse frequencies `invFreq` [d/2]. */
export function rotaryTables(invFreq: Float64Array | number[], positions: number[] | number): { cos: number[]; sin: number[]; rows: number; cols: number } {
  const pos = typeof positions === 'number' ? Array.from({ length: positions }, (_, i) => i) : positions;
  const cols = invFreq.length;
  const cosv = new Array<number>(pos.length * cols);
  const sinv = new Array<number>(pos.length * cols);
  for (let t = 0; t < pos.length; t++) {
    for (let i = 0; i < cols; i++) {
      const angle = pos[t] * invFreq[i];
      cosv[t * cols + i] = Math.cos(angle);
      sinv[t * cols + i] = Math.sin(angle);
    }
  }
  return { cos: cosv, sin: sinv, rows: pos.length, cols };
}
