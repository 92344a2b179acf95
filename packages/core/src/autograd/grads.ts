import type { BinaryOp, ReduceOp, UnaryOp } from '../backend.js';
import { shapesEqual, type Shape } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { cast } from '../ops/cast.js';
import { full } from '../ops/creation.js';
import * as E from '../ops/elementwise.js';
import { gather, indexAdd, indexSelect, scatterAdd } from '../ops/indexing.js';
import { broadcastTo, concat, reshape, slice, transpose } from '../ops/layout.js';
import { matmul } from '../ops/matmul.js';
import { sum } from '../ops/reduce.js';
import { recordGrad } from './tape.js';

/**
 * Backward rules for the differentiable primitives-level ops. Composed ops (softmax,
 * RMSNorm, cross-entropy, ...) get their gradients from these automatically; fused kernels
 * record their own rule.
 */

/** Sums a broadcast gradient back to `shape`. */
export function sumToShape(g: Tensor, shape: Shape): Tensor {
  if (shapesEqual(g.shape, shape)) return g;
  const lead = g.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  }
  const s = axes.length ? sum(g, axes, { keepDims: true }) : g;
  return reshape(s, shape);
}

const SQRT_PI_2 = 2 / Math.sqrt(Math.PI);

export function recordUnary(op: UnaryOp, x: Tensor, y: Tensor): void {
  recordGrad(op, [x], y, (dy, [xs], ys) => {
    switch (op) {
      case 'neg':
        return [E.neg(dy)];
      case 'abs':
        return [E.mul(dy, E.sign(xs))];
      case 'square':
        return [E.mul(dy, E.mul(xs, 2))];
      case 'sqrt':
        return [E.div(dy, E.mul(ys, 2))];
      case 'rsqrt':
        // d x^-1/2 = -1/2 x^-3/2 = -1/2 y^3
        return [E.mul(dy, E.mul(E.mul(ys, E.square(ys)), -0.5))];
      case 'reciprocal':
        return [E.neg(E.mul(dy, E.square(ys)))];
      case 'exp':
        return [E.mul(dy, ys)];
      case 'log':
        return [E.div(dy, xs)];
      case 'sin':
        return [E.mul(dy, E.cos(xs))];
      case 'cos':
        return [E.neg(E.mul(dy, E.sin(xs)))];
      case 'tanh':
        return [E.mul(dy, E.sub(1, E.square(ys)))];
      case 'sigmoid':
        return [E.mul(dy, E.mul(ys, E.sub(1, ys)))];
      case 'relu':
        return [E.where(E.greater(xs, 0), dy, 0)];
      case 'erf':
        return [E.mul(dy, E.mul(E.exp(E.neg(E.square(xs))), SQRT_PI_2))];
      default:
        // sign, floor, ceil, round: zero almost everywhere; not, isnan: not differentiable.
        return [null];
    }
  });
}

export function recordBinary(op: BinaryOp, a: Tensor, b: Tensor, y: Tensor): void {
  if (!['add', 'sub', 'mul', 'div', 'pow', 'maximum', 'minimum'].includes(op)) return;
  recordGrad(op, [a, b], y, (dy, [as, bs], ys) => {
    let da: Tensor | null;
    let db: Tensor | null;
    switch (op) {
      case 'add':
        da = dy;
        db = dy;
        break;
      case 'sub':
        da = dy;
        db = E.neg(dy);
        break;
      case 'mul':
        da = E.mul(dy, bs);
        db = E.mul(dy, as);
        break;
      case 'div':
        da = E.div(dy, bs);
        db = E.neg(E.div(E.mul(dy, ys), bs));
        break;
      case 'pow':
        // d a^b / da = b a^(b-1); d/db = a^b ln a (0 where a <= 0, as the limit used by frameworks)
        da = E.mul(dy, E.mul(bs, E.pow(as, E.sub(bs, 1))));
        db = E.mul(dy, E.where(E.greater(as, 0), E.mul(ys, E.log(E.where(E.greater(as, 0), as, 1))), 0));
        break;
      default: {
        // maximum/minimum: the gradient goes to the selected operand; ties split evenly.
        const pickA = op === 'maximum' ? E.greater(as, bs) : E.less(as, bs);
        const tie = E.equal(as, bs);
        const half = E.mul(dy, 0.5);
        da = E.where(pickA, dy, E.where(tie, half, 0));
        db = E.where(pickA, 0, E.where(tie, half, dy));
      }
    }
    return [da && sumToShape(cast(da, 'f32'), as.shape), db && sumToShape(cast(db, 'f32'), bs.shape)];
  });
}

