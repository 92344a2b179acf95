import { beforeAll, describe, expect, it } from 'vitest';
import {
  ArgumentError,
  E4M3,
  E5M2,
  F16,
  add,
  argmax,
  argmin,
  bitsToF32,
  cast,
  concat,
  crossEntropy,
  encodeMinifloat,
  erf,
  f32Bits,
  f32ToBf16Bits,
  fromStorage,
  gather,
  indexAdd,
  indexSelect,
  logSoftmax,
  matmul,
  max,
  memory,
  mod,
  randomNormal,
  randomUniform,
  registeredBackends,
  relu,
  rmsNorm,
  round,
  scatterAdd,
  sign,
  slice,
  softmax,
  sum,
  swiglu,
  tensor,
  tidy,
  topk,
  transpose,
  uniformAt,
  useBackend,
  type DType,
  type FusedKernels,
  type Tensor,
} from '@kiln/core';
import { CpuBackend, cpuBackendFactory, createCpuBackend } from '../src/index.js';

/** A CPU backend with no fused kernels, so core composes softmax & co from primitives. */
class UnfusedCpuBackend extends CpuBackend {
  override readonly fused: FusedKernels = {};
}

const cpu = createCpuBackend();
const unfused = new UnfusedCpuBackend();

beforeAll(() => useBackend(cpu));

/** Deterministic pseudo-random floats in [-scale, scale). */
function rand(n: number, seed: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (uniformAt(seed, i) * 2 - 1) * scale;
  return out;
}

function values(t: Tensor): number[] {
  return Array.from(t.valuesSync());
}

describe('registration and device', () => {
  it('registers the cpu factory and describes the host', async () => {
    expect(registeredBackends()).toContain('cpu');
    expect(cpuBackendFactory.priority).toBe(100);
    const b = await cpuBackendFactory.create();
    expect(b.name).toBe('cpu');
    expect(b.device.backend).toBe('cpu');
    expect(b.device.accelerated).toBe(false);
    expect(b.device.name).toMatch(/\(\d+ threads?\)$/);
    expect(typeof b.device.details?.simd).toBe('boolean');
  });
});

describe('elementwise', () => {
  it('adds with broadcasting (scalar, row, column, same shape)', () => {
    const a = tensor([[1, 2, 3], [4, 5, 6]]);
    expect(values(add(a, 10))).toEqual([11, 12, 13, 14, 15, 16]);
    expect(values(add(a, tensor([1, 2, 3])))).toEqual([2, 4, 6, 5, 7, 9]);
    expect(values(add(a, tensor([[100], [200]])))).toEqual([101, 102, 103, 204, 205, 206]);
    expect(values(add(tensor([[1], [2]]), tensor([[10, 20, 30]])))).toEqual([11, 21, 31, 12, 22, 32]);
    expect(values(add(a, a))).toEqual([2, 4, 6, 8, 10, 12]);
  });

  it('broadcasts in higher ranks like a naive reference', () => {
    const as = [2, 1, 3, 4];
    const bs = [3, 1];
    const x = rand(24, 1);
    const y = rand(3, 2);
    const out = values(add(tensor(x, as), tensor(y, bs)));
    const ref: number[] = [];
    for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) for (let k = 0; k < 4; k++) ref.push(Math.fround(x[i * 12 + j * 4 + k] + y[j]));
    expect(out).toEqual(ref);
  });

  it('wraps i32 arithmetic', () => {
    const big = tensor([2147483647, -2147483648, 65536], [3], 'i32');
    expect(values(add(big, tensor([1, -1, 0], [3], 'i32')))).toEqual([-2147483648, 2147483647, 65536]);
    expect(values(tidy(() => cast(matmul(tensor([65536], [1, 1], 'i32'), tensor([65536], [1, 1], 'i32')), 'i32')))).toEqual([0]);
  });

  it('floored mod for f32 and i32', () => {
    const a = [5, -5, 5, -5, 0, 7.5];
    const b = [3, 3, -3, -3, 2, 2];
    expect(values(mod(tensor(a), tensor(b)))).toEqual([2, 1, -1, -2, 0, 1.5]);
    expect(values(mod(tensor([5, -5, 5, -5], [4], 'i32'), tensor([3, 3, -3, -3], [4], 'i32')))).toEqual([2, 1, -1, -2]);
  });

  it('rounds half to even; sign and relu keep NaN', () => {
    expect(values(round(tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4, 2.6])))).toEqual([0, 2, 2, -0, -2, -2, 2, 3]);
    const s = values(sign(tensor([3, -2, 0, NaN])));
    expect(s.slice(0, 3)).toEqual([1, -1, 0]);
    expect(s[3]).toBeNaN();
    const r = values(relu(tensor([-1, 2, NaN])));
    expect(r.slice(0, 2)).toEqual([0, 2]);
    expect(r[2]).toBeNaN();
  });

  it('erf matches known values to f32 precision', () => {
    const xs = [0, 1e-30, 0.1, 0.5, 1, 1.5, 2, 3, 4, 5, 7, -0.3, -2.5];
    // erf of the f32-rounded inputs, from a float64 reference (scipy.special.erf).
    const ref = [0, 1.1283791706736896e-30, 0.1124629176829705, 0.5204998778130465, 0.8427007929497148, 0.9661051464753108,
      0.9953222650189527, 0.9999779095030014, 0.9999999845827421, 0.9999999999984626, 1, -0.32862677175271543, -0.999593047982555];
    expect(values(erf(tensor(xs)))).toEqual(ref.map((v) => Math.fround(v)));
  });

  it('comparisons with NaN are false except ne', async () => {
    const { equal, notEqual, less, greaterEqual } = await import('@kiln/core');
    const a = tensor([NaN, 1]);
    const b = tensor([NaN, 1]);
    expect(values(equal(a, b))).toEqual([0, 1]);
    expect(values(notEqual(a, b))).toEqual([1, 0]);
    expect(values(less(a, b))).toEqual([0, 0]);
    expect(values(greaterEqual(a, b))).toEqual([0, 1]);
  });
});

