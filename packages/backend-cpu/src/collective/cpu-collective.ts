/**
 * `CpuCollective`: the Collective of one rank of an in-process group (threads sharing
 * SharedArrayBuffers). Every call is one or more *phases*: a rank writes its header and the
 * next chunk of its payload into the halves of the shared memory that belong to the phase's
 * parity, publishes its arrival (ARRIVE[rank] = phase), then waits until every peer has
 * arrived and reads what they wrote. Double buffering by phase parity makes one
 * synchronisation per phase enough: a rank can only overwrite the buffers of phase p + 2
 * after every peer arrived at p + 1, which each does only after reading phase p.
 * The full protocol is described in docs/collectives.md.
 */
import {
  ArgumentError,
  CollectiveError,
  CollectiveTimeoutError,
  DTYPES,
  DisposedTensorError,
  ShapeError,
  dtypeInfo,
  fromStorage,
  resolveSendCounts,
  type AllToAllResult,
  type Backend,
  type Collective,
  type CollectiveOptions,
  type DType,
  type ReduceKind,
  type StorageArray,
  type Tensor,
} from '@kiln/core';
import {
  AbortKind,
  H,
  LeftState,
  MAX_DIMS,
  W,
  abortGroup,
  arriveWord,
  assertGroup,
  doorbellWord,
  headerWords,
  joinedWord,
  leftWord,
  ringAll,
  type CpuCollectiveGroup,
} from './group.js';
import { copyOf, newStorage, recycle } from '../pool.js';
import { CpuData } from '../storage.js';
import { REDUCE_KINDS, checkReducible, createReduce } from './reduce.js';

export const DEFAULT_TIMEOUT_MS = 60_000;
/** allReduce payloads from this size (on 3+ ranks) use reduce-scatter + all-gather per chunk. */
const SCATTER_MIN_BYTES = 64 * 1024;

const OPS = ['', 'allToAll', 'allReduce', 'allGather', 'barrier'] as const;
type OpName = Exclude<(typeof OPS)[number], ''>;
const opCode = (op: OpName): number => OPS.indexOf(op);
const opLabel = (code: number): string => OPS[code] || `op#${code}`;

/** Kinds of local argument errors, so peers can say what went wrong on the failing rank. */
const LOCAL_ERRORS = ['Error', 'ShapeError', 'DTypeError', 'ArgumentError', 'DisposedTensorError', 'BackendError'];

const STATUS_OK = 1;
const STATUS_LOCAL_ERROR = 2;

export interface JoinCpuCollectiveOptions {
  /** Default timeout of every call, in ms (default 60000); a call's own `timeoutMs` wins. */
  readonly timeoutMs?: number;
}

/** What one rank contributes to a call: its header fields and the bytes it publishes. */
interface Contribution {
  dtype: DType | undefined;
  shape: readonly number[];
  /** allToAll: rows per destination (empty for the other ops). */
  counts: readonly number[];
  aux: number;
  bytes: Uint8Array;
  /** The codes behind `bytes` when they are a pooled copy to recycle after the call. */
  pooled?: StorageArray;
  /** Where the result tensor is created (the input's backend). */
  backend: Backend | undefined;
}

/** A peer's header as read back from shared memory. */
interface PeerHeader {
  status: number;
  op: number;
  seq: number;
  dtype: number;
  shape: number[];
  aux: number;
  bytes: number;
  counts: number[];
}

type WaitsAsync = (
  typedArray: Int32Array,
  index: number,
  value: number,
  timeout?: number,
) => { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> };
const waitAsync = (Atomics as unknown as { waitAsync?: WaitsAsync }).waitAsync;
const noop = (): void => {};
const MAX_TIMER_MS = 2 ** 31 - 1;

function isTensorLike(x: unknown): x is Tensor {
  const t = x as Tensor | null;
  return !!t && typeof t === 'object' && typeof t.data === 'function' && Array.isArray(t.shape) && typeof t.dtype === 'string';
}

/**
 * A private copy of a tensor's codes. CPU tensors are copied synchronously into pooled
 * storage (recycled after the call; a fresh multi-MB array costs far more than the copy);
 * other backends are read with `data()`.
 */
