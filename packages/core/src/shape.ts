import { ArgumentError, ShapeError } from './errors.js';

export type Shape = readonly number[];

export function sizeOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function formatShape(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

export function shapesEqual(a: Shape, b: Shape): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function assertValidShape(shape: Shape, op: string): void {
  if (!Array.isArray(shape)) throw new ShapeError(op, `shape must be an array of integers, got ${String(shape)}`);
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) {
      throw new ShapeError(op, `shape ${formatShape(shape)} has an invalid dimension ${d}; dimensions are integers >= 0`);
    }
  }
}

/** Row-major strides of a contiguous tensor. */
export function stridesOf(shape: Shape): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

/** Resolves a possibly negative axis against `rank`. */
export function normalizeAxis(axis: number, rank: number, op: string): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank) {
    throw new ShapeError(op, `axis ${axis} is out of range for a tensor of rank ${rank} (valid: ${-rank}..${rank - 1})`);
  }
  return axis < 0 ? axis + rank : axis;
}

/** NumPy broadcasting of two shapes. */
export function broadcastShapes(a: Shape, b: Shape, op: string): number[] {
  const rank = Math.max(a.length, b.length);
  const out = new Array<number>(rank);
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new ShapeError(op, `shapes ${formatShape(a)} and ${formatShape(b)} cannot be broadcast (dimension ${i} of the aligned shapes: ${da} vs ${db})`);
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/**
 * Strides to read `shape` as if broadcast to `outShape` (0 where broadcast).
 * Backends use this to index broadcast operands without materialising them.
 */
export function broadcastStrides(shape: Shape, outShape: Shape): number[] {
  const strides = stridesOf(shape);
  const out = new Array<number>(outShape.length).fill(0);
  const off = outShape.length - shape.length;
  for (let i = 0; i < shape.length; i++) out[off + i] = shape[i] === 1 ? 0 : strides[i];
  return out;
}

/** Resolves one -1 in a reshape target. */
export function inferReshape(size: number, shape: Shape, op: string): number[] {
  const out = [...shape];
  let infer = -1;
  let known = 1;
  for (let i = 0; i < out.length; i++) {
    if (out[i] === -1) {
      if (infer >= 0) throw new ShapeError(op, `only one dimension may be -1, got ${formatShape(shape)}`);
      infer = i;
    } else if (!Number.isInteger(out[i]) || out[i] < 0) {
      throw new ShapeError(op, `invalid dimension ${out[i]} in ${formatShape(shape)}`);
    } else known *= out[i];
  }
  if (infer >= 0) {
    if (known === 0 || size % known !== 0) {
      throw new ShapeError(op, `cannot infer -1 in ${formatShape(shape)} for ${size} elements`);
    }
    out[infer] = size / known;
  }
  if (sizeOf(out) !== size) throw new ShapeError(op, `cannot reshape ${size} elements into ${formatShape(shape)}`);
  return out;
}

export function assertPermutation(perm: readonly number[], rank: number, op: string): void {
  if (perm.length !== rank) throw new ArgumentError(op, `permutation [${perm.join(', ')}] has ${perm.length} axes, the tensor has ${rank}`);
  const seen = new Set<number>();
  for (const p of perm) {
    if (!Number.isInteger(p) || p < 0 || p >= rank || seen.has(p)) {
      throw new ArgumentError(op, `[${perm.join(', ')}] is not a permutation of 0..${rank - 1}`);
    }
    seen.add(p);
  }
}
