import type { Shape } from '@kiln/core';
import { checkIndices } from './indexing-util.js';
import { copyOf } from '../pool.js';
import { prod } from './plan.js';

/**
 * torch.index_add, out of place: out = base; out[.., indices[j], ..] += src[.., j, ..].
 * Rows are added whole. As in scatterAdd, f32 rows targeted by several indices accumulate
 * in float64 and round once; i32 wraps.
 */
export function indexAddKernel(
  base: Float32Array | Int32Array,
  baseShape: Shape,
  axis: number,
  indices: Int32Array,
  src: Float32Array | Int32Array,
): Float32Array | Int32Array {
  const out = copyOf(base);
  const outer = prod(baseShape, 0, axis);
  const len = baseShape[axis];
  const inner = prod(baseShape, axis + 1);
  const m = indices.length;
  checkIndices('indexAdd', indices, axis, len);
  if (m === 0 || outer === 0 || inner === 0) return out;

  // Count hits per target; collect the targets hit more than once (f32 only).
  let dupTargets: number[] = [];
  let groups: number[][] = [];
  let isDup: Uint8Array | undefined;
  if (out instanceof Float32Array) {
    const hits = new Int32Array(len);
    for (let j = 0; j < m; j++) hits[indices[j]]++;
    const slot = new Int32Array(len).fill(-1);
    for (let j = 0; j < m; j++) {
      const t = indices[j];
      if (hits[t] > 1) {
        if (slot[t] < 0) {
          slot[t] = dupTargets.length;
          dupTargets.push(t);
          groups.push([]);
        }
        groups[slot[t]].push(j);
      }
    }
    if (dupTargets.length > 0) {
      isDup = new Uint8Array(m);
      for (const g of groups) for (const j of g) isDup[j] = 1;
    } else {
      dupTargets = [];
      groups = [];
    }
  }

  const acc = isDup ? new Float64Array(inner) : undefined;
  for (let o = 0; o < outer; o++) {
    const ob = o * len * inner;
    const sb = o * m * inner;
    for (let j = 0; j < m; j++) {
      if (isDup && isDup[j]) continue;
      const dst = ob + indices[j] * inner;
      const s = sb + j * inner;
      for (let i = 0; i < inner; i++) out[dst + i] += src[s + i];
    }
    if (acc) {
      for (let g = 0; g < dupTargets.length; g++) {
        const dst = ob + dupTargets[g] * inner;
        for (let i = 0; i < inner; i++) acc[i] = out[dst + i];
        for (const j of groups[g]) {
          const s = sb + j * inner;
          for (let i = 0; i < inner; i++) acc[i] += src[s + i];
        }
        for (let i = 0; i < inner; i++) out[dst + i] = acc[i];
      }
    }
  }
  return out;
}
