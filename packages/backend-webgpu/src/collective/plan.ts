/**
 * The pure part of the WebGPU collective: argument checks, the header every rank contributes
 * to a call, the verdict every rank reaches identically from all headers, and allReduce's
 * host arithmetic. Mirrors the CPU collective's semantics and wording
 * (packages/backend-cpu/src/collective) and the CUDA collective's plan.ts.
 */
import {
  CollectiveError,
  DTypeError,
  FP8_DECODE_TABLE,
  allocStorage,
  encodeFp8Value,
  f16BitsToF32,
  f32ToF16Bits,
  type DType,
  type ReduceKind,
  type StorageArray,
} from '@kiln/core';

export const OPS = ['allToAll', 'allReduce', 'allGather', 'barrier'] as const;
export type OpName = (typeof OPS)[number];
export const REDUCE_KINDS: readonly ReduceKind[] = ['sum', 'max', 'min', 'mean'];
/** Kinds of local argument errors, so peers can say what went wrong on the failing rank. */
export const LOCAL_ERRORS = ['Error', 'ShapeError', 'DTypeError', 'ArgumentError', 'DisposedTensorError', 'BackendError'];

/** What one rank says about its call. */
export type CallHeader =
  | {
      readonly ok: true;
      readonly op: OpName;
      readonly seq: number;
      /** Undefined for a barrier. */
      readonly dtype: DType | undefined;
      readonly shape: readonly number[];
      /** allReduce only. */
      readonly reduce?: ReduceKind;
      /** allToAll: rows sent to each rank. */
      readonly counts: readonly number[];
    }
  | { readonly ok: false; readonly op: OpName; readonly seq: number; readonly errorName: string };

const fmt = (s: readonly number[]): string => `[${s.join(', ')}]`;
const same = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * Checks that every rank issued the same call with compatible arguments. Every rank runs it
 * on the same headers, so every rank reaches the same verdict and the group stays in step.
 */
export function validateHeaders(op: OpName, seq: number, peers: readonly CallHeader[]): void {
  const failed = peers.map((p, q) => (p.ok ? -1 : q)).filter((q) => q >= 0);
  if (failed.length > 0) {
    const what = failed
      .map((q) => {
        const p = peers[q];
        return `rank ${q} (${!p.ok && LOCAL_ERRORS.includes(p.errorName) ? p.errorName : 'Error'})`;
      })
      .join(', ');
    throw new CollectiveError(op, `call #${seq} failed on ${what}: that rank rejected its arguments; see its error`);
  }
  const ok = peers as readonly Extract<CallHeader, { ok: true }>[];
  const differs = ok.some((p) => p.op !== ok[0].op || p.seq !== ok[0].seq || p.reduce !== ok[0].reduce);
  if (differs) {
    const calls = ok.map((p, q) => `rank ${q}: ${p.op}${p.op === 'allReduce' ? `(${p.reduce})` : ''} #${p.seq}`);
    throw new CollectiveError(op, `ranks issued different collectives (${calls.join('; ')}); every rank must call the same collectives in the same order`);
  }
  if (op === 'barrier') return;
  if (ok.some((p) => p.dtype !== ok[0].dtype)) {
    throw new CollectiveError(op, `ranks passed different dtypes (${ok.map((p, q) => `rank ${q}: ${p.dtype}`).join(', ')}); every rank must pass the same dtype`);
  }
  if (op === 'allReduce') {
    if (ok.some((p) => !same(p.shape, ok[0].shape))) {
      throw new CollectiveError(op, `ranks passed different shapes (${ok.map((p, q) => `rank ${q}: ${fmt(p.shape)}`).join(', ')}); allReduce needs equal shapes`);
    }
    return;
  }
  if (ok.some((p) => !same(p.shape.slice(1), ok[0].shape.slice(1)))) {
    throw new CollectiveError(op, `ranks passed different trailing shapes (${ok.map((p, q) => `rank ${q}: ${fmt(p.shape)}`).join(', ')}); only axis 0 may differ`);
  }
}

/** Row counts of an allToAll (one rule for every collective: core's). */
export { resolveSendCounts } from '@kiln/core';

/** Elements of one row (axis-0 slice) of `shape`. */
export function rowElements(shape: readonly number[]): number {
  let n = 1;
  for (let i = 1; i < shape.length; i++) n *= shape[i];
  return n;
}

/** Exclusive prefix sums: out[i] = sum(xs[0..i-1]); xs.length + 1 entries. */
export function prefixOffsets(xs: readonly number[]): number[] {
  const out = [0];
  for (const x of xs) out.push(out[out.length - 1] + x);
  return out;
}

/**
 * The codes rank `me` receives in an allToAll: from every rank q, in rank order, the rows
 * [sum(q.counts[0..me-1]), +q.counts[me]) of q's payload.
 */
