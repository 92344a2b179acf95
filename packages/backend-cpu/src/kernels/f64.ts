import type { BinaryOp, PrimitiveMatmulOptions, ReduceOp, Shape, UnaryOp } from '@kiln/core';
import { BackendError, sizeOf } from '@kiln/core';
import { checkIndices } from './indexing-util.js';
import { batchMatrixOffsets } from './matmul.js';
import { erf, floorModF, roundHalfEven, sigmoid } from './math.js';
import { Odometer, planBroadcast, prod } from './plan.js';

/**
 * Kernels of the CPU backend's float64 reference mode (`new CpuBackend({ float64: true })`):
 * f32 tensors are held in Float64Array and every result is computed and stored in float64,
 * never rounded to f32. These kernels are only reached in that mode; the default mode's
 * kernels are untouched. Integer, bool and low-precision arithmetic is shared with the
 * default mode (it never involves f32 storage).
 */

const UNARY: Partial<Record<UnaryOp, (v: number) => number>> = {
  neg: (v) => -v,
  abs: Math.abs,
  sign: Math.sign,
  square: (v) => v * v,
  sqrt: Math.sqrt,
  rsqrt: (v) => 1 / Math.sqrt(v),
  reciprocal: (v) => 1 / v,
  exp: Math.exp,
  log: Math.log,
  sin: Math.sin,
  cos: Math.cos,
  tanh: Math.tanh,
  sigmoid,
  // -0 -> +0, NaN passes through (as the f32 kernel's bit-level relu)
  relu: (v) => (v > 0 || v !== v ? v : 0),
  erf,
  floor: Math.floor,
  ceil: Math.ceil,
  round: roundHalfEven,
};

/** Unary `op` on float64 values; `isnan`/`not` give bool (u8), everything else float64. */
export function unaryF64(op: UnaryOp, x: ArrayLike<number>): Float64Array | Uint8Array {
  const n = x.length;
  if (op === 'isnan' || op === 'not') {
    const out = new Uint8Array(n);
    if (op === 'isnan') for (let i = 0; i < n; i++) out[i] = +(x[i] !== x[i]);
    else for (let i = 0; i < n; i++) out[i] = +(x[i] === 0); // NaN is truthy
    return out;
  }
  const f = UNARY[op];
  if (!f) throw new BackendError('cpu.unary', `op ${op} is not defined for dtype f32`);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = f(x[i]);
  return out;
}

const BINARY: Partial<Record<BinaryOp, (a: number, b: number) => number>> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
  pow: Math.pow,
  maximum: Math.max,
  minimum: Math.min,
  mod: floorModF,
  eq: (a, b) => +(a === b),
  ne: (a, b) => +(a !== b),
  lt: (a, b) => +(a < b),
  le: (a, b) => +(a <= b),
  gt: (a, b) => +(a > b),
  ge: (a, b) => +(a >= b),
  and: (a, b) => +(a !== 0) & +(b !== 0),
  or: (a, b) => +(a !== 0) | +(b !== 0),
};

/** Broadcasting binary `op` on float64 operands; comparisons and logical ops give bool (u8). */
export function binaryF64(op: BinaryOp, a: ArrayLike<number>, aShape: Shape, b: ArrayLike<number>, bShape: Shape, outShape: Shape, boolOut: boolean): Float64Array | Uint8Array {
  const f = BINARY[op];
  if (!f) throw new BackendError('cpu.binary', `op ${op} is not defined for dtype f32`);
  const size = sizeOf(outShape);
  const out = boolOut ? new Uint8Array(size) : new Float64Array(size);
  if (size === 0) return out;
  const plan = planBroadcast(outShape, [aShape, bShape]);
  const [as, bs] = plan.rowStrides;
  const odo = new Odometer(plan);
  for (let r = 0, oi = 0; r < plan.rows; r++) {
    let ai = odo.offsets[0];
    let bi = odo.offsets[1];
    for (let i = 0; i < plan.rowLen; i++, oi++, ai += as, bi += bs) out[oi] = f(a[ai], b[bi]);
    odo.next();
  }
  return out;
}

