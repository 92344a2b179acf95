import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeValues, type DType, type TensorView } from '@kiln/core';
import { GEMM_VARIANTS, GpujsBackend, findChromium, kernelSources } from '@kiln/backend-gpujs';

// The headless-gl engine (WebGL 1.0; needs an X display, e.g. `xvfb-run -a`):
// - every f32 GEMM variant (KILN_GPUJS_GEMM) bit for bit against the default 'packed' kernel and
//   the one-pass one-output-per-thread kernel, on ragged shapes; the small-GEMM dispatch
//   (smallGemmWork) bit for bit against the packed path, f32 and FP8;
// - floorDiv (the exact integer quotient every index split uses) with a division that is
//   deliberately 2^-22 relative (2-4 ulp) off either way (NVIDIA's GL division was 1 ulp off);
// - every f16 / bf16 / e4m3 / e5m2 code decoded by the cast kernels against core's decoder (the
//   zero codes as signed zeros, powers of two built by constant multiplies, no pow/exp2);
// - f32 division correctly rounded (divRN), also with a hardware quotient skewed by up to 3 ulp;
// - readF32's gather readback (values 4 to a texel) against the per-texel read.

let seed = 24681357;
const rnd = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
const randn = (n: number): Float32Array => Float32Array.from({ length: n }, () => rnd() * 2 - 1);
const view = (dataId: object, shape: number[], dtype: DType = 'f32'): TensorView => ({ dataId, shape, dtype });
const size = (s: readonly number[]): number => s.reduce((x, y) => x * y, 1);
const sameBits = (x: ArrayLike<number>, y: ArrayLike<number>): number => {
  let d = 0;
  for (let i = 0; i < x.length; i++) if (!Object.is(x[i], y[i])) d++;
  return d + Math.abs(x.length - y.length);
};

let b: GpujsBackend | undefined;
let reason = '';
beforeAll(async () => {
  try {
    b = await GpujsBackend.create({ engine: 'headless-gl' });
  } catch (e) {
    reason = (e as Error).message;
  }
});
afterAll(() => b?.dispose());

describe('gpujs GEMM variants on Chromium (WebGL2, the GLSL ES 3.00 kernels)', () => {
  let c: GpujsBackend | undefined;
  let why = '';
  beforeAll(async () => {
    try {
      const found = await findChromium();
      if ('reason' in found) why = found.reason;
      else c = await GpujsBackend.create({ executablePath: found.path });
    } catch (e) {
      why = (e as Error).message;
    }
  });
  afterAll(() => c?.dispose());
  it(`every variant (${GEMM_VARIANTS.join(', ')}) equals 'packed' and the one-pass kernel bit for bit`, async (t) => {
    if (!c) return t.skip(why);
    c.smallGemmWork = 0;
    for (const [M, K, N] of [
      [5, 3, 7],
      [17, 33, 19],
      [64, 130, 66],
      [1, 257, 6],
      [9, 1, 11],
    ]) {
      const ta = c.write(randn(M * K), 'f32', [M, K]);
      const tb = c.write(randn(K * N), 'f32', [K, N]);
      const mm = async (): Promise<Float32Array> => {
        const o = c!.matmul(view(ta, [M, K]), view(tb, [K, N]), { transposeA: false, transposeB: false }, [M, N]);
        const r = (await c!.read(view(o, [M, N]))) as Float32Array;
        c!.release(o);
        return r;
      };
      c.packedGemms = false;
      const one = await mm();
      c.packedGemms = true;
      for (const v of GEMM_VARIANTS) {
        c.gemmVariant = v;
        expect(sameBits(await mm(), one), `${v} ${M}x${K}x${N}`).toBe(0);
      }
      c.gemmVariant = 'packed';
      c.release(ta);
      c.release(tb);
    }
  });
});

