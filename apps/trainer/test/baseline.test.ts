import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { bitsPerByte, hasXz, utf8Bytes, xzBitsPerByte } from '../src/baseline/bpb.js';
import { brownText } from '../src/data/brown.js';
import { ArgumentError } from '@kiln/core';

describe('bits per byte', () => {
  it('converts summed nats to bits per UTF-8 byte', () => {
    expect(bitsPerByte(Math.LN2 * 800, 100)).toBeCloseTo(8, 12);
    expect(bitsPerByte(0, 5)).toBe(0);
    expect(utf8Bytes('é🙂')).toBe(6);
    expect(() => bitsPerByte(1, 0)).toThrow(ArgumentError);
  });

  it('xz -9e baseline on the Brown validation split (system xz when present, else the JS LZMA)', async () => {
    const val = brownText('validation');
    const r = await xzBitsPerByte(val);
    expect(r.method).toBe(hasXz() ? 'xz' : 'lzma-js');
    expect(r.bytes).toBe(utf8Bytes(val));
    expect(r.bitsPerByte).toBeGreaterThan(1.5);
    expect(r.bitsPerByte).toBeLessThan(3.5);
    if (r.method === 'xz') {
      const direct = spawnSync('xz', ['-9e', '-c', '-T1'], { input: Buffer.from(val) });
      expect(r.compressedBytes).toBe(direct.stdout.length);
    }
  });

  it('the pure-JS LZMA fallback works and lands near xz', async () => {
    const text = brownText('validation').slice(0, 60_000);
    const js = await xzBitsPerByte(text, { method: 'lzma-js' });
    expect(js.method).toBe('lzma-js');
    expect(js.bitsPerByte).toBeGreaterThan(1.5);
    expect(js.bitsPerByte).toBeLessThan(4);
    if (hasXz()) {
      const xz = await xzBitsPerByte(text, { method: 'xz' });
      expect(Math.abs(js.bitsPerByte - xz.bitsPerByte)).toBeLessThan(0.1);
    }
  });
});