/** cond ? a : b with broadcasting, on float64 values. */
export function whereF64(cond: Uint8Array, condShape: Shape, a: ArrayLike<number>, aShape: Shape, b: ArrayLike<number>, bShape: Shape, outShape: Shape): Float64Array {
  const size = sizeOf(outShape);
  const out = new Float64Array(size);
  if (size === 0) return out;
  const plan = planBroadcast(outShape, [condShape, aShape, bShape]);
  const [cs, as, bs] = plan.rowStrides;
  const odo = new Odometer(plan);
  for (let r = 0, oi = 0; r < plan.rows; r++) {
    let ci = odo.offsets[0];
    let ai = odo.offsets[1];
    let bi = odo.offsets[2];
    for (let i = 0; i < plan.rowLen; i++, oi++, ci += cs, ai += as, bi += bs) out[oi] = cond[ci] !== 0 ? a[ai] : b[bi];
    odo.next();
  }
  return out;
}

/**
 * Single-axis reduction in float64, with the default mode's semantics: max/min propagate
 * NaN; argmax/argmin take the first index on ties and treat NaN as the largest value.
 */
export function reduceF64(op: ReduceOp, x: ArrayLike<number>, shape: Shape, axis: number): Float64Array | Int32Array {
  const outer = prod(shape, 0, axis);
  const len = shape[axis];
  const inner = prod(shape, axis + 1);
  const n = outer * inner;
  const isArg = op === 'argmax' || op === 'argmin';
  const out = isArg ? new Int32Array(n) : new Float64Array(n);
  for (let o = 0; o < outer; o++) {
    const base = o * len * inner;
    for (let j = 0; j < inner; j++) {
      const at = (k: number) => x[base + k * inner + j];
      let acc: number;
      switch (op) {
        case 'sum':
          acc = 0;
          for (let k = 0; k < len; k++) acc += at(k);
          break;
        case 'prod':
          acc = 1;
          for (let k = 0; k < len; k++) acc *= at(k);
          break;
        case 'max':
          acc = -Infinity;
          for (let k = 0; k < len; k++) acc = Math.max(acc, at(k));
          break;
        case 'min':
          acc = Infinity;
          for (let k = 0; k < len; k++) acc = Math.min(acc, at(k));
          break;
        default: {
          // argmax/argmin: NaN counts as the largest value, first index wins ties
          const isMax = op === 'argmax';
          acc = 0;
          if (len === 0) break;
          let best = at(0);
          for (let k = 1; k < len; k++) {
            const v = at(k);
            if (isMax ? v > best || (v !== v && best === best) : v < best || (best !== best && v === v)) {
              best = v;
              acc = k;
            }
          }
        }
      }
      out[o * inner + j] = acc;
    }
  }
  return out;
}

/**
 * Batched matmul with broadcast batch dimensions in float64: the plain triple loop, each
 * dot product accumulated in float64 (no WASM GEMM, no f32 partial sums).
 */
export function matmulF64(a: ArrayLike<number>, aShape: Shape, b: ArrayLike<number>, bShape: Shape, options: PrimitiveMatmulOptions, outShape: Shape): Float64Array {
  const rank = outShape.length;
  const m = outShape[rank - 2];
  const n = outShape[rank - 1];
  const k = options.transposeA ? aShape[aShape.length - 2] : aShape[aShape.length - 1];
  const batchShape = outShape.slice(0, -2);
  const batch = prod(batchShape);
  const out = new Float64Array(batch * m * n);
  if (out.length === 0 || k === 0) return out;
  const { aOffsets, bOffsets } = batchMatrixOffsets(aShape, bShape, batchShape, m * k, k * n);
  // Element (i, p) of op(A) is at ao + i*ars + p*acs; (p, j) of op(B) at bo + p*brs + j*bcs.
  const ars = options.transposeA ? 1 : k;
  const acs = options.transposeA ? m : 1;
  const brs = options.transposeB ? 1 : n;
  const bcs = options.transposeB ? k : 1;
  for (let e = 0; e < batch; e++) {
    const ao = aOffsets[e];
    const bo = bOffsets[e];
    const co = e * m * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) s += a[ao + i * ars + p * acs] * b[bo + p * brs + j * bcs];
        out[co + i * n + j] = s;
      }
    }
  }
  return out;
}