async function payloadOf(t: Tensor): Promise<{ bytes: Uint8Array; pooled?: StorageArray }> {
  // The wire format is each dtype's real width; the float64 reference mode holds f32 as f64.
  if ((t.backend as { f32Precision?: string } | undefined)?.f32Precision === 'f64') {
    throw new ArgumentError('collective', 'tensors of a CpuBackend in float64 reference mode cannot be exchanged (its f32 tensors are held as float64); use a default CpuBackend');
  }
  const id: unknown = t.dataId;
  if (id instanceof CpuData && !id.released && id.values.length === t.size) {
    const pooled = copyOf(id.values);
    return { bytes: bytesOf(pooled), pooled };
  }
  return { bytes: bytesOf(await t.data()) };
}

const bytesOf = (codes: StorageArray): Uint8Array => new Uint8Array(codes.buffer, codes.byteOffset, codes.byteLength);
export class CpuCollective implements Collective {
  readonly worldSize: number;
  readonly rank: number;
  /** The group this rank belongs to. */
  readonly group: CpuCollectiveGroup;
  private readonly ctrl: Int32Array;
  private readonly headers: Float64Array;
  private readonly hw: number;
  private readonly slotBytes: number;
  private readonly defaultTimeoutMs: number;
  /** The last phase this rank arrived at (== ARRIVE[rank]). */
  private phase = 0;
  /** Calls issued so far (each call carries its number so that ranks can check they agree). */
  private seq = 0;
  private closed = false;
  private tail: Promise<unknown> = Promise.resolve();

  /** Use `joinCpuCollective(group, rank)`. */
  constructor(group: CpuCollectiveGroup, rank: number, options: JoinCpuCollectiveOptions = {}) {
    const op = 'joinCpuCollective';
    assertGroup(group, op);
    if (!Number.isInteger(rank) || rank < 0 || rank >= group.worldSize) {
      throw new ArgumentError(op, `rank must be an integer in [0, ${group.worldSize}), got ${String(rank)}`);
    }
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    checkTimeout(timeoutMs, op);
    this.group = group;
    this.worldSize = group.worldSize;
    this.rank = rank;
    this.ctrl = new Int32Array(group.control);
    this.headers = new Float64Array(group.headers);
    this.hw = headerWords(group.worldSize);
    this.slotBytes = group.slotBytes;
    this.defaultTimeoutMs = timeoutMs;
    if (Atomics.compareExchange(this.ctrl, joinedWord(this.worldSize, rank), 0, 1) !== 0) {
      throw new CollectiveError(op, `rank ${rank} of this group was already joined; every rank joins exactly once (create a new group to start over)`);
    }
  }

  // ---- public API ------------------------------------------------------------------------

  allToAll(send: Tensor, sendCounts?: readonly number[], options?: CollectiveOptions): Promise<AllToAllResult> {
    return this.enqueue('allToAll', options, async () => {
      const t = assertTensor(send, 'allToAll', 'send');
      const counts = resolveSendCounts('allToAll', t.shape, this.worldSize, sendCounts);
      return { dtype: t.dtype, shape: t.shape, counts, aux: 0, ...(await payloadOf(t)), backend: t.backend };
    }, (c, peers) => this.planAllToAll(c, peers));
  }

  allReduce(x: Tensor, op: ReduceKind = 'sum', options?: CollectiveOptions): Promise<Tensor> {
    return this.enqueue('allReduce', options, async () => {
      const t = assertTensor(x, 'allReduce', 'x');
      if (!REDUCE_KINDS.includes(op)) {
        throw new ArgumentError('allReduce', `unknown reduction ${JSON.stringify(op)}; expected one of ${REDUCE_KINDS.join(', ')}`);
      }
      checkReducible(t.dtype, op, 'allReduce');
      return { dtype: t.dtype, shape: t.shape, counts: [], aux: REDUCE_KINDS.indexOf(op), ...(await payloadOf(t)), backend: t.backend };
    }, (c, peers) => this.planAllReduce(c, peers));
  }

  allGather(x: Tensor, options?: CollectiveOptions): Promise<Tensor> {
    return this.enqueue('allGather', options, async () => {
      const t = assertTensor(x, 'allGather', 'x');
      if (t.shape.length === 0) throw new ShapeError('allGather', 'x must have at least one dimension (it is concatenated along axis 0), got a scalar');
      return { dtype: t.dtype, shape: t.shape, counts: [], aux: 0, ...(await payloadOf(t)), backend: t.backend };
    }, (c, peers) => this.planAllGather(c, peers));
  }