export function allToAllCodes(me: number, dtype: DType, rowElems: number, counts: readonly (readonly number[])[], payloads: readonly StorageArray[]): { codes: StorageArray; recvCounts: number[]; rows: number } {
  const recvCounts = counts.map((c) => c[me]);
  const rows = recvCounts.reduce((a, b) => a + b, 0);
  const out = allocStorage(dtype, rows * rowElems) as Uint8Array;
  let at = 0;
  for (let q = 0; q < payloads.length; q++) {
    const lo = prefixOffsets(counts[q])[me] * rowElems;
    const n = recvCounts[q] * rowElems;
    if (n > 0) out.set((payloads[q] as Uint8Array).subarray(lo, lo + n), at);
    at += n;
  }
  return { codes: out, recvCounts, rows };
}

/** Every payload concatenated in rank order (allGather). */
export function concatCodes(dtype: DType, payloads: readonly StorageArray[]): StorageArray {
  const out = allocStorage(dtype, payloads.reduce((a, p) => a + p.length, 0)) as Uint8Array;
  let at = 0;
  for (const p of payloads) {
    out.set(p as Uint8Array, at);
    at += p.length;
  }
  return out;
}

/** Throws a DTypeError when `op` is not defined for `dtype` (as the CPU collective). */
export function checkReducible(dtype: DType, op: ReduceKind, opName: string): void {
  if (op === 'mean' && (dtype === 'i32' || dtype === 'u8' || dtype === 'bool')) {
    throw new DTypeError(opName, `'mean' is not defined for ${dtype} tensors (the mean of integers is not an integer); cast to f32 first, or use 'sum' and divide`);
  }
  if (op === 'sum' && dtype === 'bool') {
    throw new DTypeError(opName, `'sum' is not defined for bool tensors; use 'max' (logical or), 'min' (logical and), or cast to i32 first`);
  }
}

type NumArray = Float32Array | Int32Array | Uint8Array;

/** acc[i] = acc[i] (op) src[i]; typed-array stores round (f32) or wrap (ints). */
function fold(acc: NumArray, src: ArrayLike<number>, op: ReduceKind | 'or' | 'and'): void {
  const n = acc.length;
  switch (op) {
    case 'max':
      for (let i = 0; i < n; i++) acc[i] = Math.max(acc[i], src[i]);
      break;
    case 'min':
      for (let i = 0; i < n; i++) acc[i] = Math.min(acc[i], src[i]);
      break;
    case 'or':
      for (let i = 0; i < n; i++) acc[i] = acc[i] | src[i] ? 1 : 0;
      break;
    case 'and':
      for (let i = 0; i < n; i++) acc[i] = acc[i] & src[i] ? 1 : 0;
      break;
    default:
      for (let i = 0; i < n; i++) acc[i] += src[i];
  }
}

/**
 * allReduce in the host, with the CPU collective's numerics: contributions folded in rank
 * order; floats accumulate in f32 (each step rounded to f32); f16/bf16/FP8 decoded exactly to
 * f32 and rounded back once (round half to even, no saturation); 'mean' = f32 sum / N;
 * integer sums wrap; bool max = or, min = and; max/min propagate NaN.
 * `checkReducible` must have accepted (dtype, op).
 */
export function reduceCodes(dtype: DType, op: ReduceKind, payloads: readonly StorageArray[]): StorageArray {
  const N = payloads.length;
  const n = payloads[0].length;
  if (dtype === 'f32' || dtype === 'i32' || dtype === 'u8' || dtype === 'bool') {
    const acc = (payloads[0] as NumArray).slice();
    const kind = dtype === 'bool' ? (op === 'max' ? 'or' : 'and') : op;
    for (let q = 1; q < N; q++) fold(acc, payloads[q], kind);
    if (op === 'mean') for (let i = 0; i < n; i++) acc[i] /= N;
    return acc;
  }
  let decode: (code: number) => number;
  let encode: (x: number) => number;
  if (dtype === 'bf16') {
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    decode = (c) => {
      u[0] = c << 16;
      return f[0];
    };
    encode = (x) => {
      f[0] = x;
      const bits = u[0];
      return (bits & 0x7fffffff) > 0x7f800000 ? 0x7fc0 : (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16;
    };
  } else if (dtype === 'f16') {
    decode = f16BitsToF32;
    encode = f32ToF16Bits;
  } else {
    const table = FP8_DECODE_TABLE[dtype];
    decode = (c) => table[c];
    encode = (x) => encodeFp8Value(x, dtype, false);
  }
  const acc = new Float32Array(n);
  const tmp = new Float32Array(n);
  for (let q = 0; q < N; q++) {
    const codes = payloads[q];
    const target = q === 0 ? acc : tmp;
    for (let i = 0; i < n; i++) target[i] = decode(codes[i]);
    if (q > 0) fold(acc, tmp, op);
  }
  if (op === 'mean') for (let i = 0; i < n; i++) acc[i] /= N;
  const out = allocStorage(dtype, n);
  for (let i = 0; i < n; i++) out[i] = encode(acc[i]);
  return out;
}
