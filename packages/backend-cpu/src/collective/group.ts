/**
 * The shared memory of an in-process collective group: three SharedArrayBuffers created on
 * one thread and handed to the others (e.g. in a Worker's `workerData`). See
 * docs/collectives.md for the protocol that runs over them.
 *
 * control (Int32Array): group-wide words, then four words per rank
 *   ARRIVE[q]   the last phase rank q has arrived at (written only by q)
 *   DOORBELL[q] bumped by anyone who changes state rank q may be waiting on
 *   LEFT[q]     0 active, 1 closed, 2 failed (set by a launcher when its worker died)
 *   JOINED[q]   1 once a Collective was created for rank q
 * headers (Float64Array): per phase parity and rank, one call header (HEADER_WORDS words)
 * data: per phase parity and rank, one exchange slot of `slotBytes`
 */
import { ArgumentError, CollectiveError } from '@kiln/core';

export const GROUP_KIND = 'kiln.cpu-collective-group';
export const GROUP_VERSION = 1;
export const DEFAULT_SLOT_BYTES = 1 << 20;
/** Most dims a tensor passed to a collective may have (the header holds a fixed shape area). */
export const MAX_DIMS = 16;

const MAGIC = 0x4b494c4e; // 'KILN'

/** Group-wide control words. */
export const W = {
  MAGIC: 0,
  WORLD: 1,
  /** 0 while healthy, else an AbortKind; written last, after the ABORT_* details. */
  ABORT_KIND: 2,
  /** rank + 1 of whoever claimed the abort (only the first abort is recorded). */
  ABORT_CLAIM: 3,
  ABORT_RANK: 4,
  ABORT_OP: 5,
  ABORT_SEQ: 6,
  /** First per-rank word. */
  BASE: 16,
} as const;

export const AbortKind = { TIMEOUT: 1, FAILED: 2 } as const;
export const LeftState = { ACTIVE: 0, CLOSED: 1, FAILED: 2 } as const;

/** Header layout (Float64 words). */
export const H = {
  STATUS: 0,
  OP: 1,
  SEQ: 2,
  DTYPE: 3,
  NDIM: 4,
  /** allReduce: ReduceKind code; on a local error: the error kind code. */
  AUX: 5,
  BYTES: 6,
  SHAPE: 8,
  COUNTS: 8 + MAX_DIMS,
} as const;

export const headerWords = (worldSize: number): number => H.COUNTS + worldSize;

export const arriveWord = (_n: number, q: number): number => W.BASE + q;
export const doorbellWord = (n: number, q: number): number => W.BASE + n + q;
export const leftWord = (n: number, q: number): number => W.BASE + 2 * n + q;
export const joinedWord = (n: number, q: number): number => W.BASE + 3 * n + q;
const controlWords = (n: number): number => W.BASE + 4 * n;

/**
 * A serialisable handle to an in-process collective group: plain data plus
 * SharedArrayBuffers, so it survives `postMessage`/`workerData` and every copy refers to
 * the same shared memory.
 */
export interface CpuCollectiveGroup {
  readonly kind: typeof GROUP_KIND;
  readonly version: typeof GROUP_VERSION;
  readonly worldSize: number;
  /** Bytes each rank can publish per exchange round (payloads larger than this are chunked). */
  readonly slotBytes: number;
  readonly control: SharedArrayBuffer;
  readonly headers: SharedArrayBuffer;
  readonly data: SharedArrayBuffer;
}

export interface CpuCollectiveGroupOptions {
  /**
   * Bytes of each rank's exchange slot (default 1 MiB, a multiple of 8, at least 8). Shared
   * memory is 2 × worldSize × slotBytes; larger payloads move in ceil(bytes / slotBytes)
   * rounds.
   */
  readonly slotBytes?: number;
}

function sharedArrayBuffer(bytes: number, op: string): SharedArrayBuffer {
  if (typeof SharedArrayBuffer !== 'function') {
    throw new CollectiveError(op, 'SharedArrayBuffer is not available here (browsers need cross-origin isolation: COOP/COEP headers)');
  }
  return new SharedArrayBuffer(bytes);
}

