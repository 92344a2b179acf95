/**
 * One rank of a host-staged group: a Collective whose ranks are kiln Backend instances of
 * this process (any backend: WebGPU devices, gpu.js pages, CPU backends) and whose data moves
 * **by readback and upload through the host**. Every rank reads its input to the host
 * (`tensor.data()`), the ranks meet at a per-call rendezvous object shared by the group, each
 * rank assembles (allToAll, allGather) or reduces (allReduce, computed once per call and
 * shared) its result in host memory and uploads it to its own backend (`fromStorage`).
 * Semantics, errors and messages are the CPU collective's (docs/collectives.md).
 */
import type { Backend } from '../backend.js';
import type { AllToAllResult, Collective, CollectiveOptions, ReduceKind } from '../collective.js';
import { callTimeoutMs, resolveSendCounts } from '../collective-args.js';
import type { DType, StorageArray } from '../dtype.js';
import { ArgumentError, CollectiveError, CollectiveTimeoutError, DisposedTensorError, ShapeError } from '../errors.js';
import { fromStorage } from '../ops/creation.js';
import type { Tensor } from '../tensor.js';
import { allToAllCodes, concatCodes, rowElements } from './codes.js';
import { validateHeaders, type CallHeader, type OpName } from './headers.js';
import { REDUCE_KINDS, checkReducible, allReduceCodes } from './host-reduce.js';
import type { GroupState, Rendezvous } from './rendezvous.js';

const noop = (): void => {};

function assertTensor(x: unknown, op: string, name: string): Tensor {
  const t = x as Tensor | null;
  if (!t || typeof t !== 'object' || typeof t.data !== 'function' || !Array.isArray(t.shape) || typeof t.dtype !== 'string') {
    throw new ArgumentError(op, `${name} must be a Tensor, got ${x === null ? 'null' : typeof x}`);
  }
  if (t.isDisposed) throw new DisposedTensorError(op, `${name} (tensor #${t.id}, shape [${t.shape.join(', ')}], ${t.dtype}) was disposed`);
  return t;
}

interface Prepared {
  readonly dtype: DType | undefined;
  readonly shape: readonly number[];
  readonly reduce?: ReduceKind;
  readonly counts: readonly number[];
  /** The input's codes, read back to the host (started when the call is issued). */
  readonly payload: Promise<StorageArray> | undefined;
}

/**
 * The Collective of one rank of a host-staged group: results are new tensors on this rank's
 * backend. Create a group with `createHostStagedGroup` (or a backend package's wrapper, e.g.
 * `createWebGpuGroup`).
 */
export class HostStagedCollective implements Collective {
  readonly worldSize: number;
  private seq = 0;
  private closed = false;
  private tail: Promise<unknown> = Promise.resolve();

  /** @internal use createHostStagedGroup */
  constructor(
    private readonly state: GroupState,
    readonly rank: number,
    /** The backend this rank's results live on. */
    readonly backend: Backend,
    private readonly defaultTimeoutMs: number,
  ) {
    this.worldSize = state.worldSize;
  }

  allToAll(send: Tensor, sendCounts?: readonly number[], options?: CollectiveOptions): Promise<AllToAllResult> {
    return this.enqueue('allToAll', options, () => {
      const t = assertTensor(send, 'allToAll', 'send');
      const counts = resolveSendCounts('allToAll', t.shape, this.worldSize, sendCounts);
      return { dtype: t.dtype, shape: t.shape, counts, payload: t.data() };
    }, (rv, me) => {
      const counts = rv.entries.map((e) => (e!.header.ok ? e!.header.counts : []));
      const rowElems = rowElements(me.shape);
      const { codes, recvCounts, rows } = allToAllCodes(this.rank, me.dtype!, rowElems, counts, rv.entries.map((e) => e!.payload!));
      return { tensor: this.upload(codes, [rows, ...me.shape.slice(1)], me.dtype!), recvCounts };
    });
  }

  allReduce(x: Tensor, op: ReduceKind = 'sum', options?: CollectiveOptions): Promise<Tensor> {
    return this.enqueue('allReduce', options, () => {
      const t = assertTensor(x, 'allReduce', 'x');
      if (!REDUCE_KINDS.includes(op)) {
        throw new ArgumentError('allReduce', `unknown reduction ${JSON.stringify(op)}; expected one of ${REDUCE_KINDS.join(', ')}`);
      }
      checkReducible(t.dtype, op, 'allReduce');
      return { dtype: t.dtype, shape: t.shape, reduce: op, counts: [], payload: t.data() };
    }, (rv, me) => {
      rv.shared ??= allReduceCodes(me.dtype!, me.reduce!, rv.entries.map((e) => e!.payload!));
      return this.upload(rv.shared, me.shape, me.dtype!);
    });
  }

