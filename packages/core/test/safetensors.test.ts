import { describe, expect, it } from 'vitest';
import { decodeSafetensors, encodeSafetensors, FormatError, parseSafetensorsHeader, bytesOf } from '@kiln/core';

function sample(): Uint8Array {
  return encodeSafetensors(
    {
      a: { dtype: 'F32', shape: [2, 3], bytes: bytesOf(new Float32Array([1, 2, 3, 4, 5, 6])) },
      b: { dtype: 'BF16', shape: [4], bytes: bytesOf(new Uint16Array([0x3f80, 0x4000, 0xbf80, 0])) },
      c: { dtype: 'F8_E4M3', shape: [0, 5], bytes: new Uint8Array(0) },
    },
    { note: 'hi' },
  );
}

// Hand-built file following the published layout, to check the reader against bytes it did not write.
function handBuilt(header: object, data: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

describe('safetensors', () => {
  it('round-trips tensors and metadata, with an 8-byte aligned data section', () => {
    const buf = sample();
    const lenWord = new DataView(buf.buffer).getUint32(0, true);
    expect((8 + lenWord) % 8).toBe(0);
    const { tensors, metadata } = decodeSafetensors(buf);
    expect(metadata).toEqual({ note: 'hi' });
    const a = tensors.get('a')!;
    expect(a.dtype).toBe('F32');
    expect(Array.from(new Float32Array(a.bytes.slice().buffer))).toEqual([1, 2, 3, 4, 5, 6]);
    expect(tensors.get('c')!.shape).toEqual([0, 5]);
  });

  it('reads a file it did not write', () => {
    const data = new Uint8Array([1, 0, 0, 0, 2, 0, 0, 0, 7]);
    const file = handBuilt({ x: { dtype: 'I32', shape: [2], data_offsets: [0, 8] }, y: { dtype: 'U8', shape: [1], data_offsets: [8, 9] } }, data);
    const { tensors } = decodeSafetensors(file);
    expect(Array.from(new Int32Array(tensors.get('x')!.bytes.slice().buffer))).toEqual([1, 2]);
    expect(tensors.get('y')!.bytes[0]).toBe(7);
  });

  it('refuses truncated and corrupt files with a FormatError naming the problem', () => {
    const good = sample();
    expect(() => decodeSafetensors(good.subarray(0, good.length - 1), 'model.safetensors')).toThrow(FormatError);
    expect(() => decodeSafetensors(good.subarray(0, good.length - 1), 'model.safetensors')).toThrow(/model.safetensors.*(truncat|ends at)/);
    expect(() => decodeSafetensors(good.subarray(0, 4))).toThrow(/too short/);
    const badLen = good.slice();
    new DataView(badLen.buffer).setUint32(0, 1e9, true);
    expect(() => decodeSafetensors(badLen)).toThrow(/header length/);
    const garbage = good.slice();
    garbage[10] = 0xff;
    expect(() => decodeSafetensors(garbage)).toThrow(/not valid UTF-8 JSON/);
    const data = new Uint8Array(8);
    expect(() => decodeSafetensors(handBuilt({ x: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, data))).toThrow(/needs 12 bytes/);
    expect(() => decodeSafetensors(handBuilt({ x: { dtype: 'Q4', shape: [2], data_offsets: [0, 8] } }, data))).toThrow(/unknown dtype/);
    expect(() => decodeSafetensors(handBuilt({ x: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, y: { dtype: 'F32', shape: [1], data_offsets: [2, 6] } }, data))).toThrow(/overlap|hole|cover/);
    expect(() => decodeSafetensors(handBuilt({ x: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, data))).toThrow(/trailing bytes/);
    expect(() => parseSafetensorsHeader(handBuilt({ x: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, data), 100)).toThrow(/invalid shape/);
  });
});
