import { sigmoid } from './math.js';
import { sumRow } from './reduce.js';
import { newF32 } from '../pool.js';

/**
 * Fused f32 kernels over the last axis. Each one rounds every intermediate to f32 exactly
 * where core's composition of primitives does (the primitives round once per op, sums
 * accumulate in float64), so the fused and composed results are bit-identical; fusing only
 * saves the intermediate tensors and passes over memory.
 */

/** softmax = e / sum(e) with e = exp(x - max(x)). */
export function softmaxKernel(x: Float32Array, d: number): Float32Array {
  const out = newF32(x.length);
  if (d === 0) return out;
  const rows = x.length / d;
  for (let r = 0; r < rows; r++) {
    const b = r * d;
    let m = -Infinity;
    for (let j = 0; j < d; j++) m = Math.max(m, x[b + j]);
    for (let j = 0; j < d; j++) out[b + j] = Math.exp(Math.fround(x[b + j] - m));
    const sf = Math.fround(sumRow(out, b, d));
    for (let j = 0; j < d; j++) out[b + j] = out[b + j] / sf;
  }
  return out;
}

/** logSoftmax = x - (log(sum(exp(x - m))) + m). */
export function logSoftmaxKernel(x: Float32Array, d: number): Float32Array {
  const out = newF32(x.length);
  if (d === 0) return out;
  const rows = x.length / d;
  for (let r = 0; r < rows; r++) {
    const b = r * d;
    let m = -Infinity;
    for (let j = 0; j < d; j++) m = Math.max(m, x[b + j]);
    for (let j = 0; j < d; j++) out[b + j] = Math.exp(Math.fround(x[b + j] - m));
    const lse = Math.fround(Math.fround(Math.log(Math.fround(sumRow(out, b, d)))) + m);
    for (let j = 0; j < d; j++) out[b + j] = x[b + j] - lse;
  }
  return out;
}

/** rmsNorm = (x * rsqrt(mean(x^2) + eps)) * w; eps enters as an f32 scalar, as in core. */
export function rmsNormKernel(x: Float32Array, w: Float32Array, d: number, eps: number): Float32Array {
  const out = newF32(x.length);
  if (d === 0) return out;
  const rows = x.length / d;
  const epsF = Math.fround(eps);
  const dF = Math.fround(d);
  const sq = new Float32Array(d);
  for (let r = 0; r < rows; r++) {
    const b = r * d;
    for (let j = 0; j < d; j++) {
      const v = x[b + j];
      sq[j] = v * v;
    }
    const meanSq = Math.fround(Math.fround(sumRow(sq, 0, d)) / dF);
    const inv = Math.fround(1 / Math.sqrt(Math.fround(meanSq + epsF)));
    for (let j = 0; j < d; j++) out[b + j] = Math.fround(x[b + j] * inv) * w[j];
  }
  return out;
}

/** swiglu = (g * sigmoid(g)) * u. */
export function swigluKernel(g: Float32Array, u: Float32Array): Float32Array {
  const n = g.length;
  const out = newF32(n);
  for (let i = 0; i < n; i++) {
    const v = g[i];
    out[i] = Math.fround(v * Math.fround(sigmoid(v))) * u[i];
  }
  return out;
}
