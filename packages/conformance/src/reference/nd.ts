/** Row-major n-d index helpers and float64 reference implementations of the layout,
 *  indexing, reduction and matmul semantics, on plain number arrays. */

export type Shape = readonly number[];

export function size(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function strides(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

export function unravel(i: number, shape: Shape): number[] {
  const idx = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    const n = shape[d];
    idx[d] = n === 0 ? 0 : i % n;
    i = n === 0 ? 0 : Math.floor(i / n);
  }
  return idx;
}

export function ravel(idx: readonly number[], shape: Shape): number {
  let off = 0;
  for (let d = 0; d < shape.length; d++) off = off * shape[d] + idx[d];
  return off;
}

/** NumPy broadcast of shapes; throws on mismatch. */
export function broadcast(...shapes: Shape[]): number[] {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out = new Array<number>(rank).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const o = rank - s.length + i;
      const d = s[i];
      if (out[o] === 1) out[o] = d;
      else if (d !== 1 && d !== out[o]) throw new Error(`cannot broadcast [${shapes.map((x) => x.join(',')).join('] [')}]`);
    }
  }
  return out;
}

/** Flat index into `shape` of the element that broadcasts to output multi-index `idx`. */
export function broadcastIndex(idx: readonly number[], shape: Shape): number {
  const off = idx.length - shape.length;
  let flat = 0;
  for (let d = 0; d < shape.length; d++) flat = flat * shape[d] + (shape[d] === 1 ? 0 : idx[off + d]);
  return flat;
}

/** out[i] = f(a[bcast], b[bcast]) over the broadcast shape. */
export function mapBroadcast(shapes: Shape[], arrays: ArrayLike<number>[], f: (...v: number[]) => number): { shape: number[]; values: Float64Array } {
  const shape = broadcast(...shapes);
  const n = size(shape);
  const out = new Float64Array(n);
  const args = new Array<number>(arrays.length);
  for (let i = 0; i < n; i++) {
    const idx = unravel(i, shape);
    for (let k = 0; k < arrays.length; k++) args[k] = arrays[k][broadcastIndex(idx, shapes[k])];
    out[i] = f(...args);
  }
  return { shape, values: out };
}

export function transposeRef<T extends number>(x: ArrayLike<T>, shape: Shape, perm: readonly number[]): { shape: number[]; values: T[] } {
  const outShape = perm.map((p) => shape[p]);
  const n = size(outShape);
  const values = new Array<T>(n);
  const xs = strides(shape);
  for (let i = 0; i < n; i++) {
    const idx = unravel(i, outShape);
    let off = 0;
    for (let d = 0; d < perm.length; d++) off += idx[d] * xs[perm[d]];
    values[i] = x[off];
  }
  return { shape: outShape, values };
}

export function sliceRef<T extends number>(x: ArrayLike<T>, shape: Shape, begin: readonly number[], sz: readonly number[]): T[] {
  const n = size(sz);
  const out = new Array<T>(n);
  for (let i = 0; i < n; i++) {
    const idx = unravel(i, sz).map((v, d) => v + begin[d]);
    out[i] = x[ravel(idx, shape)];
  }
  return out;
}

export function concatRef<T extends number>(xs: { values: ArrayLike<T>; shape: Shape }[], axis: number): { shape: number[]; values: T[] } {
  const shape = [...xs[0].shape];
  shape[axis] = xs.reduce((s, x) => s + x.shape[axis], 0);
  const n = size(shape);
  const out = new Array<T>(n);
  for (let i = 0; i < n; i++) {
    const idx = unravel(i, shape);
    let a = idx[axis];
    let k = 0;
    while (a >= xs[k].shape[axis]) {
      a -= xs[k].shape[axis];
      k++;
    }
    const src = [...idx];
    src[axis] = a;
    out[i] = xs[k].values[ravel(src, xs[k].shape)];
  }
  return { shape, values: out };
}

export function gatherRef<T extends number>(x: ArrayLike<T>, shape: Shape, axis: number, indices: ArrayLike<number>, ishape: Shape): T[] {
  const n = size(ishape);
  const out = new Array<T>(n);
  for (let i = 0; i < n; i++) {
    const idx = unravel(i, ishape);
    idx[axis] = indices[i];
    out[i] = x[ravel(idx, shape)];
  }
  return out;
}

export function indexSelectRef<T extends number>(x: ArrayLike<T>, shape: Shape, axis: number, indices: ArrayLike<number>): { shape: number[]; values: T[] } {
  const outShape = [...shape];
  outShape[axis] = indices.length;
  const n = size(outShape);
  const out = new Array<T>(n);
  for (let i = 0; i < n; i++) {
    const idx = unravel(i, outShape);
    idx[axis] = indices[idx[axis]];
    out[i] = x[ravel(idx, shape)];
  }
  return { shape: outShape, values: out };
}

/**
 * Reduces `axes` of x with `init`/`step`, visiting elements in row-major order; returns the
 * per-output accumulators (a reduced shape without the axes) and each output's element list.
 */
export function groupsOf(shape: Shape, axes: readonly number[]): { outShape: number[]; groups: number[][] } {
  const keep = shape.map((_, d) => d).filter((d) => !axes.includes(d));
  const outShape = keep.map((d) => shape[d]);
  const groups: number[][] = Array.from({ length: size(outShape) }, () => []);
  const n = size(shape);
  for (let i = 0; i < n; i++) {
    const idx = unravel(i, shape);
    const o = ravel(
      keep.map((d) => idx[d]),
      outShape,
    );
    groups[o].push(i);
  }
  return { outShape, groups };
}

/** Float64 batched matmul with broadcast batch dims; also returns sum_k |a||b| per output. */
export function matmulRef(
  a: ArrayLike<number>,
  aShape: Shape,
  b: ArrayLike<number>,
  bShape: Shape,
  transposeA: boolean,
  transposeB: boolean,
  integer = false,
): { shape: number[]; values: Float64Array; absSum: Float64Array } {
  const ra = aShape.length;
  const rb = bShape.length;
  const M = aShape[ra - (transposeA ? 1 : 2)];
  const K = aShape[ra - (transposeA ? 2 : 1)];
  const N = bShape[rb - (transposeB ? 2 : 1)];
  const batch = broadcast(aShape.slice(0, -2), bShape.slice(0, -2));
  const shape = [...batch, M, N];
  const nb = size(batch);
  const values = new Float64Array(nb * M * N);
  const absSum = new Float64Array(nb * M * N);
  const aBatch = aShape.slice(0, -2);
  const bBatch = bShape.slice(0, -2);
  const aMat = aShape[ra - 2] * aShape[ra - 1];
  const bMat = bShape[rb - 2] * bShape[rb - 1];
  for (let bi = 0; bi < nb; bi++) {
    const idx = unravel(bi, batch);
    const ao = broadcastIndex(idx, aBatch) * aMat;
    const bo = broadcastIndex(idx, bBatch) * bMat;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        let abs = 0;
        for (let k = 0; k < K; k++) {
          const av = a[ao + (transposeA ? k * M + m : m * K + k)];
          const bv = b[bo + (transposeB ? n * K + k : k * N + n)];
          if (integer) s = (s + Math.imul(av, bv)) | 0;
          else {
            const p = av * bv;
            s += p;
            abs += Math.abs(p);
          }
        }
        const o = (bi * M + m) * N + n;
        values[o] = s;
        absSum[o] = abs;
      }
    }
  }
  return { shape, values, absSum };
}