describe('gpujs GEMM variants on headless-gl', () => {
  const cases: { as: number[]; bs: number[]; tA?: boolean; tB?: boolean; out: number[] }[] = [
    { as: [5, 3], bs: [3, 7], out: [5, 7] },
    { as: [17, 33], bs: [33, 19], out: [17, 19] },
    { as: [64, 130], bs: [130, 66], out: [64, 66] },
    { as: [1, 257], bs: [257, 6], out: [1, 6] },
    { as: [9, 1], bs: [1, 11], out: [9, 11] },
    { as: [22, 15], bs: [9, 22], tA: true, tB: true, out: [15, 9] },
    { as: [3, 6, 10], bs: [3, 10, 7], out: [3, 6, 7] },
    { as: [2, 1, 5, 8], bs: [1, 3, 8, 6], out: [2, 3, 5, 6] },
    { as: [37, 29], bs: [29, 41], out: [37, 41] },
    { as: [8, 12], bs: [12, 8], out: [8, 8] },
  ];
  it(`every variant (${GEMM_VARIANTS.join(', ')}) equals 'packed' and the one-pass kernel bit for bit (ragged M/N/K, transposes, batches)`, async (t) => {
    if (!b) return t.skip(reason);
    b.smallGemmWork = 0;
    for (const c of cases) {
      const ta = b.write(randn(size(c.as)), 'f32', c.as);
      const tb = b.write(randn(size(c.bs)), 'f32', c.bs);
      const opts = { transposeA: !!c.tA, transposeB: !!c.tB };
      const got: Record<string, Float32Array> = {};
      for (const v of GEMM_VARIANTS) {
        b.gemmVariant = v;
        const o = b.matmul(view(ta, c.as), view(tb, c.bs), opts, c.out);
        got[v] = (await b.read(view(o, c.out))) as Float32Array;
        b.release(o);
      }
      b.gemmVariant = 'packed';
      b.packedGemms = false;
      const o = b.matmul(view(ta, c.as), view(tb, c.bs), opts, c.out);
      const one = (await b.read(view(o, c.out))) as Float32Array;
      b.packedGemms = true;
      b.release(o);
      for (const v of GEMM_VARIANTS) {
        expect(sameBits(got[v], got.packed), `${v} vs packed ${JSON.stringify(c)}`).toBe(0);
        expect(sameBits(got[v], one), `${v} vs one-pass ${JSON.stringify(c)}`).toBe(0);
      }
      b.release(ta);
      b.release(tb);
    }
  });

  it('the small-GEMM dispatch (one pass below smallGemmWork) gives the packed path bits, f32 and FP8', async (t) => {
    if (!b) return t.skip(reason);
    const run = async (work: number, f: () => object, shape: number[]): Promise<Float32Array> => {
      b!.smallGemmWork = work;
      const o = f();
      const r = (await b!.read(view(o, shape))) as Float32Array;
      b!.release(o);
      return r;
    };
    for (const [M, N, K] of [
      [5, 7, 3],
      [13, 6, 20],
      [4, 4, 8],
    ]) {
      const ta = b.write(randn(M * K), 'f32', [M, K]);
      const tb = b.write(randn(K * N), 'f32', [K, N]);
      const mm = () => b!.matmul(view(ta, [M, K]), view(tb, [K, N]), { transposeA: false, transposeB: false }, [M, N]);
      expect(sameBits(await run(1e9, mm, [M, N]), await run(0, mm, [M, N])), `f32 ${M}x${N}x${K}`).toBe(0);
      const ca = b.write(Uint8Array.from({ length: M * K }, () => Math.floor(rnd() * 126)), 'e4m3', [M, K]);
      const cb = b.write(Uint8Array.from({ length: N * K }, () => Math.floor(rnd() * 123)), 'e5m2', [N, K]);
      const kb = Math.ceil(K / 4);
      const sa = b.write(Float32Array.from({ length: M * kb }, () => 0.5 + rnd()), 'f32', [M, kb]);
      const sb = b.write(Float32Array.from({ length: Math.ceil(N / 4) * kb }, () => 0.5 + rnd()), 'f32', [Math.ceil(N / 4), kb]);
      const f8 = () =>
        b!.matmulFp8(
          { codes: view(ca, [M, K], 'e4m3'), scales: view(sa, [M, kb]), block: [1, 4] },
          { codes: view(cb, [N, K], 'e5m2'), scales: view(sb, [Math.ceil(N / 4), kb]), block: [4, 4] },
          { promotionInterval: 4 },
        );
      expect(sameBits(await run(1e9, f8, [M, N]), await run(0, f8, [M, N])), `FP8 ${M}x${N}x${K}`).toBe(0);
      for (const id of [ta, tb, ca, cb, sa, sb]) b.release(id);
    }
    b.smallGemmWork = 32768;
  });
});

