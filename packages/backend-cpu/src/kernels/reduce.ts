import type { ComputeDType, ReduceOp, Shape, StorageArray } from '@kiln/core';
import { newF32, newI32, newU8 } from '../pool.js';
import { prod } from './plan.js';

/**
 * Single-axis reductions. The input is viewed as [outer, len, inner]; when inner is 1 each
 * output is one contiguous row, otherwise whole inner rows are accumulated at once so the
 * input is read sequentially.
 *
 * Summation: f32 sums and products accumulate in float64 (JavaScript's native number) and
 * round to f32 once at the end. That is more accurate than pairwise or Kahan summation in
 * f32 (the accumulated error is ~n * 2^-53 relative, far below half an f32 ulp for any
 * realistic n) and costs nothing extra in JS. i32 sums/products wrap like int32.
 * max/min propagate NaN; argmax/argmin return the first index on ties and treat NaN as the
 * largest value (argmax picks the first NaN; argmin never picks NaN unless all are NaN).
 */
export function reduceKernel(op: ReduceOp, x: StorageArray, shape: Shape, axis: number, dtype: ComputeDType): StorageArray {
  const outer = prod(shape, 0, axis);
  const len = shape[axis];
  const inner = prod(shape, axis + 1);
  const n = outer * inner;
  if (op === 'argmax' || op === 'argmin') {
    const out = newI32(n, len === 0);
    if (len === 0 || n === 0) return out;
    if (dtype === 'f32') argF32(op === 'argmax', x as Float32Array, out, outer, len, inner);
    else argInt(op === 'argmax', x as Int32Array | Uint8Array, out, outer, len, inner);
    return out;
  }
  if (dtype === 'f32') {
    const out = newF32(n);
    if (n === 0) return out;
    const xv = x as Float32Array;
    if (op === 'sum' || op === 'prod') accumulateF32(op === 'sum', xv, out, outer, len, inner);
    else extremeF32(op === 'max', xv, out, outer, len, inner);
    return out;
  }
  const out = dtype === 'i32' ? newI32(n) : newU8(n);
  if (n === 0) return out;
  const xv = x as Int32Array | Uint8Array;
  if (op === 'sum') sumInt(xv, out, outer, len, inner);
  else if (op === 'prod') prodInt(xv, out, outer, len, inner);
  else extremeInt(op === 'max', xv, out, outer, len, inner);
  return out;
}

/**
 * Sum of `len` f32 values from `base`, in float64 (four partial sums for speed). The fused
 * kernels call this too, so their sums round exactly like the reduce primitive's.
 */
export function sumRow(x: Float32Array, base: number, len: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let k = 0;
  for (; k + 4 <= len; k += 4) {
    s0 += x[base + k];
    s1 += x[base + k + 1];
    s2 += x[base + k + 2];
    s3 += x[base + k + 3];
  }
  for (; k < len; k++) s0 += x[base + k];
  return s0 + s1 + (s2 + s3);
}

function accumulateF32(isSum: boolean, x: Float32Array, out: Float32Array, outer: number, len: number, inner: number): void {
  if (inner === 1) {
    if (isSum) {
      for (let o = 0; o < outer; o++) out[o] = sumRow(x, o * len, len);
    } else {
      for (let o = 0; o < outer; o++) {
        const base = o * len;
        let p = 1;
        for (let k = 0; k < len; k++) p *= x[base + k];
        out[o] = p;
      }
    }
    return;
  }
  const acc = new Float64Array(inner);
  for (let o = 0; o < outer; o++) {
    acc.fill(isSum ? 0 : 1);
    const base = o * len * inner;
    for (let k = 0; k < len; k++) {
      const row = base + k * inner;
      if (isSum) for (let j = 0; j < inner; j++) acc[j] += x[row + j];
      else for (let j = 0; j < inner; j++) acc[j] *= x[row + j];
    }
    const ob = o * inner;
    for (let j = 0; j < inner; j++) out[ob + j] = acc[j];
  }
}