export function recordWhere(cond: Tensor, a: Tensor, b: Tensor, y: Tensor): void {
  recordGrad('where', [cond, a, b], y, (dy, [c, as, bs]) => [
    null,
    sumToShape(E.where(c, dy, 0), as.shape),
    sumToShape(E.where(c, 0, dy), bs.shape),
  ]);
}

/** Reductions: `axes` are the reduced axes of x (normalised), `keepDims` as called. */
export function recordReduce(op: ReduceOp, x: Tensor, axes: readonly number[], y: Tensor): void {
  if (op === 'argmax' || op === 'argmin') return;
  recordGrad(op, [x], y, (dy, [xs], ys) => {
    const kept = xs.shape.map((d, i) => (axes.includes(i) ? 1 : d));
    const g = reshape(dy, kept);
    const yk = reshape(ys, kept);
    switch (op) {
      case 'sum':
        return [broadcastTo(g, xs.shape)];
      case 'prod':
        // y/x, valid where x != 0 (the common case for parameters); zeros get 0 here.
        return [E.where(E.notEqual(xs, 0), E.div(E.mul(g, yk), E.where(E.notEqual(xs, 0), xs, 1)), 0)];
      default: {
        // max/min: split evenly between the positions that attain the extreme.
        const hit = cast(E.equal(xs, yk), 'f32');
        const count = sum(hit, [...axes], { keepDims: true });
        return [E.div(E.mul(hit, g), count)];
      }
    }
  });
}

export function recordMatmul(a: Tensor, b: Tensor, transposeA: boolean, transposeB: boolean, y: Tensor): void {
  recordGrad('matmul', [a, b], y, (dy, [as, bs]) => {
    // C = op(A) op(B). dop(A) = dC op(B)^T, dop(B) = op(A)^T dC, then undo the transposes.
    const da = transposeA ? matmul(bs, dy, { transposeA: transposeB, transposeB: true }) : matmul(dy, bs, { transposeB: !transposeB });
    const db = transposeB ? matmul(dy, as, { transposeA: true, transposeB: transposeA }) : matmul(as, dy, { transposeA: !transposeA });
    return [sumToShape(da, as.shape), sumToShape(db, bs.shape)];
  });
}

export function recordGather(x: Tensor, axis: number, indices: Tensor, y: Tensor): void {
  recordGrad('gather', [x, indices], y, (dy, [xs, idx]) => [scatterAdd(full(xs.shape, 0, 'f32', { backend: xs.backend }), axis, idx, dy), null]);
}

export function recordIndexSelect(x: Tensor, axis: number, indices: Tensor, y: Tensor): void {
  recordGrad('indexSelect', [x, indices], y, (dy, [xs, idx]) => [indexAdd(full(xs.shape, 0, 'f32', { backend: xs.backend }), axis, idx, dy), null]);
}

export function recordScatterAdd(base: Tensor, axis: number, indices: Tensor, src: Tensor, y: Tensor): void {
  recordGrad('scatterAdd', [base, indices, src], y, (dy, [, idx]) => [dy, null, gather(dy, axis, idx)]);
}

export function recordIndexAdd(base: Tensor, axis: number, indices: Tensor, src: Tensor, y: Tensor): void {
  recordGrad('indexAdd', [base, indices, src], y, (dy, [, idx]) => [dy, null, indexSelect(dy, axis, idx)]);
}

export function recordReshape(x: Tensor, y: Tensor): void {
  recordGrad('reshape', [x], y, (dy, [xs]) => [reshape(dy, xs.shape)]);
}

