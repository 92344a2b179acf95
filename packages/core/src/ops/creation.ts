import type { Backend } from '../backend.js';
import { encodeFp8 } from '../codecs/fp8.js';
import { encodeBf16, encodeF16 } from '../codecs/half.js';
import { allocStorage, dtypeInfo, isStorageOf, type DType, type StorageArray } from '../dtype.js';
import { getBackend } from '../engine.js';
import { ArgumentError, ShapeError } from '../errors.js';
import { assertValidShape, formatShape, sizeOf, type Shape } from '../shape.js';
import type { Tensor } from '../tensor.js';
import { assertDTypeName, wrap } from './plumbing.js';

export interface CreateOptions {
  /** Defaults to the current backend. */
  backend?: Backend;
}

type NumericInput = ArrayLike<number> | number | NestedNumbers;
interface NestedNumbers extends Array<number | NestedNumbers | boolean> {}

function flatten(values: unknown, out: number[], shape: number[], depth: number, op: string): void {
  if (Array.isArray(values)) {
    if (shape.length === depth) shape.push(values.length);
    else if (shape[depth] !== values.length) throw new ShapeError(op, `ragged nested array: dimension ${depth} has lengths ${shape[depth]} and ${values.length}`);
    for (const v of values) flatten(v, out, shape, depth + 1, op);
  } else if (typeof values === 'number' || typeof values === 'boolean') {
    if (shape.length !== depth) throw new ShapeError(op, `ragged nested array at depth ${depth}`);
    out.push(Number(values));
  } else {
    throw new ArgumentError(op, `expected numbers or nested arrays of numbers, got ${values === null ? 'null' : typeof values}`);
  }
}

/** Encodes JS numbers into the storage codes of `dtype`. */
export function encodeValues(values: ArrayLike<number>, dtype: DType): StorageArray {
  const f = (): Float32Array => (values instanceof Float32Array ? values : Float32Array.from(values));
  switch (dtype) {
    case 'f32':
      return Float32Array.from(values);
    case 'f16':
      return encodeF16(f());
    case 'bf16':
      return encodeBf16(f());
    case 'e4m3':
    case 'e5m2':
      return encodeFp8(f(), dtype);
    case 'i32': {
      const out = new Int32Array(values.length);
      for (let i = 0; i < values.length; i++) out[i] = Math.trunc(values[i]);
      return out;
    }
    case 'u8': {
      const out = new Uint8Array(values.length);
      for (let i = 0; i < values.length; i++) out[i] = Math.trunc(values[i]) & 0xff;
      return out;
    }
    case 'bool': {
      const out = new Uint8Array(values.length);
      for (let i = 0; i < values.length; i++) out[i] = values[i] !== 0 ? 1 : 0;
      return out;
    }
  }
}

/**
 * Creates a tensor from JS values: a number (scalar), nested arrays, or a flat array-like
 * with an explicit shape. Values are numbers; low-precision dtypes are encoded (rounded).
 */
export function tensor(values: NumericInput, shape?: Shape, dtype: DType = 'f32', options: CreateOptions = {}): Tensor {
  assertDTypeName('tensor', dtype);
  let flat: ArrayLike<number>;
  let inferred: number[];
  if (typeof values === 'number') {
    flat = [values];
    inferred = [];
  } else if (Array.isArray(values)) {
    const out: number[] = [];
    inferred = [];
    flatten(values, out, inferred, 0, 'tensor');
    flat = out;
  } else if (values && typeof values === 'object' && typeof (values as ArrayLike<number>).length === 'number') {
    flat = values as ArrayLike<number>;
    inferred = [flat.length];
  } else {
    throw new ArgumentError('tensor', `expected a number, nested array or typed array, got ${values === null ? 'null' : typeof values}`);
  }
  const finalShape = shape ? [...shape] : inferred;
  assertValidShape(finalShape, 'tensor');
  if (sizeOf(finalShape) !== flat.length) {
    throw new ShapeError('tensor', `${flat.length} values do not fill shape ${formatShape(finalShape)} (${sizeOf(finalShape)} elements)`);
  }
  const backend = options.backend ?? getBackend();
  return wrap(backend, backend.write(encodeValues(flat, dtype), dtype, finalShape), finalShape, dtype);
}

