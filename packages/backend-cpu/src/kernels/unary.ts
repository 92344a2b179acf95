import type { ComputeDType, StorageArray, UnaryOp } from '@kiln/core';
import { BackendError } from '@kiln/core';
import { newF32, newI32, newU8 } from '../pool.js';
import { erf, roundHalfEven, sigmoid } from './math.js';

/**
 * Elementwise unary kernels. One specialised loop per (op, dtype): no per-element dispatch.
 * f32 ops compute in float64 and round once on store (so +,-,*,/,sqrt are exactly IEEE f32
 * and the transcendental functions are within an f32 ulp of the true value).
 */

/**
 * relu on the bit patterns, without branches: zero the element when its sign bit is set,
 * unless it is a NaN (which passes through). -0 becomes +0.
 */
function reluF32(x: Float32Array, o: Float32Array, n: number): void {
  const xi = new Int32Array(x.buffer, x.byteOffset, n);
  const oi = new Int32Array(o.buffer, o.byteOffset, n);
  for (let i = 0; i < n; i++) {
    const u = xi[i];
    const nan = (0x7f800000 - (u & 0x7fffffff)) >>> 31;
    const neg = u >>> 31;
    oi[i] = u & ((neg & (nan ^ 1)) - 1);
  }
}

type F32Kernel = (x: Float32Array, out: Float32Array, n: number) => void;
type I32Kernel = (x: Int32Array, out: Int32Array, n: number) => void;

const F32: Partial<Record<UnaryOp, F32Kernel>> = {
  neg: (x, o, n) => { for (let i = 0; i < n; i++) o[i] = -x[i]; },
  abs: (x, o, n) => { for (let i = 0; i < n; i++) o[i] = Math.abs(x[i]); },
  sign: (x, o, n) => { for (let i = 0; i < n; i++) o[i] = Math.sign(x[i]); },
  square: (x, o, n) => { for (let i = 0; i < n; i++) { const v = x[i]; o[i] = v * v; } },
  sqrt: (x, o, n) => { for (let i = 0; i < n; i++) o[i] = Math.sqrt(x[i]); },
  rsqrt: (x, o, n) => { for (let i = 0; i < n; i++) o[i] = 1 / Math.sqrt(x[i]); },
  reciprocal: (x, o, n) => { for (let i = 0; i < n; i++) o[i] = 1 / x[i]; },
  exp: (x, o, n) => { for (let i = 0; i < n; i++) o[i] = Math.exp(x[i]); },
  log: (x, o, n) => { for (let i = 0; i < n; i++) o[i] = Math.log(x[i]); },
  sin: (x, o, n) => { for (let i = 0; i < n; i++) o[i] = Math.sin(x[i]); },
  cos: (x, o, n) => { for (let i = 0; i < n; i++) o[i] = Math.cos(x[i]); },
  tanh: (x, o, n) => { for (let i = 0; i < n; i++) o[i] = Math.tanh(x[i]); },
  sigmoid: (x, o, n) => { for (let i = 0; i < n; i++) o[i] = sigmoid(x[i]); },
  relu: reluF32,
  erf: (x, o, n) => { for (let i = 0; i < n; i++) o[i] = erf(x[i]); },
  floor: (x, o, n) => { for (let i = 0; i < n; i++) o[i] = Math.floor(x[i]); },
  ceil: (x, o, n) => { for (let i = 0; i < n; i++) o[i] = Math.ceil(x[i]); },
  round: (x, o, n) => { for (let i = 0; i < n; i++) o[i] = roundHalfEven(x[i]); },
};

// int32 arithmetic wraps: Int32Array stores reduce modulo 2^32 (ToInt32), and every result
// below is an exact integer in float64 before that store (Math.imul for products).
const I32: Partial<Record<UnaryOp, I32Kernel>> = {
  neg: (x, o, n) => { for (let i = 0; i < n; i++) o[i] = -x[i]; },
  abs: (x, o, n) => { for (let i = 0; i < n; i++) o[i] = Math.abs(x[i]); },
  sign: (x, o, n) => { for (let i = 0; i < n; i++) { const v = x[i]; o[i] = v > 0 ? 1 : v < 0 ? -1 : 0; } },
  square: (x, o, n) => { for (let i = 0; i < n; i++) { const v = x[i]; o[i] = Math.imul(v, v); } },
  relu: (x, o, n) => { for (let i = 0; i < n; i++) { const v = x[i]; o[i] = v > 0 ? v : 0; } },
  floor: (x, o, n) => { o.set(x.subarray(0, n)); },
  ceil: (x, o, n) => { o.set(x.subarray(0, n)); },
  round: (x, o, n) => { o.set(x.subarray(0, n)); },
};

function unsupported(op: UnaryOp, dtype: ComputeDType): BackendError {
  return new BackendError('cpu.unary', `op ${op} is not defined for dtype ${dtype}`);
}

/** Runs unary `op` on `x` (of compute dtype `dtype`), returning new storage of `outDtype`. */
export function unaryKernel(op: UnaryOp, x: StorageArray, dtype: ComputeDType, outDtype: ComputeDType): StorageArray {
  const n = x.length;
  if (op === 'isnan') {
    const out = newU8(n, true);
    if (dtype === 'f32') {
      const v = x as Float32Array;
      for (let i = 0; i < n; i++) out[i] = +(v[i] !== v[i]);
    }
    return out;
  }
  if (op === 'not') {
    const out = newU8(n);
    if (dtype === 'f32') {
      const v = x as Float32Array;
      for (let i = 0; i < n; i++) out[i] = +(v[i] === 0); // NaN is truthy
    } else {
      const v = x as Int32Array | Uint8Array;
      for (let i = 0; i < n; i++) out[i] = +(v[i] === 0);
    }
    return out;
  }
  if (dtype === 'f32') {
    const k = F32[op];
    if (!k) throw unsupported(op, dtype);
    const out = newF32(n);
    k(x as Float32Array, out, n);
    return out;
  }
  if (dtype === 'i32') {
    const k = I32[op];
    if (!k) {
      // Float-only ops on integers: core converts first, but stay total for direct callers.
      const f = F32[op];
      if (!f) throw unsupported(op, dtype);
      const tmp = Float32Array.from(x as Int32Array);
      const out = newF32(n);
      f(tmp, out, n);
      return out;
    }
    const out = newI32(n);
    k(x as Int32Array, out, n);
    return out;
  }
  // u8 / bool: widen to i32, compute, and store back in the input's width (wrapping).
  const wide = Int32Array.from(x as Uint8Array);
  const res = unaryKernel(op, wide, 'i32', 'i32');
  if (outDtype === 'i32' || res instanceof Float32Array) return res;
  return Uint8Array.from(res as Int32Array, (v) => v & 0xff);
}
