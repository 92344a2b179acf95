import type { Tensor } from './tensor.js';

export interface CollectiveOptions {
  /** Fail with CollectiveTimeoutError if peers do not join within this many ms (default 60000). */
  readonly timeoutMs?: number;
}

export type ReduceKind = 'sum' | 'max' | 'min' | 'mean';

export interface AllToAllResult {
  /** Rows received from every rank, concatenated in rank order along axis 0. */
  readonly tensor: Tensor;
  /** recvCounts[r] = rows received from rank r. */
  readonly recvCounts: number[];
}

/**
 * Collective communication among `worldSize` ranks (one per device or worker).
 * Every rank must call the same collectives in the same order with compatible tensors
 * (same dtype and trailing shape); violations raise CollectiveError on every rank.
 * Inputs are not consumed; outputs are new tensors on the caller's backend.
 */
export interface Collective {
  readonly worldSize: number;
  readonly rank: number;
  /**
   * Variable-size all-to-all along axis 0 (MoE token dispatch/combine): rows
   * [sum(sendCounts[0..r-1]), +sendCounts[r]) of `send` go to rank r. Without `sendCounts`
   * the rows are split evenly (axis 0 must divide by worldSize).
   */
  allToAll(send: Tensor, sendCounts?: readonly number[], options?: CollectiveOptions): Promise<AllToAllResult>;
  /** Elementwise reduction of equally shaped tensors across ranks; every rank gets the result. */
  allReduce(x: Tensor, op?: ReduceKind, options?: CollectiveOptions): Promise<Tensor>;
  /** Concatenates every rank's tensor along axis 0, in rank order (leading dims may differ). */
  allGather(x: Tensor, options?: CollectiveOptions): Promise<Tensor>;
  /** Resolves once every rank has reached the barrier. */
  barrier(options?: CollectiveOptions): Promise<void>;
  /** Leaves the group; later calls throw. */
  close(): void;
}
