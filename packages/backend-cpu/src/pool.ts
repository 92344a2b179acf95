import type { DType, StorageArray } from '@kiln/core';

/**
 * A recycling pool for large storage buffers. Allocating a fresh multi-megabyte typed array
 * costs more than most kernels that fill it (the OS maps and zeroes new pages, and V8 only
 * frees the old ones at a later GC), so buffers of released tensors are kept, keyed by byte
 * length, and handed to the next allocation of the same size: training loops allocate the
 * same shapes every step. Recycled memory is not zeroed: kernels that allocate through
 * here write every element, or ask for `zeroed`.
 */
const MIN_POOLED_BYTES = 1 << 16;
const DEFAULT_LIMIT_BYTES = 256 * 1024 * 1024;

const free = new Map<number, ArrayBuffer[]>();
let pooledBytes = 0;
let limitBytes = DEFAULT_LIMIT_BYTES;

/** Sets the most bytes the pool may keep (0 disables pooling); trims to fit. */
export function setPoolLimit(bytes: number): void {
  limitBytes = Math.max(0, bytes);
  if (pooledBytes > limitBytes) clearPool();
}

export function poolStats(): { bytes: number; buffers: number; limit: number } {
  let buffers = 0;
  for (const list of free.values()) buffers += list.length;
  return { bytes: pooledBytes, buffers, limit: limitBytes };
}

export function clearPool(): void {
  free.clear();
  pooledBytes = 0;
}

function take(bytes: number): ArrayBuffer | undefined {
  if (bytes < MIN_POOLED_BYTES) return undefined;
  const list = free.get(bytes);
  const buf = list?.pop();
  if (buf) pooledBytes -= bytes;
  return buf;
}

/** Returns a released array's buffer to the pool (when it owns the whole buffer). */
export function recycle(values: StorageArray): void {
  const buf = values.buffer;
  const bytes = values.byteLength;
  if (bytes < MIN_POOLED_BYTES || values.byteOffset !== 0 || buf.byteLength !== bytes) return;
  if (!(buf instanceof ArrayBuffer) || pooledBytes + bytes > limitBytes) return;
  let list = free.get(bytes);
  if (!list) {
    list = [];
    free.set(bytes, list);
  }
  list.push(buf);
  pooledBytes += bytes;
}

export function newF32(n: number, zeroed = false): Float32Array {
  const buf = take(n * 4);
  if (!buf) return new Float32Array(n);
  const a = new Float32Array(buf);
  if (zeroed) a.fill(0);
  return a;
}

export function newI32(n: number, zeroed = false): Int32Array {
  const buf = take(n * 4);
  if (!buf) return new Int32Array(n);
  const a = new Int32Array(buf);
  if (zeroed) a.fill(0);
  return a;
}

export function newU16(n: number, zeroed = false): Uint16Array {
  const buf = take(n * 2);
  if (!buf) return new Uint16Array(n);
  const a = new Uint16Array(buf);
  if (zeroed) a.fill(0);
  return a;
}

export function newU8(n: number, zeroed = false): Uint8Array {
  const buf = take(n);
  if (!buf) return new Uint8Array(n);
  const a = new Uint8Array(buf);
  if (zeroed) a.fill(0);
  return a;
}

/** Storage for `n` elements of `dtype` (possibly recycled, so not zeroed unless asked). */
export function newStorage(dtype: DType, n: number, zeroed = false): StorageArray {
  switch (dtype) {
    case 'f32':
      return newF32(n, zeroed);
    case 'i32':
      return newI32(n, zeroed);
    case 'f16':
    case 'bf16':
      return newU16(n, zeroed);
    default:
      return newU8(n, zeroed);
  }
}

/** A copy of `values` in (possibly recycled) storage. */
export function copyOf<T extends StorageArray>(values: T): T {
  const out = newStorageLike(values);
  out.set(values as ArrayLike<number>);
  return out;
}

function newStorageLike<T extends StorageArray>(values: T): T {
  const n = values.length;
  if (values instanceof Float32Array) return newF32(n) as T;
  if (values instanceof Int32Array) return newI32(n) as T;
  if (values instanceof Uint16Array) return newU16(n) as T;
  // f32 storage of the float64 reference mode (CpuBackend({ float64: true }))
  if ((values as unknown) instanceof Float64Array) return new Float64Array(n) as unknown as T;
  return newU8(n) as T;
}
