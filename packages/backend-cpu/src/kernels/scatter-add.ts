import type { Shape } from '@kiln/core';
import { sizeOf, stridesOf } from '@kiln/core';
import { indexError } from './indexing-util.js';
import { copyOf } from '../pool.js';
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
  const out = copyOf(base);
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
export function scatterTargets(baseShape: Shape, axis: number, indices: Int32Array, srcShape: Shape): Float64Array {
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

/**
 * out[t[i]] += src[i] with one f32 rounding per target. A bitset over the output finds the
 * targets hit more than once; only those accumulate in float64 (a dense array when the
 * output is small relative to src, a map otherwise) before base + sum is rounded once.
 */
export function accumulateF32(out: Float32Array, targets: Float64Array, src: Float32Array): void {
  const n = targets.length;
  const size = out.length;
  const seen = new Uint8Array((size + 7) >>> 3);
  const dup = new Uint8Array((size + 7) >>> 3);
  let dups = 0;
  for (let i = 0; i < n; i++) {
    const t = targets[i];
    const byte = t >>> 3;
    const bit = 1 << (t & 7);
    if (seen[byte] & bit) {
      if (!(dup[byte] & bit)) {
        dup[byte] |= bit;
        dups++;
      }
    } else seen[byte] |= bit;
  }
  if (dups === 0) {
    for (let i = 0; i < n; i++) out[targets[i]] += src[i];
    return;
  }
  if (size <= 4 * n) {
    const acc = new Float64Array(size);
    for (let i = 0; i < n; i++) {
      const t = targets[i];
      if (dup[t >>> 3] & (1 << (t & 7))) acc[t] += src[i];
      else out[t] += src[i];
    }
    for (let t = 0; t < size; t++) if (dup[t >>> 3] & (1 << (t & 7))) out[t] += acc[t];
    return;
  }
  const slots = new Map<number, number>();
  const acc = new Float64Array(dups);
  for (let i = 0; i < n; i++) {
    const t = targets[i];
    if (dup[t >>> 3] & (1 << (t & 7))) {
      let slot = slots.get(t);
      if (slot === undefined) {
        slot = slots.size;
        slots.set(t, slot);
      }
      acc[slot] += src[i];
    } else out[t] += src[i];
  }
  for (const [t, slot] of slots) out[t] += acc[slot];
}
