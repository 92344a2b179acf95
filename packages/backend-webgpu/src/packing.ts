import type { DType, StorageArray } from '@kiln/core';

/**
 * How kiln's dtypes live in GPU buffers. Every buffer is an `array<u32>` in WGSL: f32 and i32
 * take one word per element; f16/bf16 codes are packed two per word and u8/bool/e4m3/e5m2
 * four per word, little-endian (element i is bits [(i % per) * width, ...) of word
 * floor(i / per)), which is exactly the byte layout of the host's typed arrays, so uploads
 * and readbacks are plain byte copies.
 */

/** Bytes per element of a dtype in GPU storage. */
export function elementBytes(dtype: DType): 1 | 2 | 4 {
  switch (dtype) {
    case 'f32':
    case 'i32':
      return 4;
    case 'f16':
    case 'bf16':
      return 2;
    default:
      return 1;
  }
}

/** Elements per u32 word. */
export function perWord(dtype: DType): 1 | 2 | 4 {
  return (4 / elementBytes(dtype)) as 1 | 2 | 4;
}

/** Number of u32 words holding n elements of dtype. */
export function wordsFor(dtype: DType, n: number): number {
  return Math.ceil(n / perWord(dtype));
}

/** Buffer bytes for n elements (whole words, at least one word so it can be bound). */
export function bufferBytesFor(dtype: DType, n: number): number {
  return Math.max(4, wordsFor(dtype, n) * 4);
}

/** The host bytes of a storage array, zero-padded to whole words. */
export function packToWords(values: StorageArray, dtype: DType): Uint8Array {
  const n = values.length;
  const bytes = bufferBytesFor(dtype, n);
  const out = new Uint8Array(bytes);
  if (dtype === 'bool') {
    const v = values as Uint8Array;
    for (let i = 0; i < n; i++) out[i] = v[i] !== 0 ? 1 : 0;
    return out;
  }
  out.set(new Uint8Array(values.buffer, values.byteOffset, n * elementBytes(dtype)));
  return out;
}

/** Storage array of dtype over the first n elements of packed words. */
export function unpackWords(words: ArrayBuffer, dtype: DType, n: number): StorageArray {
  switch (dtype) {
    // a read of exactly n elements is used in place (a 64 MiB result is not copied twice)
    case 'f32':
      return new Float32Array(words.byteLength === n * 4 ? words : words.slice(0, n * 4));
    case 'i32':
      return new Int32Array(words.byteLength === n * 4 ? words : words.slice(0, n * 4));
    case 'f16':
    case 'bf16':
      return new Uint16Array(words.slice(0, n * 2));
    default:
      return new Uint8Array(words.slice(0, n));
  }
}

/** A code (1, 2 or 4 bytes) replicated across a u32 word, for fills. */
export function replicateCode(code: number, dtype: DType): number {
  switch (elementBytes(dtype)) {
    case 4:
      return code >>> 0;
    case 2:
      return ((code & 0xffff) * 0x10001) >>> 0;
    default:
      return ((code & 0xff) * 0x01010101) >>> 0;
  }
}

/**
 * Size class of a pooled buffer: powers of two up to 64 KiB, then steps of a quarter of the
 * power of two below (at most 25% slack), so freed buffers are reused by similar requests.
 */
export function sizeClass(bytes: number): number {
  const b = Math.max(16, Math.ceil(bytes / 16) * 16);
  if (b <= 65536) return 2 ** Math.ceil(Math.log2(b));
  const p = 2 ** Math.floor(Math.log2(b));
  const step = p / 4;
  return Math.ceil(b / step) * step;
}
