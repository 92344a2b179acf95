import { broadcastStrides, type Shape } from '@kiln/core';

/**
 * Iteration plans for strided and broadcast loops. An output of `outShape` is walked as
 * `rows` rows of `rowLen` contiguous output elements; within a row each operand advances
 * by a constant stride (0 when broadcast), and between rows an odometer over the remaining
 * (collapsed) outer dimensions moves every operand's offset. Adjacent dimensions that are
 * contiguous for every operand are merged first, so most broadcasts become one long row
 * per outer index and same-shape operands become a single row.
 */
export interface RowPlan {
  /** Sizes of the outer (non-row) dimensions, outermost first. */
  readonly dims: readonly number[];
  /** strides[k][d]: operand k's element stride along outer dimension d. */
  readonly strides: readonly (readonly number[])[];
  /** Length of a row (the collapsed innermost dimension). */
  readonly rowLen: number;
  /** Operand k's element stride along the row. */
  readonly rowStrides: readonly number[];
  /** Number of rows. */
  readonly rows: number;
}

/** Builds a plan for reading `strides[k]`-strided operands in the order of `shape`. */
export function planStrided(shape: Shape, operandStrides: readonly (readonly number[])[]): RowPlan {
  const n = operandStrides.length;
  const sizes: number[] = [];
  const strides: number[][] = operandStrides.map(() => []);
  for (let d = 0; d < shape.length; d++) {
    const size = shape[d];
    if (size === 1) continue;
    const last = sizes.length - 1;
    let merge = last >= 0;
    for (let k = 0; k < n && merge; k++) {
      if (strides[k][last] !== operandStrides[k][d] * size) merge = false;
    }
    if (merge) {
      sizes[last] *= size;
      for (let k = 0; k < n; k++) strides[k][last] = operandStrides[k][d];
    } else {
      sizes.push(size);
      for (let k = 0; k < n; k++) strides[k].push(operandStrides[k][d]);
    }
  }
  if (sizes.length === 0) {
    return { dims: [], strides: strides.map(() => []), rowLen: 1, rowStrides: strides.map(() => 0), rows: 1 };
  }
  const rowLen = sizes.pop() as number;
  const rowStrides = strides.map((s) => s.pop() as number);
  let rows = 1;
  for (const s of sizes) rows *= s;
  return { dims: sizes, strides, rowLen, rowStrides, rows };
}

/** Plan for operands of `shapes` broadcast to `outShape`. */
export function planBroadcast(outShape: Shape, shapes: readonly Shape[]): RowPlan {
  return planStrided(
    outShape,
    shapes.map((s) => broadcastStrides(s, outShape)),
  );
}

/**
 * Walks the outer dimensions of a plan: `offsets[k]` is operand k's offset of the current
 * row; `next()` advances to the following row.
 */
export class Odometer {
  readonly offsets: Float64Array;
  private readonly idx: Int32Array;
  private readonly dims: readonly number[];
  private readonly strides: readonly (readonly number[])[];

  constructor(plan: RowPlan, base?: readonly number[]) {
    this.dims = plan.dims;
    this.strides = plan.strides;
    this.offsets = new Float64Array(plan.strides.length);
    if (base) for (let k = 0; k < base.length; k++) this.offsets[k] = base[k];
    this.idx = new Int32Array(plan.dims.length);
  }

  next(): void {
    const { dims, strides, offsets, idx } = this;
    const n = offsets.length;
    for (let d = dims.length - 1; d >= 0; d--) {
      if (++idx[d] < dims[d]) {
        for (let k = 0; k < n; k++) offsets[k] += strides[k][d];
        return;
      }
      idx[d] = 0;
      const back = dims[d] - 1;
      for (let k = 0; k < n; k++) offsets[k] -= strides[k][d] * back;
    }
  }
}

/** Product of `shape[from..to)`. */
export function prod(shape: Shape, from = 0, to = shape.length): number {
  let p = 1;
  for (let i = from; i < to; i++) p *= shape[i];
  return p;
}

/** Copies `n` codes; `subarray().set()` for long runs, a loop for short ones. */
export function copyRun(
  src: Int32Array | Uint16Array | Uint8Array,
  srcOff: number,
  dst: Int32Array | Uint16Array | Uint8Array,
  dstOff: number,
  n: number,
): void {
  if (n > 32) {
    dst.set(src.subarray(srcOff, srcOff + n), dstOff);
  } else {
    for (let i = 0; i < n; i++) dst[dstOff + i] = src[srcOff + i];
  }
}