/**
 * Creates a tensor from storage codes of `dtype` (f16/bf16 bit patterns as Uint16Array,
 * FP8 codes as Uint8Array), without conversion. The array is copied.
 */
export function fromStorage(codes: StorageArray, shape: Shape, dtype: DType, options: CreateOptions = {}): Tensor {
  assertDTypeName('fromStorage', dtype);
  assertValidShape(shape, 'fromStorage');
  if (!isStorageOf(dtype, codes)) {
    throw new ArgumentError('fromStorage', `storage for ${dtype} must be a ${allocStorage(dtype, 0).constructor.name}, got ${(codes as object)?.constructor?.name ?? typeof codes}`);
  }
  if (codes.length !== sizeOf(shape)) {
    throw new ShapeError('fromStorage', `${codes.length} codes do not fill shape ${formatShape(shape)} (${sizeOf(shape)} elements)`);
  }
  const backend = options.backend ?? getBackend();
  return wrap(backend, backend.write(codes, dtype, shape), shape, dtype);
}

export function full(shape: Shape, value: number, dtype: DType = 'f32', options: CreateOptions = {}): Tensor {
  assertValidShape(shape, 'full');
  assertDTypeName('full', dtype);
  dtypeInfo(dtype, 'full');
  const backend = options.backend ?? getBackend();
  return wrap(backend, backend.fill(shape, dtype, value), shape, dtype);
}

export const zeros = (shape: Shape, dtype: DType = 'f32', options?: CreateOptions) => full(shape, 0, dtype, options);
export const ones = (shape: Shape, dtype: DType = 'f32', options?: CreateOptions) => full(shape, 1, dtype, options);
export const scalar = (value: number, dtype: DType = 'f32', options?: CreateOptions) => full([], value, dtype, options);

/** [start, start+step, ...) below `stop`, like numpy.arange. */
export function arange(start: number, stop?: number, step = 1, dtype: DType = 'i32', options: CreateOptions = {}): Tensor {
  if (stop === undefined) {
    stop = start;
    start = 0;
  }
  if (step === 0 || !Number.isFinite(step)) throw new ArgumentError('arange', `step must be finite and non-zero, got ${step}`);
  const n = Math.max(0, Math.ceil((stop - start) / step));
  const values = new Array<number>(n);
  for (let i = 0; i < n; i++) values[i] = start + i * step;
  return tensor(values, [n], dtype, options);
}

function seedOf(op: string, seed: number): number {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new ArgumentError(op, `seed must be an integer in [0, 2^32), got ${seed}`);
  return seed >>> 0;
}

/** Uniform [low, high) f32 values from kiln's counter-based generator (identical on every backend). */
export function randomUniform(shape: Shape, seed: number, low = 0, high = 1, options: CreateOptions = {}): Tensor {
  assertValidShape(shape, 'randomUniform');
  const backend = options.backend ?? getBackend();
  return wrap(backend, backend.random(shape, { distribution: 'uniform', seed: seedOf('randomUniform', seed), a: low, b: high }), shape, 'f32');
}

/** Normal(mean, std) f32 values from kiln's counter-based generator. */
export function randomNormal(shape: Shape, seed: number, mean = 0, std = 1, options: CreateOptions = {}): Tensor {
  assertValidShape(shape, 'randomNormal');
  if (!(std >= 0)) throw new ArgumentError('randomNormal', `std must be >= 0, got ${std}`);
  const backend = options.backend ?? getBackend();
  return wrap(backend, backend.random(shape, { distribution: 'normal', seed: seedOf('randomNormal', seed), a: mean, b: std }), shape, 'f32');
}

/** Copies a tensor to another backend (through host memory). */
export async function toBackend(x: Tensor, backend: Backend): Promise<Tensor> {
  const codes = await x.data();
  return wrap(backend, backend.write(codes, x.dtype, x.shape), x.shape, x.dtype);
}
