/**
 * `NcclCollective`: kiln's Collective interface over NCCL, one rank per process and GPU.
 *
 * Every call is two NCCL steps on the backend's stream:
 *  1. a header step: each rank publishes a small fixed-size header (op, call number, dtype,
 *     shape, reduction, allToAll send counts; or "my arguments were invalid") and one
 *     ncclAllGather gives every rank all headers. Every rank validates them identically (so
 *     mismatches become the same CollectiveError everywhere and the group stays usable) and
 *     derives the plan: for allToAll the counts it will receive, for allGather every rank's
 *     rows. A barrier is this step alone.
 *  2. the payload step: grouped ncclSend/ncclRecv of bytes (allToAll, uneven allGather),
 *     ncclAllGather (even allGather) or ncclAllReduce.
 * Each step is started by the addon and then polled (`ncclPoll`: a CUDA event after the
 * operation plus ncclCommGetAsyncError) from the event loop, never blocking it. A step that
 * does not finish within `timeoutMs` aborts the communicator (ncclCommAbort, which also wakes
 * the GPU kernels waiting for the missing peer) and rejects with CollectiveTimeoutError; the
 * collective is unusable afterwards, like the CPU collective after a timeout.
 *
 * Inputs are copied (device to device, on the stream) when a call is issued, so a caller may
 * dispose them right away; outputs are new tensors on the same CudaBackend.
 */
import {
  ArgumentError,
  CollectiveError,
  CollectiveTimeoutError,
  DTYPES,
  DTypeError,
  DisposedTensorError,
  ShapeError,
  cast,
  div,
  dtypeInfo,
  sizeOf,
  type AllToAllResult,
  type Collective,
  type CollectiveOptions,
  type DType,
  type ReduceKind,
  type Tensor,
} from '@kiln/core';
import type { Ptr } from '../addon.js';
import type { CudaStorage } from '../storage.js';
import {
  MAX_DIMS,
  REDUCE_KINDS,
  allGatherPlan,
  allToAllPlan,
  decodeHeaders,
  encodeHeader,
  headerWords,
  ncclDtypeCode,
  opCode,
  prefixOffsets,
  reduceRoute,
  resolveSendCounts,
  rowBytes,
  validateHeaders,
  type CallHeader,
  type OpName,
} from './plan.js';

export const DEFAULT_TIMEOUT_MS = 60_000;

/** The NCCL bindings of kiln_cuda.node (native/nccl.cpp). */
export interface NcclAddon {
  ncclAvailable(): { ok: boolean; reason: string; version: number; versionString: string; library: string; nonBlocking: boolean };
  ncclUniqueId(): Uint8Array;
  ncclInit(id: Uint8Array, worldSize: number, rank: number): 'pending' | 'done';
  /** 'done' | 'pending' | 'idle' | an error message. */
  ncclPoll(): string;
  ncclAllToAllV(sendPtr: Ptr, sendBytes: number[], recvPtr: Ptr, recvBytes: number[]): void;
  ncclAllReduce(sendPtr: Ptr, recvPtr: Ptr, count: number, dtypeCode: number, op: 'sum' | 'prod' | 'max' | 'min' | 'avg'): void;
  ncclAllGather(sendPtr: Ptr, recvPtr: Ptr, bytesPerRank: number): void;
  ncclAllGatherV(sendPtr: Ptr, sendBytes: number, recvPtr: Ptr, recvBytes: number[]): void;
  ncclAbort(): void;
  ncclDestroy(): void;
  ncclState(): { phase: string; rank: number; worldSize: number; nonBlocking: boolean };
}

/** What NcclCollective needs of the CUDA backend (CudaBackend provides it). */
export interface NcclBackendLike {
  readonly name: string;
  readonly addon: unknown;
  storageOf(t: Tensor): CudaStorage;
  wrapStorage(storage: CudaStorage, shape: readonly number[], dtype: DType): Tensor;
  allocStorage(bytes: number): CudaStorage;
  release(storage: CudaStorage): void;
}

export interface CreateNcclCollectiveOptions {
  /** The rank's CudaBackend (its device and stream carry the collectives). */
  readonly backend: NcclBackendLike;
  readonly rank: number;
  readonly worldSize: number;
  /** The 128-byte ncclUniqueId made by rank 0 (`ncclUniqueIdOf(backend)`, or the launcher's file). */
  readonly uniqueId: Uint8Array;
  /** Default timeout of every call and of joining, in ms (default 60000). */
  readonly timeoutMs?: number;
}

