import { COMPARISON_OPS, LOGICAL_OPS, type BinaryOp, type UnaryOp } from '../backend.js';
import { isFloatDType, promoteTypes, type DType } from '../dtype.js';
import { broadcastShapes } from '../shape.js';
import { Tensor } from '../tensor.js';
import { DTypeError } from '../errors.js';
import { recordBinary, recordUnary, recordWhere } from '../autograd/grads.js';
import { backendOf, castOwned, computeDTypeOf, scalarFor, withDType, wrap, type TensorLike } from './plumbing.js';

const FLOAT_ONLY: ReadonlySet<UnaryOp> = new Set(['sqrt', 'rsqrt', 'reciprocal', 'exp', 'log', 'sin', 'cos', 'tanh', 'sigmoid', 'erf']);
const INT_IDENTITY: ReadonlySet<UnaryOp> = new Set(['floor', 'ceil', 'round']);

/** Result dtype of a float op: f16/bf16 are kept, FP8 (storage only) widens to f32. */
function floatResult(dtype: DType): DType {
  return dtype === 'f16' || dtype === 'bf16' ? dtype : 'f32';
}

export function unary(op: UnaryOp, x: Tensor): Tensor {
  const backend = backendOf(op, x);
  if (op === 'not') {
    return withDType(x, 'bool', (v) => wrap(backend, backend.unary('not', v, 'bool'), x.shape, 'bool'));
  }
  if (op === 'isnan') {
    if (!isFloatDType(x.dtype)) return wrap(backend, backend.fill(x.shape, 'bool', 0), x.shape, 'bool');
    return withDType(x, 'f32', (v) => wrap(backend, backend.unary('isnan', v, 'bool'), x.shape, 'bool'));
  }
  if (isFloatDType(x.dtype) || FLOAT_ONLY.has(op)) {
    const result = isFloatDType(x.dtype) ? floatResult(x.dtype) : 'f32';
    const out = withDType(x, 'f32', (v) => wrap(backend, backend.unary(op, v, 'f32'), x.shape, 'f32'));
    const y = castOwned(out, result);
    recordUnary(op, x, y);
    return y;
  }
  if (INT_IDENTITY.has(op)) return wrap(backend, backend.cast(x, x.dtype, { saturate: false }), x.shape, x.dtype);
  // Integer arithmetic happens in i32 (u8 and bool widen).
  return withDType(x, 'i32', (v) => wrap(backend, backend.unary(op, v, 'i32'), x.shape, 'i32'));
}

export const neg = (x: Tensor) => unary('neg', x);
export const abs = (x: Tensor) => unary('abs', x);
export const sign = (x: Tensor) => unary('sign', x);
export const square = (x: Tensor) => unary('square', x);
export const sqrt = (x: Tensor) => unary('sqrt', x);
export const rsqrt = (x: Tensor) => unary('rsqrt', x);
export const reciprocal = (x: Tensor) => unary('reciprocal', x);
export const exp = (x: Tensor) => unary('exp', x);
export const log = (x: Tensor) => unary('log', x);
export const sin = (x: Tensor) => unary('sin', x);
export const cos = (x: Tensor) => unary('cos', x);
export const tanh = (x: Tensor) => unary('tanh', x);
export const sigmoid = (x: Tensor) => unary('sigmoid', x);
export const relu = (x: Tensor) => unary('relu', x);
export const erf = (x: Tensor) => unary('erf', x);
export const floor = (x: Tensor) => unary('floor', x);
export const ceil = (x: Tensor) => unary('ceil', x);
/** Rounds half to even (as torch.round). */
export const round = (x: Tensor) => unary('round', x);
export const logicalNot = (x: Tensor) => unary('not', x);
export const isNaN = (x: Tensor) => unary('isnan', x);

/**
 * Promotion when an operand is a JS number: the number is "weak" next to a float tensor, so
 * f16/bf16 tensors keep their dtype (bf16 * 0.5 is bf16, as in PyTorch) while the number
 * itself still enters the f32 computation unrounded. FP8 tensors widen to f32 as usual.
 */
function promoteWithNumbers(a: TensorLike, b: TensorLike, ta: Tensor, tb: Tensor): DType {
  if (!(a instanceof Tensor) && b instanceof Tensor && isFloatDType(tb.dtype)) return promoteTypes(tb.dtype, tb.dtype);
  if (!(b instanceof Tensor) && a instanceof Tensor && isFloatDType(ta.dtype)) return promoteTypes(ta.dtype, ta.dtype);
  return promoteTypes(ta.dtype, tb.dtype);
}

/**
 * Broadcasting binary op with dtype promotion. Floats compute in f32 and round to the
 * result dtype; integer arithmetic is i32 (u8/bool widen); `div` of integers is float
 * division; comparisons and logical ops return bool.
 */