describe('gpujs exact index arithmetic and decodes on headless-gl', () => {
  it('floorDiv is exact even when the division is off by 2^-22 relative (2-4 ulp) either way (NVIDIA GL: 1 ulp)', async (t) => {
    if (!b) return t.skip(reason);
    const require = createRequire(import.meta.url);
    const gpujs = require(require.resolve('gpu.js')) as { GPU: new (o: object) => any };
    const src = kernelSources().helpers.find((h) => h.includes('function floorDiv'))!;
    const pairs: [number, number][] = [];
    for (let d = 1; d <= 300; d++) for (const q of [0, 1, 2, 3, 7, 10, 99, 1000, 4999]) for (const r of [0, d - 1]) if (q * d + r + 8 * d < 2 ** 24) pairs.push([q * d + r, d]);
    for (let i = 0; i < 2000; i++) {
      const d = 1 + Math.floor(rnd() * 5000);
      pairs.push([Math.floor(rnd() * (2 ** 24 - 8 * d)), d]);
    }
    // exact quotients above 2^22, where 2 ulp is 2 (d small)
    for (let i = 0; i < 500; i++) {
      const d = 1 + Math.floor(rnd() * 3);
      const q = 2 ** 22 + Math.floor(rnd() * (2 ** 24 / d - 2 ** 22 - 3));
      if (q * d + 8 * d < 2 ** 24) pairs.push([q * d, d]);
    }
    const A = Float32Array.from(pairs, (p) => p[0]);
    const B = Float32Array.from(pairs, (p) => p[1]);
    const want = pairs.map(([a, d]) => Math.floor(a / d));
    {
      // 1 - 2^-22 and 1 + 2^-22: 2-4 ulp, the wrong way for an exact integer quotient
      for (const skew of ['(1.0 - 0.0000002384185791015625)', '(1.0 + 0.0000002384185791015625)', '1.0']) {
        const g = new gpujs.GPU({ mode: 'headlessgl' });
        try {
          g.addFunction(src.replace('Math.floor(a / b)', `Math.floor((a / b) * ${skew})`), { argumentTypes: ['Number', 'Number'], returnType: 'Number' });
          const k = g.createKernel('function (a, b) { return floorDiv(a[this.thread.x], b[this.thread.x]); }', { output: [pairs.length], precision: 'single', tactic: 'precision' });
          const got = k(A, B) as Float32Array;
          let bad = 0;
          for (let i = 0; i < pairs.length; i++) if (got[i] !== want[i]) bad++;
          expect(bad, `skew ${skew}`).toBe(0);
          // the skew is real: the plain floor of the skewed quotient is wrong somewhere
          if (skew !== '1.0') {
            const naive = g.createKernel(`function (a, b) { return Math.floor((a[this.thread.x] / b[this.thread.x]) * ${skew}); }`, { output: [pairs.length], precision: 'single', tactic: 'precision' });
            const n = naive(A, B) as Float32Array;
            let off = 0;
            for (let i = 0; i < pairs.length; i++) if (n[i] !== want[i]) off++;
            expect(off).toBeGreaterThan(0);
          }
        } finally {
          g.destroy();
        }
      }
    }
  });

  /** f32 division test inputs: random over wide exponents, ratios near 1, powers of two, range edges, specials */
  const divInputs = (): [Float32Array, Float32Array] => {
    const a: number[] = [];
    const b: number[] = [];
    const edge = [0, -0, 1, -1, 2, 3, 7, 10, 0.1, 1 / 3, 2 ** -126, 2 ** -125, 2 ** 126, 2 ** 127, 3.4028234663852886e38, 1.1754943508222875e-38, 1e-40, Infinity, -Infinity, NaN, 5.0458526611328125, 2.5625];
    for (const x of edge) for (const y of edge) {
      a.push(x);
      b.push(y);
    }
    for (let i = 0; i < 20000; i++) {
      const e = Math.floor(rnd() * 60) - 30;
      a.push((rnd() * 2 - 1) * 2 ** e);
      b.push((rnd() * 2 - 1) * 2 ** (Math.floor(rnd() * 60) - 30));
    }
    for (let i = 0; i < 5000; i++) {
      const y = 1 + rnd();
      const q = Math.fround(1 + rnd());
      a.push(Math.fround(q * y) + (rnd() < 0.5 ? 0 : 2 ** -23));
      b.push(y);
    }
    for (let i = 0; i < 2000; i++) {
      a.push(Math.fround(1 + Math.floor(rnd() * 2 ** 23) * 2 ** -23));
      b.push(Math.fround(1 + Math.floor(rnd() * 2 ** 23) * 2 ** -23));
    }
    return [Float32Array.from(a), Float32Array.from(b)];
  };
  /** mismatches against Math.fround(a / b) (NaN = NaN; subnormal operands and quotients are not checked: llvmpipe flushes them to zero) */
  const divMismatches = (A: Float32Array, B: Float32Array, got: ArrayLike<number>): { bad: number; first: string } => {
    let bad = 0;
    let first = '';
    for (let i = 0; i < A.length; i++) {
      const want = Math.fround(A[i] / B[i]);
      const sub = want !== 0 && Math.abs(want) < 2 ** -126;
      const ok = Number.isNaN(want) ? Number.isNaN(got[i]) : Object.is(got[i], want) || (sub && got[i] === 0) || (Math.abs(A[i]) < 2 ** -126 && A[i] !== 0) || (Math.abs(B[i]) < 2 ** -126 && B[i] !== 0);
      if (!ok) {
        if (bad < 4) first += `${A[i]} / ${B[i]}: got ${got[i]}, want ${want}; `;
        bad++;
      }
    }
    return { bad, first };
  };

  it('f32 div is correctly rounded (Math.fround(a / b)) on random, near-1, edge and special inputs', async (t) => {
    if (!b) return t.skip(reason);
    const [A, B] = divInputs();
    const ta = b.write(A, 'f32', [A.length]);
    const tb = b.write(B, 'f32', [B.length]);
    const o = b.binary('div', view(ta, [A.length]), view(tb, [B.length]), [A.length], 'f32');
    const got = (await b.read(view(o, [A.length]))) as Float32Array;
    const r = divMismatches(A, B, got);
    expect(r.bad, r.first).toBe(0);
    for (const id of [ta, tb, o]) b.release(id);
  });

  it('divRN corrects a hardware quotient up to 3 ulp off either way (NVIDIA GL: 1 ulp)', async (t) => {
    if (!b) return t.skip(reason);
    const require = createRequire(import.meta.url);
    const gpujs = require(require.resolve('gpu.js')) as { GPU: new (o: object) => any };
    const helpers = kernelSources().helpers;
    const pow2i = helpers.find((h) => h.includes('function pow2i'))!;
    const div = helpers.find((h) => h.includes('function divRN'))!;
    const [A, B] = divInputs();
    for (const skew of ['(1.0 - 0.000000357627868652343750)', '(1.0 + 0.000000357627868652343750)', '(1.0 - 0.00000011920928955078125)']) {
      const g = new gpujs.GPU({ mode: 'headlessgl' });
      try {
        g.addFunction(pow2i, { argumentTypes: ['Number'], returnType: 'Number' });
        const skewed = div.replace('Math.max(x / y, 0.5)', `Math.max((x / y) * ${skew}, 0.5)`);
        expect(skewed).not.toBe(div);
        g.addFunction(skewed, { argumentTypes: ['Number', 'Number'], returnType: 'Number' });
        const k = g.createKernel('function (a, b) { return divRN(a[this.thread.x], b[this.thread.x]); }', { output: [A.length], precision: 'single', tactic: 'precision' });
        const r = divMismatches(A, B, k(A, B) as Float32Array);
        expect(r.bad, `skew ${skew}: ${r.first}`).toBe(0);
      } finally {
        g.destroy();
      }
    }
  });

  it('decodes every f16, bf16, e4m3 and e5m2 code exactly (cast to f32; zeros as signed zeros)', async (t) => {
    if (!b) return t.skip(reason);
    for (const [dt, n] of [
      ['e4m3', 256],
      ['e5m2', 256],
      ['f16', 65536],
      ['bf16', 65536],
    ] as [DType, number][]) {
      const codes = n === 256 ? Uint8Array.from({ length: n }, (_, i) => i) : Uint16Array.from({ length: n }, (_, i) => i);
      const id = b.write(codes, dt, [n]);
      const o = b.cast(view(id, [n], dt), 'f32', { saturate: false });
      const got = (await b.read(view(o, [n]))) as Float32Array;
      const want = decodeValues(codes, dt) as Float32Array;
      let bad = 0;
      let first = '';
      for (let i = 0; i < n; i++) {
        // values below 2^-126 (bf16 subnormals) are f32 subnormals: the decode flushes them to zero
        // (GL may flush f32 subnormals; NVIDIA's gave half their value). The zero's sign is not
        // kept on llvmpipe (conformance skips storage/cast FTZ cases on this backend)
        const ftz = want[i] !== 0 && Math.abs(want[i]) < 2 ** -126 && got[i] === 0;
        const ok = Number.isNaN(want[i]) ? Number.isNaN(got[i]) : Object.is(got[i], want[i]) || ftz;
        if (!ok) {
          if (!first) first = `code ${i}: got ${got[i]}, want ${want[i]}`;
          bad++;
        }
      }
      expect(bad, `${dt}: ${first}`).toBe(0);
      b.release(id);
      b.release(o);
    }
  });

  it('readF32 (4 values per texel above 4096 elements) returns exactly what the per-texel read returns', async (t) => {
    if (!b) return t.skip(reason);
    const sp = (b as unknown as { syncPage: { read(id: number): string; readF32(id: number): Float32Array } }).syncPage;
    for (const n of [1, 3, 4095, 4096, 4097, 70001]) {
      const x = randn(n);
      x[0] = -0;
      if (n > 3) {
        x[1] = Infinity;
        x[2] = NaN;
        x[3] = 1e-40;
      }
      const id = b.write(x, 'f32', [n]);
      const o = b.unary('neg', view(id, [n]), 'f32');
      b.flush();
      const s = o as unknown as { id: number };
      const raw = Buffer.from(sp.read(s.id), 'base64');
      const viaB64 = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
      const fast = sp.readF32(s.id);
      expect(fast.length).toBe(n);
      let bad = 0;
      for (let i = 0; i < n; i++) if (!Object.is(fast[i], viaB64[i]) && !(Number.isNaN(fast[i]) && Number.isNaN(viaB64[i]))) bad++;
      expect(bad, `n ${n}`).toBe(0);
      b.release(id);
      b.release(o);
    }
  });
});