describe('reductions', () => {
  it('sums in float64 and rounds once', () => {
    const n = 100003;
    const x = rand(n, 3);
    let ref = 0;
    for (const v of x) ref += v;
    expect(values(sum(tensor(x)))[0]).toBe(Math.fround(ref));
    // inner axis reduction agrees with the contiguous one
    const m = tensor(rand(6 * 7 * 5, 4), [6, 7, 5]);
    const viaT = sum(transpose(m, [0, 2, 1]), 2);
    expect(values(sum(m, 1))).toEqual(values(viaT));
  });

  it('argmax/argmin: first index on ties, NaN counts as the maximum; max propagates NaN', () => {
    const x = tensor([[1, 3, 3, 0], [2, NaN, 5, NaN], [-1, -1, -2, -2]]);
    expect(values(argmax(x, -1))).toEqual([1, 1, 0]);
    expect(values(argmin(x, -1))).toEqual([3, 0, 2]);
    const m = values(max(x, -1));
    expect(m[0]).toBe(3);
    expect(m[1]).toBeNaN();
    // same along a non-last axis
    const xt = transpose(x);
    expect(values(argmax(xt, 0))).toEqual([1, 1, 0]);
    expect(values(argmin(xt, 0))).toEqual([3, 0, 2]);
  });

  it('i32 sums wrap', () => {
    expect(values(sum(tensor([2147483647, 1], [2], 'i32')))).toEqual([-2147483648]);
  });
});

describe('matmul', () => {
  function refMatmul(a: Float32Array, b: Float32Array, m: number, k: number, n: number, ta: boolean, tb: boolean): number[] {
    const out: number[] = [];
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) s += (ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]);
        out.push(s);
      }
    }
    return out;
  }

  it('matches a float64 reference for every transpose combination, with batch broadcast', () => {
    const [m, k, n] = [7, 13, 5];
    for (const ta of [false, true]) {
      for (const tb of [false, true]) {
        const a = rand(3 * m * k, 10);
        const b = rand(k * n, 11);
        const out = values(matmul(tensor(a, [3, ...(ta ? [k, m] : [m, k])]), tensor(b, [1, ...(tb ? [n, k] : [k, n])]), { transposeA: ta, transposeB: tb }));
        for (let e = 0; e < 3; e++) {
          const ref = refMatmul(a.subarray(e * m * k), b, m, k, n, ta, tb);
          const got = out.slice(e * m * n, (e + 1) * m * n);
          for (let i = 0; i < ref.length; i++) expect(Math.abs(got[i] - ref[i])).toBeLessThan(1e-5);
        }
      }
    }
  });
});

