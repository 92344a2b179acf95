/**
 * What a case works with: the backend under test, tolerances, a seeded generator, helpers
 * that create tensors from the suite's own encodings, read results back (checking the
 * storage array type, length and bool-ness), poison the backend's allocator before calling a
 * primitive, and dispose everything the case made.
 */
import type { Backend, DataId, DType, Shape, StorageArray, TensorView } from '@kiln/core';
import { QuantizedTensor, Tensor, fromStorage, memory, tidy } from '@kiln/core';
import { fail } from './check.js';
import { Rng } from './prng.js';
import { decode, encode, isLowDType } from './reference/formats.js';
import { size } from './reference/nd.js';

export interface Tolerances {
  /** ulps of f32 for correctly-roundable arithmetic (+ - * / sqrt reciprocal, mod), default 1. */
  f32: number;
  /** ulps of f32 for exp, log, sin, cos, tanh, sigmoid, erf, rsqrt, pow, default 4. */
  transcendental: number;
  /** c in |err| <= c * eps_f32 * sum_k |a_k b_k| for matmul and other accumulations, default 4. */
  matmul: number;
}

export const DEFAULT_TOLERANCES: Tolerances = { f32: 1, transcendental: 4, matmul: 4 };

export interface CaseDef {
  readonly name: string;
  readonly run: (c: Ctx) => void | Promise<void>;
  /** vitest timeout override (ms). */
  readonly timeout?: number;
}

export interface Area {
  readonly name: string;
  readonly cases: readonly CaseDef[];
}

export interface Read {
  codes: StorageArray;
  /** Decoded values (f16/bf16/FP8 exact, f32 as stored, ints and bool as numbers). */
  values: Float64Array;
}

/** Storage codes for exact values of `dtype`, encoded by the suite (never by @kiln/core). */
export function codesFor(values: ArrayLike<number>, dtype: DType): StorageArray {
  const n = values.length;
  switch (dtype) {
    case 'f32':
      return Float32Array.from(values);
    case 'f16':
    case 'bf16': {
      const out = new Uint16Array(n);
      for (let i = 0; i < n; i++) out[i] = encode(dtype, values[i]);
      return out;
    }
    case 'e4m3':
    case 'e5m2': {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = encode(dtype, values[i]);
      return out;
    }
    case 'i32':
      return Int32Array.from(values);
    case 'u8':
      return Uint8Array.from(values);
    case 'bool': {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = values[i] !== 0 ? 1 : 0;
      return out;
    }
  }
}

/** The exact values a dtype can hold nearest to `values` (what writing them stores). */
export function quantize(values: ArrayLike<number>, dtype: DType): Float64Array {
  const out = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    switch (dtype) {
      case 'f32':
        out[i] = Math.fround(v);
        break;
      case 'i32':
        out[i] = Math.round(v) | 0;
        break;
      case 'u8':
        out[i] = Math.min(255, Math.max(0, Math.round(v)));
        break;
      case 'bool':
        out[i] = v !== 0 ? 1 : 0;
        break;
      default:
        out[i] = decode(dtype, encode(dtype, v));
    }
  }
  return out;
}

export function decodeCodes(codes: StorageArray, dtype: DType): Float64Array {
  const out = new Float64Array(codes.length);
  if (isLowDType(dtype)) for (let i = 0; i < codes.length; i++) out[i] = decode(dtype, codes[i]);
  else for (let i = 0; i < codes.length; i++) out[i] = codes[i];
  return out;
}

function storageKind(dtype: DType): string {
  return dtype === 'f32' ? 'Float32Array' : dtype === 'i32' ? 'Int32Array' : dtype === 'f16' || dtype === 'bf16' ? 'Uint16Array' : 'Uint8Array';
}

function isStorage(dtype: DType, a: unknown): boolean {
  switch (storageKind(dtype)) {
    case 'Float32Array':
      return a instanceof Float32Array;
    case 'Int32Array':
      return a instanceof Int32Array;
    case 'Uint16Array':
      return a instanceof Uint16Array;
    default:
      return a instanceof Uint8Array;
  }
}

/** Codes that a kernel which writes nothing would leave behind: NaN for floats, 0xa5 bytes otherwise. */
export function poisonCodes(dtype: DType, n: number): StorageArray {
  switch (dtype) {
    case 'f32': {
      const bits = new Uint32Array(n).fill(0x7fa5a5a5);
      return new Float32Array(bits.buffer);
    }
    case 'f16':
      return new Uint16Array(n).fill(0x7da5);
    case 'bf16':
      return new Uint16Array(n).fill(0x7fa5);
    case 'i32':
      return new Int32Array(n).fill(0xa5a5a5a5 | 0);
    default:
      return new Uint8Array(n).fill(0xa5);
  }
}