  barrier(options?: CollectiveOptions): Promise<void> {
    return this.enqueue('barrier', options, async () => ({ dtype: undefined, shape: [], counts: [], aux: 0, bytes: new Uint8Array(0), backend: undefined }), () => ({
      phases: 1,
      publish: noop,
      consume: noop,
      finish: () => undefined,
    }));
  }

  /**
   * Leaves the group: later calls reject with a CollectiveError. Calls already issued still
   * run; once they are done, peers waiting for this rank fail fast instead of timing out.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    void this.tail.then(() => {
      Atomics.store(this.ctrl, leftWord(this.worldSize, this.rank), LeftState.CLOSED);
      ringAll(this.ctrl, this.worldSize);
    });
  }

  /** Whether `close()` was called. */
  get isClosed(): boolean {
    return this.closed;
  }

  // ---- call machinery --------------------------------------------------------------------

  /**
   * Runs calls one at a time, in the order they were issued. The arguments are checked and
   * the input copied at issue time, so a caller may dispose its input right after the call.
   */
  private enqueue<T>(
    op: OpName,
    options: CollectiveOptions | undefined,
    prepare: () => Promise<Contribution>,
    plan: (c: Contribution, peers: PeerHeader[]) => Plan<T>,
  ): Promise<T> {
    if (this.closed) return Promise.reject(this.closedError(op));
    const prepared = prepare();
    prepared.catch(noop); // reported when the call runs
    const run = this.tail.then(() => this.call(op, options, () => prepared, plan));
    this.tail = run.catch(noop);
    return run;
  }

  private closedError(op: OpName): CollectiveError {
    return new CollectiveError(op, `rank ${this.rank} called ${op} after close(); its collective has left the group`);
  }

  private async call<T>(
    op: OpName,
    options: CollectiveOptions | undefined,
    prepare: () => Promise<Contribution>,
    plan: (c: Contribution, peers: PeerHeader[]) => Plan<T>,
  ): Promise<T> {
    let contribution: Contribution | undefined;
    try {
      return await this.exchange(op, options, async () => (contribution = await prepare()), plan);
    } finally {
      if (contribution?.pooled) recycle(contribution.pooled);
    }
  }

  private async exchange<T>(
    op: OpName,
    options: CollectiveOptions | undefined,
    prepare: () => Promise<Contribution>,
    plan: (c: Contribution, peers: PeerHeader[]) => Plan<T>,
  ): Promise<T> {
    this.throwIfAborted(op, this.seq + 1);
    const seq = ++this.seq;
    let timeoutMs = this.defaultTimeoutMs;
    let contribution: Contribution | undefined;
    let localError: unknown;
    try {
      if (options !== undefined && (options === null || typeof options !== 'object')) {
        throw new ArgumentError(op, `options must be an object like { timeoutMs }, got ${options === null ? 'null' : typeof options}`);
      }
      if (options?.timeoutMs !== undefined) {
        checkTimeout(options.timeoutMs, op);
        timeoutMs = options.timeoutMs;
      }
      contribution = await prepare();
      if (contribution.shape.length > MAX_DIMS) {
        throw new ShapeError(op, `tensors passed to collectives have at most ${MAX_DIMS} dimensions, got ${contribution.shape.length}`);
      }
    } catch (err) {
      localError = err;
      contribution = undefined;
    }
    // The local error (if any) is still announced, so that peers fail at once rather than
    // waiting for this rank until they time out.
    const first = this.phase + 1;
    this.writeHeader(first, op, seq, contribution, localError);
    if (contribution) this.writeChunk(first, contribution.bytes, 0);
    try {
      await this.arriveAndWait(first, op, seq, timeoutMs);
    } catch (err) {
      throw localError ?? err;
    }
    const peers = this.readHeaders(first);
    if (localError !== undefined) throw localError;
    this.validate(op, seq, peers);
    const p = plan(contribution!, peers);
    p.consume(first, 0);
    for (let k = 1; k < p.phases; k++) {
      const phase = first + k;
      p.publish(phase, k);
      await this.arriveAndWait(phase, op, seq, timeoutMs);
      p.consume(phase, k);
    }
    return p.finish();
  }

