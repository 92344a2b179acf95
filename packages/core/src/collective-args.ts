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
