/**
 * attention(q, k, v): the fused path (the CPU backend's fused.attention, with core's recorded
 * backward) against the composed path (the same backend with its fused kernels hidden, so
 * autograd differentiates matmul/softmax/where), mask semantics, broadcasting and errors.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ArgumentError,
  DTypeError,
  ShapeError,
  attention,
  broadcastTo,
  cast,
  matmul,
  mul,
  softmax,
  add,
  tensor,
  tidy,
  useBackend,
  valueAndGrads,
  sum,
  type Backend,
  type Tensor,
} from '@kiln/core';
import { CpuBackend } from '@kiln/backend-cpu';

let cpu: CpuBackend;
/** The same backend without fused kernels: attention composes primitives there. */
let composed: Backend;

beforeAll(() => {
  cpu = new CpuBackend();
  composed = new Proxy(cpu, {
    get(target, prop) {
      if (prop === 'fused') return undefined;
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  useBackend(cpu);
});
afterAll(() => cpu.dispose());

/** Deterministic values in [-2, 2). */
function values(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0;
    return ((s >>> 8) / 16777216) * 4 - 2;
  });
}

function on(backend: Backend, v: Float32Array, shape: number[]): Tensor {
  return tensor(v, shape, 'f32', { backend });
}

function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let scale = 1e-6;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]) / scale);
  return m;
}

interface Setup {
  q: number[];
  k: number[];
  v: number[];
  options: Parameters<typeof attention>[3];
}

/** Output and gradients (of a random projection of the output) on one backend. */
function run(backend: Backend, s: Setup, seed: number): { out: Float32Array; grads: Float32Array[] } {
  const qv = values(s.q.reduce((a, b) => a * b, 1), seed);
  const kv = values(s.k.reduce((a, b) => a * b, 1), seed + 1);
  const vv = values(s.v.reduce((a, b) => a * b, 1), seed + 2);
  const params = [on(backend, qv, s.q), on(backend, kv, s.k), on(backend, vv, s.v)];
  let outShape: number[] = [];
  const out = tidy(() => {
    const o = attention(params[0], params[1], params[2], s.options);
    outShape = [...o.shape];
    return o;
  });
  const w = on(backend, values(out.size, seed + 3), outShape);
  const { value, grads } = valueAndGrads(() => sum(mul(attention(params[0], params[1], params[2], s.options), w)), params);
  const res = { out: out.dataSync() as Float32Array, grads: grads.map((g) => g.dataSync() as Float32Array) };
  for (const t of [out, w, value, ...grads, ...params]) t.dispose();
  return res;
}

const SETUPS: [string, Setup][] = [
  ['causal, Tq = S', { q: [2, 3, 5, 8], k: [2, 3, 5, 8], v: [2, 3, 5, 8], options: { causal: true } }],
  ['causal offset S - Tq', { q: [2, 3, 3, 8], k: [2, 3, 7, 8], v: [2, 3, 7, 8], options: { causalOffset: 4 } }],
  ['offset beyond S (every key visible to late queries)', { q: [1, 4, 6], k: [1, 5, 6], v: [1, 5, 6], options: { causalOffset: 3 } }],
  ['no mask, dk != dv, custom scale', { q: [3, 4, 6], k: [3, 9, 6], v: [3, 9, 10], options: { scale: 0.7 } }],
  ['k/v broadcast over heads', { q: [2, 4, 3, 5], k: [2, 1, 6, 5], v: [2, 1, 6, 7], options: { causalOffset: 3 } }],
  ['k/v of lower rank', { q: [2, 3, 4, 5], k: [4, 5], v: [4, 3], options: { causal: true } }],
  // the CPU kernel works in tiles of query rows (64 under a causal mask) and groups of batch
  // entries (at most 2^20 scores at once): several of each
  ['causal over three row tiles', { q: [2, 150, 8], k: [2, 150, 8], v: [2, 150, 4], options: { causal: true } }],
  ['long keys split into batch groups', { q: [6, 70, 8], k: [6, 4096, 8], v: [6, 4096, 4], options: { causalOffset: 4026 } }],
];

