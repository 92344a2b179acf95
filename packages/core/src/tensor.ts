import type { Backend, DataId } from './backend.js';
import { decodeFp8 } from './codecs/fp8.js';
import { decodeBf16, decodeF16 } from './codecs/half.js';
import { dtypeInfo, type DType, type StorageArray } from './dtype.js';
import { engine } from './engine.js';
import { BackendError, DisposedTensorError } from './errors.js';
import { formatShape, sizeOf, type Shape } from './shape.js';

/** Decoded element values: floats as f32, ints as i32/u8, bool as u8 (0/1). */
export type ValueArray = Float32Array | Int32Array | Uint8Array;

/** Nested JS arrays of numbers. */
export type NestedArray = number | NestedArray[];

/**
 * An n-dimensional array on one backend: contiguous, row-major, immutable. Ops create new
 * tensors; free them with `dispose()` or let `tidy()` do it.
 */
export class Tensor {
  readonly id: number;
  readonly shape: Shape;
  readonly dtype: DType;
  readonly size: number;
  /** @internal the backend that owns the storage */
  readonly backend: Backend;
  /** @internal storage handle, possibly shared with reshaped views */
  readonly dataId: DataId;
  private disposedFlag = false;

  /** @internal use the creation ops (`tensor`, `zeros`, ...) instead. */
  constructor(id: number, backend: Backend, dataId: DataId, shape: Shape, dtype: DType) {
    this.id = id;
    this.backend = backend;
    this.dataId = dataId;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.size = sizeOf(shape);
  }

  get rank(): number {
    return this.shape.length;
  }

  get isDisposed(): boolean {
    return this.disposedFlag;
  }

  /** Bytes of storage (its real bit format). */
  get bytes(): number {
    return this.size * dtypeInfo(this.dtype).bytes;
  }

  /** Frees the tensor; storage is released when no reshaped view still uses it. Idempotent. */
  dispose(): void {
    if (this.disposedFlag) return;
    this.disposedFlag = true;
    engine.untrack(this);
    engine.releaseTensor(this);
  }

  private check(op: string): void {
    if (this.disposedFlag) throw new DisposedTensorError(op, `tensor #${this.id} (shape ${formatShape(this.shape)}, ${this.dtype}) was disposed`);
  }

  /** Storage codes: f16/bf16 as Uint16Array bit patterns, FP8 as Uint8Array codes. */
  async data(): Promise<StorageArray> {
    this.check('data');
    return this.backend.read(this);
  }

  /** Storage codes, synchronously (only on backends with host-visible memory, e.g. CPU). */
  dataSync(): StorageArray {
    this.check('dataSync');
    if (!this.backend.readSync) {
      throw new BackendError('dataSync', `backend ${this.backend.name} cannot read synchronously; use await tensor.data()`);
    }
    return this.backend.readSync(this);
  }

  /** Element values, decoding f16/bf16/FP8 to f32. */
  async values(): Promise<ValueArray> {
    return decodeValues(await this.data(), this.dtype);
  }

  valuesSync(): ValueArray {
    return decodeValues(this.dataSync(), this.dtype);
  }

  /** Values as nested JS arrays. */
  async array(): Promise<NestedArray> {
    return nest(await this.values(), this.shape);
  }

  arraySync(): NestedArray {
    return nest(this.valuesSync(), this.shape);
  }

  toString(): string {
    return `Tensor#${this.id}(${formatShape(this.shape)}, ${this.dtype}, ${this.backend.name}${this.disposedFlag ? ', disposed' : ''})`;
  }
}

export function decodeValues(codes: StorageArray, dtype: DType): ValueArray {
  switch (dtype) {
    case 'f16':
      return decodeF16(codes as Uint16Array);
    case 'bf16':
      return decodeBf16(codes as Uint16Array);
    case 'e4m3':
    case 'e5m2':
      return decodeFp8(codes as Uint8Array, dtype);
    default:
      return codes as ValueArray;
  }
}

function nest(values: ValueArray, shape: Shape): NestedArray {
  if (shape.length === 0) return values[0];
  const build = (offset: number, dim: number): NestedArray[] => {
    const n = shape[dim];
    const out: NestedArray[] = [];
    if (dim === shape.length - 1) {
      for (let i = 0; i < n; i++) out.push(values[offset + i]);
      return out;
    }
    const stride = sizeOf(shape.slice(dim + 1));
    for (let i = 0; i < n; i++) out.push(build(offset + i * stride, dim + 1));
    return out;
  };
  return build(0, 0);
}
