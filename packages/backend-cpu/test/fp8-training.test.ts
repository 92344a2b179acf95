import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as k from '@kiln/core';
import { CpuBackend } from '../src/index.js';
import { matmulFp8Kernel } from '../src/kernels/fp8.js';

/**
 * FP8 / BF16 mixed-precision training numerics of Linear layers: the gradients of `fp8Linear`
 * against a float64 host reference of the same quantized math (core's bit-exact codecs for
 * the quantisation, float64 products), the tiling of each GEMM, what the tape saves, and
 * small trainings in every precision.
 */

let backend: CpuBackend;
beforeAll(() => {
  backend = new CpuBackend();
  k.useBackend(backend);
});
afterAll(() => backend.dispose());

const host = (t: k.Tensor) => t.valuesSync() as Float32Array;

function transposeHost(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
  return out;
}

/** The f32 values of x quantized (core's host codec) in `block`s and decoded. */
function fq(x: Float32Array, rows: number, cols: number, block: [number, number]): Float32Array {
  const { codes, scales } = k.quantizeBlockwise(x, [rows, cols], block);
  return k.dequantizeBlockwise(codes, scales, [rows, cols], block);
}

/** float64 a [M, K] · b [N, K]ᵀ, with Σ|a b| per output (the scale of f32 rounding). */
function gemm64(a: Float32Array, b: Float32Array, M: number, N: number, K: number): { c: Float64Array; mag: Float64Array } {
  const c = new Float64Array(M * N);
  const mag = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      let t = 0;
      for (let i = 0; i < K; i++) {
        const p = a[m * K + i] * b[n * K + i];
        s += p;
        t += Math.abs(p);
      }
      c[m * N + n] = s;
      mag[m * N + n] = t;
    }
  }
  return { c, mag };
}

/** max over elements of |got − want| / (Σ|terms| + tiny): about 1e-7 for f32 accumulation of the same products. */
function worst(got: Float32Array, want: { c: Float64Array; mag: Float64Array }): number {
  let w = 0;
  for (let i = 0; i < got.length; i++) w = Math.max(w, Math.abs(got[i] - want.c[i]) / (want.mag[i] + 1e-30));
  return w;
}

function relErr(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / den);
}

