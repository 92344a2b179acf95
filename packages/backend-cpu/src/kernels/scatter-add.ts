import type { Shape } from '@kiln/core';
import { sizeOf, stridesOf } from '@kiln/core';
import { indexError } from './indexing-util.js';
import { Odometer } from './plan.js';

/**
 * torch.scatter_add, out of place: out = base; out[p with axis coord = indices[p]] += src[p].
 *
 * i32 adds wrap (order-independent). f32: a target hit once gets base + src rounded once;
 * targets hit several times are accumulated in float64 and rounded once at the end, so the
 * result does not depend on the order of duplicates and matches a float64 reference.
 */
export function scatterAddKernel(
  base: Float32Array | Int32Array,
  baseShape: Shape,
  axis: number,
  indices: Int32Array,
  src: Float32Array | Int32Array,
  srcShape: Shape,
): Float32Array | Int32Array {
  const out = base.slice();
  const n = sizeOf(srcShape);
  if (n === 0) return out;
  const targets = scatterTargets(baseShape, axis, indices, srcShape);
  if (out instanceof Int32Array) {
    for (let i = 0; i < n; i++) out[targets[i]] += src[i];
    return out;
  }
  accumulateF32(out, targets, src as Float32Array);
  return out;
}

/** Flat output positions of every src element (validating the index values). */
function scatterTargets(baseShape: Shape, axis: number, indices: Int32Array, srcShape: Shape): Float64Array {
  const n = sizeOf(srcShape);
  const targets = new Float64Array(n);
  const rank = baseShape.length;
  const last = rank - 1;
  const bs = stridesOf(baseShape);
  const bound = baseShape[axis];
  const axisStride = bs[axis];
  const dims = srcShape.slice(0, last);
  const rowLen = srcShape[last];
  const jStride = axis === last ? 0 : bs[last];
  const rows = rowLen === 0 ? 0 : n / rowLen;
  const odo = new Odometer({ dims, strides: [dims.map((_, d) => (d === axis ? 0 : bs[d]))], rowLen, rowStrides: [jStride], rows });
  for (let r = 0, p = 0; r < rows; r++) {
    let off = odo.offsets[0];
    for (let j = 0; j < rowLen; j++, p++, off += jStride) {
      const k = indices[p];
      if (k < 0 || k >= bound) throw indexError('scatterAdd', k, axis, bound);
      targets[p] = off + k * axisStride;
    }
    odo.next();
  }
  return targets;
}

/** out[t[i]] += src[i] with one f32 rounding per target (float64 accumulation for duplicates). */
export function accumulateF32(out: Float32Array, targets: Float64Array, src: Float32Array): void {
  const n = targets.length;
  let increasing = true;
  for (let i = 1; i < n && increasing; i++) if (targets[i] <= targets[i - 1]) increasing = false;
  let dups: Map<number, number> | undefined;
  if (!increasing) {
    const sorted = targets.slice().sort();
    for (let i = 1; i < n; i++) {
      if (sorted[i] === sorted[i - 1]) {
        dups ??= new Map();
        if (!dups.has(sorted[i])) dups.set(sorted[i], dups.size);
      }
    }
  }
  if (!dups) {
    for (let i = 0; i < n; i++) out[targets[i]] += src[i];
    return;
  }
  const acc = new Float64Array(dups.size);
  for (const [t, slot] of dups) acc[slot] = out[t];
  for (let i = 0; i < n; i++) {
    const t = targets[i];
    const slot = dups.get(t);
    if (slot === undefined) out[t] += src[i];
    else acc[slot] += src[i];
  }
  for (const [t, slot] of dups) out[t] = acc[slot];
}