describe('casts', () => {
  // Random bit patterns plus edge cases around every format's rounding boundaries.
  const patterns = (() => {
    const out = new Uint32Array(200000 + 64);
    for (let i = 0; i < 200000; i++) out[i] = (uniformAt(99, 2 * i) * 2 ** 24) * 256 + ((uniformAt(99, 2 * i + 1) * 256) | 0);
    const edges = [0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xffc00001, 0x477fe000, 0x477ff000, 0x477fefff, 0x38800000,
      0x387fffff, 0x33000000, 0x33000001, 0x33800000, 0x43e00000, 0x43e80000, 0x43f00000, 0x47600000, 0x47700000, 0x7f7fffff, 0x7f7f8000, 0x00000001];
    edges.forEach((e, i) => (out[200000 + i] = e));
    return new Float32Array(out.buffer);
  })();

  it('f32 -> f16 / bf16 / e4m3 / e5m2 bit-for-bit as core codecs (both saturate modes)', () => {
    const x = tensor(patterns);
    for (const saturate of [false, true]) {
      const f16 = cast(x, 'f16', { saturate }).dataSync() as Uint16Array;
      const e4 = cast(x, 'e4m3', { saturate }).dataSync() as Uint8Array;
      const e5 = cast(x, 'e5m2', { saturate }).dataSync() as Uint8Array;
      for (let i = 0; i < patterns.length; i++) {
        const v = patterns[i];
        if (f16[i] !== encodeMinifloat(v, F16, saturate)) throw new Error(`f16 ${f32Bits(v).toString(16)}: ${f16[i]}`);
        if (e4[i] !== encodeMinifloat(v, E4M3, saturate)) throw new Error(`e4m3 ${f32Bits(v).toString(16)}: ${e4[i]}`);
        if (e5[i] !== encodeMinifloat(v, E5M2, saturate)) throw new Error(`e5m2 ${f32Bits(v).toString(16)}: ${e5[i]}`);
      }
    }
    const bf = cast(x, 'bf16').dataSync() as Uint16Array;
    for (let i = 0; i < patterns.length; i++) expect(bf[i]).toBe(f32ToBf16Bits(patterns[i]));
  });

  it('round-trips every f16/bf16/FP8 code through f32 exactly', () => {
    for (const [dtype, count] of [['f16', 65536], ['bf16', 65536], ['e4m3', 256], ['e5m2', 256]] as const) {
      const codes = dtype === 'f16' || dtype === 'bf16' ? Uint16Array.from({ length: count }, (_, i) => i) : Uint8Array.from({ length: count }, (_, i) => i);
      const t = fromStorage(codes, [count], dtype);
      const back = cast(cast(t, 'f32'), dtype).dataSync();
      const dec = cast(t, 'f32').dataSync() as Float32Array;
      for (let i = 0; i < count; i++) {
        if (dec[i] !== dec[i]) continue; // NaN codes canonicalise
        expect(back[i]).toBe(codes[i]);
      }
    }
  });

  it('float -> int truncates, NaN -> 0, saturates; -> bool is x != 0', () => {
    const x = tensor([1.9, -1.9, NaN, 3e9, -3e9, 300, -5, -0, Infinity]);
    expect(values(cast(x, 'i32'))).toEqual([1, -1, 0, 2147483647, -2147483648, 300, -5, 0, 2147483647]);
    expect(values(cast(x, 'u8'))).toEqual([1, 0, 0, 255, 0, 255, 0, 0, 255]);
    expect(values(cast(x, 'bool'))).toEqual([1, 1, 1, 1, 1, 1, 1, 0, 1]);
    expect(values(cast(cast(x, 'bf16'), 'bool'))).toEqual([1, 1, 1, 1, 1, 1, 1, 0, 1]);
    expect(values(cast(tensor([300, -1, 7], [3], 'i32'), 'u8'))).toEqual([44, 255, 7]);
    expect(values(cast(tensor([16777217], [1], 'i32'), 'f32'))).toEqual([16777216]);
  });

  it('covers all 8x8 dtype pairs', () => {
    const dtypes: DType[] = ['f32', 'f16', 'bf16', 'e4m3', 'e5m2', 'i32', 'u8', 'bool'];
    const src = [0, 1, 2, 3, 8, 0, 1, 4];
    for (const from of dtypes) {
      const t = tensor(src, [src.length], from);
      for (const to of dtypes) {
        const expected = src.map((v) => (to === 'bool' ? (v !== 0 ? 1 : 0) : from === 'bool' ? (v !== 0 ? 1 : 0) : v));
        expect(values(cast(t, to)), `${from} -> ${to}`).toEqual(expected);
      }
    }
  });
});