/** The NCCL bindings of a backend's addon, or a CollectiveError saying why NCCL is unusable. */
export function ncclAddonOf(backend: NcclBackendLike, op = 'nccl'): NcclAddon {
  const addon = backend.addon as Partial<NcclAddon> | undefined;
  if (!addon || typeof addon.ncclAvailable !== 'function') throw new CollectiveError(op, 'the CUDA addon has no NCCL bindings (rebuild it)');
  const a = addon as NcclAddon;
  const av = a.ncclAvailable();
  if (!av.ok) throw new CollectiveError(op, av.reason);
  return a;
}

/** A fresh ncclUniqueId (rank 0 makes it and hands it to the other ranks). */
export function ncclUniqueIdOf(backend: NcclBackendLike): Uint8Array {
  return ncclAddonOf(backend, 'ncclUniqueId').ncclUniqueId();
}

function checkTimeout(ms: unknown, op: string): asserts ms is number {
  if (typeof ms !== 'number' || !(ms > 0) || !Number.isFinite(ms)) throw new ArgumentError(op, `timeoutMs must be a positive number of ms, got ${String(ms)}`);
}

const noop = (): void => {};
const immediate = (): Promise<void> => new Promise((r) => setImmediate(r));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Polls the addon until the step in flight is done: synchronously for ~20 µs (small calls
 * finish in that time), then on setImmediate turns for 2 ms, then every millisecond.
 */
async function pollUntilDone(addon: NcclAddon, deadline: number): Promise<'done' | 'timeout' | { error: string }> {
  const t0 = performance.now();
  for (;;) {
    const s = addon.ncclPoll();
    if (s === 'done') return 'done';
    if (s !== 'pending') return { error: s === 'idle' ? 'the communicator was closed or aborted' : s };
    const now = performance.now();
    if (now > deadline) return 'timeout';
    if (now - t0 < 0.02) continue;
    if (now - t0 < 2) await immediate();
    else await sleep(1);
  }
}

/** Creates the communicator (every rank calls it with the same id); resolves once all ranks joined. */
export async function createNcclCollective(options: CreateNcclCollectiveOptions): Promise<NcclCollective> {
  const op = 'createNcclCollective';
  const { backend, rank, worldSize, uniqueId } = options;
  if (!Number.isInteger(worldSize) || worldSize < 1) throw new ArgumentError(op, `worldSize must be a positive integer, got ${String(worldSize)}`);
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) throw new ArgumentError(op, `rank must be an integer in [0, ${worldSize}), got ${String(rank)}`);
  if (!(uniqueId instanceof Uint8Array) || uniqueId.byteLength !== 128) throw new ArgumentError(op, `uniqueId must be the 128-byte ncclUniqueId, got ${uniqueId?.byteLength ?? typeof uniqueId} bytes`);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  checkTimeout(timeoutMs, op);
  const addon = ncclAddonOf(backend, op);
  if (addon.ncclState().phase !== 'none') throw new CollectiveError(op, 'this process already has an NCCL communicator (one rank per process); close it first');
  let started: string;
  try {
    started = addon.ncclInit(uniqueId, worldSize, rank);
  } catch (e) {
    throw new CollectiveError(op, `rank ${rank}: ${(e as Error).message}`);
  }
  if (started !== 'done') {
    const r = await pollUntilDone(addon, performance.now() + timeoutMs);
    if (r !== 'done') {
      addon.ncclAbort();
      if (r === 'timeout') {
        throw new CollectiveTimeoutError(op, `rank ${rank} timed out after ${timeoutMs} ms joining a world of ${worldSize}: not every rank called createNcclCollective with this id; the communicator is aborted`);
      }
      throw new CollectiveError(op, `rank ${rank}: NCCL init failed: ${r.error}`);
    }
  }
  return new NcclCollective(backend, addon, rank, worldSize, timeoutMs);
}

function isTensorLike(x: unknown): x is Tensor {
  const t = x as Tensor | null;
  return !!t && typeof t === 'object' && typeof t.data === 'function' && Array.isArray(t.shape) && typeof t.dtype === 'string';
}

