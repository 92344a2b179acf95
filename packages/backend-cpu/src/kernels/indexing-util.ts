import { ArgumentError } from '@kiln/core';

/** Throws the CPU backend's out-of-range index error. */
export function indexError(op: string, value: number, axis: number, bound: number): ArgumentError {
  return new ArgumentError(op, `index ${value} is out of range for axis ${axis} of size ${bound} (valid: 0..${bound - 1})`);
}

/** Checks every index of a 1-D index list against [0, bound). */
export function checkIndices(op: string, indices: Int32Array, axis: number, bound: number): void {
  for (let i = 0; i < indices.length; i++) {
    const v = indices[i];
    if (v < 0 || v >= bound) throw indexError(op, v, axis, bound);
  }
}
