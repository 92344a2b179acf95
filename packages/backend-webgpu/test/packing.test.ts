import { describe, expect, it } from 'vitest';
import { bufferBytesFor, elementBytes, packToWords, perWord, replicateCode, sizeClass, unpackWords, wordsFor } from '@kiln/backend-webgpu';
import { softwareAdapterName } from '@kiln/backend-webgpu';
import { collapseDims, stridedMeta } from '../src/strided.js';

describe('packing of dtypes into u32 words', () => {
  it('knows element widths and words', () => {
    expect([elementBytes('f32'), elementBytes('i32'), elementBytes('f16'), elementBytes('bf16')]).toEqual([4, 4, 2, 2]);
    expect([elementBytes('u8'), elementBytes('bool'), elementBytes('e4m3'), elementBytes('e5m2')]).toEqual([1, 1, 1, 1]);
    expect([perWord('f32'), perWord('bf16'), perWord('e4m3')]).toEqual([1, 2, 4]);
    expect([wordsFor('e4m3', 0), wordsFor('e4m3', 1), wordsFor('e4m3', 4), wordsFor('e4m3', 5)]).toEqual([0, 1, 1, 2]);
    expect([wordsFor('f16', 3), wordsFor('f32', 3)]).toEqual([2, 3]);
    // a bindable buffer is at least one word
    expect(bufferBytesFor('u8', 0)).toBe(4);
    expect(bufferBytesFor('u8', 5)).toBe(8);
    expect(bufferBytesFor('bf16', 5)).toBe(12);
  });

  it('packs little-endian, element i in bits [(i % per) * width, ...) of word i / per, zero-padded', () => {
    const codes = Uint8Array.from([0x01, 0x02, 0x03, 0x04, 0x05]);
    const w = new Uint32Array(packToWords(codes, 'e4m3').buffer);
    expect([...w]).toEqual([0x04030201, 0x00000005]);
    const h = new Uint32Array(packToWords(Uint16Array.from([0x3c00, 0xbc00, 0x7e00]), 'f16').buffer);
    expect([...h]).toEqual([0xbc003c00, 0x00007e00]);
    const f = new Uint32Array(packToWords(Float32Array.from([1, -2]), 'f32').buffer);
    expect([...f]).toEqual([0x3f800000, 0xc0000000]);
  });

  it('normalises bool codes to 0/1 when packing', () => {
    const w = new Uint32Array(packToWords(Uint8Array.from([0, 7, 255, 1]), 'bool').buffer);
    expect(w[0]).toBe(0x01010100);
  });

  it('round-trips every dtype through words', () => {
    const cases = [
      [Float32Array.from([1.5, -0, NaN, Infinity, 3e-45]), 'f32'],
      [Int32Array.from([-1, 2147483647, -2147483648]), 'i32'],
      [Uint16Array.from([0xffff, 0, 0x7fc0]), 'bf16'],
      [Uint16Array.from([0x7c00, 1, 2, 3, 4]), 'f16'],
      [Uint8Array.from([0xff, 0x80, 0x7f, 0, 1, 2, 3]), 'e5m2'],
      [Uint8Array.from([0, 255, 17]), 'u8'],
    ] as const;
    for (const [values, dtype] of cases) {
      const words = packToWords(values, dtype);
      expect(words.byteLength % 4).toBe(0);
      const back = unpackWords(words.buffer as ArrayBuffer, dtype, values.length);
      expect(back.constructor).toBe(values.constructor);
      expect(new Uint8Array(back.buffer)).toEqual(new Uint8Array(values.buffer));
    }
  });

  it('replicates fill codes across a word', () => {
    expect(replicateCode(0xab, 'e4m3')).toBe(0xabababab);
    expect(replicateCode(1, 'bool')).toBe(0x01010101);
    expect(replicateCode(0x3c00, 'f16')).toBe(0x3c003c00);
    expect(replicateCode(0xdeadbeef, 'f32')).toBe(0xdeadbeef);
    expect(replicateCode(-1 >>> 0, 'i32')).toBe(0xffffffff);
  });

  it('rounds pool sizes to classes with bounded slack', () => {
    expect(sizeClass(1)).toBe(16);
    expect(sizeClass(17)).toBe(32);
    expect(sizeClass(65536)).toBe(65536);
    for (const b of [65537, 100_000, 1_000_000, 123_456_789]) {
      const c = sizeClass(b);
      expect(c).toBeGreaterThanOrEqual(b);
      expect(c / b).toBeLessThanOrEqual(1.25 + 1e-9);
      expect(c % 16).toBe(0);
      expect(sizeClass(c)).toBe(c);
    }
  });
});

describe('strided views', () => {
  it('collapses contiguous dims and drops size-1 dims', () => {
    expect(collapseDims([2, 3, 4], [[12, 4, 1]])).toEqual([[0, 1, 24, 1]]);
    expect(collapseDims([2, 1, 4], [[4, 4, 1], [0, 0, 1]])).toEqual([[0, 2, 2, 4, 4, 1], [0, 2, 2, 4, 0, 1]]);
    expect(stridedMeta([3, 4], [[4, 1], [0, 1]])).toEqual([0, 2, 3, 4, 4, 1, 0, 1, 0, 0]);
    expect(stridedMeta([1, 1], [[1, 1]])).toEqual([0, 0, 0]);
  });
});

describe('software adapters', () => {
  it('recognises llvmpipe, lavapipe and SwiftShader, not hardware', () => {
    expect(softwareAdapterName({ device: 'llvmpipe-llvm-15-0-6-256-bits-', description: 'OpenGL version 4.5 (Core Profile) Mesa 22.3.6' })).toBe('llvmpipe');
    expect(softwareAdapterName({ vendor: 'google', device: 'SwiftShader Device (Subzero)' })).toBe('swiftshader');
    expect(softwareAdapterName({ description: 'lavapipe (LLVM 15.0.6, 256 bits)' })).toBe('lavapipe');
    expect(softwareAdapterName({ vendor: 'nvidia', architecture: 'hopper', description: 'NVIDIA H100 80GB HBM3' })).toBeUndefined();
    expect(softwareAdapterName({ isFallbackAdapter: true })).toBe('fallback adapter');
  });
});

describe('device limits', () => {
  it('names the limits below what the kernels need', async () => {
    const { limitsShortfall } = await import('@kiln/backend-webgpu');
    const ok = { maxBufferSize: 1 << 28, maxStorageBufferBindingSize: 1 << 27, maxComputeInvocationsPerWorkgroup: 256, maxComputeWorkgroupSizeX: 256, maxComputeWorkgroupStorageSize: 16384, maxStorageBuffersPerShaderStage: 10 };
    expect(limitsShortfall(ok)).toBeUndefined();
    // WebGPU compatibility-mode defaults (what a browser gives without requesting more)
    const compat = { ...ok, maxComputeInvocationsPerWorkgroup: 128, maxComputeWorkgroupSizeX: 128, maxStorageBuffersPerShaderStage: 4 };
    expect(limitsShortfall(compat)).toMatch(/maxComputeInvocationsPerWorkgroup 128 < 256.*maxComputeWorkgroupSizeX 128 < 256.*maxStorageBuffersPerShaderStage 4 < 10/);
  });
});