function extremeF32(isMax: boolean, x: Float32Array, out: Float32Array, outer: number, len: number, inner: number): void {
  const init = isMax ? -Infinity : Infinity;
  if (inner === 1) {
    for (let o = 0; o < outer; o++) {
      const base = o * len;
      let m = init;
      if (isMax) for (let k = 0; k < len; k++) m = Math.max(m, x[base + k]);
      else for (let k = 0; k < len; k++) m = Math.min(m, x[base + k]);
      out[o] = m;
    }
    return;
  }
  for (let o = 0; o < outer; o++) {
    const base = o * len * inner;
    const ob = o * inner;
    out.fill(init, ob, ob + inner);
    for (let k = 0; k < len; k++) {
      const row = base + k * inner;
      if (isMax) for (let j = 0; j < inner; j++) out[ob + j] = Math.max(out[ob + j], x[row + j]);
      else for (let j = 0; j < inner; j++) out[ob + j] = Math.min(out[ob + j], x[row + j]);
    }
  }
}

function argF32(isMax: boolean, x: Float32Array, out: Int32Array, outer: number, len: number, inner: number): void {
  if (inner === 1) {
    for (let o = 0; o < outer; o++) {
      const base = o * len;
      let best = x[base];
      let bi = 0;
      if (isMax) {
        if (best === best) {
          for (let k = 1; k < len; k++) {
            const v = x[base + k];
            if (v > best) {
              best = v;
              bi = k;
            } else if (v !== v) {
              bi = k;
              break;
            }
          }
        }
      } else {
        for (let k = 1; k < len; k++) {
          const v = x[base + k];
          if (v < best || (best !== best && v === v)) {
            best = v;
            bi = k;
          }
        }
      }
      out[o] = bi;
    }
    return;
  }
  const best = new Float64Array(inner);
  for (let o = 0; o < outer; o++) {
    const base = o * len * inner;
    const ob = o * inner;
    for (let j = 0; j < inner; j++) best[j] = x[base + j];
    out.fill(0, ob, ob + inner);
    for (let k = 1; k < len; k++) {
      const row = base + k * inner;
      for (let j = 0; j < inner; j++) {
        const v = x[row + j];
        const b = best[j];
        if (isMax ? v > b || (v !== v && b === b) : v < b || (b !== b && v === v)) {
          best[j] = v;
          out[ob + j] = k;
        }
      }
    }
  }
}

function sumInt(x: Int32Array | Uint8Array, out: Int32Array | Uint8Array, outer: number, len: number, inner: number): void {
  for (let o = 0; o < outer; o++) {
    const base = o * len * inner;
    const ob = o * inner;
    for (let j = 0; j < inner; j++) {
      let s = 0;
      for (let k = 0, p = base + j; k < len; k++, p += inner) s = (s + x[p]) | 0;
      out[ob + j] = s;
    }
  }
}

function prodInt(x: Int32Array | Uint8Array, out: Int32Array | Uint8Array, outer: number, len: number, inner: number): void {
  for (let o = 0; o < outer; o++) {
    const base = o * len * inner;
    const ob = o * inner;
    for (let j = 0; j < inner; j++) {
      let p = 1;
      for (let k = 0, q = base + j; k < len; k++, q += inner) p = Math.imul(p, x[q]);
      out[ob + j] = p;
    }
  }
}

function extremeInt(isMax: boolean, x: Int32Array | Uint8Array, out: Int32Array | Uint8Array, outer: number, len: number, inner: number): void {
  for (let o = 0; o < outer; o++) {
    const base = o * len * inner;
    const ob = o * inner;
    for (let j = 0; j < inner; j++) {
      let m = len > 0 ? x[base + j] : 0;
      for (let k = 1, q = base + j + inner; k < len; k++, q += inner) {
        const v = x[q];
        if (isMax ? v > m : v < m) m = v;
      }
      out[ob + j] = m;
    }
  }
}

function argInt(isMax: boolean, x: Int32Array | Uint8Array, out: Int32Array, outer: number, len: number, inner: number): void {
  for (let o = 0; o < outer; o++) {
    const base = o * len * inner;
    const ob = o * inner;
    for (let j = 0; j < inner; j++) {
      let m = x[base + j];
      let bi = 0;
      for (let k = 1, q = base + j + inner; k < len; k++, q += inner) {
        const v = x[q];
        if (isMax ? v > m : v < m) {
          m = v;
          bi = k;
        }
      }
      out[ob + j] = bi;
    }
  }
}