  private headerBase(phase: number, q: number): number {
    return ((phase & 1) * this.worldSize + q) * this.hw;
  }

  private slotOffset(phase: number, q: number): number {
    return ((phase & 1) * this.worldSize + q) * this.slotBytes;
  }

  private writeHeader(phase: number, op: OpName, seq: number, c: Contribution | undefined, err: unknown): void {
    const h = this.headers;
    const b = this.headerBase(phase, this.rank);
    h.fill(0, b, b + this.hw);
    h[b + H.OP] = opCode(op);
    h[b + H.SEQ] = seq;
    if (!c) {
      h[b + H.STATUS] = STATUS_LOCAL_ERROR;
      const name = err instanceof Error ? err.name : '';
      h[b + H.AUX] = Math.max(0, LOCAL_ERRORS.indexOf(name));
      return;
    }
    h[b + H.STATUS] = STATUS_OK;
    h[b + H.DTYPE] = c.dtype === undefined ? -1 : DTYPES.indexOf(c.dtype);
    h[b + H.NDIM] = c.shape.length;
    h[b + H.AUX] = c.aux;
    h[b + H.BYTES] = c.bytes.byteLength;
    for (let i = 0; i < c.shape.length; i++) h[b + H.SHAPE + i] = c.shape[i];
    for (let i = 0; i < c.counts.length; i++) h[b + H.COUNTS + i] = c.counts[i];
  }

  private readHeaders(phase: number): PeerHeader[] {
    const h = this.headers;
    const out: PeerHeader[] = [];
    for (let q = 0; q < this.worldSize; q++) {
      const b = this.headerBase(phase, q);
      const ndim = h[b + H.NDIM];
      out.push({
        status: h[b + H.STATUS],
        op: h[b + H.OP],
        seq: h[b + H.SEQ],
        dtype: h[b + H.DTYPE],
        shape: Array.from(h.subarray(b + H.SHAPE, b + H.SHAPE + ndim)),
        aux: h[b + H.AUX],
        bytes: h[b + H.BYTES],
        counts: Array.from(h.subarray(b + H.COUNTS, b + H.COUNTS + this.worldSize)),
      });
    }
    return out;
  }

  /** Publishes chunk `k` of this rank's payload in its slot of `phase`'s parity. */
  private writeChunk(phase: number, bytes: Uint8Array, k: number): void {
    const start = k * this.slotBytes;
    const end = Math.min(bytes.byteLength, start + this.slotBytes);
    if (end <= start) return;
    new Uint8Array(this.group.data, this.slotOffset(phase, this.rank), end - start).set(bytes.subarray(start, end));
  }

