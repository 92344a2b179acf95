import { describe, expect, it } from 'vitest';
import { broadcastStrides, collapseDims, contiguousView } from '../src/strided.js';

/** Every offset a view addresses, in iteration order (the kernels' stridedOffset). */
function offsets(view: number[]): number[] {
  const [offset, nd] = view;
  const shape = view.slice(2, 2 + nd);
  const strides = view.slice(2 + nd, 2 + 2 * nd);
  const n = shape.reduce((a, b) => a * b, 1);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    let rem = i;
    let off = offset;
    for (let d = nd - 1; d >= 0; d--) {
      off += (rem % shape[d]) * strides[d];
      rem = Math.floor(rem / shape[d]);
    }
    out.push(off);
  }
  return out;
}

describe('strided views', () => {
  it('broadcastStrides zeroes broadcast dims, aligned on the right', () => {
    expect(broadcastStrides([3, 1], [2, 3, 4])).toEqual([0, 1, 0]);
    expect(broadcastStrides([4], [2, 3, 4])).toEqual([0, 0, 1]);
    expect(broadcastStrides([2, 3, 4], [2, 3, 4])).toEqual([12, 4, 1]);
  });

  it('collapseDims merges contiguous runs and drops size-1 dims without changing the addressed elements', () => {
    for (const [shape, a, b] of [
      [[2, 3, 4], [0, 1, 0], [12, 4, 1]],
      [[5, 1, 6, 7], [42, 0, 7, 1], [0, 0, 1, 0]],
      [[1, 1, 1], [0, 0, 0], [0, 0, 0]],
      [[4, 8], [1, 4], [8, 1]],
    ] as [number[], number[], number[]][]) {
      const [va, vb] = collapseDims(shape, [a, b]);
      const full = (s: number[]) => [0, shape.length, ...shape, ...s];
      expect(offsets(va)).toEqual(offsets(full(a)));
      expect(offsets(vb)).toEqual(offsets(full(b)));
      expect(va[1]).toBeLessThanOrEqual(shape.length);
    }
    expect(contiguousView([2, 3, 4])).toEqual([0, 1, 24, 1]);
  });
});
