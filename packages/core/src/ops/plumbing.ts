import type { Backend, ComputeDType, DataId } from '../backend.js';
import { isDType, type DType } from '../dtype.js';
import { assertLive, engine } from '../engine.js';
import { BackendError, DTypeError } from '../errors.js';
import type { Shape } from '../shape.js';
import { Tensor } from '../tensor.js';

/** A tensor or a JS number (broadcast as a scalar of a fitting dtype). */
export type TensorLike = Tensor | number;

/** Checks the tensors are live and on one backend; returns that backend. */
export function backendOf(op: string, ...tensors: Tensor[]): Backend {
  let backend: Backend | undefined;
  for (const t of tensors) {
    assertLive(t, op);
    if (!backend) backend = t.backend;
    else if (t.backend !== backend) {
      throw new BackendError(op, `tensors live on different backends (${backend.name} and ${t.backend.name}); move one with toBackend()`);
    }
  }
  if (!backend) throw new BackendError(op, 'expected at least one tensor');
  return backend;
}

export function wrap(backend: Backend, dataId: DataId, shape: Shape, dtype: DType): Tensor {
  return engine.makeTensor(backend, dataId, shape, dtype);
}

/**
 * For backend packages: a Tensor over storage the backend already holds (e.g. the output of a
 * collective written by a native library). Core takes over its reference counting.
 */
export function tensorFromDataId(backend: Backend, dataId: DataId, shape: Shape, dtype: DType): Tensor {
  return wrap(backend, dataId, shape, dtype);
}

export function assertDType(op: string, name: string, t: Tensor, allowed: readonly DType[]): void {
  if (!allowed.includes(t.dtype)) {
    throw new DTypeError(op, `${name} has dtype ${t.dtype}; expected ${allowed.join(' or ')}`);
  }
}

export function assertDTypeName(op: string, dtype: unknown): asserts dtype is DType {
  if (!isDType(dtype)) throw new DTypeError(op, `unknown dtype ${JSON.stringify(dtype)}`);
}

/** The dtype a storage dtype computes in. */
export function computeDTypeOf(dtype: DType): ComputeDType {
  switch (dtype) {
    case 'f32':
    case 'f16':
    case 'bf16':
    case 'e4m3':
    case 'e5m2':
      return 'f32';
    case 'i32':
      return 'i32';
    case 'u8':
      return 'u8';
    case 'bool':
      return 'bool';
  }
}

/**
 * Runs `fn` with `t` converted to compute dtype `dtype` (casting through a temporary when
 * needed), then frees the temporary.
 */
export function withDType<R>(t: Tensor, dtype: DType, fn: (v: Tensor) => R): R {
  if (t.dtype === dtype) return fn(t);
  const backend = t.backend;
  const tmp = wrap(backend, backend.cast(t, dtype, { saturate: false }), t.shape, dtype);
  try {
    return fn(tmp);
  } finally {
    tmp.dispose();
  }
}

/** Casts a freshly made tensor to `dtype`, disposing the source when a copy was needed. */
export function castOwned(t: Tensor, dtype: DType): Tensor {
  if (t.dtype === dtype) return t;
  const out = wrap(t.backend, t.backend.cast(t, dtype, { saturate: false }), t.shape, dtype);
  t.dispose();
  return out;
}

/** Makes a scalar tensor for a number operand, on `backend`, with a dtype that fits `like`. */
export function scalarFor(backend: Backend, value: number, like: DType): Tensor {
  let dtype: DType;
  if (like === 'f32' || like === 'f16' || like === 'bf16' || like === 'e4m3' || like === 'e5m2') dtype = 'f32';
  else if (Number.isInteger(value)) dtype = like === 'bool' || like === 'u8' ? 'i32' : like;
  else dtype = 'f32';
  return wrap(backend, backend.fill([], dtype, value), [], dtype);
}
