/**
 * Float64 references for the composed ops, each with an error bound for an f32
 * implementation (derived from the tolerances: ulps for elementwise steps, c·eps·Σ|terms|
 * for sums). Rows are the last axis unless an axis is given.
 */
import { EPS32 } from './float.js';
import { erf64, sigmoid64 } from './math.js';
import { size, strides, type Shape } from './nd.js';

export interface Tol {
  f32: number;
  transcendental: number;
  matmul: number;
}

export interface Ref {
  exact: Float64Array;
  bound: Float64Array;
}

/** Visits each 1-D line of `shape` along `axis`: calls f(indices of the line). */
export function lines(shape: Shape, axis: number, f: (idx: number[]) => void): void {
  const n = shape[axis];
  const st = strides(shape)[axis];
  const outer = size(shape.slice(0, axis));
  const inner = size(shape.slice(axis + 1));
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      const base = o * n * inner + i;
      const idx = new Array<number>(n);
      for (let k = 0; k < n; k++) idx[k] = base + k * st;
      f(idx);
    }
  }
}

export function softmaxRef(x: ArrayLike<number>, shape: Shape, axis: number, tol: Tol): Ref {
  const exact = new Float64Array(x.length);
  const bound = new Float64Array(x.length);
  lines(shape, axis, (idx) => {
    let m = -Infinity;
    for (const i of idx) m = Math.max(m, x[i]);
    let s = 0;
    for (const i of idx) s += Math.exp(x[i] - m);
    for (const i of idx) {
      const p = Math.exp(x[i] - m) / s;
      exact[i] = p;
      bound[i] = p === 0 ? 0 : EPS32 * p * (2 * tol.transcendental + tol.matmul + 2 * tol.f32 + tol.f32 * Math.abs(x[i] - m));
    }
  });
  return { exact, bound };
}

/** log-softmax (keepLse false) or logSumExp per line (values at the first index of each line, packed). */
export function logSoftmaxRef(x: ArrayLike<number>, shape: Shape, axis: number, tol: Tol): Ref & { lse: Float64Array; lseBound: Float64Array } {
  const exact = new Float64Array(x.length);
  const bound = new Float64Array(x.length);
  const lse = new Float64Array(size(shape.filter((_, d) => d !== axis)));
  const lseBound = new Float64Array(lse.length);
  let line = 0;
  lines(shape, axis, (idx) => {
    let m = -Infinity;
    for (const i of idx) m = Math.max(m, x[i]);
    let s = 0;
    for (const i of idx) s += Math.exp(x[i] - m);
    const ls = Math.log(s);
    const l = m + ls;
    lse[line] = idx.length === 0 ? -Infinity : l;
    const common = tol.transcendental + tol.matmul + tol.transcendental * Math.abs(ls);
    lseBound[line] = EPS32 * (common + tol.f32 * Math.abs(l));
    for (const i of idx) {
      exact[i] = x[i] - l;
      bound[i] = EPS32 * (common + tol.f32 * (Math.abs(m) + Math.abs(l) + Math.abs(exact[i])));
    }
    line++;
  });
  return { exact, bound, lse, lseBound };
}

export function rmsNormRef(x: ArrayLike<number>, shape: Shape, w: ArrayLike<number>, eps: number, tol: Tol): Ref {
  const exact = new Float64Array(x.length);
  const bound = new Float64Array(x.length);
  const d = shape[shape.length - 1];
  const epsF = Math.fround(eps);
  lines(shape, shape.length - 1, (idx) => {
    let ss = 0;
    for (const i of idx) ss += x[i] * x[i];
    const r = 1 / Math.sqrt(ss / d + epsF);
    idx.forEach((i, k) => {
      exact[i] = x[i] * r * w[k];
      bound[i] = EPS32 * Math.abs(exact[i]) * (tol.matmul + tol.transcendental + 5 * tol.f32);
    });
  });
  return { exact, bound };
}

export function siluRef(x: ArrayLike<number>, tol: Tol): Ref {
  const exact = Float64Array.from(x, (v) => v * sigmoid64(v));
  const bound = exact.map((y) => EPS32 * Math.abs(y) * (tol.transcendental + tol.f32));
  return { exact, bound };
}

export function geluRef(x: ArrayLike<number>, tol: Tol): Ref {
  const exact = new Float64Array(x.length);
  const bound = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    const z = v * Math.SQRT1_2;
    const y = (v * (1 + erf64(z))) / 2;
    exact[i] = y;
    bound[i] = EPS32 * ((Math.abs(v) / 2) * (tol.transcendental + 2.4 * Math.abs(z) * Math.exp(-z * z) + 2 * tol.f32) + 2 * tol.f32 * Math.abs(y));
  }
  return { exact, bound };
}

export function swigluRef(g: ArrayLike<number>, u: ArrayLike<number>, tol: Tol): Ref {
  const exact = Float64Array.from(g, (v, i) => v * sigmoid64(v) * u[i]);
  const bound = exact.map((y) => EPS32 * Math.abs(y) * (tol.transcendental + 2 * tol.f32));
  return { exact, bound };
}

/** Rotary embedding of x [..., T, d] with cos/sin [T, d/2] (values as stored). */
export function rotaryRef(x: ArrayLike<number>, shape: Shape, cos: ArrayLike<number>, sin: ArrayLike<number>, layout: 'interleaved' | 'half', tol: Tol): Ref {
  const d = shape[shape.length - 1];
  const T = shape[shape.length - 2];
  const h = d / 2;
  const exact = new Float64Array(x.length);
  const bound = new Float64Array(x.length);
  const rows = x.length / d;
  for (let r = 0; r < rows; r++) {
    const t = r % T;
    const o = r * d;
    for (let i = 0; i < h; i++) {
      const ia = layout === 'interleaved' ? o + 2 * i : o + i;
      const ib = layout === 'interleaved' ? o + 2 * i + 1 : o + i + h;
      const a = x[ia];
      const b = x[ib];
      const c = cos[t * h + i];
      const s = sin[t * h + i];
      exact[ia] = a * c - b * s;
      exact[ib] = a * s + b * c;
      bound[ia] = 3 * tol.f32 * EPS32 * (Math.abs(a * c) + Math.abs(b * s));
      bound[ib] = 3 * tol.f32 * EPS32 * (Math.abs(a * s) + Math.abs(b * c));
    }
  }
  return { exact, bound };
}

/** Top-k of each last-axis row: values descending, ties to the lower index (NaN-free input). */
export function topkRef(x: ArrayLike<number>, shape: Shape, k: number): { values: number[]; indices: number[] } {
  const n = shape[shape.length - 1];
  const rows = n === 0 ? size(shape.slice(0, -1)) : x.length / n;
  const values: number[] = [];
  const indices: number[] = [];
  for (let r = 0; r < rows; r++) {
    const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => {
      const a = x[r * n + i];
      const b = x[r * n + j];
      return a === b ? i - j : b - a;
    });
    for (let i = 0; i < k; i++) {
      indices.push(order[i]);
      values.push(x[r * n + order[i]]);
    }
  }
  return { values, indices };
}
