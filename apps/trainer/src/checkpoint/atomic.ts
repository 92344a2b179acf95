import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { bytesOf, encodeSafetensors, type SafetensorsTensor } from '@kiln/core';

/**
 * Writes `data` to `path` atomically: a temporary file in the same directory is written,
 * fsync'ed and renamed over `path`, so readers see the old file or the whole new one.
 */
export async function writeFileAtomic(path: string, data: Uint8Array): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx');
  try {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await fh.write(data, done, data.length - done, done);
      done += bytesWritten;
    }
    await fh.sync();
    await fh.close();
  } catch (err) {
    await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  // Make the rename durable where the platform allows fsync on a directory.
  try {
    const d = await open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch {
    // not supported here (e.g. Windows): the rename is still atomic
  }
}

/** Encodes tensors as safetensors and writes them atomically. */
export async function writeSafetensorsAtomic(path: string, tensors: Record<string, { dtype: string; shape: readonly number[]; data: ArrayBufferView }>, metadata?: Record<string, string>): Promise<void> {
  const entries: Record<string, SafetensorsTensor> = {};
  for (const [name, t] of Object.entries(tensors)) entries[name] = { dtype: t.dtype, shape: t.shape, bytes: bytesOf(t.data) };
  await writeFileAtomic(path, encodeSafetensors(entries, metadata));
}