  /** Checks that every rank issued the same call with compatible arguments; identical verdict on every rank. */
  private validate(op: OpName, seq: number, peers: PeerHeader[]): void {
    const failed = peers.map((p, q) => (p.status === STATUS_LOCAL_ERROR ? q : -1)).filter((q) => q >= 0);
    if (failed.length > 0) {
      const what = failed.map((q) => `rank ${q} (${LOCAL_ERRORS[peers[q].aux] ?? 'Error'})`).join(', ');
      throw new CollectiveError(op, `call #${seq} failed on ${what}: that rank rejected its arguments; see its error`);
    }
    const differs = peers.some((p) => p.op !== peers[0].op || p.seq !== peers[0].seq || (p.op === opCode('allReduce') && p.aux !== peers[0].aux));
    if (differs) {
      const calls = peers.map((p, q) => `rank ${q}: ${opLabel(p.op)}${p.op === opCode('allReduce') ? `(${REDUCE_KINDS[p.aux]})` : ''} #${p.seq}`);
      throw new CollectiveError(op, `ranks issued different collectives (${calls.join('; ')}); every rank must call the same collectives in the same order`);
    }
    if (op === 'barrier') return;
    const dtypes = peers.map((p) => DTYPES[p.dtype]);
    if (dtypes.some((d) => d !== dtypes[0])) {
      throw new CollectiveError(op, `ranks passed different dtypes (${dtypes.map((d, q) => `rank ${q}: ${d}`).join(', ')}); every rank must pass the same dtype`);
    }
    const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;
    const same = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);
    if (op === 'allReduce') {
      if (peers.some((p) => !same(p.shape, peers[0].shape))) {
        throw new CollectiveError(op, `ranks passed different shapes (${peers.map((p, q) => `rank ${q}: ${fmt(p.shape)}`).join(', ')}); allReduce needs equal shapes`);
      }
      return;
    }
    const trailing = peers.map((p) => p.shape.slice(1));
    if (trailing.some((s) => !same(s, trailing[0]))) {
      throw new CollectiveError(op, `ranks passed different trailing shapes (${peers.map((p, q) => `rank ${q}: ${fmt(p.shape)}`).join(', ')}); only axis 0 may differ`);
    }
  }

  private planAllToAll(c: Contribution, peers: PeerHeader[]): Plan<AllToAllResult> {
    const me = this.rank;
    const dtype = c.dtype!;
    const trailing = c.shape.slice(1);
    const rowElems = trailing.reduce((a, b) => a * b, 1);
    const rowBytes = rowElems * dtypeInfo(dtype).bytes;
    const recvCounts = peers.map((p) => p.counts[me]);
    const rows = recvCounts.reduce((a, b) => a + b, 0);
    // rank q sends us rows [sum(q.counts[0..me-1]), +q.counts[me]) of its payload
    const ranges = peers.map((p) => {
      let before = 0;
      for (let d = 0; d < me; d++) before += p.counts[d];
      return { lo: before * rowBytes, hi: (before + p.counts[me]) * rowBytes };
    });
    return this.gatherPlan(c, peers, ranges, newStorage(dtype, rows * rowElems), [rows, ...trailing], (tensor) => ({ tensor, recvCounts }));
  }

  private planAllGather(c: Contribution, peers: PeerHeader[]): Plan<Tensor> {
    const trailing = c.shape.slice(1);
    const rows = peers.reduce((a, p) => a + p.shape[0], 0);
    const ranges = peers.map((p) => ({ lo: 0, hi: p.bytes }));
    return this.gatherPlan(c, peers, ranges, newStorage(c.dtype!, rows * trailing.reduce((a, b) => a * b, 1)), [rows, ...trailing], (t) => t);
  }

  /**
   * Copies byte range [lo, hi) of every rank's payload, in rank order, into `out`. Payloads
   * move through the slots in rounds of `slotBytes`, one round per phase.
   */
  private gatherPlan<T>(
    c: Contribution,
    peers: PeerHeader[],
    ranges: { lo: number; hi: number }[],
    out: StorageArray,
    shape: number[],
    result: (t: Tensor) => T,
  ): Plan<T> {
    const S = this.slotBytes;
    const dst = bytesOf(out);
    const base: number[] = [];
    let at = 0;
    for (const r of ranges) {
      base.push(at);
      at += r.hi - r.lo;
    }
    return {
      phases: chunksOf(peers, S),
      publish: (phase, k) => this.writeChunk(phase, c.bytes, k),
      consume: (phase, k) => {
        const c0 = k * S;
        for (let q = 0; q < peers.length; q++) {
          const lo = Math.max(ranges[q].lo, c0);
          const hi = Math.min(ranges[q].hi, c0 + S);
          if (hi <= lo) continue;
          dst.set(new Uint8Array(this.group.data, this.slotOffset(phase, q) + (lo - c0), hi - lo), base[q] + (lo - ranges[q].lo));
        }
      },
      finish: () => result(this.output(out, shape, c)),
    };
  }

  /**
   * allReduce. Small payloads (or 2 ranks): every rank folds every element of each chunk
   * (one phase per chunk). Larger payloads on 3+ ranks: reduce-scatter then all-gather within
   * each chunk (two phases per chunk): rank r folds only the r-th of N segments of the chunk,
   * publishes the result in its slot of the next phase, and everyone copies all segments.
   * Either way each element is folded in rank order, so the results are the same bits.
   */
  private planAllReduce(c: Contribution, peers: PeerHeader[]): Plan<Tensor> {
    const S = this.slotBytes;
    const N = this.worldSize;
    const dtype = c.dtype!;
    const elemBytes = dtypeInfo(dtype).bytes;
    const total = c.bytes.byteLength;
    const out = newStorage(dtype, total / elemBytes);
    const reduce = createReduce(dtype, REDUCE_KINDS[c.aux], N);
    const chunks = chunksOf(peers, S);
    const data = this.group.data;
    const offsets = (phase: number, at: number) => {
      const o: number[] = [];
      for (let q = 0; q < N; q++) o.push(this.slotOffset(phase, q) + at);
      return o;
    };
    const chunkElems = (k: number) => Math.max(0, Math.min(S, total - k * S)) / elemBytes;
    const finish = () => this.output(out, c.shape, c);
    if (N < 3 || total < SCATTER_MIN_BYTES) {
      return {
        phases: chunks,
        publish: (phase, k) => this.writeChunk(phase, c.bytes, k),
        consume: (phase, k) => {
          const n = chunkElems(k);
          if (n > 0) reduce(data, offsets(phase, 0), n, out.buffer, out.byteOffset + k * S);
        },
        finish,
      };
    }
    // segment q of a chunk of n elements: [floor(q n / N), floor((q + 1) n / N))
    const seg = (n: number, q: number) => Math.floor((q * n) / N);
    return {
      phases: 2 * chunks,
      publish: (phase, k) => {
        if (k % 2 === 0) this.writeChunk(phase, c.bytes, k / 2);
        // odd phases: the reduced segment was already written when the even phase was consumed
      },
      consume: (phase, k) => {
        const chunk = k >> 1;
        const n = chunkElems(chunk);
        if (n === 0) return;
        if (k % 2 === 0) {
          // fold my segment; the result goes to my slot of the next phase (free: every peer
          // has arrived here, so none still reads what that buffer held two phases ago)
          const a = seg(n, this.rank);
          const b = seg(n, this.rank + 1);
          if (b > a) reduce(data, offsets(phase, a * elemBytes), b - a, data, this.slotOffset(phase + 1, this.rank) + a * elemBytes);
        } else {
          const dst = bytesOf(out);
          for (let q = 0; q < N; q++) {
            const a = seg(n, q) * elemBytes;
            const b = seg(n, q + 1) * elemBytes;
            if (b > a) dst.set(new Uint8Array(data, this.slotOffset(phase, q) + a, b - a), chunk * S + a);
          }
        }
      },
      finish,
    };
  }

  /** The result tensor on the input's backend; the staging array goes back to the pool. */
  private output(out: StorageArray, shape: readonly number[], c: Contribution): Tensor {
    const t = fromStorage(out, shape, c.dtype!, { backend: c.backend });
    recycle(out);
    return t;
  }

  // ---- synchronisation -------------------------------------------------------------------

  /** Publishes arrival at `phase` and waits until every peer has arrived there too. */
  private async arriveAndWait(phase: number, op: OpName, seq: number, timeoutMs: number): Promise<void> {
    const n = this.worldSize;
    this.phase = phase;
    Atomics.store(this.ctrl, arriveWord(n, this.rank), phase);
    for (let q = 0; q < n; q++) {
      if (q === this.rank) continue;
      Atomics.add(this.ctrl, doorbellWord(n, q), 1);
      Atomics.notify(this.ctrl, doorbellWord(n, q));
    }
    const deadline = Date.now() + timeoutMs;
    const bell = doorbellWord(n, this.rank);
    for (;;) {
      // Read the doorbell before checking: any change after this read rings it again.
      const ring = Atomics.load(this.ctrl, bell);
      const missing = this.missing(phase);
      if (missing.length === 0) return;
      if (Atomics.load(this.ctrl, W.ABORT_KIND) !== 0) throw this.abortError(op, seq, missing);
      for (const q of missing) {
        const left = Atomics.load(this.ctrl, leftWord(n, q));
        if (left !== LeftState.ACTIVE) {
          throw new CollectiveError(op, `rank ${this.rank}, call #${seq}: rank ${q} ${left === LeftState.FAILED ? 'failed' : 'closed its collective'} before joining this ${op}`);
        }
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        abortGroup(this.ctrl, n, AbortKind.TIMEOUT, this.rank, opCode(op), seq);
        throw new CollectiveTimeoutError(
          op,
          `rank ${this.rank} timed out after ${timeoutMs} ms in call #${seq}: rank${missing.length > 1 ? 's' : ''} ${missing.join(', ')} did not arrive; the group is aborted`,
        );
      }
      await sleepOn(this.ctrl, bell, ring, remaining);
    }
  }

  private missing(phase: number): number[] {
    const out: number[] = [];
    for (let q = 0; q < this.worldSize; q++) if (Atomics.load(this.ctrl, arriveWord(this.worldSize, q)) < phase) out.push(q);
    return out;
  }

  private throwIfAborted(op: OpName, seq: number): void {
    if (Atomics.load(this.ctrl, W.ABORT_KIND) !== 0) throw this.abortError(op, seq, undefined);
  }

  private abortError(op: OpName, seq: number, missing: number[] | undefined): CollectiveError {
    const kind = Atomics.load(this.ctrl, W.ABORT_KIND);
    const who = Atomics.load(this.ctrl, W.ABORT_RANK);
    const cause =
      kind === AbortKind.TIMEOUT
        ? `rank ${who} timed out in ${opLabel(Atomics.load(this.ctrl, W.ABORT_OP))} #${Atomics.load(this.ctrl, W.ABORT_SEQ)}`
        : `rank ${who} failed`;
    if (missing) {
      const msg = `rank ${this.rank}, call #${seq}: the group was aborted (${cause}) while waiting for rank${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`;
      return kind === AbortKind.TIMEOUT ? new CollectiveTimeoutError(op, msg) : new CollectiveError(op, msg);
    }
    return new CollectiveError(op, `rank ${this.rank}: the group was aborted earlier (${cause}); create a new group`);
  }
}

