import { BackendError, type DType, type StorageArray } from '@kiln/core';

/**
 * The CPU backend's storage handle (core's opaque `DataId`): the host typed array that
 * holds a tensor's codes (f32 Float32Array, f16/bf16 Uint16Array bit codes,
 * e4m3/e5m2/u8/bool Uint8Array, i32 Int32Array).
 */
export class CpuData {
  /** @internal */
  values: StorageArray;
  readonly dtype: DType;
  /** Bytes held, fixed at creation (so `release` can return them). */
  readonly bytes: number;
  released = false;

  constructor(values: StorageArray, dtype: DType) {
    this.values = values;
    this.dtype = dtype;
    this.bytes = values.byteLength;
  }
}

/** Integer arrays of a given element width; layout copies move codes through these views. */
export type CodeArray = Int32Array | Uint16Array | Uint8Array;

/**
 * Reinterprets storage as an integer array of the same element width, so that copies
 * move bit patterns exactly (NaN payloads and -0 included) and layout kernels only ever
 * see three array kinds.
 */
export function codeView(values: StorageArray): CodeArray {
  if (values instanceof Float32Array) return new Int32Array(values.buffer, values.byteOffset, values.length);
  return values as CodeArray;
}

export function releasedError(op: string): BackendError {
  return new BackendError(op, 'the storage was already released (a tensor was used after its last reference was disposed)');
}
