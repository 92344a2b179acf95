import type { DType, StorageArray, Tensor } from '@kiln/core';
import { promoteTypes } from '@kiln/core';
import { assert, expectCodes, expectExact, fail } from '../check.js';
import { codesFor, decodeCodes, type Area, type CaseDef, type Ctx } from '../harness.js';
import { ALL_DTYPES, bytesOf, expectedPromotion } from '../reference/dtypes.js';
import { codeCount, decode, isLowDType } from '../reference/formats.js';
import { size } from '../reference/nd.js';

const SHAPES: number[][] = [[], [0], [1], [7], [2, 3, 5], [3, 0, 4], [1, 1, 1, 1], [257, 256]];

/** Random storage codes of a dtype: any bit pattern for f32/i32/f16/bf16/FP8/u8, 0/1 for bool. */
function randomCodes(c: Ctx, dtype: DType, n: number): StorageArray {
  switch (dtype) {
    case 'f32': {
      const bits = new Uint32Array(n);
      for (let i = 0; i < n; i++) bits[i] = c.rng.u32();
      return new Float32Array(bits.buffer);
    }
    case 'i32': {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) out[i] = c.rng.u32() | 0;
      return out;
    }
    case 'f16':
    case 'bf16': {
      const out = new Uint16Array(n);
      for (let i = 0; i < n; i++) out[i] = c.rng.u32() & 0xffff;
      return out;
    }
    case 'bool': {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = c.rng.u32() & 1;
      return out;
    }
    default: {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = c.rng.u32() & 0xff;
      return out;
    }
  }
}

/** Raw bit patterns (f32 as u32) so that NaN payloads are compared too. */
function bitsOf(a: StorageArray): ArrayLike<number> {
  return a instanceof Float32Array ? new Uint32Array(a.buffer, a.byteOffset, a.length) : a;
}

function expectBits(label: string, dtype: DType, actual: StorageArray, expected: StorageArray): void {
  expectCodes(label, dtype === 'f32' ? 'i32' : dtype, bitsOf(actual), bitsOf(expected));
}

