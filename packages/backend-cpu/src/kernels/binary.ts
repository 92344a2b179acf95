import type { BinaryOp, ComputeDType, Shape, StorageArray } from '@kiln/core';
import { BackendError, sizeOf } from '@kiln/core';
import { newF32, newI32, newU8 } from '../pool.js';
import { floorModF, floorModI } from './math.js';
import { Odometer, planBroadcast } from './plan.js';

/**
 * Broadcasting binary kernels. Operands are walked row by row (see plan.ts): each kernel
 * below is one specialised strided loop for one op and dtype family, called once per row
 * (once in total for same-shape operands; a scalar operand is a zero stride).
 */

type Kernel<A, O> = (a: A, ai: number, as: number, b: A, bi: number, bs: number, o: O, oi: number, n: number) => void;
type Num = Float32Array | Int32Array | Uint8Array;

// f32: compute in float64, round once on store (exact IEEE f32 for + - * /).
const F32: Partial<Record<BinaryOp, Kernel<Float32Array, Float32Array>>> = {
  add: (a, ai, as, b, bi, bs, o, oi, n) => { for (let i = 0; i < n; i++, ai += as, bi += bs) o[oi + i] = a[ai] + b[bi]; },
  sub: (a, ai, as, b, bi, bs, o, oi, n) => { for (let i = 0; i < n; i++, ai += as, bi += bs) o[oi + i] = a[ai] - b[bi]; },
  mul: (a, ai, as, b, bi, bs, o, oi, n) => { for (let i = 0; i < n; i++, ai += as, bi += bs) o[oi + i] = a[ai] * b[bi]; },
  div: (a, ai, as, b, bi, bs, o, oi, n) => { for (let i = 0; i < n; i++, ai += as, bi += bs) o[oi + i] = a[ai] / b[bi]; },
  pow: (a, ai, as, b, bi, bs, o, oi, n) => { for (let i = 0; i < n; i++, ai += as, bi += bs) o[oi + i] = Math.pow(a[ai], b[bi]); },
  maximum: (a, ai, as, b, bi, bs, o, oi, n) => { for (let i = 0; i < n; i++, ai += as, bi += bs) o[oi + i] = Math.max(a[ai], b[bi]); },
  minimum: (a, ai, as, b, bi, bs, o, oi, n) => { for (let i = 0; i < n; i++, ai += as, bi += bs) o[oi + i] = Math.min(a[ai], b[bi]); },
  mod: (a, ai, as, b, bi, bs, o, oi, n) => { for (let i = 0; i < n; i++, ai += as, bi += bs) o[oi + i] = floorModF(a[ai], b[bi]); },
};

// Contiguous variants of the hottest f32 ops (both operands advance by 1: same-shape
// operands, or rows of a bias-style broadcast); ~30% faster than the strided loops in V8.
type Contig = (a: Float32Array, ai: number, b: Float32Array, bi: number, o: Float32Array, oi: number, n: number) => void;
const F32_CONTIG: Partial<Record<BinaryOp, Contig>> = {
  add: (a, ai, b, bi, o, oi, n) => { for (let i = 0; i < n; i++) o[oi + i] = a[ai + i] + b[bi + i]; },
  sub: (a, ai, b, bi, o, oi, n) => { for (let i = 0; i < n; i++) o[oi + i] = a[ai + i] - b[bi + i]; },
  mul: (a, ai, b, bi, o, oi, n) => { for (let i = 0; i < n; i++) o[oi + i] = a[ai + i] * b[bi + i]; },
  div: (a, ai, b, bi, o, oi, n) => { for (let i = 0; i < n; i++) o[oi + i] = a[ai + i] / b[bi + i]; },
};

// Integers (i32, and u8 for direct callers): results are exact in float64 and wrap on store.
const INT: Partial<Record<BinaryOp, Kernel<Int32Array | Uint8Array, Int32Array | Uint8Array>>> = {
  add: (a, ai, as, b, bi, bs, o, oi, n) => { for (let i = 0; i < n; i++, ai += as, bi += bs) o[oi + i] = a[ai] + b[bi]; },
  sub: (a, ai, as, b, bi, bs, o, oi, n) => { for (let i = 0; i < n; i++, ai += as, bi += bs) o[oi + i] = a[ai] - b[bi]; },
  mul: (a, ai, as, b, bi, bs, o, oi, n) => { for (let i = 0; i < n; i++, ai += as, bi += bs) o[oi + i] = Math.imul(a[ai], b[bi]); },
  // Core turns integer div/pow into f32; these keep the backend total (div truncates, x/0 = 0).
  div: (a, ai, as, b, bi, bs, o, oi, n) => { for (let i = 0; i < n; i++, ai += as, bi += bs) { const d = b[bi]; o[oi + i] = d === 0 ? 0 : Math.trunc(a[ai] / d); } },
  pow: (a, ai, as, b, bi, bs, o, oi, n) => { for (let i = 0; i < n; i++, ai += as, bi += bs) o[oi + i] = Math.trunc(Math.pow(a[ai], b[bi])) || 0; },
  maximum: (a, ai, as, b, bi, bs, o, oi, n) => { for (let i = 0; i < n; i++, ai += as, bi += bs) { const x = a[ai]; const y = b[bi]; o[oi + i] = x > y ? x : y; } },
  minimum: (a, ai, as, b, bi, bs, o, oi, n) => { for (let i = 0; i < n; i++, ai += as, bi += bs) { const x = a[ai]; const y = b[bi]; o[oi + i] = x < y ? x : y; } },
  mod: (a, ai, as, b, bi, bs, o, oi, n) => { for (let i = 0; i < n; i++, ai += as, bi += bs) o[oi + i] = floorModI(a[ai], b[bi]); },
};

