import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { ArgumentError } from '@kiln/core';

/**
 * The metric: bits per byte. A model's BPB is its summed token cross-entropy (nats) over the text,
 * divided by ln 2 and by the text's UTF-8 byte count — comparable across tokenizers and with
 * compressors, whose BPB is simply compressed bits / original bytes.
 */
export function bitsPerByte(totalNats: number, byteCount: number): number {
  if (!(byteCount > 0)) throw new ArgumentError('bitsPerByte', `byteCount must be positive, got ${byteCount}`);
  return totalNats / Math.LN2 / byteCount;
}

/** UTF-8 byte count of a text. */
export function utf8Bytes(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

export interface CompressionBaseline {
  bitsPerByte: number;
  bytes: number;
  compressedBytes: number;
  /** `xz -9e` (the system binary) or `lzma-js` (the `lzma` npm package, preset 9, .lzma container). */
  method: 'xz' | 'lzma-js';
}

/** True when an `xz` binary runs here. */
export function hasXz(): boolean {
  const r = spawnSync('xz', ['--version'], { stdio: 'ignore' });
  return r.status === 0;
}

function loadLzma(): typeof import('lzma') {
  // ESM: import.meta.url is set (a bundler's require shim has no .resolve); CJS: it is empty.
  const req = import.meta.url ? createRequire(import.meta.url) : require;
  return req('lzma') as typeof import('lzma');
}

/**
 * The compression baseline: `xz -9e` on the text, as bits per (UTF-8) byte. Without an `xz` binary
 * (or with `method: 'lzma-js'`) it falls back to the pure-JS LZMA of the `lzma` package at preset 9
 * (same algorithm family; its container is ~50 bytes smaller than xz's, and it lacks -e's extra search).
 */
export async function xzBitsPerByte(text: string, options: { method?: 'xz' | 'lzma-js' } = {}): Promise<CompressionBaseline> {
  const input = Buffer.from(text, 'utf8');
  if (input.length === 0) throw new ArgumentError('xzBitsPerByte', 'the text is empty');
  const method = options.method ?? (hasXz() ? 'xz' : 'lzma-js');
  let compressedBytes: number;
  if (method === 'xz') {
    const r = spawnSync('xz', ['-9e', '-c', '-T1', '-q'], { input, maxBuffer: input.length * 2 + (1 << 20) });
    if (r.status !== 0 || r.error) throw new ArgumentError('xzBitsPerByte', `xz failed: ${r.error?.message ?? r.stderr?.toString() ?? `exit ${r.status}`}`);
    compressedBytes = r.stdout.length;
  } else {
    const lzma = loadLzma();
    compressedBytes = await new Promise<number>((resolve, reject) => {
      lzma.compress(new Uint8Array(input), 9, (result, error) => {
        if (error || !result) reject(error instanceof Error ? error : new Error(String(error ?? 'lzma failed')));
        else resolve(result.length);
      });
    });
  }
  return { bitsPerByte: (compressedBytes * 8) / input.length, bytes: input.length, compressedBytes, method };
}
