import { recordMatmul } from '../autograd/grads.js';
import { promoteTypes } from '../dtype.js';
import { DTypeError, ShapeError } from '../errors.js';
import { broadcastShapes, formatShape } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { add } from './elementwise.js';
import { backendOf, castOwned, computeDTypeOf, withDType, wrap } from './plumbing.js';

export interface MatmulOptions {
  transposeA?: boolean;
  transposeB?: boolean;
}

/**
 * Batched matrix product: a [..., M, K] x b [..., K, N] -> [..., M, N], batch dims
 * broadcast. Floats compute in f32 (f16/bf16 results are rounded back), ints in i32.
 */
export function matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  const backend = backendOf('matmul', a, b);
  const transposeA = options.transposeA ?? false;
  const transposeB = options.transposeB ?? false;
  if (a.rank < 2 || b.rank < 2) {
    throw new ShapeError('matmul', `operands need rank >= 2, got ${formatShape(a.shape)} and ${formatShape(b.shape)}`);
  }
  if (a.dtype === 'bool' || b.dtype === 'bool') throw new DTypeError('matmul', `bool operands are not supported (got ${a.dtype} x ${b.dtype})`);
  const M = a.shape[a.rank - (transposeA ? 1 : 2)];
  const Ka = a.shape[a.rank - (transposeA ? 2 : 1)];
  const Kb = b.shape[b.rank - (transposeB ? 1 : 2)];
  const N = b.shape[b.rank - (transposeB ? 2 : 1)];
  if (Ka !== Kb) {
    throw new ShapeError('matmul', `inner dimensions differ: ${formatShape(a.shape)}${transposeA ? '^T' : ''} x ${formatShape(b.shape)}${transposeB ? '^T' : ''} (K ${Ka} vs ${Kb})`);
  }
  const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2), 'matmul');
  const outShape = [...batch, M, N];
  const promoted = promoteTypes(a.dtype, b.dtype);
  let compute = computeDTypeOf(promoted);
  if (compute === 'u8') compute = 'i32';
  const out = withDType(a, compute, (va) =>
    withDType(b, compute, (vb) => wrap(backend, backend.matmul(va, vb, { transposeA, transposeB }, outShape), outShape, compute)),
  );
  const y = castOwned(out, promoted === 'u8' ? 'i32' : promoted);
  recordMatmul(a, b, transposeA, transposeB, y);
  return y;
}

/** x W^T + b with W stored [out, in] (PyTorch's Linear layout). */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor): Tensor {
  if (weight.rank !== 2) throw new ShapeError('linear', `weight must be [out, in], got ${formatShape(weight.shape)}`);
  const y = matmul(x, weight, { transposeB: true });
  if (!bias) return y;
  const out = add(y, bias);
  y.dispose();
  return out;
}