// Comparisons (any compute dtype -> bool); every comparison with NaN is false except ne.
// `+(cond)` rather than `cond ? 1 : 0`: V8 compiles it without a branch (random masks
// would mispredict half the time).
const CMP: Partial<Record<BinaryOp, Kernel<Num, Uint8Array>>> = {
  eq: (a, ai, as, b, bi, bs, o, oi, n) => { for (let i = 0; i < n; i++, ai += as, bi += bs) o[oi + i] = +(a[ai] === b[bi]); },
  ne: (a, ai, as, b, bi, bs, o, oi, n) => { for (let i = 0; i < n; i++, ai += as, bi += bs) o[oi + i] = +(a[ai] !== b[bi]); },
  lt: (a, ai, as, b, bi, bs, o, oi, n) => { for (let i = 0; i < n; i++, ai += as, bi += bs) o[oi + i] = +(a[ai] < b[bi]); },
  le: (a, ai, as, b, bi, bs, o, oi, n) => { for (let i = 0; i < n; i++, ai += as, bi += bs) o[oi + i] = +(a[ai] <= b[bi]); },
  gt: (a, ai, as, b, bi, bs, o, oi, n) => { for (let i = 0; i < n; i++, ai += as, bi += bs) o[oi + i] = +(a[ai] > b[bi]); },
  ge: (a, ai, as, b, bi, bs, o, oi, n) => { for (let i = 0; i < n; i++, ai += as, bi += bs) o[oi + i] = +(a[ai] >= b[bi]); },
  // Logical ops (core passes bool; any non-zero, NaN included, is true).
  and: (a, ai, as, b, bi, bs, o, oi, n) => { for (let i = 0; i < n; i++, ai += as, bi += bs) o[oi + i] = +(a[ai] !== 0) & +(b[bi] !== 0); },
  or: (a, ai, as, b, bi, bs, o, oi, n) => { for (let i = 0; i < n; i++, ai += as, bi += bs) o[oi + i] = +(a[ai] !== 0) | +(b[bi] !== 0); },
};

function alloc(dtype: ComputeDType, n: number): StorageArray {
  switch (dtype) {
    case 'f32':
      return newF32(n);
    case 'i32':
      return newI32(n);
    default:
      return newU8(n);
  }
}

export function binaryKernel(
  op: BinaryOp,
  a: StorageArray,
  aShape: Shape,
  b: StorageArray,
  bShape: Shape,
  dtype: ComputeDType,
  outShape: Shape,
  outDtype: ComputeDType,
): StorageArray {
  let kernel: Kernel<never, never> | undefined;
  if (op in CMP) kernel = CMP[op];
  else if (dtype === 'f32') kernel = F32[op];
  else kernel = INT[op];
  if (!kernel) throw new BackendError('cpu.binary', `op ${op} is not defined for dtype ${dtype}`);
  const size = sizeOf(outShape);
  const out = alloc(outDtype, size);
  if (size === 0) return out;
  const run = kernel as unknown as Kernel<StorageArray, StorageArray>;
  const plan = planBroadcast(outShape, [aShape, bShape]);
  const { rowLen, rows } = plan;
  const as = plan.rowStrides[0];
  const bs = plan.rowStrides[1];
  const contig = dtype === 'f32' && as === 1 && bs === 1 ? F32_CONTIG[op] : undefined;
  if (contig) {
    const fa = a as Float32Array;
    const fb = b as Float32Array;
    const fo = out as Float32Array;
    if (rows === 1) {
      contig(fa, 0, fb, 0, fo, 0, rowLen);
      return out;
    }
    const odo = new Odometer(plan);
    const offs = odo.offsets;
    for (let r = 0, oi = 0; r < rows; r++, oi += rowLen) {
      contig(fa, offs[0], fb, offs[1], fo, oi, rowLen);
      odo.next();
    }
    return out;
  }
  if (rows === 1) {
    run(a, 0, as, b, 0, bs, out, 0, rowLen);
    return out;
  }
  const odo = new Odometer(plan);
  const offs = odo.offsets;
  for (let r = 0, oi = 0; r < rows; r++, oi += rowLen) {
    run(a, offs[0], as, b, offs[1], bs, out, oi, rowLen);
    odo.next();
  }
  return out;
}
