import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { decodeFp8, encodeFp8, FP8_DECODE_TABLE } from '@kiln/core';

// Fixtures made by PyTorch on an H100 (packages/core/test/fixtures/make_fp8_fixtures.py).
const fx = JSON.parse(gunzipSync(readFileSync(new URL('./fixtures/fp8-torch.json.gz', import.meta.url))).toString('utf8'));
const bytes = (s: string) => {
  const b = Buffer.from(s, 'base64');
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
};

describe.each(['e4m3', 'e5m2'] as const)('FP8 %s against PyTorch', (format) => {
  it('decodes all 256 codes as torch does', () => {
    const want = new Float32Array(bytes(fx[`decode_${format}`]));
    const got = decodeFp8(Uint8Array.from({ length: 256 }, (_, i) => i), format);
    for (let c = 0; c < 256; c++) {
      if (Number.isNaN(want[c])) expect(got[c]).toBeNaN();
      else expect(Object.is(got[c], want[c])).toBe(true);
    }
    expect(FP8_DECODE_TABLE[format].length).toBe(256);
  });

  it(`encodes ${'all'} fixture inputs bit-for-bit as torch .to(float8)`, () => {
    const inputs = new Float32Array(bytes(fx.encode_inputs));
    const want = new Uint8Array(bytes(fx[`encode_${format}`]));
    expect(inputs.length).toBeGreaterThan(40000);
    const got = encodeFp8(inputs, format);
    const bits = new Uint32Array(inputs.buffer, inputs.byteOffset, inputs.length);
    const bad: string[] = [];
    for (let i = 0; i < inputs.length; i++) {
      if (got[i] !== want[i] && bad.length < 10) bad.push(`0x${bits[i].toString(16)} (${inputs[i]}): got 0x${got[i].toString(16)}, torch 0x${want[i].toString(16)}`);
    }
    expect(bad).toEqual([]);
  });
});

import { dequantizeBlockwise, quantizeBlockwise, ShapeError, ArgumentError } from '@kiln/core';

describe('quantizeBlockwise against PyTorch (DeepSeek-V3 recipe)', () => {
  for (const c of fx.blockwise as Array<{ shape: [number, number]; block: [number, number]; scaleFormat: 'fp32' | 'ue8m0'; x: string; codes: string; scales: string }>) {
    it(`${c.shape.join('x')} in ${c.block.join('x')} blocks, ${c.scaleFormat} scales: bit-exact`, () => {
      const x = new Float32Array(bytes(c.x));
      const q = quantizeBlockwise(x, c.shape, c.block, { scaleFormat: c.scaleFormat });
      const wantScales = new Float32Array(bytes(c.scales));
      const wantCodes = new Uint8Array(bytes(c.codes));
      expect(Array.from(q.scales)).toEqual(Array.from(wantScales));
      let mismatches = 0;
      for (let i = 0; i < wantCodes.length; i++) if (q.codes[i] !== wantCodes[i]) mismatches++;
      expect(mismatches).toBe(0);
      // Dequantised values are within half an e4m3 ulp (relative 2^-4) of x, per element.
      const back = dequantizeBlockwise(q.codes, q.scales, c.shape, c.block);
      const nc = Math.ceil(c.shape[1] / c.block[1]);
      let outside = 0;
      for (let i = 0; i < x.length; i++) {
        const r = Math.floor(i / c.shape[1]);
        const s = q.scales[Math.floor(r / c.block[0]) * nc + Math.floor((i % c.shape[1]) / c.block[1])];
        // Subnormal spacing of e4m3 is 2^-9 times the scale.
        if (!(Math.abs(back[i] - x[i]) <= Math.max(Math.abs(x[i]) * 2 ** -4, s * 2 ** -10) * (1 + 1e-6))) outside++;
      }
      expect(outside).toBe(0);
    });
  }

  it('refuses bad input with typed errors naming the argument', () => {
    expect(() => quantizeBlockwise(new Float32Array(5), [2, 3], [1, 128])).toThrow(ShapeError);
    expect(() => quantizeBlockwise(new Float32Array(5), [2, 3], [1, 128])).toThrow(/x has 5 elements but shape \[2, 3\] needs 6/);
    expect(() => quantizeBlockwise(new Float32Array(6), [2, 3], [0, 128])).toThrow(ArgumentError);
    expect(() => quantizeBlockwise(new Float32Array(6), [2, 3], [1.5, 128])).toThrow(/block must be/);
    expect(() => quantizeBlockwise(new Float32Array(6), [2, 3], [1, 128], { format: 'e3m4' as never })).toThrow(/format must be/);
    expect(() => dequantizeBlockwise(new Uint8Array(6), new Float32Array(3), [2, 3], [1, 128])).toThrow(/2x1 = 2 block scales/);
  });

  it('never crashes on NaN/Inf and follows torch (NaN amax poisons its block)', () => {
    const x = new Float32Array(256).fill(1);
    x[3] = NaN;
    x[200] = Infinity;
    const q = quantizeBlockwise(x, [1, 256], [1, 128]);
    expect(q.scales[0]).toBeNaN();
    expect(q.scales[1]).toBe(Infinity);
  });
});