const cases: CaseDef[] = [
  {
    name: 'write/read round-trips every dtype bit for bit (any bit pattern, NaN payloads included; shapes [], [0], odd, empty dims, 64 KiB+)',
    async run(c) {
      for (const dtype of ALL_DTYPES) {
        for (const shape of SHAPES) {
          const n = size(shape);
          const codes = randomCodes(c, dtype, n);
          const id = c.backend.write(codes.slice(), dtype, shape);
          try {
            const back = await c.backend.read({ dataId: id, shape, dtype });
            c.checkRead(back, dtype, n, `${dtype} [${shape.join(', ')}]`);
            expectBits(`write/read ${dtype} [${shape.join(', ')}]`, dtype, back, codes);
          } finally {
            c.backend.release(id);
          }
        }
      }
    },
  },
  {
    name: 'every f16, bf16, e4m3 and e5m2 code survives write/read, fromStorage and data() unchanged',
    async run(c) {
      for (const dtype of ['f16', 'bf16', 'e4m3', 'e5m2'] as const) {
        const n = codeCount(dtype);
        const codes = n === 65536 ? new Uint16Array(n) : new Uint8Array(n);
        for (let i = 0; i < n; i++) codes[i] = i;
        const t = c.fromCodes(codes, [n], dtype);
        const r = await c.read(t, dtype);
        expectCodes(`${dtype} codes`, dtype, r.codes, codes);
      }
    },
  },
  {
    name: 'read returns a snapshot: mutating it leaves the tensor unchanged',
    async run(c) {
      for (const dtype of ALL_DTYPES) {
        const codes = codesFor([1, 0, 1, 1, 0], dtype);
        const t = c.fromCodes(codes, [5], dtype);
        const first = await t.data();
        first.fill(dtype === 'bool' ? 0 : 7);
        const second = await t.data();
        expectCodes(`${dtype} after mutating a read`, dtype, second, codes);
      }
    },
  },
  {
    name: 'readSync, when the backend has it, agrees with read',
    async run(c) {
      if (!c.backend.readSync) return; // optional: only host-visible backends implement it
      for (const dtype of ALL_DTYPES) {
        const codes = randomCodes(c, dtype, 33);
        const t = c.fromCodes(codes, [3, 11], dtype);
        const a = c.backend.readSync(t);
        c.checkRead(a, dtype, 33, `readSync ${dtype}`);
        expectBits(`readSync ${dtype}`, dtype, a, await c.backend.read(t));
        expectBits(`dataSync ${dtype}`, dtype, t.dataSync(), codes);
      }
    },
  },
  {
    name: "values() decodes f16/bf16/FP8 storage exactly (against the suite's bit-layout decoders)",
    async run(c) {
      for (const dtype of ['f16', 'bf16', 'e4m3', 'e5m2'] as const) {
        const n = codeCount(dtype);
        const codes = n === 65536 ? new Uint16Array(n) : new Uint8Array(n);
        for (let i = 0; i < n; i++) codes[i] = i;
        const t = c.fromCodes(codes, [n], dtype);
        const v = await t.values();
        assert(v instanceof Float32Array, `values() of ${dtype} must be a Float32Array`);
        expectExact(`${dtype} values()`, v, decodeCodes(codes, dtype), (i) => `code 0x${i.toString(16)}`, true);
      }
      for (const dtype of ['i32', 'u8', 'bool'] as const) {
        const codes = codesFor([0, 1, 1, 0, 1], dtype);
        const v = await c.fromCodes(codes, [5], dtype).values();
        expectExact(`${dtype} values()`, v, [0, 1, 1, 0, 1]);
      }
    },
  },
  {
    name: 'tensor metadata: shape, dtype, size, rank, bytes per dtype',
    async run(c) {
      for (const dtype of ALL_DTYPES) {
        for (const shape of [[], [0], [2, 3, 5]]) {
          const t = c.fromCodes(codesFor(new Array(size(shape)).fill(1), dtype), shape, dtype);
          assert(t.dtype === dtype, `dtype ${t.dtype} != ${dtype}`);
          assert(t.shape.length === shape.length && t.shape.every((d, i) => d === shape[i]), `shape [${t.shape.join(', ')}] != [${shape.join(', ')}]`);
          assert(t.size === size(shape), `size ${t.size} != ${size(shape)}`);
          assert(t.rank === shape.length, `rank ${t.rank} != ${shape.length}`);
          assert(t.bytes === size(shape) * bytesOf(dtype), `${dtype} [${shape.join(', ')}]: bytes ${t.bytes}, expected ${size(shape) * bytesOf(dtype)}`);
        }
      }
    },
  },
  {
    name: 'array() nests decoded values by shape (rank 0, 1, 3, empty dims); arraySync agrees when the backend reads synchronously',
    async run(c) {
      const t3 = c.tensor([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [2, 3, 2], 'bf16');
      const want3 = [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 10], [11, 12]]];
      const cases: [Tensor, unknown][] = [
        [t3, want3],
        [c.tensor([2.5], [], 'f32'), 2.5],
        [c.tensor([1, 0, 1], [3], 'bool'), [1, 0, 1]],
        [c.tensor([], [2, 0], 'i32'), [[], []]],
      ];
      for (const [t, want] of cases) {
        const got = await t.array();
        if (JSON.stringify(got) !== JSON.stringify(want)) fail(`array() of ${t.dtype} [${t.shape.join(', ')}]: ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
        if (c.backend.readSync && JSON.stringify(t.arraySync()) !== JSON.stringify(want)) fail(`arraySync() of ${t.dtype} [${t.shape.join(', ')}] differs`);
      }
    },
  },
  {
    name: 'promoteTypes follows the promotion table for all 64 dtype pairs',
    run() {
      const wrong: string[] = [];
      for (const a of ALL_DTYPES) {
        for (const b of ALL_DTYPES) {
          const got = promoteTypes(a, b);
          const want = expectedPromotion(a, b);
          if (got !== want) wrong.push(`${a} x ${b}: ${got}, expected ${want}`);
        }
      }
      if (wrong.length) fail(`promoteTypes: ${wrong.join('; ')}`);
    },
  },
  {
    name: "the suite's f16/bf16/FP8 decoders agree with the formats' defining values",
    run() {
      // Self-check of the references against values from the format definitions.
      const known: [DType, number, number][] = [
        ['f16', 0x3c00, 1], ['f16', 0x7bff, 65504], ['f16', 0x0001, 2 ** -24], ['f16', 0x0400, 2 ** -14], ['f16', 0xc000, -2], ['f16', 0x7c00, Infinity], ['f16', 0x3555, 0.333251953125],
        ['bf16', 0x3f80, 1], ['bf16', 0x7f7f, 3.3895313892515355e38], ['bf16', 0x0001, 2 ** -133], ['bf16', 0xff80, -Infinity], ['bf16', 0x4049, 3.140625],
        ['e4m3', 0x7e, 448], ['e4m3', 0x01, 2 ** -9], ['e4m3', 0x08, 2 ** -6], ['e4m3', 0x38, 1], ['e4m3', 0x78, 256], ['e4m3', 0xfe, -448],
        ['e5m2', 0x7b, 57344], ['e5m2', 0x01, 2 ** -16], ['e5m2', 0x3c, 1], ['e5m2', 0x7c, Infinity], ['e5m2', 0x04, 2 ** -14],
      ];
      for (const [d, code, v] of known) {
        if (!isLowDType(d)) continue;
        const got = decode(d, code);
        if (got !== v) fail(`reference decode ${d} 0x${code.toString(16)} = ${got}, expected ${v}`);
      }
      for (const [d, code] of [['f16', 0x7e00], ['f16', 0xfc01], ['bf16', 0x7fc0], ['e4m3', 0x7f], ['e4m3', 0xff], ['e5m2', 0x7d], ['e5m2', 0xff]] as const) {
        if (!Number.isNaN(decode(d, code))) fail(`reference decode ${d} 0x${code.toString(16)} should be NaN`);
      }
    },
  },
];

export const storageAndDtypes: Area = { name: 'storage-and-dtypes', cases };