function assertTensor(x: unknown, op: string, name: string): Tensor {
  if (!isTensorLike(x)) throw new ArgumentError(op, `${name} must be a Tensor, got ${x === null ? 'null' : typeof x}`);
  if (x.isDisposed) throw new DisposedTensorError(op, `${name} was disposed`);
  return x;
}

/** One rank's validated contribution to a call. */
interface Prepared {
  header: Omit<CallHeader, 'status'>;
  /** Device copy of the input (owned by the call). */
  copy?: CudaStorage;
  dtype?: DType;
  shape: readonly number[];
  /** allReduce through f32: the original dtype to cast back to. */
  castBack?: DType;
}

export class NcclCollective implements Collective {
  readonly worldSize: number;
  readonly rank: number;
  readonly backend: NcclBackendLike;
  private readonly addon: NcclAddon;
  private readonly defaultTimeoutMs: number;
  private readonly hw: number;
  private hdrSend: CudaStorage;
  private hdrRecv: CudaStorage;
  private seq = 0;
  private closed = false;
  private aborted: string | undefined;
  private tail: Promise<unknown> = Promise.resolve();

  /** Use `createNcclCollective`. */
  constructor(backend: NcclBackendLike, addon: NcclAddon, rank: number, worldSize: number, timeoutMs: number) {
    this.backend = backend;
    this.addon = addon;
    this.rank = rank;
    this.worldSize = worldSize;
    this.defaultTimeoutMs = timeoutMs;
    this.hw = headerWords(worldSize);
    this.hdrSend = backend.allocStorage(this.hw * 8);
    this.hdrRecv = backend.allocStorage(this.hw * 8 * worldSize);
  }

  // ---- public API ------------------------------------------------------------------------

  allToAll(send: Tensor, sendCounts?: readonly number[], options?: CollectiveOptions): Promise<AllToAllResult> {
    return this.enqueue('allToAll', options, () => {
      const t = assertTensor(send, 'allToAll', 'send');
      const counts = resolveSendCounts('allToAll', t.shape, this.worldSize, sendCounts);
      return this.contribution(t, counts, 0);
    }, async (p, peers, timeoutMs, seq) => {
      const rb = rowBytes(p.shape, dtypeInfo(p.dtype!).bytes);
      const plan = allToAllPlan(this.rank, peers, rb);
      const out = this.backend.allocStorage(plan.recvRows * rb);
      try {
        await this.step('allToAll', seq, timeoutMs, () => this.addon.ncclAllToAllV(p.copy!.ptr, plan.sendBytes, out.ptr, plan.recvBytes));
      } catch (e) {
        this.backend.release(out);
        throw e;
      }
      return { tensor: this.backend.wrapStorage(out, [plan.recvRows, ...p.shape.slice(1)], p.dtype!), recvCounts: plan.recvCounts };
    });
  }

  allReduce(x: Tensor, op: ReduceKind = 'sum', options?: CollectiveOptions): Promise<Tensor> {
    return this.enqueue('allReduce', options, () => {
      const t = assertTensor(x, 'allReduce', 'x');
      if (!REDUCE_KINDS.includes(op)) throw new ArgumentError('allReduce', `unknown reduction ${JSON.stringify(op)}; expected one of ${REDUCE_KINDS.join(', ')}`);
      const route = reduceRoute(t.dtype, op);
      if (route.kind === 'error') throw new DTypeError('allReduce', route.message);
      if (route.kind === 'via-f32') {
        const f = cast(t, 'f32');
        try {
          return { ...this.contribution(f, [], REDUCE_KINDS.indexOf(op), t.dtype), castBack: t.dtype };
        } finally {
          f.dispose();
        }
      }
      return this.contribution(t, [], REDUCE_KINDS.indexOf(op));
    }, async (p, _peers, timeoutMs, seq) => {
      const dtype: DType = p.castBack ? 'f32' : p.dtype!;
      const n = sizeOf(p.shape);
      const route = reduceRoute(dtype, REDUCE_KINDS[p.header.aux]);
      const ncclOp = route.kind === 'native' ? route.ncclOp : 'sum';
      // In place in the call's private copy, which becomes the result.
      const buf = p.copy!;
      p.copy = undefined;
      try {
        if (n > 0) await this.step('allReduce', seq, timeoutMs, () => this.addon.ncclAllReduce(buf.ptr, buf.ptr, n, ncclDtypeCode(dtype), ncclOp));
      } catch (e) {
        this.backend.release(buf);
        throw e;
      }
      let out = this.backend.wrapStorage(buf, p.shape, dtype);
      if (REDUCE_KINDS[p.header.aux] === 'mean') {
        const m = div(out, this.worldSize);
        out.dispose();
        out = m;
      }
      if (p.castBack) {
        const c = cast(out, p.castBack);
        out.dispose();
        out = c;
      }
      return out;
    });
  }