/** Creates the shared memory of a group of `worldSize` ranks; pass the handle to every rank. */
export function createCpuCollectiveGroup(worldSize: number, options: CpuCollectiveGroupOptions = {}): CpuCollectiveGroup {
  const op = 'createCpuCollectiveGroup';
  if (!Number.isInteger(worldSize) || worldSize < 1 || worldSize > 4096) {
    throw new ArgumentError(op, `worldSize must be an integer in [1, 4096], got ${String(worldSize)}`);
  }
  const slotBytes = options.slotBytes ?? DEFAULT_SLOT_BYTES;
  if (!Number.isInteger(slotBytes) || slotBytes < 8 || slotBytes % 8 !== 0 || slotBytes > 2 ** 30) {
    throw new ArgumentError(op, `slotBytes must be a multiple of 8 in [8, 2^30], got ${String(slotBytes)}`);
  }
  const total = 2 * worldSize * slotBytes;
  if (total > 2 ** 32) {
    throw new ArgumentError(op, `2 × worldSize × slotBytes = ${total} bytes of shared memory is too much; lower slotBytes`);
  }
  const control = sharedArrayBuffer(controlWords(worldSize) * 4, op);
  const ctrl = new Int32Array(control);
  ctrl[W.MAGIC] = MAGIC;
  ctrl[W.WORLD] = worldSize;
  return {
    kind: GROUP_KIND,
    version: GROUP_VERSION,
    worldSize,
    slotBytes,
    control,
    headers: sharedArrayBuffer(2 * worldSize * headerWords(worldSize) * 8, op),
    data: sharedArrayBuffer(total, op),
  };
}

/** Checks that `group` is an intact handle (e.g. after a trip through postMessage). */
export function assertGroup(group: unknown, op: string): asserts group is CpuCollectiveGroup {
  const g = group as Partial<CpuCollectiveGroup> | null;
  const fail = (why: string): never => {
    throw new ArgumentError(op, `expected a CpuCollectiveGroup from createCpuCollectiveGroup(); ${why}`);
  };
  if (!g || typeof g !== 'object') fail(`got ${g === null ? 'null' : typeof g}`);
  if (g!.kind !== GROUP_KIND) fail(`kind is ${JSON.stringify(g!.kind)}`);
  if (g!.version !== GROUP_VERSION) fail(`version ${String(g!.version)} is not ${GROUP_VERSION} (mixed kiln versions?)`);
  const n = g!.worldSize;
  if (!Number.isInteger(n) || (n as number) < 1) fail(`worldSize is ${String(n)}`);
  const isSab = (b: unknown) => typeof SharedArrayBuffer === 'function' && b instanceof SharedArrayBuffer;
  if (!isSab(g!.control) || !isSab(g!.headers) || !isSab(g!.data)) fail('its buffers are not SharedArrayBuffers (was it serialised as JSON?)');
  if (g!.control!.byteLength !== controlWords(n!) * 4 || g!.headers!.byteLength !== 2 * n! * headerWords(n!) * 8 || g!.data!.byteLength !== 2 * n! * g!.slotBytes!) {
    fail('its buffer sizes do not match its worldSize/slotBytes');
  }
  if (new Int32Array(g!.control!)[W.MAGIC] !== MAGIC) fail('its control block is not initialised');
}

/** Wakes every rank's waiters (after a state change they must re-check). */
export function ringAll(ctrl: Int32Array, worldSize: number): void {
  for (let q = 0; q < worldSize; q++) {
    Atomics.add(ctrl, doorbellWord(worldSize, q), 1);
    Atomics.notify(ctrl, doorbellWord(worldSize, q));
  }
}

/** Records the first abort of the group and wakes everyone. */
export function abortGroup(ctrl: Int32Array, worldSize: number, kind: number, rank: number, opCode: number, seq: number): void {
  if (Atomics.compareExchange(ctrl, W.ABORT_CLAIM, 0, rank + 1) === 0) {
    Atomics.store(ctrl, W.ABORT_RANK, rank);
    Atomics.store(ctrl, W.ABORT_OP, opCode);
    Atomics.store(ctrl, W.ABORT_SEQ, seq);
    Atomics.store(ctrl, W.ABORT_KIND, kind);
  }
  ringAll(ctrl, worldSize);
}

/**
 * Marks `rank` as failed and aborts the group, so that every rank waiting in (or later
 * entering) a collective fails fast with a CollectiveError instead of waiting for its
 * timeout. For launchers whose worker died; `runCpuRanks` calls it itself.
 */
export function abortCpuCollectiveGroup(group: CpuCollectiveGroup, failedRank: number): void {
  const op = 'abortCpuCollectiveGroup';
  assertGroup(group, op);
  if (!Number.isInteger(failedRank) || failedRank < 0 || failedRank >= group.worldSize) {
    throw new ArgumentError(op, `failedRank must be an integer in [0, ${group.worldSize}), got ${String(failedRank)}`);
  }
  const ctrl = new Int32Array(group.control);
  Atomics.store(ctrl, leftWord(group.worldSize, failedRank), LeftState.FAILED);
  abortGroup(ctrl, group.worldSize, AbortKind.FAILED, failedRank, 0, 0);
}
