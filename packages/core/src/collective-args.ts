import { ArgumentError, ShapeError } from './errors.js';

/**
 * Argument rules every `Collective` implementation shares (see collective.ts), so the CPU,
 * CUDA and WebGPU collectives accept and reject the same calls with the same messages.
 */

const fmt = (s: readonly number[]): string => `[${s.join(', ')}]`;

/** Row counts of an allToAll: `sendCounts` checked against the rows, or the even split. */
export function resolveSendCounts(op: string, shape: readonly number[], worldSize: number, sendCounts: readonly number[] | undefined): number[] {
  if (shape.length === 0) throw new ShapeError(op, 'send must have at least one dimension (rows along axis 0), got a scalar');
  const rows = shape[0];
  if (sendCounts === undefined) {
    if (rows % worldSize !== 0) {
      throw new ShapeError(op, `send has ${rows} rows (shape ${fmt(shape)}), which do not split evenly over ${worldSize} ranks; pass sendCounts`);
    }
    return new Array<number>(worldSize).fill(rows / worldSize);
  }
  if (!Array.isArray(sendCounts) && !ArrayBuffer.isView(sendCounts)) {
    throw new ArgumentError(op, `sendCounts must be an array of ${worldSize} row counts, got ${typeof sendCounts}`);
  }
  const counts = Array.from(sendCounts as ArrayLike<number>);
  if (counts.length !== worldSize) throw new ShapeError(op, `sendCounts has ${counts.length} entries; expected one per rank (${worldSize})`);
  const bad = counts.findIndex((c) => !Number.isInteger(c) || c < 0);
  if (bad >= 0) throw new ArgumentError(op, `sendCounts[${bad}] is ${String(counts[bad])}; row counts are integers >= 0`);
  const total = counts.reduce((a, b) => a + b, 0);
  if (total !== rows) throw new ShapeError(op, `sendCounts ${fmt(counts)} sum to ${total}, but send has ${rows} rows (shape ${fmt(shape)})`);
  return counts;
}

/** Throws an ArgumentError unless `ms` is a number >= 0 (Infinity waits forever). */
export function checkTimeout(ms: unknown, op: string): asserts ms is number {
  if (typeof ms !== 'number' || !(ms >= 0)) {
    throw new ArgumentError(op, `timeoutMs must be a number >= 0 (Infinity to wait forever), got ${String(ms)}`);
  }
}

/** The timeout of one call: `options.timeoutMs` (checked) or the collective's default. */
export function callTimeoutMs(op: string, options: { readonly timeoutMs?: number } | undefined, defaultMs: number): number {
  if (options !== undefined && (options === null || typeof options !== 'object')) {
    throw new ArgumentError(op, `options must be an object like { timeoutMs }, got ${options === null ? 'null' : typeof options}`);
  }
  if (options?.timeoutMs === undefined) return defaultMs;
  checkTimeout(options.timeoutMs, op);
  return options.timeoutMs;
}
