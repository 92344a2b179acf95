import type { RandomSpec } from '@kiln/core';
import { normalAt, uniformAt } from '@kiln/core';
import { newF32 } from '../pool.js';

/**
 * Counter-based random values from core's generator (element i depends only on (seed, i)).
 * uniform: a + (b - a) * u with every step rounded to f32, so it is bit-identical to a
 * backend computing in f32 without fused multiply-add. normal: a + b * z rounded once.
 */
export function randomKernel(size: number, spec: RandomSpec): Float32Array {
  const out = newF32(size);
  const seed = spec.seed >>> 0;
  if (spec.distribution === 'uniform') {
    const lo = Math.fround(spec.a);
    const range = Math.fround(Math.fround(spec.b) - lo);
    for (let i = 0; i < size; i++) out[i] = lo + Math.fround(range * uniformAt(seed, i));
  } else {
    const mean = spec.a;
    const std = spec.b;
    for (let i = 0; i < size; i++) out[i] = mean + std * normalAt(seed, i);
  }
  return out;
}