/** Seeded N(0, std) on the host (describe bodies run before the backend exists). */
function normal(n: number, seed: number, std = 1): Float32Array {
  let st = seed >>> 0 || 1;
  const u = () => {
    st = (Math.imul(st, 1664525) + 1013904223) >>> 0;
    return (st + 0.5) / 4294967296;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = std * Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

/** Rows of x scaled by very different magnitudes (per token), so that tilings matter. */
function tokens(T: number, C: number, seed: number): Float32Array {
  const x = normal(T * C, seed);
  for (let t = 0; t < T; t++) {
    const s = 2 ** (((t * 7) % 13) - 6);
    for (let c = 0; c < C; c++) x[t * C + c] *= s;
  }
  return x;
}

// x [2, 150, 200] = 300 tokens (two full 128-token tiles and an edge tile of 44), K = 200
// (one full and one edge 128-wide K block), N = 160.
const B = 2;
const S = 150;
const T = B * S;
const K = 200;
const N = 160;

describe('FP8 GEMM with 1x128 tiles on both operands (the Wgrad shape)', () => {
  it('matmulFp8 accepts [1, 128] tiles for b and matches fp8GemmReference and the float64 product', () => {
    const a = k.tensor(tokens(N, T, 1), [N, T]);
    const b = k.tensor(tokens(K, T, 2), [K, T]);
    const qa = k.quantize(a, { block: [1, 128] });
    const qb = k.quantize(b, { block: [1, 128] });
    const got = host(k.matmulFp8(qa, qb));
    const op = (q: k.QuantizedTensor) => ({ codes: q.codes.dataSync() as Uint8Array, scales: q.scales.dataSync() as Float32Array, shape: [q.shape[0], q.shape[1]] as [number, number], block: q.block });
    const ref = k.fp8GemmReference(op(qa), op(qb));
    for (let i = 0; i < got.length; i++) expect(Math.abs(got[i] - ref[i])).toBeLessThanOrEqual(1e-5 * (Math.abs(ref[i]) + 1e-3));
    const want = gemm64(fq(host(a), N, T, [1, 128]), fq(host(b), K, T, [1, 128]), N, K, T);
    expect(worst(got, want)).toBeLessThan(1e-6);
    // the emulation path (another promotion interval) is bit-exact with the definition on this tiling too
    const emu = matmulFp8Kernel(
      { codes: op(qa).codes, scales: op(qa).scales, rows: N, k: T, block: [1, 128], format: 'e4m3' },
      { codes: op(qb).codes, scales: op(qb).scales, rows: K, k: T, block: [1, 128], format: 'e4m3' },
      { promotionInterval: 64 },
    );
    expect(Array.from(emu)).toEqual(Array.from(k.fp8GemmReference(op(qa), op(qb), { promotionInterval: 64 })));
    k.dispose([a, b, qa, qb]);
  });

  it("Wᵀ's 128x128 blocks are W's blocks transposed: transposeQuantized is bit-exact with quantizing Wᵀ", () => {
    for (const [rows, cols] of [[300, 200], [128, 256], [5, 130]]) {
      const w = k.randomNormal([rows, cols], 7, 0, 0.05);
      const viaT = k.transposeQuantized(k.quantize(w, { block: [128, 128] }));
      const direct = k.quantize(k.transpose(w), { block: [128, 128] });
      expect(viaT.shape).toEqual([cols, rows]);
      expect(viaT.block).toEqual([128, 128]);
      expect(Array.from(viaT.codes.dataSync())).toEqual(Array.from(direct.codes.dataSync()));
      expect(Array.from(viaT.scales.dataSync())).toEqual(Array.from(direct.scales.dataSync()));
      k.dispose([w, viaT, direct]);
    }
  });
});

describe('fp8Linear', () => {
  const xv = tokens(T, K, 11);
  const wv = normal(N * K, 12, 0.05);
  const cv = tokens(T, N, 13); // the upstream gradient dy (loss = sum(y * c))

  function run(precision: k.LinearPrecision): { y: Float32Array; dx: Float32Array; dw: Float32Array } {
    const x = k.tensor(xv, [B, S, K]);
    const w = k.tensor(wv, [N, K]);
    const c = k.tensor(cv, [B, S, N]);
    let y!: Float32Array;
    const { value, grads } = k.valueAndGrads(() => {
      const out = k.linearWithPrecision(x, w, undefined, precision);
      y = host(out).slice();
      return k.sum(k.mul(out, c));
    }, [x, w]);
    const r = { y, dx: host(grads[0]).slice(), dw: host(grads[1]).slice() };
    expect(grads[0].shape).toEqual([B, S, K]);
    k.dispose([x, w, c, value, grads]);
    return r;
  }

  const ref = (() => {
    const xq = fq(xv, T, K, [1, 128]);
    const wq = fq(wv, N, K, [128, 128]);
    const y = gemm64(xq, wq, T, N, K);
    const dyq = fq(cv, T, N, [1, 128]);
    const wqT = transposeHost(wq, N, K); // [K, N]
    const dx = gemm64(dyq, wqT, T, K, N);
    const dyT = transposeHost(cv, T, N); // [N, T]
    const xT = transposeHost(xv, T, K); // [K, T]
    const dw = gemm64(fq(dyT, N, T, [1, 128]), fq(xT, K, T, [1, 128]), N, K, T);
    // what Wgrad would give in 128x128 blocks (of dyᵀ and xᵀ), i.e. the wrong tiling
    const dwBlocks = gemm64(fq(dyT, N, T, [128, 128]), fq(xT, K, T, [128, 128]), N, K, T);
    // or re-tiling the saved forward quantization of x (1x128 along K) instead of quantizing x per 128 tokens
    const dwRetiled = gemm64(fq(dyT, N, T, [1, 128]), fq(transposeHost(xq, T, K), K, T, [1, 128]), N, K, T);
    return { y, dx, dw, dwBlocks, dwRetiled };
  })();

  it('forward, Dgrad and Wgrad match a float64 reference of the same quantized math', () => {
    const got = run('fp8');
    expect(worst(got.y, ref.y)).toBeLessThan(1e-6);
    expect(worst(got.dx, ref.dx)).toBeLessThan(1e-6);
    expect(worst(got.dw, ref.dw)).toBeLessThan(1e-6);
  });

  it('the reference tells the Wgrad tilings apart (the test would fail with 128x128 or re-tiled operands)', () => {
    const got = run('fp8');
    // the wrong tilings are far off the tolerance the right one meets
    expect(worst(got.dw, ref.dwBlocks)).toBeGreaterThan(1e-3);
    expect(worst(got.dw, ref.dwRetiled)).toBeGreaterThan(1e-4);
    expect(worst(Float32Array.from(ref.dwBlocks.c), ref.dw)).toBeGreaterThan(1e-3);
  });

  it('fp8 gradients differ from fp32 by a few percent; bf16 matches a float64 reference on bf16-rounded operands', () => {
    const f32 = run('fp32');
    const f8 = run('fp8');
    const b16 = run('bf16');
    const e = { y: relErr(f8.y, f32.y), dx: relErr(f8.dx, f32.dx), dw: relErr(f8.dw, f32.dw) };
    const eb = { y: relErr(b16.y, f32.y), dx: relErr(b16.dx, f32.dx), dw: relErr(b16.dw, f32.dw) };
    console.log(`relative error vs fp32 (Frobenius): fp8 y ${e.y.toExponential(2)} dx ${e.dx.toExponential(2)} dw ${e.dw.toExponential(2)}; bf16 y ${eb.y.toExponential(2)} dx ${eb.dx.toExponential(2)} dw ${eb.dw.toExponential(2)}`);
    for (const v of Object.values(e)) {
      expect(v).toBeGreaterThan(1e-3);
      expect(v).toBeLessThan(0.1);
    }
    for (const v of Object.values(eb)) {
      expect(v).toBeGreaterThan(1e-4);
      expect(v).toBeLessThan(1e-2);
    }
    // bf16: round every GEMM input to bf16 on the host (core's exact codec), multiply in float64
    const r = (a: Float32Array) => k.decodeBf16(k.encodeBf16(a));
    const xb = r(xv);
    const wb = r(wv);
    const cb = r(cv);
    expect(worst(b16.y, gemm64(xb, wb, T, N, K))).toBeLessThan(1e-6);
    expect(worst(b16.dx, gemm64(cb, transposeHost(wb, N, K), T, K, N))).toBeLessThan(1e-6);
    expect(worst(b16.dw, gemm64(transposeHost(cb, T, N), transposeHost(xb, T, K), N, K, T))).toBeLessThan(1e-6);
    // fp32 is the plain f32 GEMM
    expect(worst(f32.dw, gemm64(transposeHost(cv, T, N), transposeHost(xv, T, K), N, K, T))).toBeLessThan(1e-6);
  });

  it('keeps the f32 input alive only in fp32: saved bytes per element are 4 (fp32), 2 (bf16), 1 + 4/128 (fp8)', () => {
    const savedBytes = (precision: k.LinearPrecision): number => {
      const x = k.tensor(xv, [T, K]);
      const w = k.tensor(wv, [N, K]);
      const before = k.memory().bytes;
      let saved = 0;
      const { value, grads } = k.valueAndGrads(() => {
        const y = k.linearWithPrecision(x, w, undefined, precision);
        x.dispose(); // only what the tape kept of x stays
        const loss = k.sum(y);
        // live now: the tape's copy of x, y (kept by sum's node) and the loss
        saved = k.memory().bytes - before + T * K * 4 - y.bytes - loss.bytes;
        return loss;
      }, [w]);
      k.dispose([w, value, grads]);
      return saved;
    };
    const fp32 = savedBytes('fp32');
    const bf16 = savedBytes('bf16');
    const fp8 = savedBytes('fp8');
    console.log(`saved for backward per element of x: fp32 ${fp32 / (T * K)}, bf16 ${bf16 / (T * K)}, fp8 ${(fp8 / (T * K)).toFixed(4)} bytes`);
    expect(fp32).toBe(4 * T * K);
    expect(bf16).toBe(2 * T * K);
    expect(fp8).toBe(T * K + 4 * K * Math.ceil(T / 128)); // codes + one f32 scale per 128 tokens
    expect(fp8).toBeLessThan(bf16);
  });

  it('gives only the gradients asked for, and typed errors', () => {
    const x = k.tensor(xv, [T, K]);
    const w = k.tensor(wv, [N, K]);
    const { value, grads } = k.valueAndGrads(() => k.sum(k.fp8Linear(x, w)), [x]);
    expect(grads[0].shape).toEqual([T, K]);
    k.dispose([value, grads]);
    expect(() => k.fp8Linear(x, k.tensor([1, 2, 3]))).toThrow(k.ShapeError);
    expect(() => k.fp8Linear(k.full([T, K + 1], 1), w)).toThrow(/in-features 200/);
    expect(() => k.fp8Linear(k.cast(x, 'e4m3'), w)).toThrow(k.DTypeError);
    expect(() => k.linearWithPrecision(x, w, undefined, 'fp16' as k.LinearPrecision)).toThrow(k.ArgumentError);
    expect(() => k.fp8Linear(x, w, { format: 'e3m4' as k.Fp8Format })).toThrow(k.ArgumentError);
    k.dispose([x, w]);
  });
});

describe('SwiGLU with FP8 caching', () => {
  const I = 256;
  const H = 96;
  const Tt = 200;
  const gv = tokens(Tt, I, 21);
  const uv = tokens(Tt, I, 22);
  const wv = normal(H * I, 23, 0.05);
  const cv = normal(Tt * H, 24);

  it('gradients of gate, up and the down weight match a float64 reference; only FP8 copies are kept', () => {
    const g = k.tensor(gv, [Tt, I]);
    const u = k.tensor(uv, [Tt, I]);
    const w = k.tensor(wv, [H, I]);
    const c = k.tensor(cv, [Tt, H]);
    let saved = 0;
    const { value, grads } = k.valueAndGrads(() => {
      const before = k.memory().bytes;
      const y = k.swigluFp8Linear(g, u, w);
      saved = k.memory().bytes - before - y.bytes;
      return k.sum(k.mul(y, c));
    }, [g, u, w]);
    // nothing but 2 FP8 copies (gate and up: codes + a scale per 1x128 tile) is kept beyond y
    expect(saved).toBe(2 * (Tt * I + 4 * Tt * Math.ceil(I / 128)));
    const [dg, du, dw] = grads.map((t) => host(t).slice());
    k.dispose([value, grads, c]);

    // reference: FP8-rounded gate/up, h = swiglu of them (core's kernel, so h is the same f32), float64 GEMMs
    const gd = fq(gv, Tt, I, [1, 128]);
    const ud = fq(uv, Tt, I, [1, 128]);
    const h = k.tidy(() => host(k.swiglu(k.tensor(gd, [Tt, I]), k.tensor(ud, [Tt, I]))).slice());
    const wq = fq(wv, H, I, [128, 128]);
    const dh = gemm64(fq(cv, Tt, H, [1, 128]), transposeHost(wq, H, I), Tt, I, H);
    const dwRef = gemm64(fq(transposeHost(cv, Tt, H), H, Tt, [1, 128]), fq(transposeHost(h, Tt, I), I, Tt, [1, 128]), H, I, Tt);
    expect(worst(dw, dwRef)).toBeLessThan(1e-6);
    let wg = 0;
    let wu = 0;
    for (let i = 0; i < Tt * I; i++) {
      const s = 1 / (1 + Math.exp(-gd[i]));
      const rg = dh.c[i] * ud[i] * s * (1 + gd[i] * (1 - s));
      const ru = dh.c[i] * gd[i] * s;
      const scale = dh.mag[i] * (Math.abs(ud[i]) + Math.abs(gd[i]) + 1);
      wg = Math.max(wg, Math.abs(dg[i] - rg) / scale);
      wu = Math.max(wu, Math.abs(du[i] - ru) / scale);
    }
    expect(wg).toBeLessThan(1e-5);
    expect(wu).toBeLessThan(1e-5);
    k.dispose([g, u, w]);
  });

  it('bf16 keeps gate and up as bf16 (2 bytes each) and matches plain swiglu + bf16Linear on bf16-rounded inputs', () => {
    const g = k.tensor(gv, [Tt, I]);
    const u = k.tensor(uv, [Tt, I]);
    const w = k.tensor(wv, [H, I]);
    const c = k.tensor(cv, [Tt, H]);
    let saved = 0;
    const fused = k.valueAndGrads(() => {
      const before = k.memory().bytes;
      const y = k.swigluLinear(g, u, w, 'bf16');
      saved = k.memory().bytes - before - y.bytes;
      return k.sum(k.mul(y, c));
    }, [g, u, w]);
    expect(saved).toBe(2 * 2 * Tt * I);
    // the same function composed from differentiable ops (casts pass gradients straight through)
    const r = (t: k.Tensor) => k.cast(k.cast(t, 'bf16'), 'f32');
    const plain = k.valueAndGrads(() => k.sum(k.mul(k.bf16Linear(k.swiglu(r(g), r(u)), w), c)), [g, u, w]);
    for (let i = 0; i < 3; i++) {
      const a = host(fused.grads[i]);
      const b = host(plain.grads[i]);
      let scale = 0;
      for (const v of b) scale = Math.max(scale, Math.abs(v));
      for (let j = 0; j < a.length; j++) expect(Math.abs(a[j] - b[j])).toBeLessThanOrEqual(1e-5 * scale);
    }
    k.dispose([fused, plain, g, u, w, c]);
  });
});

class Net extends k.nn.Module {
  readonly mlp: k.nn.MLP;
  readonly head: k.nn.Linear;
  constructor(hidden: number, inter: number, vocab: number, seed: number) {
    super();
    const init = new k.nn.Initializer({ seed, std: 0.1 });
    this.mlp = this.registerModule('mlp', new k.nn.MLP(hidden, inter, init));
    this.head = this.registerModule('lm_head', new k.nn.Linear(hidden, vocab, init));
  }
  forward(x: k.Tensor): k.Tensor {
    return k.tidy(() => this.head.forward(this.mlp.forward(x)));
  }
}

class Stack extends k.nn.Module {
  readonly blocks: k.nn.MLP[] = [];
  constructor(hidden: number, inter: number, layers: number, seed: number, std = 0.05) {
    super();
    const init = new k.nn.Initializer({ seed, std });
    for (let i = 0; i < layers; i++) this.blocks.push(this.registerModule(`layers.${i}`, new k.nn.MLP(hidden, inter, init)));
  }
  forward(x: k.Tensor): k.Tensor {
    return k.tidy(() => this.blocks.reduce((h, b) => k.add(h, b.forward(h)), x));
  }
}

describe('nn: setLinearPrecision and training in each precision', () => {
  it('sets every Linear but the excluded ones and returns the count', () => {
    const net = new Net(16, 32, 8, 1);
    expect(k.nn.setLinearPrecision(net, 'fp8', { exclude: (n) => n === 'lm_head' })).toBe(3);
    expect([net.mlp.gateProj, net.mlp.upProj, net.mlp.downProj].map((l) => l.precision)).toEqual(['fp8', 'fp8', 'fp8']);
    expect(net.head.precision).toBe('fp32');
    expect(k.nn.setLinearPrecision(net, 'bf16')).toBe(4);
    expect(net.head.precision).toBe('bf16');
    expect(k.nn.setLinearPrecision(net.head, 'fp32')).toBe(1);
    expect(() => k.nn.setLinearPrecision(net, 'fp4' as k.LinearPrecision)).toThrow(k.ArgumentError);
    expect(() => (net.head.precision = 'int8' as k.LinearPrecision)).toThrow(k.ArgumentError);
    net.dispose();
  });

  it('an MLP keeps one low-precision copy of its input (shared by gate_proj and up_proj) and of gate/up: exact bytes per precision', () => {
    const Tn = 200;
    const H = 96;
    const I = 256;
    const xv = normal(Tn * H, 41);
    const savedBytes = (precision: k.LinearPrecision): number => {
      const start = k.memory().bytes;
      const mlp = new k.nn.MLP(H, I, new k.nn.Initializer({ seed: 2, std: 0.05 }));
      k.nn.setLinearPrecision(mlp, precision);
      const x = k.tensor(xv, [Tn, H]);
      const before = k.memory().bytes;
      let saved = 0;
      const { value, grads } = k.valueAndGrads(() => {
        const y = mlp.forward(x);
        x.dispose();
        const loss = k.sum(y);
        saved = k.memory().bytes - before + Tn * H * 4 - y.bytes - loss.bytes;
        return loss;
      }, Object.fromEntries(mlp.parameters()));
      k.dispose([value, grads]);
      mlp.dispose();
      expect(k.memory().bytes).toBe(start); // the tape's shared copies are released too
      return saved;
    };
    const got = { fp32: savedBytes('fp32'), bf16: savedBytes('bf16'), fp8: savedBytes('fp8') };
    console.log(`MLP ${H}/${I}, ${Tn} tokens: bytes kept for backward per token`, JSON.stringify(Object.fromEntries(Object.entries(got).map(([p, b]) => [p, b / Tn]))));
    // fp32: x, gate and up outputs, h (f32); bf16: x once, gate and up as bf16
    expect(got.fp32).toBe(4 * Tn * H + 3 * 4 * Tn * I);
    expect(got.bf16).toBe(2 * Tn * H + 2 * 2 * Tn * I);
    // fp8: x once in 128-token tiles (codes + a scale per 128 tokens), gate and up in 1x128 tiles along I
    expect(got.fp8).toBe(Tn * H + 4 * H * Math.ceil(Tn / 128) + 2 * (Tn * I + 4 * Tn * Math.ceil(I / 128)));
  });

  it('a Linear holding an FP8 checkpoint weight ignores the training precision (inference path unchanged)', () => {
    const init = new k.nn.Initializer({ seed: 3, std: 0.05 });
    const lin = new k.nn.Linear(256, 128, init);
    const x = k.randomNormal([4, 256], 8);
    lin.setQuantizedWeight(k.quantize(lin.weight, { block: [128, 128] }));
    const want = host(lin.forward(x)).slice();
    lin.precision = 'fp8';
    expect(Array.from(host(lin.forward(x)))).toEqual(Array.from(want));
    lin.fp8Activations = true;
    const act = host(lin.forward(x)).slice();
    lin.precision = 'fp32';
    expect(Array.from(host(lin.forward(x)))).toEqual(Array.from(act));
    k.dispose([x]);
    lin.dispose();
  });

  it('a residual stack of SwiGLU MLPs trains to similar losses in fp32, bf16 and fp8; peak memory fp8 < bf16 < fp32', () => {
    const hidden = 64;
    const inter = 256;
    const tokensN = 256;
    const layers = 4;
    const x = k.randomNormal([tokensN, hidden], 31);
    // the target: a fixed random teacher of the same shape (outputs x + its 4 MLPs)
    const teacher = new Stack(hidden, inter, layers, 99, 0.08);
    const target = k.noGrad(() => teacher.forward(x));
    teacher.dispose();
    const result: Record<string, { first: number; last: number; mean: number; peak: number }> = {};
    for (const precision of ['fp32', 'bf16', 'fp8'] as const) {
      const net = new Stack(hidden, inter, layers, 5);
      expect(k.nn.setLinearPrecision(net, precision)).toBe(3 * layers);
      const losses: number[] = [];
      let peak = 0;
      for (let step = 0; step < 30; step++) {
        const params = Object.fromEntries(net.parameters());
        const base = k.resetPeakMemory();
        const { value, grads } = k.valueAndGrads(() => k.div(k.sum(k.square(k.sub(net.forward(x), target))), tokensN), params);
        peak = Math.max(peak, k.memory().peakBytes - base);
        losses.push(value.valuesSync()[0]);
        for (const [name, g] of Object.entries(grads)) {
          const p = params[name];
          // normalised gradient descent (per tensor), lr 0.001
          net.setParameter(name, k.noGrad(() => k.sub(p, k.mul(k.div(g, k.add(k.sqrt(k.mean(k.square(g))), 1e-12)), 0.001))));
        }
        k.dispose([value, grads]);
      }
      result[precision] = { first: losses[0], last: losses[losses.length - 1], mean: losses.reduce((a, b) => a + b) / losses.length, peak };
      net.dispose();
    }
    console.log(`${layers} residual SwiGLU MLPs (${hidden}/${inter}, ${tokensN} tokens), 30 SGD steps:`, JSON.stringify(result));
    for (const p of ['fp32', 'bf16', 'fp8']) {
      expect(result[p].last).toBeLessThan(0.1 * result[p].first);
      // the same curve: mean loss over the 30 steps within 3%, final losses within 2% of the initial loss
      expect(Math.abs(result[p].mean - result.fp32.mean) / result.fp32.mean).toBeLessThan(0.03);
      expect(Math.abs(result[p].last - result.fp32.last) / result.fp32.first).toBeLessThan(0.02);
    }
    expect(result.fp8.peak).toBeLessThan(result.bf16.peak);
    expect(result.bf16.peak).toBeLessThan(result.fp32.peak);
    k.dispose([x, target]);
  });
});

describe('peak memory', () => {
  it('memory().peakBytes records the most bytes held since resetPeakMemory()', () => {
    const live = k.resetPeakMemory();
    expect(k.memory().peakBytes).toBe(live);
    const a = k.full([1000], 0);
    const b = k.full([500], 0);
    a.dispose();
    b.dispose();
    expect(k.memory().peakBytes).toBe(live + 6000);
    expect(k.memory().backends[backend.name].peakBytes).toBeGreaterThanOrEqual(k.memory().backends[backend.name].bytes + 6000);
    expect(k.resetPeakMemory()).toBe(live);
    expect(k.memory().peakBytes).toBe(live);
  });
});
