import { tidy } from '../engine.js';
import { DTypeError, ShapeError } from '../errors.js';
import { add, mul, sub } from '../ops/elementwise.js';
import { cast } from '../ops/cast.js';
import { concat, reshape, sliceAxis } from '../ops/layout.js';
import { formatShape } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { isFloatDType } from '../dtype.js';
import { backendOf } from '../ops/plumbing.js';

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
    if (layout === 'interleaved') {
      const pairs = reshape(v, [...x.shape.slice(0, -1), d / 2, 2]);
      const a = reshape(sliceAxis(pairs, -1, 0, 1), [...x.shape.slice(0, -1), d / 2]);
      const b = reshape(sliceAxis(pairs, -1, 1, 1), [...x.shape.slice(0, -1), d / 2]);
      const ra = sub(mul(a, c), mul(b, s));
      const rb = add(mul(a, s), mul(b, c));
      const shape1 = [...x.shape.slice(0, -1), d / 2, 1];
      return reshape(concat([reshape(ra, shape1), reshape(rb, shape1)], -1), x.shape);
    }
    const a = sliceAxis(v, -1, 0, d / 2);
    const b = sliceAxis(v, -1, d / 2, d / 2);
    return concat([sub(mul(a, c), mul(b, s)), add(mul(a, s), mul(b, c))], -1);
  });
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