export function binary(op: BinaryOp, a: TensorLike, b: TensorLike): Tensor {
  const tensors = [a, b].filter((v): v is Tensor => v instanceof Tensor);
  if (tensors.length === 0) throw new DTypeError(op, 'at least one operand must be a Tensor');
  for (const v of [a, b]) {
    if (!(v instanceof Tensor) && typeof v !== 'number') {
      throw new DTypeError(op, `operands must be Tensors or numbers, got ${v === null ? 'null' : typeof v}`);
    }
  }
  const backend = backendOf(op, ...tensors);
  const temps: Tensor[] = [];
  try {
    const ta = a instanceof Tensor ? a : (temps[temps.length] = scalarFor(backend, a, (b as Tensor).dtype));
    const tb = b instanceof Tensor ? b : (temps[temps.length] = scalarFor(backend, b, ta.dtype));
    const outShape = broadcastShapes(ta.shape, tb.shape, op);
    const promoted = promoteWithNumbers(a, b, ta, tb);
    if (LOGICAL_OPS.has(op)) {
      return withDType(ta, 'bool', (va) => withDType(tb, 'bool', (vb) => wrap(backend, backend.binary(op, va, vb, outShape, 'bool'), outShape, 'bool')));
    }
    let compute = computeDTypeOf(promoted);
    let result: DType = promoted;
    if (!COMPARISON_OPS.has(op)) {
      if (compute === 'u8' || compute === 'bool') {
        compute = 'i32';
        result = 'i32';
      }
      if ((op === 'div' || op === 'pow') && compute === 'i32') {
        compute = 'f32';
        result = 'f32';
      }
    }
    const outDtype = COMPARISON_OPS.has(op) ? 'bool' : compute;
    const out = withDType(ta, compute, (va) =>
      withDType(tb, compute, (vb) => wrap(backend, backend.binary(op, va, vb, outShape, outDtype), outShape, outDtype)),
    );
    if (COMPARISON_OPS.has(op)) return out;
    const y = castOwned(out, result);
    recordBinary(op, ta, tb, y);
    return y;
  } finally {
    for (const t of temps) t.dispose();
  }
}

export const add = (a: TensorLike, b: TensorLike) => binary('add', a, b);
export const sub = (a: TensorLike, b: TensorLike) => binary('sub', a, b);
export const mul = (a: TensorLike, b: TensorLike) => binary('mul', a, b);
export const div = (a: TensorLike, b: TensorLike) => binary('div', a, b);
export const pow = (a: TensorLike, b: TensorLike) => binary('pow', a, b);
export const maximum = (a: TensorLike, b: TensorLike) => binary('maximum', a, b);
export const minimum = (a: TensorLike, b: TensorLike) => binary('minimum', a, b);
/** Floored modulo (sign of the divisor, as Python and torch.remainder). */
export const mod = (a: TensorLike, b: TensorLike) => binary('mod', a, b);
export const equal = (a: TensorLike, b: TensorLike) => binary('eq', a, b);
export const notEqual = (a: TensorLike, b: TensorLike) => binary('ne', a, b);
export const less = (a: TensorLike, b: TensorLike) => binary('lt', a, b);
export const lessEqual = (a: TensorLike, b: TensorLike) => binary('le', a, b);
export const greater = (a: TensorLike, b: TensorLike) => binary('gt', a, b);
export const greaterEqual = (a: TensorLike, b: TensorLike) => binary('ge', a, b);
export const logicalAnd = (a: TensorLike, b: TensorLike) => binary('and', a, b);
export const logicalOr = (a: TensorLike, b: TensorLike) => binary('or', a, b);

/** Broadcasting select: cond ? a : b (cond is cast to bool). */
export function where(cond: Tensor, a: TensorLike, b: TensorLike): Tensor {
  const tensors = [cond, a, b].filter((v): v is Tensor => v instanceof Tensor);
  const backend = backendOf('where', ...tensors);
  const temps: Tensor[] = [];
  try {
    const like = a instanceof Tensor ? a.dtype : b instanceof Tensor ? b.dtype : 'f32';
    const ta = a instanceof Tensor ? a : (temps[temps.length] = scalarFor(backend, a, like));
    const tb = b instanceof Tensor ? b : (temps[temps.length] = scalarFor(backend, b, like));
    const outShape = broadcastShapes(broadcastShapes(cond.shape, ta.shape, 'where'), tb.shape, 'where');
    const promoted = promoteWithNumbers(a, b, ta, tb);
    const compute = computeDTypeOf(promoted);
    const out = withDType(cond, 'bool', (c) =>
      withDType(ta, compute, (va) => withDType(tb, compute, (vb) => wrap(backend, backend.where(c, va, vb, outShape), outShape, compute))),
    );
    const y = castOwned(out, promoted);
    recordWhere(cond, ta, tb, y);
    return y;
  } finally {
    for (const t of temps) t.dispose();
  }
}

/** Clamps to [lo, hi]. */
export function clamp(x: Tensor, lo: number, hi: number): Tensor {
  const lower = maximum(x, lo);
  const out = minimum(lower, hi);
  lower.dispose();
  return castOwned(out, x.dtype === 'e4m3' || x.dtype === 'e5m2' ? 'f32' : out.dtype);
}