  allGather(x: Tensor, options?: CollectiveOptions): Promise<Tensor> {
    return this.enqueue('allGather', options, () => {
      const t = assertTensor(x, 'allGather', 'x');
      if (t.shape.length === 0) throw new ShapeError('allGather', 'x must have at least one dimension (it is concatenated along axis 0), got a scalar');
      return { dtype: t.dtype, shape: t.shape, counts: [], payload: t.data() };
    }, (rv, me) => {
      rv.shared ??= concatCodes(me.dtype!, rv.entries.map((e) => e!.payload!));
      const rows = rv.entries.reduce((a, e) => a + (e!.header.ok ? e!.header.shape[0] : 0), 0);
      return this.upload(rv.shared, [rows, ...me.shape.slice(1)], me.dtype!);
    });
  }

  barrier(options?: CollectiveOptions): Promise<void> {
    return this.enqueue('barrier', options, () => ({ dtype: undefined, shape: [], counts: [], payload: undefined }), () => undefined);
  }

  /**
   * Leaves the group: later calls reject with a CollectiveError. Calls already issued still
   * run; once they are done, peers waiting for this rank fail fast instead of timing out.
   * The backend is not disposed.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    void this.tail.then(() => {
      this.state.left[this.rank] = true;
      this.state.ring();
    });
  }

  /** Whether `close()` was called. */
  get isClosed(): boolean {
    return this.closed;
  }

  // ---- call machinery ----------------------------------------------------------------------

  private upload(codes: StorageArray, shape: readonly number[], dtype: DType): Tensor {
    return fromStorage(codes, [...shape], dtype, { backend: this.backend });
  }

  /**
   * Runs calls one at a time, in issue order. Arguments are checked and the input's readback
   * is started when the call is issued, so a caller may dispose its input right after.
   */
  private enqueue<T>(op: OpName, options: CollectiveOptions | undefined, prepare: () => Prepared, finish: (rv: Rendezvous, me: Prepared) => T): Promise<T> {
    if (this.closed) return Promise.reject(new CollectiveError(op, `rank ${this.rank} called ${op} after close(); its collective has left the group`));
    let prepared: Prepared | undefined;
    let localError: unknown;
    let timeoutMs = this.defaultTimeoutMs;
    try {
      timeoutMs = callTimeoutMs(op, options, this.defaultTimeoutMs);
      prepared = prepare();
      prepared.payload?.catch(noop); // reported when the call runs
    } catch (err) {
      localError = err;
    }
    const run = this.tail.then(() => this.call(op, timeoutMs, prepared, localError, finish));
    this.tail = run.catch(noop);
    return run;
  }

  private async call<T>(op: OpName, timeoutMs: number, prepared: Prepared | undefined, localError: unknown, finish: (rv: Rendezvous, me: Prepared) => T): Promise<T> {
    const s = this.state;
    if (s.abort) throw this.abortError(op, this.seq + 1, undefined);
    const seq = ++this.seq;
    let payload: StorageArray | undefined;
    if (prepared && localError === undefined) {
      try {
        payload = await prepared.payload;
      } catch (err) {
        localError = err;
      }
    }
    // A local error is still announced, so that peers fail at once instead of timing out.
    const header: CallHeader =
      localError !== undefined || !prepared
        ? { ok: false, op, seq, errorName: localError instanceof Error ? localError.name : 'Error' }
        : { ok: true, op, seq, dtype: prepared.dtype, shape: prepared.shape, counts: prepared.counts, ...(prepared.reduce ? { reduce: prepared.reduce } : {}) };
    if (s.abort) throw localError ?? this.abortError(op, seq, undefined);
    const rv = s.arrive(seq, this.rank, { header, payload });
    try {
      await this.waitForAll(rv, op, seq, timeoutMs);
    } catch (err) {
      throw localError ?? err;
    }
    if (localError !== undefined) throw localError;
    validateHeaders(op, seq, rv.entries.map((e) => e!.header));
    return finish(rv, prepared!);
  }

  private async waitForAll(rv: Rendezvous, op: OpName, seq: number, timeoutMs: number): Promise<void> {
    const s = this.state;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (rv.arrived === this.worldSize) return;
      const missing = rv.entries.map((e, q) => (e ? -1 : q)).filter((q) => q >= 0);
      if (s.abort) throw this.abortError(op, seq, missing);
      for (const q of missing) {
        if (s.left[q]) throw new CollectiveError(op, `rank ${this.rank}, call #${seq}: rank ${q} closed its collective before joining this ${op}`);
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        s.doAbort({ timeout: true, rank: this.rank, op, seq });
        throw new CollectiveTimeoutError(
          op,
          `rank ${this.rank} timed out after ${timeoutMs} ms in call #${seq}: rank${missing.length > 1 ? 's' : ''} ${missing.join(', ')} did not arrive; the group is aborted`,
        );
      }
      await s.wait(remaining);
    }
  }

  private abortError(op: OpName, seq: number, missing: number[] | undefined): CollectiveError {
    const a = this.state.abort!;
    const cause = a.timeout ? `rank ${a.rank} timed out in ${a.op} #${a.seq}` : `rank ${a.rank} failed`;
    if (missing) {
      const msg = `rank ${this.rank}, call #${seq}: the group was aborted (${cause}) while waiting for rank${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`;
      return a.timeout ? new CollectiveTimeoutError(op, msg) : new CollectiveError(op, msg);
    }
    return new CollectiveError(op, `rank ${this.rank}: the group was aborted earlier (${cause}); create a new group`);
  }
}
