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

/**
 * Scaled dot-product attention of q [..., Tq, dk], k [..., S, dk], v [..., S, dv] (k's and
 * v's leading axes, padded with leading 1s to q's rank, are each 1 or q's size): out
 * [..., Tq, dv] and the log normaliser lse [..., Tq] of the scores s_j = scale (q · k_j) over
 * the visible keys (j <= offset + i when `offset` is not null). Bounds for an f32
 * composition (matmul, scale, softmax, matmul; a fused kernel must do at least as well):
 * each score is off by at most δs_j = eps (c_mm |scale| Σ_p |q_p k_jp| + 2 c_f32 |s_j|)
 * (the product, the scaling and the scale's own rounding to f32); a softmax whose inputs
 * move by up to Δ = max_j δs_j moves each p_j by at most 2 Δ p_j, on top of softmaxRef's
 * own rounding; the weighted sum adds c_mm eps Σ_j p_j |v_j|. lse moves by at most Δ plus
 * logSoftmaxRef's rounding of the normaliser.
 */
export function attentionRef(
  q: ArrayLike<number>,
  qShape: Shape,
  k: ArrayLike<number>,
  kShape: Shape,
  v: ArrayLike<number>,
  vShape: Shape,
  scale: number,
  offset: number | null,
  tol: Tol,
): Ref & { lse: Float64Array; lseBound: Float64Array; outShape: Shape } {
  const rank = qShape.length;
  const pad = (s: Shape): Shape => [...new Array<number>(rank - s.length).fill(1), ...s];
  const ks = pad(kShape);
  const vs = pad(vShape);
  const Tq = qShape[rank - 2];
  const dk = qShape[rank - 1];
  const S = ks[rank - 2];
  const dv = vs[rank - 1];
  const lead = qShape.slice(0, -2);
  const batch = size(lead);
  const exact = new Float64Array(batch * Tq * dv);
  const bound = new Float64Array(exact.length);
  const lse = new Float64Array(batch * Tq);
  const lseBound = new Float64Array(lse.length);
  /** Element offset of batch b's matrix in an operand with leading axes `own`. */
  const matrixAt = (b: number, own: Shape, matrix: number): number => {
    let off = 0;
    let st = matrix;
    let rest = b;
    for (let a = lead.length - 1; a >= 0; a--) {
      const i = rest % lead[a];
      rest = Math.floor(rest / lead[a]);
      if (own[a] !== 1) off += i * st;
      st *= own[a];
    }
    return off;
  };
  const s = new Float64Array(S);
  const ds = new Float64Array(S);
  for (let b = 0; b < batch; b++) {
    const ko = matrixAt(b, ks.slice(0, -2), S * dk);
    const vo = matrixAt(b, vs.slice(0, -2), S * dv);
    for (let i = 0; i < Tq; i++) {
      const r = b * Tq + i;
      const visible = offset === null ? S : Math.min(S, offset + i + 1);
      let m = -Infinity;
      let delta = 0;
      for (let j = 0; j < visible; j++) {
        let dot = 0;
        let abs = 0;
        for (let p = 0; p < dk; p++) {
          const t = q[r * dk + p] * k[ko + j * dk + p];
          dot += t;
          abs += Math.abs(t);
        }
        s[j] = scale * dot;
        ds[j] = EPS32 * (tol.matmul * Math.abs(scale) * abs + 2 * tol.f32 * Math.abs(s[j]));
        m = Math.max(m, s[j]);
        delta = Math.max(delta, ds[j]);
      }
      let l = 0;
      for (let j = 0; j < visible; j++) l += Math.exp(s[j] - m);
      const ls = Math.log(l);
      lse[r] = m + ls;
      lseBound[r] = delta + EPS32 * (tol.transcendental + tol.matmul + tol.transcendental * Math.abs(ls) + tol.f32 * Math.abs(lse[r]));
      for (let c = 0; c < dv; c++) {
        let o = 0;
        let err = 0;
        for (let j = 0; j < visible; j++) {
          const p = Math.exp(s[j] - m) / l;
          const dp = p * (2 * delta + EPS32 * (2 * tol.transcendental + tol.matmul + 2 * tol.f32 + tol.f32 * Math.abs(s[j] - m)));
          const x = Math.abs(v[vo + j * dv + c]);
          o += p * v[vo + j * dv + c];
          err += dp * x + tol.matmul * EPS32 * (p + dp) * x;
        }
        exact[r * dv + c] = o;
        bound[r * dv + c] = err;
      }
    }
  }
  return { exact, bound, lse, lseBound, outShape: [...lead, Tq, dv] };
}