describe('layout and indexing', () => {
  function naiveTranspose(x: Float32Array, shape: number[], perm: number[]): number[] {
    const outShape = perm.map((a) => shape[a]);
    const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
    const n = x.length;
    const out: number[] = [];
    const idx = new Array(outShape.length).fill(0);
    for (let o = 0; o < n; o++) {
      let off = 0;
      for (let d = 0; d < perm.length; d++) off += idx[d] * strides[perm[d]];
      out.push(x[off]);
      for (let d = outShape.length - 1; d >= 0; d--) {
        if (++idx[d] < outShape[d]) break;
        idx[d] = 0;
      }
    }
    return out;
  }

  it('transposes any permutation like a naive reference', () => {
    const shape = [3, 1, 37, 41, 2];
    const x = rand(shape.reduce((a, b) => a * b), 5);
    const t = tensor(x, shape);
    for (const perm of [[0, 1, 2, 4, 3], [0, 1, 3, 2, 4], [4, 3, 2, 1, 0], [2, 0, 1, 3, 4], [1, 0, 2, 3, 4], [0, 4, 1, 2, 3], [3, 2, 4, 0, 1]]) {
      expect(values(transpose(t, perm)), perm.join(',')).toEqual(naiveTranspose(x, shape, perm));
    }
  });

  it('moves codes of low-precision dtypes exactly (bf16 transpose / slice / concat)', () => {
    const codes = Uint16Array.from({ length: 6 * 70 }, (_, i) => (i * 2654435761) & 0xffff);
    const t = fromStorage(codes, [6, 70], 'bf16');
    const tt = transpose(transpose(t));
    expect(Array.from(tt.dataSync())).toEqual(Array.from(codes));
    const s = slice(t, [1, 3], [2, 50]);
    const ref: number[] = [];
    for (let i = 1; i < 3; i++) for (let j = 3; j < 53; j++) ref.push(codes[i * 70 + j]);
    expect(Array.from(s.dataSync())).toEqual(ref);
    const c = concat([slice(t, [0, 0], [6, 30]), slice(t, [0, 30], [6, 40])], 1);
    expect(Array.from(c.dataSync())).toEqual(Array.from(codes));
  });

  it('gathers and selects; out-of-range indices throw ArgumentError', () => {
    const x = tensor([[1, 2, 3], [4, 5, 6]]);
    expect(values(gather(x, 1, tensor([[2, 0], [1, 1]], undefined, 'i32')))).toEqual([3, 1, 5, 5]);
    expect(values(gather(x, 0, tensor([[1, 0, 1]], undefined, 'i32')))).toEqual([4, 2, 6]);
    expect(values(indexSelect(x, 1, tensor([2, 2, 0], [3], 'i32')))).toEqual([3, 3, 1, 6, 6, 4]);
    expect(() => gather(x, 1, tensor([[3]], undefined, 'i32'))).toThrow(ArgumentError);
    expect(() => indexSelect(x, 0, tensor([-1], [1], 'i32'))).toThrow(/index -1 is out of range/);
  });

  it('scatterAdd and indexAdd accumulate duplicates (in float64, rounded once)', () => {
    const base = tensor([[0, 0, 0], [1, 1, 1]]);
    const out = scatterAdd(base, 1, tensor([[0, 0, 2], [1, 1, 1]], undefined, 'i32'), tensor([[1, 2, 3], [4, 5, 6]]));
    expect(values(out)).toEqual([3, 0, 3, 1, 16, 1]);
    // 1 + 2^-24 + 2^-24 is 1 + 2^-23 exactly; sequential f32 adds would give 1.
    const tiny = 2 ** -24;
    const acc = scatterAdd(tensor([1]), 0, tensor([0, 0], [2], 'i32'), tensor([tiny, tiny]));
    expect(values(acc)).toEqual([1 + 2 ** -23]);
    const ia = indexAdd(tensor([[1], [1], [5]]), 0, tensor([0, 0, 2], [3], 'i32'), tensor([[tiny], [tiny], [1]]));
    expect(values(ia)).toEqual([1 + 2 ** -23, 1, 6]);
    expect(() => indexAdd(tensor([1, 2]), 0, tensor([2], [1], 'i32'), tensor([1]))).toThrow(ArgumentError);
  });
});