export function recordTranspose(x: Tensor, perm: readonly number[], y: Tensor): void {
  const inverse = new Array<number>(perm.length);
  perm.forEach((p, i) => (inverse[p] = i));
  recordGrad('transpose', [x], y, (dy) => [transpose(dy, inverse)]);
}

export function recordSlice(x: Tensor, begin: readonly number[], size: readonly number[], y: Tensor): void {
  recordGrad('slice', [x], y, (dy, [xs]) => [padInto(dy, xs.shape, begin, size)]);
}

/** Places `g` (of extent `size` at `begin`) into zeros of `shape`, by concatenation per axis. */
function padInto(g: Tensor, shape: Shape, begin: readonly number[], size: readonly number[]): Tensor {
  let cur = g;
  for (let ax = 0; ax < shape.length; ax++) {
    const before = begin[ax];
    const after = shape[ax] - begin[ax] - size[ax];
    if (before === 0 && after === 0) continue;
    const parts: Tensor[] = [];
    const blockShape = (n: number) => cur.shape.map((d, i) => (i === ax ? n : d));
    if (before > 0) parts.push(full(blockShape(before), 0, cur.dtype, { backend: cur.backend }));
    parts.push(cur);
    if (after > 0) parts.push(full(blockShape(after), 0, cur.dtype, { backend: cur.backend }));
    cur = concat(parts, ax);
  }
  return cur;
}

export function recordConcat(xs: readonly Tensor[], axis: number, y: Tensor): void {
  recordGrad('concat', xs, y, (dy, saved) => {
    const out: Tensor[] = [];
    let start = 0;
    for (const t of saved) {
      const begin = dy.shape.map((_, i) => (i === axis ? start : 0));
      const size = dy.shape.map((d, i) => (i === axis ? t.shape[axis] : d));
      out.push(slice(dy, begin, size));
      start += t.shape[axis];
    }
    return out;
  });
}

export function recordCast(x: Tensor, y: Tensor): void {
  recordGrad('cast', [x], y, (dy) => [dy]);
}

/** Fused softmax over the last axis: dx = y (dy - sum(dy y)). */
export function recordSoftmax(x: Tensor, y: Tensor): void {
  recordGrad('softmax', [x], y, (dy, _x, ys) => [E.mul(ys, E.sub(dy, sum(E.mul(dy, ys), -1, { keepDims: true })))]);
}

/** Fused log-softmax over the last axis: dx = dy - softmax * sum(dy). */
export function recordLogSoftmax(x: Tensor, y: Tensor): void {
  recordGrad('logSoftmax', [x], y, (dy, _x, ys) => [E.sub(dy, E.mul(E.exp(ys), sum(dy, -1, { keepDims: true })))]);
}

/** Fused RMSNorm y = x r w with r = rsqrt(mean(x^2) + eps). */
export function recordRmsNorm(x: Tensor, weight: Tensor, eps: number, y: Tensor): void {
  recordGrad('rmsNorm', [x, weight], y, (dy, [xs, ws]) => {
    const d = xs.shape[xs.rank - 1];
    const r = E.rsqrt(E.add(E.div(sum(E.square(xs), -1, { keepDims: true }), d), eps));
    const xhat = E.mul(xs, r);
    const gx = E.mul(dy, ws);
    // dx = r (gx - xhat mean(gx xhat))
    const dx = E.mul(r, E.sub(gx, E.mul(xhat, E.div(sum(E.mul(gx, xhat), -1, { keepDims: true }), d))));
    const dw = sumToShape(E.mul(dy, xhat), ws.shape);
    return [dx, dw];
  });
}

/** Fused SwiGLU y = silu(g) u. */
export function recordSwiglu(gate: Tensor, up: Tensor, y: Tensor): void {
  recordGrad('swiglu', [gate, up], y, (dy, [g, u]) => {
    const s = E.sigmoid(g);
    const silu = E.mul(g, s);
    const dsilu = E.mul(s, E.add(1, E.mul(g, E.sub(1, s))));
    return [E.mul(E.mul(dy, u), dsilu), E.mul(dy, silu)];
  });
}
