import type { DType, Tensor } from '@kiln/core';
import { assertDType, assertShape } from '../check.js';
import type { Ctx, Read } from '../harness.js';
import { EPS32 } from '../reference/float.js';
import type { Rng } from '../prng.js';
import type { Shape } from '../reference/nd.js';

/** Reads a result after checking its dtype and shape. */
export async function readChecked(c: Ctx, t: Tensor, label: string, dtype: DType, shape: Shape): Promise<Read> {
  assertDType(label, t.dtype, dtype);
  assertShape(label, t.shape, shape);
  return c.read(t, label);
}

/** Log-uniform magnitude in [lo, hi] with a random sign when `signed`. */
export function logUniform(r: Rng, lo: number, hi: number, signed = false): number {
  const v = Math.exp(r.uniform(Math.log(lo), Math.log(hi)));
  return signed && r.bool() ? -v : v;
}

export const F32_MIN_NORMAL = 2 ** -126;
export const isF32Subnormal = (x: number): boolean => x !== 0 && Math.abs(x) < F32_MIN_NORMAL;

export { EPS32 };

/** Label for a dtype combination. */
export const pair = (a: DType, b: DType): string => `${a} x ${b}`;

export function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

export function f64(values: ArrayLike<number>): Float64Array {
  return Float64Array.from(values);
}