  allGather(x: Tensor, options?: CollectiveOptions): Promise<Tensor> {
    return this.enqueue('allGather', options, () => {
      const t = assertTensor(x, 'allGather', 'x');
      if (t.shape.length === 0) throw new ShapeError('allGather', 'x must have at least one dimension (it is concatenated along axis 0), got a scalar');
      return this.contribution(t, [], 0);
    }, async (p, peers, timeoutMs, seq) => {
      const rb = rowBytes(p.shape, dtypeInfo(p.dtype!).bytes);
      const plan = allGatherPlan(peers, rb);
      const total = plan.recvBytes.reduce((a, b) => a + b, 0);
      const out = this.backend.allocStorage(total);
      try {
        if (total > 0) {
          await this.step('allGather', seq, timeoutMs, () =>
            plan.equal ? this.addon.ncclAllGather(p.copy!.ptr, out.ptr, plan.recvBytes[0]) : this.addon.ncclAllGatherV(p.copy!.ptr, plan.recvBytes[this.rank], out.ptr, plan.recvBytes),
          );
        }
      } catch (e) {
        this.backend.release(out);
        throw e;
      }
      return this.backend.wrapStorage(out, [plan.rows, ...p.shape.slice(1)], p.dtype!);
    });
  }

  barrier(options?: CollectiveOptions): Promise<void> {
    return this.enqueue('barrier', options, () => ({ header: { op: opCode('barrier'), seq: 0, dtype: -1, shape: [], aux: 0, bytes: 0, counts: [] }, shape: [] }), async () => undefined);
  }

