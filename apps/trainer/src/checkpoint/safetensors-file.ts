import { open, type FileHandle } from 'node:fs/promises';
import {
  SAFETENSORS_DTYPE_BYTES,
  fromStorage,
  kilnDTypeOf,
  parseSafetensorsHeader,
  safetensorsHeaderLength,
  type Backend,
  type SafetensorsEntry,
  type SafetensorsHeader,
  type Tensor,
} from '@kiln/core';
import { CheckpointError } from './errors.js';

/**
 * A safetensors file read lazily: `open` reads and validates only the header; each tensor is
 * read from disk (one positioned read) when asked for, so a checkpoint never has to sit in
 * memory twice. Call `close()` when done.
 */
export class SafetensorsFile {
  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    readonly header: SafetensorsHeader,
    readonly size: number,
  ) {}

  static async open(path: string): Promise<SafetensorsFile> {
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (err) {
      throw new CheckpointError(path, `cannot open the file (${(err as Error).message})`);
    }
    try {
      const { size } = await handle.stat();
      const first = new Uint8Array(8);
      if (size < 8) throw new CheckpointError(path, `the file is ${size} bytes, too short for a safetensors header (expected at least 8)`);
      await readExactly(handle, first, 0, path);
      const headerLen = wrap(path, () => safetensorsHeaderLength(first, size, path));
      const prefix = new Uint8Array(8 + headerLen);
      await readExactly(handle, prefix, 0, path);
      const header = wrap(path, () => parseSafetensorsHeader(prefix, size, path));
      return new SafetensorsFile(path, handle, header, size);
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  names(): string[] {
    return [...this.header.entries.keys()];
  }

  has(name: string): boolean {
    return this.header.entries.has(name);
  }

  entry(name: string): SafetensorsEntry {
    const e = this.header.entries.get(name);
    if (!e) throw new CheckpointError(this.path, 'not found in the file', name);
    return e;
  }

  /** The raw little-endian bytes of one tensor, in a fresh (aligned) buffer. */
  async readBytes(name: string): Promise<Uint8Array> {
    const e = this.entry(name);
    const bytes = new Uint8Array(e.end - e.begin);
    await readExactly(this.handle, bytes, this.header.dataStart + e.begin, this.path, name);
    return bytes;
  }

  /**
   * One tensor as a kiln Tensor. F64 is narrowed to f32 and I64 to i32 (values outside the
   * i32 range are refused); other dtypes kiln lacks are refused with a CheckpointError.
   */
  async readTensor(name: string, options: { backend?: Backend } = {}): Promise<Tensor> {
    const e = this.entry(name);
    const bytes = await this.readBytes(name);
    return fromStorage(hostStorage(this.path, name, e.dtype, bytes), [...e.shape], hostDType(this.path, name, e.dtype), options);
  }

  /** One tensor as host values (f32 for float dtypes, i32 for integers) without a backend. */
  async readHost(name: string): Promise<{ dtype: string; shape: number[]; data: Float32Array | Int32Array | Uint8Array | Uint16Array }> {
    const e = this.entry(name);
    const bytes = await this.readBytes(name);
    return { dtype: e.dtype, shape: [...e.shape], data: hostStorage(this.path, name, e.dtype, bytes) };
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

function wrap<T>(path: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof CheckpointError) throw err;
    throw new CheckpointError(path, (err as Error).message.replace(/^safetensors: /, ''));
  }
}

async function readExactly(handle: FileHandle, into: Uint8Array, position: number, path: string, tensor?: string): Promise<void> {
  let done = 0;
  while (done < into.length) {
    const { bytesRead } = await handle.read(into, done, into.length - done, position + done);
    if (bytesRead === 0) throw new CheckpointError(path, `the file ended after ${position + done} bytes, expected ${position + into.length} (truncated?)`, tensor);
    done += bytesRead;
  }
}

function hostDType(path: string, name: string, dtype: string) {
  if (dtype === 'F64') return 'f32' as const;
  if (dtype === 'I64') return 'i32' as const;
  const k = kilnDTypeOf(dtype);
  if (!k) throw new CheckpointError(path, `dtype ${dtype} is not supported (expected one of F32, F64, F16, BF16, F8_E4M3, F8_E5M2, I32, I64, U8, BOOL)`, name);
  return k;
}

function hostStorage(path: string, name: string, dtype: string, bytes: Uint8Array): Float32Array | Int32Array | Uint8Array | Uint16Array {
  const k = hostDType(path, name, dtype);
  const size = SAFETENSORS_DTYPE_BYTES[dtype] ?? 1;
  const n = bytes.length / size;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dtype === 'F64') {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = dv.getFloat64(i * 8, true);
    return out;
  }
  if (dtype === 'I64') {
    const out = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const v = dv.getBigInt64(i * 8, true);
      if (v < -2147483648n || v > 2147483647n) throw new CheckpointError(path, `element ${i} is ${v}, outside the int32 range kiln uses for I64 data`, name);
      out[i] = Number(v);
    }
    return out;
  }
  if (k === 'f32') return new Float32Array(bytes.buffer, bytes.byteOffset, n);
  if (k === 'i32') return new Int32Array(bytes.buffer, bytes.byteOffset, n);
  if (k === 'f16' || k === 'bf16') return new Uint16Array(bytes.buffer, bytes.byteOffset, n);
  return bytes;
}