/** out = base; out[targets[i]] += src[i], in float64 (targets from the scatterAdd plan). */
export function scatterAddF64(base: ArrayLike<number>, targets: Float64Array, src: ArrayLike<number>): Float64Array {
  const out = Float64Array.from(base);
  for (let i = 0; i < targets.length; i++) out[targets[i]] += src[i];
  return out;
}

/** torch.index_add, out of place, in float64. */
export function indexAddF64(base: ArrayLike<number>, baseShape: Shape, axis: number, indices: Int32Array, src: ArrayLike<number>): Float64Array {
  const out = Float64Array.from(base);
  const outer = prod(baseShape, 0, axis);
  const len = baseShape[axis];
  const inner = prod(baseShape, axis + 1);
  const m = indices.length;
  checkIndices('indexAdd', indices, axis, len);
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < m; j++) {
      const dst = (o * len + indices[j]) * inner;
      const s = (o * m + j) * inner;
      for (let i = 0; i < inner; i++) out[dst + i] += src[s + i];
    }
  }
  return out;
}

// ---- fused kernels over the last axis (the same formulas as the f32 ones, unrounded) ----

export function softmaxF64(x: ArrayLike<number>, d: number): Float64Array {
  const out = new Float64Array(x.length);
  if (d === 0) return out;
  for (let b = 0; b < x.length; b += d) {
    let m = -Infinity;
    for (let j = 0; j < d; j++) m = Math.max(m, x[b + j]);
    let s = 0;
    for (let j = 0; j < d; j++) s += out[b + j] = Math.exp(x[b + j] - m);
    for (let j = 0; j < d; j++) out[b + j] /= s;
  }
  return out;
}

export function logSoftmaxF64(x: ArrayLike<number>, d: number): Float64Array {
  const out = new Float64Array(x.length);
  if (d === 0) return out;
  for (let b = 0; b < x.length; b += d) {
    let m = -Infinity;
    for (let j = 0; j < d; j++) m = Math.max(m, x[b + j]);
    let s = 0;
    for (let j = 0; j < d; j++) s += Math.exp(x[b + j] - m);
    const lse = Math.log(s) + m;
    for (let j = 0; j < d; j++) out[b + j] = x[b + j] - lse;
  }
  return out;
}

export function rmsNormF64(x: ArrayLike<number>, w: ArrayLike<number>, d: number, eps: number): Float64Array {
  const out = new Float64Array(x.length);
  if (d === 0) return out;
  for (let b = 0; b < x.length; b += d) {
    let s = 0;
    for (let j = 0; j < d; j++) s += x[b + j] * x[b + j];
    const inv = 1 / Math.sqrt(s / d + eps);
    for (let j = 0; j < d; j++) out[b + j] = x[b + j] * inv * w[j];
  }
  return out;
}

export function swigluF64(g: ArrayLike<number>, u: ArrayLike<number>): Float64Array {
  const out = new Float64Array(g.length);
  for (let i = 0; i < g.length; i++) out[i] = g[i] * sigmoid(g[i]) * u[i];
  return out;
}

// ---- moving float64 codes through the default mode's layout kernels ----

/**
 * Splits float64 values into their low and high 32-bit words, so the dtype-agnostic layout
 * kernels (slice, transpose, concat, gather, indexSelect) can move them as two i32 tensors,
 * bit-exactly; `joinWords` puts the moved words back together.
 */
export function splitWords(x: Float64Array): [Int32Array, Int32Array] {
  const n = x.length;
  const w = new Int32Array(x.buffer, x.byteOffset, 2 * n);
  const lo = new Int32Array(n);
  const hi = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    lo[i] = w[2 * i];
    hi[i] = w[2 * i + 1];
  }
  return [lo, hi];
}

export function joinWords(lo: ArrayLike<number>, hi: ArrayLike<number>): Float64Array {
  const n = lo.length;
  const out = new Float64Array(n);
  const w = new Int32Array(out.buffer);
  for (let i = 0; i < n; i++) {
    w[2 * i] = lo[i];
    w[2 * i + 1] = hi[i];
  }
  return out;
}