/** A view of `backend` with some members replaced (same storage, a different Backend object). */
export function backendView(backend: Backend, overrides: Record<string, unknown>): Backend {
  return new Proxy(backend, {
    get(target, prop, _receiver) {
      if (Object.prototype.hasOwnProperty.call(overrides, prop)) return overrides[prop as string];
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
    has(target, prop) {
      return Object.prototype.hasOwnProperty.call(overrides, prop) || Reflect.has(target, prop);
    },
  });
}

export function liveTensors(name: string): number {
  return memory().backends[name]?.tensors ?? 0;
}

export class Ctx {
  private readonly owned = new Set<Tensor>();

  constructor(
    readonly backend: Backend,
    readonly tol: Tolerances,
    readonly rng: Rng,
    readonly id: string,
  ) {}

  /** Registers every tensor in `value` (tensor, QuantizedTensor, array, plain object) for disposal after the case. */
  track<T>(value: T): T {
    const visit = (v: unknown, depth: number): void => {
      if (depth > 6 || v === null || typeof v !== 'object') return;
      if (isTensor(v)) this.owned.add(v);
      else if (v instanceof QuantizedTensor) {
        this.owned.add(v.codes);
        this.owned.add(v.scales);
      } else if (Array.isArray(v)) for (const x of v) visit(x, depth + 1);
      else if (Object.getPrototypeOf(v) === Object.prototype) for (const x of Object.values(v as object)) visit(x, depth + 1);
    };
    visit(value, 0);
    return value;
  }

  /** Runs core ops inside tidy (intermediates freed) and keeps the results until the case ends. */
  run<T>(fn: () => T): T {
    return this.track(tidy(fn));
  }

  /** A tensor from storage codes (copied), on `backend` (default: the backend under test). */
  fromCodes(codes: StorageArray, shape: Shape, dtype: DType, backend: Backend = this.backend): Tensor {
    return this.track(fromStorage(codes, shape, dtype, { backend }));
  }

  /** A tensor holding `values` (which should be exact in `dtype`; encoded by the suite). */
  tensor(values: ArrayLike<number>, shape: Shape, dtype: DType = 'f32', backend: Backend = this.backend): Tensor {
    if (values.length !== size(shape)) throw new Error(`suite bug: ${values.length} values for [${shape.join(', ')}]`);
    return this.fromCodes(codesFor(values, dtype), shape, dtype, backend);
  }

  /**
   * A random tensor: `gen` draws float64 values (default uniform [-4, 4); ints in [-1000, 1000],
   * u8 in [0, 255], bool fair), which are rounded to what `dtype` holds. Returns the exact values.
   */
  random(shape: Shape, dtype: DType, gen?: (rng: Rng) => number, backend: Backend = this.backend): { t: Tensor; values: Float64Array } {
    const n = size(shape);
    const raw = new Float64Array(n);
    const g =
      gen ??
      (dtype === 'i32'
        ? (r: Rng) => r.int(-1000, 1001)
        : dtype === 'u8'
          ? (r: Rng) => r.int(0, 256)
          : dtype === 'bool'
            ? (r: Rng) => (r.bool() ? 1 : 0)
            : (r: Rng) => r.uniform(-4, 4));
    for (let i = 0; i < n; i++) raw[i] = g(this.rng);
    const values = quantize(raw, dtype);
    return { t: this.tensor(values, shape, dtype, backend), values };
  }

  /** Reads a tensor back through the backend, checking storage type, length and bool codes. */
  async read(t: Tensor | TensorView, label = 'result'): Promise<Read> {
    const codes = isTensor(t) ? await t.data() : await this.backend.read(t);
    return this.checkRead(codes, t.dtype, size(t.shape), label);
  }

  checkRead(codes: StorageArray, dtype: DType, n: number, label: string): Read {
    if (!isStorage(dtype, codes)) {
      fail(`${label}: read returned ${(codes as object)?.constructor?.name ?? typeof codes} for ${dtype}, expected a ${storageKind(dtype)}`);
    }
    if (codes.length !== n) fail(`${label}: read returned ${codes.length} codes for ${n} elements`);
    if (dtype === 'bool') {
      for (let i = 0; i < n; i++) if (codes[i] !== 0 && codes[i] !== 1) fail(`${label}: bool element ${i} holds ${codes[i]} (bool storage is 0 or 1)`);
    }
    return { codes, values: decodeCodes(codes, dtype) };
  }

  /**
   * Writes `copies` buffers of poison of the size of an `n`-element `dtype` tensor and
   * releases them, so an allocator that recycles memory hands poisoned memory to the next
   * kernel; a kernel that skips elements then leaves poison behind.
   */
  poison(dtype: DType, n: number, copies = 2): void {
    const ids: DataId[] = [];
    for (let k = 0; k < copies; k++) ids.push(this.backend.write(poisonCodes(dtype, n), dtype, [n]));
    for (const id of ids.reverse()) this.backend.release(id);
  }

  /**
   * Calls a primitive directly through the Backend interface right after poisoning the
   * allocator for its output, checks the output is fresh storage, reads it and releases it.
   */
  async prim(label: string, dtype: DType, shape: Shape, call: () => DataId, inputs: readonly TensorView[] = []): Promise<Read> {
    const n = size(shape);
    this.poison(dtype, n);
    const id = call();
    try {
      if (id === null || typeof id !== 'object') fail(`${label}: the primitive returned ${String(id)}, expected a DataId object`);
      for (const v of inputs) if (v.dataId === id) fail(`${label}: the primitive returned its input's storage; primitives must return new storage`);
      const codes = await this.backend.read({ dataId: id, shape, dtype });
      return this.checkRead(codes, dtype, n, label);
    } finally {
      this.backend.release(id);
    }
  }

  /** Disposes everything the case created. */
  cleanup(): void {
    for (const t of this.owned) if (!t.isDisposed) t.dispose();
    this.owned.clear();
  }
}

export function isTensor(v: unknown): v is Tensor {
  return v instanceof Tensor;
}
