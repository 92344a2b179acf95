/**
 * The pure arithmetic of the NCCL collective (no GPU needed, unit-tested on CPU machines):
 * argument checks, the fixed-size call header every rank publishes in a call's first step
 * (one small ncclAllGather), the verdict every rank reaches identically from all headers,
 * and the byte counts / offsets of the payload step.
 */
import { CollectiveError, DTYPES, type DType, type ReduceKind } from '@kiln/core';

export const OPS = ['', 'allToAll', 'allReduce', 'allGather', 'barrier'] as const;
export type OpName = Exclude<(typeof OPS)[number], ''>;
export const REDUCE_KINDS: readonly ReduceKind[] = ['sum', 'max', 'min', 'mean'];
/** Tensors passed to collectives have at most this many dims (the header holds the shape). */
export const MAX_DIMS = 16;
/** Kinds of local argument errors, so peers can say what went wrong on the failing rank. */
export const LOCAL_ERRORS = ['Error', 'ShapeError', 'DTypeError', 'ArgumentError', 'DisposedTensorError', 'BackendError'];

export const STATUS_OK = 1;
export const STATUS_LOCAL_ERROR = 2;

/** Header layout (Float64 words): fixed fields, the shape, then one send count per rank. */
export const H = { STATUS: 0, OP: 1, SEQ: 2, DTYPE: 3, NDIM: 4, AUX: 5, BYTES: 6, SHAPE: 7, COUNTS: 7 + MAX_DIMS } as const;
export const headerWords = (worldSize: number): number => H.COUNTS + worldSize;

/** What one rank says about its call. */
export interface CallHeader {
  status: number;
  op: number;
  seq: number;
  /** Index in core's DTYPES, -1 for none (barrier). */
  dtype: number;
  shape: number[];
  /** allReduce: index in REDUCE_KINDS; local error: index in LOCAL_ERRORS. */
  aux: number;
  bytes: number;
  /** allToAll: rows sent to each rank (zeros for the other ops). */
  counts: number[];
}

export const opCode = (op: OpName): number => OPS.indexOf(op);
const opLabel = (code: number): string => OPS[code] || `op#${code}`;
const fmt = (s: readonly number[]): string => `[${s.join(', ')}]`;
const same = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

/** Encodes one rank's header (a local error is announced with its kind, so peers fail at once). */
export function encodeHeader(worldSize: number, h: Omit<CallHeader, 'status'> | { op: number; seq: number; error: unknown }): Float64Array {
  const out = new Float64Array(headerWords(worldSize));
  out[H.OP] = h.op;
  out[H.SEQ] = h.seq;
  if ('error' in h) {
    out[H.STATUS] = STATUS_LOCAL_ERROR;
    const name = h.error instanceof Error ? h.error.name : '';
    out[H.AUX] = Math.max(0, LOCAL_ERRORS.indexOf(name));
    out[H.DTYPE] = -1;
    return out;
  }
  out[H.STATUS] = STATUS_OK;
  out[H.DTYPE] = h.dtype;
  out[H.NDIM] = h.shape.length;
  out[H.AUX] = h.aux;
  out[H.BYTES] = h.bytes;
  h.shape.forEach((d, i) => (out[H.SHAPE + i] = d));
  h.counts.forEach((c, i) => (out[H.COUNTS + i] = c));
  return out;
}

/** Decodes the gathered headers (worldSize of them, back to back). */
export function decodeHeaders(worldSize: number, words: Float64Array): CallHeader[] {
  const hw = headerWords(worldSize);
  if (words.length !== hw * worldSize) throw new CollectiveError('collective', `gathered ${words.length} header words, expected ${hw * worldSize}`);
  const out: CallHeader[] = [];
  for (let q = 0; q < worldSize; q++) {
    const b = q * hw;
    const ndim = words[b + H.NDIM];
    out.push({
      status: words[b + H.STATUS],
      op: words[b + H.OP],
      seq: words[b + H.SEQ],
      dtype: words[b + H.DTYPE],
      shape: Array.from(words.subarray(b + H.SHAPE, b + H.SHAPE + ndim)),
      aux: words[b + H.AUX],
      bytes: words[b + H.BYTES],
      counts: Array.from(words.subarray(b + H.COUNTS, b + H.COUNTS + worldSize)),
    });
  }
  return out;
}

/**
 * Checks that every rank issued the same call with compatible arguments. Every rank runs it
 * on the same headers, so every rank reaches the same verdict (and the group stays in step).
 */