  /**
   * Leaves the group: later calls reject with a CollectiveError. Calls already issued still
   * run; then the communicator is destroyed (or aborted, after a failure).
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    void this.tail.then(() => {
      try {
        if (this.aborted) this.addon.ncclAbort();
        else this.addon.ncclDestroy();
      } catch {
        this.addon.ncclAbort();
      }
      this.backend.release(this.hdrSend);
      this.backend.release(this.hdrRecv);
    });
  }

  /** Closes and resolves once the communicator is torn down (orderly exits, tests). */
  async closeAndWait(): Promise<void> {
    this.close();
    await this.tail;
    await immediate();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  // ---- call machinery --------------------------------------------------------------------

  /** The header of a tensor contribution, plus a private device copy of its bytes. */
  private contribution(t: Tensor, counts: number[], aux: number, announcedDtype?: DType): Prepared {
    if (t.shape.length > MAX_DIMS) throw new ShapeError('collective', `tensors passed to collectives have at most ${MAX_DIMS} dimensions, got ${t.shape.length}`);
    const src = this.backend.storageOf(t);
    const bytes = sizeOf(t.shape) * dtypeInfo(t.dtype).bytes;
    const copy = this.backend.allocStorage(bytes);
    if (bytes > 0) (this.backend.addon as { copy(dst: Ptr, src: Ptr, bytes: number): void }).copy(copy.ptr, src.ptr, bytes);
    const dtype = announcedDtype ?? t.dtype;
    return {
      header: { op: 0, seq: 0, dtype: DTYPES.indexOf(dtype), shape: [...t.shape], aux, bytes, counts },
      copy,
      dtype: t.dtype,
      shape: t.shape,
    };
  }

  /**
   * Runs calls one at a time, in issue order. Arguments are checked and the input copied at
   * issue time (so the caller may dispose the input at once); a local argument error is still
   * announced in the header step so the peers fail at once instead of timing out.
   */
  private enqueue<T>(
    op: OpName,
    options: CollectiveOptions | undefined,
    prepare: () => Prepared,
    run: (p: Prepared, peers: CallHeader[], timeoutMs: number, seq: number) => Promise<T>,
  ): Promise<T> {
    if (this.closed) return Promise.reject(new CollectiveError(op, `rank ${this.rank} called ${op} after close(); its collective has left the group`));
    let prepared: Prepared | undefined;
    let localError: unknown;
    let timeoutMs = this.defaultTimeoutMs;
    try {
      if (options !== undefined && (options === null || typeof options !== 'object')) {
        throw new ArgumentError(op, `options must be an object like { timeoutMs }, got ${options === null ? 'null' : typeof options}`);
      }
      if (options?.timeoutMs !== undefined) {
        checkTimeout(options.timeoutMs, op);
        timeoutMs = options.timeoutMs;
      }
      prepared = prepare();
    } catch (e) {
      localError = e;
    }
    const call = this.tail.then(() => this.call(op, prepared, localError, timeoutMs, run));
    this.tail = call.catch(noop);
    return call;
  }

  private async call<T>(
    op: OpName,
    prepared: Prepared | undefined,
    localError: unknown,
    timeoutMs: number,
    run: (p: Prepared, peers: CallHeader[], timeoutMs: number, seq: number) => Promise<T>,
  ): Promise<T> {
    try {
      if (this.aborted) throw new CollectiveError(op, `rank ${this.rank}, call #${this.seq + 1}: the communicator was aborted earlier (${this.aborted}); create a new collective`);
      const seq = ++this.seq;
      const words = prepared
        ? encodeHeader(this.worldSize, { ...prepared.header, op: opCode(op), seq })
        : encodeHeader(this.worldSize, { op: opCode(op), seq, error: localError });
      const peers = await this.exchangeHeaders(op, seq, words, timeoutMs);
      if (localError !== undefined) throw localError;
      validateHeaders(op, seq, peers);
      return await run(prepared!, peers, timeoutMs, seq);
    } catch (e) {
      if (localError !== undefined && !(e instanceof CollectiveTimeoutError)) throw localError;
      throw e;
    } finally {
      if (prepared?.copy) this.backend.release(prepared.copy);
    }
  }

  private async exchangeHeaders(op: OpName, seq: number, words: Float64Array, timeoutMs: number): Promise<CallHeader[]> {
    const a = this.backend.addon as { upload(ptr: Ptr, data: ArrayBufferView): void; downloadAsync<V extends ArrayBufferView>(ptr: Ptr, into: V): Promise<V> };
    a.upload(this.hdrSend.ptr, words);
    await this.step(op, seq, timeoutMs, () => this.addon.ncclAllGather(this.hdrSend.ptr, this.hdrRecv.ptr, this.hw * 8));
    const all = await a.downloadAsync(this.hdrRecv.ptr, new Float64Array(this.hw * this.worldSize));
    return decodeHeaders(this.worldSize, all);
  }

  /** Starts one NCCL operation and waits for it, turning failures and timeouts into errors. */
  private async step(op: OpName, seq: number, timeoutMs: number, start: () => void): Promise<void> {
    try {
      start();
    } catch (e) {
      this.abort(`NCCL refused ${op} #${seq}: ${(e as Error).message}`);
      throw new CollectiveError(op, `rank ${this.rank}, call #${seq}: ${(e as Error).message}; the communicator is aborted`);
    }
    const r = await pollUntilDone(this.addon, performance.now() + timeoutMs);
    if (r === 'done') return;
    if (r === 'timeout') {
      this.abort(`rank ${this.rank} timed out in ${op} #${seq}`);
      throw new CollectiveTimeoutError(op, `rank ${this.rank} timed out after ${timeoutMs} ms in call #${seq}: a peer did not take part (NCCL did not complete); the communicator is aborted`);
    }
    this.abort(`NCCL failed in ${op} #${seq}: ${r.error}`);
    throw new CollectiveError(op, `rank ${this.rank}, call #${seq}: NCCL failed: ${r.error}; the communicator is aborted`);
  }

  private abort(why: string): void {
    if (this.aborted) return;
    this.aborted = why;
    try {
      this.addon.ncclAbort();
    } catch {
      /* already gone */
    }
  }
}