/** How a call proceeds once every header is known (identical on every rank). */
interface Plan<T> {
  /** Phases of the call, at least 1 (the first carries the headers and chunk 0). */
  phases: number;
  /** Writes what this rank publishes in phase `k` of the call (k >= 1), before arriving. */
  publish(phase: number, k: number): void;
  /** Reads what the ranks published in phase `k` (in the buffers of `phase`'s parity). */
  consume(phase: number, k: number): void;
  finish(): T;
}

/** Chunks needed so that the largest payload of any rank passes through its slot. */
function chunksOf(peers: PeerHeader[], slotBytes: number): number {
  let chunks = 1;
  for (const p of peers) chunks = Math.max(chunks, Math.ceil(p.bytes / slotBytes));
  return chunks;
}

function checkTimeout(ms: unknown, op: string): asserts ms is number {
  if (typeof ms !== 'number' || !(ms >= 0)) {
    throw new ArgumentError(op, `timeoutMs must be a number >= 0 (Infinity to wait forever), got ${String(ms)}`);
  }
}

function assertTensor(x: unknown, op: string, name: string): Tensor {
  if (!isTensorLike(x)) throw new ArgumentError(op, `${name} must be a Tensor, got ${x === null ? 'null' : typeof x}`);
  if (x.isDisposed) throw new DisposedTensorError(op, `${name} (tensor #${x.id}, shape [${x.shape.join(', ')}], ${x.dtype}) was disposed`);
  return x;
}

/**
 * Waits until `ctrl[index]` is no longer `value`, or `ms` pass. Atomics.waitAsync does not
 * keep a Node.js event loop alive, so a timer does for as long as the wait lasts.
 */
async function sleepOn(ctrl: Int32Array, index: number, value: number, ms: number): Promise<void> {
  const span = Math.min(ms, MAX_TIMER_MS);
  if (!waitAsync) {
    // no Atomics.waitAsync (older browsers): poll
    await new Promise<void>((resolve) => setTimeout(resolve, Math.min(span, 1)));
    return;
  }
  const r = waitAsync(ctrl, index, value, span);
  if (!r.async) return;
  const keepAlive = setTimeout(noop, span + 1);
  try {
    await r.value;
  } finally {
    clearTimeout(keepAlive);
  }
}

/**
 * Joins rank `rank` of an in-process group created by `createCpuCollectiveGroup` (on any
 * thread that received the handle). Each rank joins exactly once.
 */
export function joinCpuCollective(group: CpuCollectiveGroup, rank: number, options: JoinCpuCollectiveOptions = {}): CpuCollective {
  return new CpuCollective(group, rank, options);
}
