/**
 * Moving storage codes in host memory: the rows an allToAll delivers to one rank and the
 * concatenation of an allGather. Codes are copied bit for bit (FP8, bf16, NaN payloads).
 */
import { allocStorage, type DType, type StorageArray } from '../dtype.js';

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
