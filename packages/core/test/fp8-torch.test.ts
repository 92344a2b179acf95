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