describe('fused kernels agree bit-for-bit with the composed ops', () => {
  function both(fn: () => Tensor): [number[], number[]] {
    useBackend(unfused);
    const composed = tidy(() => values(fn()));
    useBackend(cpu);
    const fused = tidy(() => values(fn()));
    return [fused, composed];
  }

  it('softmax, logSoftmax, rmsNorm, swiglu', () => {
    const x = rand(9 * 257, 20, 6);
    const w = rand(257, 21);
    const u = rand(9 * 257, 22, 3);
    for (const fn of [
      () => softmax(tensor(x, [9, 257])),
      () => logSoftmax(tensor(x, [9, 257])),
      () => rmsNorm(tensor(x, [9, 257]), tensor(w), 1e-6),
      () => swiglu(tensor(x, [9, 257]), tensor(u, [9, 257])),
    ]) {
      const [f, c] = both(fn);
      expect(f).toEqual(c);
    }
  });
});

describe('composed ops and memory', () => {
  it('softmax, topk and crossEntropy', () => {
    const logits = tensor([[1, 2, 3, 0.5], [0, 0, 0, 10]]);
    const p = values(softmax(logits));
    expect(p[0] + p[1] + p[2] + p[3]).toBeCloseTo(1, 6);
    const { values: v, indices } = topk(tensor([[1, 5, 3, 5], [9, 8, 7, 6]]), 2);
    expect(values(v)).toEqual([5, 5, 9, 8]);
    expect(values(indices)).toEqual([1, 3, 0, 1]);
    const loss = values(crossEntropy(logits, tensor([2, -100], [2], 'i32')))[0];
    const ref = -Math.log(Math.exp(3) / (Math.exp(1) + Math.exp(2) + Math.exp(3) + Math.exp(0.5)));
    expect(loss).toBeCloseTo(ref, 5);
  });

  it('random: uniform is a + (b - a) * u in f32; normal has the right moments', () => {
    const u = values(randomUniform([1000], 42, -2, 3));
    for (let i = 0; i < 1000; i++) expect(u[i]).toBe(Math.fround(-2 + Math.fround(5 * uniformAt(42, i))));
    const z = values(randomNormal([20000], 7, 1, 2));
    const mean = z.reduce((a, b) => a + b, 0) / z.length;
    const sd = Math.sqrt(z.reduce((a, b) => a + (b - mean) ** 2, 0) / z.length);
    expect(Math.abs(mean - 1)).toBeLessThan(0.05);
    expect(Math.abs(sd - 2)).toBeLessThan(0.05);
  });

  it('tidy leaves no tensors or backend buffers behind', () => {
    const before = memory();
    const backendBefore = cpu.memory();
    const kept = tidy(() => {
      const x = tensor(rand(64 * 32, 30), [64, 32]);
      const w = tensor(rand(32 * 16, 31), [16, 32]);
      const h = softmax(matmul(x, w, { transposeB: true }));
      const l = crossEntropy(h, tensor(Array.from({ length: 64 }, (_, i) => i % 16), [64], 'i32'));
      return l;
    });
    expect(memory().tensors).toBe(before.tensors + 1);
    expect(cpu.memory().buffers).toBe(backendBefore.buffers + 1);
    kept.dispose();
    expect(memory().tensors).toBe(before.tensors);
    expect(cpu.memory()).toEqual(backendBefore);
  });

  it('recycled buffers never leak stale values into results', () => {
    const n = 128 * 128; // 64 KiB of f32/i32: large enough to be pooled
    const dirty = () => {
      for (let i = 0; i < 4; i++) tensor(new Float32Array(n).fill(NaN), [128, 128]).dispose();
      for (let i = 0; i < 4; i++) tensor(new Int32Array(n).fill(-7), [128, 128], 'i32').dispose();
    };
    dirty();
    expect(cpu.pool().buffers).toBeGreaterThan(0);
    // empty inner dimension: zeros
    expect(values(matmul(tensor([], [128, 0]), tensor([], [0, 128]))).every((v) => v === 0)).toBe(true);
    dirty();
    // the i32 product accumulates into its output
    const eye = tensor(Array.from({ length: n }, (_, i) => (i % 129 === 0 ? 1 : 0)), [128, 128], 'i32');
    const ones = tensor(new Int32Array(n).fill(1), [128, 128], 'i32');
    dirty();
    expect(values(matmul(eye, ones)).every((v) => v === 1)).toBe(true);
  });

  it('read returns a copy', () => {
    const t = tensor([1, 2, 3]);
    const d = t.dataSync() as Float32Array;
    d[0] = 99;
    expect(values(t)).toEqual([1, 2, 3]);
    expect(bitsToF32(f32Bits(1))).toBe(1);
  });
});