export function validateHeaders(op: OpName, seq: number, peers: readonly CallHeader[]): void {
  const failed = peers.map((p, q) => (p.status !== STATUS_OK ? q : -1)).filter((q) => q >= 0);
  if (failed.length > 0) {
    const what = failed.map((q) => `rank ${q} (${LOCAL_ERRORS[peers[q].aux] ?? 'Error'})`).join(', ');
    throw new CollectiveError(op, `call #${seq} failed on ${what}: that rank rejected its arguments; see its error`);
  }
  const differs = peers.some((p) => p.op !== peers[0].op || p.seq !== peers[0].seq || (p.op === opCode('allReduce') && p.aux !== peers[0].aux));
  if (differs) {
    const calls = peers.map((p, q) => `rank ${q}: ${opLabel(p.op)}${p.op === opCode('allReduce') ? `(${REDUCE_KINDS[p.aux] ?? p.aux})` : ''} #${p.seq}`);
    throw new CollectiveError(op, `ranks issued different collectives (${calls.join('; ')}); every rank must call the same collectives in the same order`);
  }
  if (op === 'barrier') return;
  const dtypes = peers.map((p) => DTYPES[p.dtype]);
  if (dtypes.some((d) => d !== dtypes[0])) {
    throw new CollectiveError(op, `ranks passed different dtypes (${dtypes.map((d, q) => `rank ${q}: ${d}`).join(', ')}); every rank must pass the same dtype`);
  }
  if (op === 'allReduce') {
    if (peers.some((p) => !same(p.shape, peers[0].shape))) {
      throw new CollectiveError(op, `ranks passed different shapes (${peers.map((p, q) => `rank ${q}: ${fmt(p.shape)}`).join(', ')}); allReduce needs equal shapes`);
    }
    return;
  }
  const trailing = peers.map((p) => p.shape.slice(1));
  if (trailing.some((s) => !same(s, trailing[0]))) {
    throw new CollectiveError(op, `ranks passed different trailing shapes (${peers.map((p, q) => `rank ${q}: ${fmt(p.shape)}`).join(', ')}); ${op} needs the same shape after axis 0`);
  }
}

/** Row counts of an allToAll (one rule for every collective: core's). */
export { resolveSendCounts } from '@kiln/core';

/** Exclusive prefix sums: offsets[i] = sum(xs[0..i-1]); offsets has xs.length + 1 entries. */
export function prefixOffsets(xs: readonly number[]): number[] {
  const out = [0];
  for (const x of xs) out.push(out[out.length - 1] + x);
  return out;
}

/** Bytes of one row (axis-0 slice) of a tensor of `shape` and `dtype`. */
export function rowBytes(shape: readonly number[], bytesPerElement: number): number {
  let n = bytesPerElement;
  for (let i = 1; i < shape.length; i++) n *= shape[i];
  return n;
}

export interface AllToAllPlan {
  /** Bytes this rank sends to each rank (its rows for that rank). */
  sendBytes: number[];
  /** Bytes this rank receives from each rank. */
  recvBytes: number[];
  /** Rows received from each rank (the result's recvCounts). */
  recvCounts: number[];
  /** Rows of the result. */
  recvRows: number;
}

/** What `rank` sends and receives, from every rank's header (counts[r] = rows rank q sends to r). */
export function allToAllPlan(rank: number, peers: readonly CallHeader[], bytesPerRow: number): AllToAllPlan {
  const sendCounts = peers[rank].counts;
  const recvCounts = peers.map((p) => p.counts[rank]);
  return {
    sendBytes: sendCounts.map((c) => c * bytesPerRow),
    recvBytes: recvCounts.map((c) => c * bytesPerRow),
    recvCounts,
    recvRows: recvCounts.reduce((a, b) => a + b, 0),
  };
}

export interface AllGatherPlan {
  /** Bytes contributed by each rank. */
  recvBytes: number[];
  /** Rows of the result (sum of every rank's leading dim). */
  rows: number;
  /** Every rank contributes the same number of bytes (ncclAllGather applies). */
  equal: boolean;
}

export function allGatherPlan(peers: readonly CallHeader[], bytesPerRow: number): AllGatherPlan {
  const rows = peers.map((p) => p.shape[0]);
  const recvBytes = rows.map((r) => r * bytesPerRow);
  return { recvBytes, rows: rows.reduce((a, b) => a + b, 0), equal: recvBytes.every((b) => b === recvBytes[0]) };
}

/** How allReduce runs a dtype: natively in NCCL, through f32 (cast, reduce, cast back), or not at all. */
export function reduceRoute(dtype: DType, op: ReduceKind): { kind: 'native'; ncclOp: 'sum' | 'max' | 'min' } | { kind: 'via-f32' } | { kind: 'error'; message: string } {
  if (op === 'mean' && (dtype === 'i32' || dtype === 'u8' || dtype === 'bool')) {
    return { kind: 'error', message: `mean is undefined for ${dtype} (an integer mean would truncate); cast to f32 first, or sum and divide` };
  }
  if (dtype === 'bool' && op === 'sum') return { kind: 'error', message: 'sum is undefined for bool; use max (logical or) or min (logical and)' };
  if (dtype === 'f16' || dtype === 'bf16' || dtype === 'e4m3' || dtype === 'e5m2') return { kind: 'via-f32' };
  // f32 mean: an NCCL sum, then one division by N (as the CPU backend: f32 sum, then / N).
  return { kind: 'native', ncclOp: op === 'mean' ? 'sum' : op };
}

/** Element codes NCCL reduces a dtype as (bool as u8: max = or, min = and). */
export function ncclDtypeCode(dtype: DType): number {
  return DTYPES.indexOf(dtype === 'bool' ? 'u8' : dtype);
}
