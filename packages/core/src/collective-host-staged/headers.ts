/**
 * What each rank of a host-staged group says about a call (its header), and the verdict every
 * rank reaches identically from all headers: the same call, dtype and (trailing) shape on
 * every rank, or a CollectiveError. Mirrors the CPU collective's error table and wording
 * (packages/backend-cpu/src/collective).
 */
import type { DType } from '../dtype.js';
import type { ReduceKind } from '../collective.js';
import { CollectiveError } from '../errors.js';

export type OpName = 'allToAll' | 'allReduce' | 'allGather' | 'barrier';
/** Kinds of local argument errors, so peers can say what went wrong on the failing rank. */
export const LOCAL_ERRORS: readonly string[] = ['Error', 'ShapeError', 'DTypeError', 'ArgumentError', 'DisposedTensorError', 'BackendError'];

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
