/**
 * The state the ranks of one host-staged group share (one object in one process): a
 * rendezvous per call number where each rank leaves its header and payload, the ranks that
 * left, and the group's abort. Ranks wait on it with `wait()`; every change rings them awake.
 */
import type { StorageArray } from '../dtype.js';
import type { CallHeader, OpName } from './headers.js';

const MAX_TIMER_MS = 2 ** 31 - 1;

/** One rank's part of a call. */
export interface Entry {
  readonly header: CallHeader;
  readonly payload: StorageArray | undefined;
}

/** Where the ranks of one call (by call number) meet. */
export interface Rendezvous {
  readonly entries: (Entry | undefined)[];
  arrived: number;
  /** Results shared by every rank (allReduce, allGather), computed by the first to need them. */
  shared?: StorageArray;
}

/** Why a group stopped: a rank timed out (or failed) in a call. */
export interface Abort {
  readonly timeout: boolean;
  readonly rank: number;
  readonly op: OpName;
  readonly seq: number;
}

export class GroupState {
  private readonly calls = new Map<number, Rendezvous>();
  private readonly waiters = new Set<() => void>();
  readonly left: boolean[];
  abort: Abort | undefined;

  constructor(readonly worldSize: number) {
    this.left = new Array<boolean>(worldSize).fill(false);
  }

  /** Records `entry` as rank `rank`'s part of call `seq`; returns the call's rendezvous. */
  arrive(seq: number, rank: number, entry: Entry): Rendezvous {
    let rv = this.calls.get(seq);
    if (!rv) this.calls.set(seq, (rv = { entries: new Array<Entry | undefined>(this.worldSize).fill(undefined), arrived: 0 }));
    rv.entries[rank] = entry;
    rv.arrived += 1;
    if (rv.arrived === this.worldSize) this.calls.delete(seq); // every rank holds it already
    this.ring();
    return rv;
  }

  /** Wakes every waiting rank (after a state change they must re-check). */
  ring(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Resolves at the next ring, or after `ms`. */
  wait(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = Number.isFinite(ms) ? setTimeout(() => done(), Math.min(Math.max(0, ms), MAX_TIMER_MS)) : undefined;
      const done = (): void => {
        if (timer !== undefined) clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      this.waiters.add(done);
    });
  }

  doAbort(a: Abort): void {
    this.abort ??= a;
    this.ring();
  }
}