describe('attention: fused kernel (CPU) vs composed primitives', () => {
  for (const [name, s] of SETUPS) {
    it(`${name}: same output and gradients up to f32 rounding`, () => {
      const f = run(cpu, s, 11);
      const c = run(composed, s, 11);
      expect(maxRelDiff(f.out, c.out)).toBeLessThan(2e-6);
      for (let i = 0; i < 3; i++) expect(maxRelDiff(f.grads[i], c.grads[i])).toBeLessThan(1e-5);
    });
  }

  it('uses the fused kernel when the backend has one (a spy on fused.attention)', () => {
    const calls: unknown[] = [];
    const kernel = cpu.fused.attention!;
    const spied: Backend = new Proxy(cpu, {
      get(target, prop) {
        if (prop === 'fused') return { ...target.fused, attention: (...a: Parameters<typeof kernel>) => (calls.push(a[3]), kernel(...a)) };
        const v = Reflect.get(target, prop, target) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    tidy(() => {
      const q = on(spied, values(8, 1), [2, 4]);
      attention(q, q, q, { causalOffset: 2, scale: 0.5 });
      attention(q, q, q);
    });
    expect(calls).toEqual([{ scale: 0.5, causalOffset: 2 }, { scale: 0.5, causalOffset: null }]);
  });
});

describe('attention: semantics', () => {
  for (const [label, backend] of [['fused', () => cpu], ['composed', () => composed]] as const) {
    it(`[${label}] equals softmax(scale q kᵀ + additive mask) v written out`, () => {
      const b = backend();
      const Tq = 3;
      const S = 5;
      const offset = 1;
      const qv = values(2 * Tq * 4, 5);
      const kv = values(2 * S * 4, 6);
      const vv = values(2 * S * 3, 7);
      const mask = new Float32Array(Tq * S);
      for (let i = 0; i < Tq; i++) for (let j = 0; j < S; j++) mask[i * S + j] = j <= offset + i ? 0 : -Infinity;
      tidy(() => {
        const q = on(b, qv, [2, Tq, 4]);
        const k = on(b, kv, [2, S, 4]);
        const v = on(b, vv, [2, S, 3]);
        const got = attention(q, k, v, { causalOffset: offset, scale: 0.3 }).dataSync();
        const want = matmul(softmax(add(mul(matmul(q, k, { transposeB: true }), 0.3), on(b, mask, [Tq, S]))), v).dataSync();
        expect(maxRelDiff(got, want)).toBeLessThan(2e-6);
        // default scale 1/sqrt(dk)
        const dflt = attention(q, k, v).dataSync();
        const half = attention(q, k, v, { scale: 0.5 }).dataSync();
        expect(Array.from(dflt)).toEqual(Array.from(half));
      });
    });

    it(`[${label}] a masked key has no influence (even holding huge values); query 0 at offset 0 returns v[0]`, () => {
      const b = backend();
      const qv = values(4 * 6, 1);
      const kv = values(5 * 6, 2);
      const vv = values(5 * 2, 3);
      tidy(() => {
        const q = on(b, qv, [4, 6]);
        const base = attention(q, on(b, kv, [5, 6]), on(b, vv, [5, 2]), { causal: true }).dataSync();
        const k2 = kv.slice();
        const v2 = vv.slice();
        for (let p = 0; p < 6; p++) k2[4 * 6 + p] = 1e4; // key 4 is seen only by query 4 (there is none)
        v2[4 * 2] = 1e6;
        const changed = attention(q, on(b, k2, [5, 6]), on(b, v2, [5, 2]), { causal: true }).dataSync();
        expect(Array.from(changed)).toEqual(Array.from(base));
        expect(base[0]).toBe(vv[0]);
        expect(base[1]).toBe(vv[1]);
        // without the mask the same change moves every row
        const open = attention(q, on(b, k2, [5, 6]), on(b, v2, [5, 2])).dataSync();
        expect(Math.abs(open[0] - base[0])).toBeGreaterThan(1);
      });
    });

    it(`[${label}] broadcasting k/v over heads equals repeating them; bf16 inputs equal their f32 values`, () => {
      const b = backend();
      tidy(() => {
        const q = on(b, values(2 * 3 * 4 * 5, 1), [2, 3, 4, 5]);
        const k = on(b, values(2 * 6 * 5, 2), [2, 1, 6, 5]);
        const v = on(b, values(2 * 6 * 2, 3), [2, 1, 6, 2]);
        const a = attention(q, k, v, { causalOffset: 2 });
        const r = attention(q, broadcastTo(k, [2, 3, 6, 5]), broadcastTo(v, [2, 3, 6, 2]), { causalOffset: 2 });
        expect(a.shape).toEqual([2, 3, 4, 2]);
        expect(a.dtype).toBe('f32');
        expect(maxRelDiff(a.dataSync(), r.dataSync())).toBeLessThan(2e-6);
        const qb = cast(q, 'bf16');
        const kb = cast(k, 'bf16');
        const h = attention(qb, kb, v, { causalOffset: 2 });
        const hf = attention(cast(qb, 'f32'), cast(kb, 'f32'), v, { causalOffset: 2 });
        expect(h.dtype).toBe('f32');
        expect(Array.from(h.dataSync())).toEqual(Array.from(hf.dataSync()));
      });
    });
  }

  it('empty query rows give an empty output on both paths', () => {
    for (const b of [cpu, composed]) {
      tidy(() => {
        const o = attention(on(b, new Float32Array(0), [2, 0, 3]), on(b, values(12, 1), [2, 2, 3]), on(b, values(8, 2), [2, 2, 2]), { causal: true });
        expect(o.shape).toEqual([2, 0, 2]);
      });
    }
  });
});

describe('attention: errors', () => {
  it('names the op and the shapes', () => {
    tidy(() => {
      const q = on(cpu, values(2 * 3 * 4, 1), [2, 3, 4]);
      const k = on(cpu, values(2 * 5 * 4, 2), [2, 5, 4]);
      const v = on(cpu, values(2 * 5 * 3, 3), [2, 5, 3]);
      const shape = (f: () => unknown, re: RegExp) => {
        expect(f).toThrow(ShapeError);
        expect(f).toThrow(re);
      };
      shape(() => attention(q, on(cpu, values(2 * 5 * 3, 2), [2, 5, 3]), v), /^attention: .*dk.*q \[2, 3, 4\], k \[2, 5, 3\]/);
      shape(() => attention(q, k, on(cpu, values(2 * 4 * 3, 3), [2, 4, 3])), /^attention: .*positions S/);
      shape(() => attention(on(cpu, values(4, 1), [4]), k, v), /^attention: .*rank >= 2/);
      shape(() => attention(q, on(cpu, values(3 * 5 * 4, 2), [3, 5, 4]), v), /^attention: k's leading axes/);
      shape(() => attention(q, on(cpu, values(2 * 2 * 5 * 4, 2), [2, 2, 5, 4]), v), /^attention: k's leading axes/);
      shape(() => attention(q, on(cpu, new Float32Array(0), [2, 0, 4]), on(cpu, new Float32Array(0), [2, 0, 3])), /^attention: .*at least one key/);
      const arg = (f: () => unknown, re: RegExp) => {
        expect(f).toThrow(ArgumentError);
        expect(f).toThrow(re);
      };
      arg(() => attention(q, k, v, { causalOffset: -1 }), /^attention: causalOffset must be an integer >= 0, got -1/);
      arg(() => attention(q, k, v, { causalOffset: 1.5 }), /^attention: causalOffset/);
      arg(() => attention(q, k, v, { causal: false, causalOffset: 2 }), /^attention: causalOffset 2 was given with causal: false/);
      arg(() => attention(q, k, v, { scale: Number.NaN }), /^attention: scale/);
      expect(() => attention(cast(q, 'i32'), k, v)).toThrow(DTypeError);
      expect(() => attention(q, k, cast(v, 'bool'))).toThrow(/^attention: v must be float, got bool/);
    });
  });
});
