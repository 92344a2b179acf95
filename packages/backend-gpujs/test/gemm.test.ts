import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fp8GemmReference, type DType, type TensorView } from '@kiln/core';
import type { GpujsBackend } from '@kiln/backend-gpujs';
import { ENGINES, openOn, type Engine } from './open-engine.js';

// The packed GEMMs (src/gemm.ts: pack -> 4x4-block kernel map -> unpack), on each engine
// (Chromium: the GLSL ES 3.00 kernels; headless-gl: the GLSL ES 1.00 ones), against float64
// references on shapes that are not multiples of the 4x4 block or the 4-value texel,
// transposed, strided (batch-broadcast) and batched operands; the FP8 block GEMM bit for bit
// against core's fp8GemmReference; and the packed path against the one-output-per-thread
// kernels it replaces (same K order per output: bit-identical on SwiftShader and llvmpipe).

/**
 * A backend on one engine (test/open-engine.ts) with the one-pass dispatch for tiny GEMMs off:
 * these tests exercise the packed kernels on small shapes.
 */
async function open(engine: Engine): Promise<{ b?: GpujsBackend; reason: string }> {
  const r = await openOn(engine);
  if (r.b) r.b.smallGemmWork = 0;
  return r;
}

let seed = 987654321;
const rnd = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
const randn = (n: number): Float32Array => Float32Array.from({ length: n }, () => rnd() * 2 - 1);
const view = (dataId: object, shape: number[], dtype: DType = 'f32'): TensorView => ({ dataId, shape, dtype });
const size = (s: readonly number[]): number => s.reduce((x, y) => x * y, 1);

/** float64 batched matmul with numpy-style batch broadcasting; returns values and sum |a||b| per output. */
function refMatmul(A: Float32Array, as: number[], B: Float32Array, bs: number[], tA: boolean, tB: boolean, outShape: number[]): { v: Float64Array; mag: Float64Array } {
  const r = outShape.length;
  const [M, N] = [outShape[r - 2], outShape[r - 1]];
  const K = tA ? as[as.length - 2] : as[as.length - 1];
  const batchShape = outShape.slice(0, -2);
  const nb = size(batchShape);
  const v = new Float64Array(nb * M * N);
  const mag = new Float64Array(nb * M * N);
  const offset = (shape: number[], bi: number): number => {
    // index of the batch matrix of an operand (broadcast dims of size 1)
    const own = shape.slice(0, -2);
    let rem = bi;
    let off = 0;
    let stride = 1;
    for (let d = batchShape.length - 1; d >= 0; d--) {
      const c = rem % batchShape[d];
      rem = Math.floor(rem / batchShape[d]);
      const od = d - (batchShape.length - own.length);
      if (od >= 0) {
        off += (own[od] === 1 ? 0 : c) * stride;
        stride *= own[od];
      }
    }
    return off * shape[shape.length - 2] * shape[shape.length - 1];
  };
  for (let bi = 0; bi < nb; bi++) {
    const oa = offset(as, bi);
    const ob = offset(bs, bi);
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        let m = 0;
        for (let k = 0; k < K; k++) {
          const x = A[oa + (tA ? k * M + i : i * K + k)];
          const y = B[ob + (tB ? j * K + k : k * N + j)];
          s += x * y;
          m += Math.abs(x * y);
        }
        v[(bi * M + i) * N + j] = s;
        mag[(bi * M + i) * N + j] = m;
      }
    }
  }
  return { v, mag };
}

/** The engine commands `b` sends while `run` runs (the backend's `send`, spied and restored). */
async function sentDuring(b: GpujsBackend, run: (b: GpujsBackend) => Promise<void>): Promise<{ src?: string; subs?: string[]; outs?: number[]; dims?: number[] }[]> {
  const sent: { src?: string; subs?: string[]; outs?: number[]; dims?: number[] }[] = [];
  const spy = b as unknown as { send(c: object): void };
  const send = spy.send.bind(b);
  spy.send = (c: object) => {
    sent.push(c);
    send(c);
  };
  try {
    await run(b);
  } finally {
    spy.send = send;
  }
  return sent;
}

/**
 * An FP8 block-GEMM problem on `b` (1x128 / 128x128 scales, random scales of a few powers of
 * two): the operands written, core's reference result, and the product as a thunk.
 */
function fp8Problem(b: GpujsBackend, M: number, N: number, K: number, nc: number, fa: 'e4m3' | 'e5m2', fb: 'e4m3' | 'e5m2', ac: Uint8Array, bc: Uint8Array, bRows = 128, aRows = 1) {
  const kb = Math.ceil(K / 128);
  const nbr = Math.ceil(N / bRows);
  const nar = Math.ceil(M / aRows);
  const as = Float32Array.from({ length: nar * kb }, () => 2 ** Math.floor(rnd() * 8 - 4) * (1 + rnd()));
  const bsc = Float32Array.from({ length: nbr * kb }, () => 2 ** Math.floor(rnd() * 8 - 4) * (1 + rnd()));
  const ref = fp8GemmReference(
    { codes: ac, scales: as, shape: [M, K], block: [aRows, 128], format: fa },
    { codes: bc, scales: bsc, shape: [N, K], block: [bRows, 128], format: fb },
    { promotionInterval: nc },
  );
  const ids = [b.write(ac, fa, [M, K]), b.write(as, 'f32', [nar, kb]), b.write(bc, fb, [N, K]), b.write(bsc, 'f32', [nbr, kb])];
  const product = (g: GpujsBackend = b): object =>
    g.matmulFp8(
      { codes: view(ids[0], [M, K], fa), scales: view(ids[1], [nar, kb]), block: [aRows, 128] },
      { codes: view(ids[2], [N, K], fb), scales: view(ids[3], [nbr, kb]), block: [bRows, 128] },
      { promotionInterval: nc },
    );
  return { ref, ids, product };
}

for (const engine of ENGINES) describe(`engine ${engine}`, () => {
  let b: GpujsBackend | undefined;
  let reason = '';
  beforeAll(async () => {
    ({ b, reason } = await open(engine));
  });
  afterAll(() => b?.dispose());

  describe(`gpujs packed GEMM on ${engine}`, () => {
    const cases: { as: number[]; bs: number[]; tA?: boolean; tB?: boolean; out: number[] }[] = [
      { as: [1, 1], bs: [1, 1], out: [1, 1] },
      { as: [5, 7], bs: [7, 3], out: [5, 3] },
      { as: [17, 33], bs: [33, 19], out: [17, 19] },
      { as: [64, 130], bs: [130, 66], out: [64, 66] },
      { as: [9, 1], bs: [1, 11], out: [9, 11] },
      { as: [1, 257], bs: [257, 6], out: [1, 6] },
      { as: [13, 21], bs: [10, 21], tB: true, out: [13, 10] },
      { as: [21, 13], bs: [21, 10], tA: true, out: [13, 10] },
      { as: [22, 15], bs: [9, 22], tA: true, tB: true, out: [15, 9] },
      { as: [3, 6, 10], bs: [3, 10, 7], out: [3, 6, 7] },
      { as: [2, 3, 5, 9], bs: [9, 6], out: [2, 3, 5, 6] },
      { as: [7, 9], bs: [4, 9, 5], out: [4, 7, 5] },
      { as: [2, 1, 5, 8], bs: [1, 3, 8, 6], out: [2, 3, 5, 6] },
      { as: [2, 11, 6], bs: [2, 5, 11], tA: true, tB: true, out: [2, 6, 5] },
      { as: [2, 8200], bs: [8200, 3], out: [2, 3] }, // K over MAX_TEXTURE_SIZE on SwiftShader (8192): the plain kernel; packed on headless-gl (16384)
    ];
    it('matches a float64 reference within c K eps sum|a||b| (odd shapes, transposes, batches, broadcasts)', async (t) => {
      if (!b) return t.skip(reason);
      for (const c of cases) {
        const A = randn(size(c.as));
        const B = randn(size(c.bs));
        const ref = refMatmul(A, c.as, B, c.bs, !!c.tA, !!c.tB, c.out);
        const ta = b.write(A, 'f32', c.as);
        const tb = b.write(B, 'f32', c.bs);
        const out = b.matmul(view(ta, c.as), view(tb, c.bs), { transposeA: !!c.tA, transposeB: !!c.tB }, c.out);
        const got = (await b.read(view(out, c.out))) as Float32Array;
        const K = c.tA ? c.as[c.as.length - 2] : c.as[c.as.length - 1];
        let bad = 0;
        for (let i = 0; i < got.length; i++) {
          const tol = 4 * K * 2 ** -24 * ref.mag[i] + 1e-30;
          if (!(Math.abs(got[i] - ref.v[i]) <= tol)) bad++;
        }
        expect(bad, JSON.stringify(c)).toBe(0);
        expect(got.length).toBe(size(c.out));
        for (const id of [ta, tb, out]) b.release(id);
      }
    });

    it(`takes the packed path on ${engine === 'chromium' ? 'WebGL2' : 'WebGL 1.0'} (a kernel map with three extra outputs, 2D pack outputs)`, async (t) => {
      if (!b) return t.skip(reason);
      const sent = await sentDuring(b, async (g) => {
        const ta = g.write(randn(6 * 5), 'f32', [6, 5]);
        const tb = g.write(randn(5 * 7), 'f32', [5, 7]);
        const out = g.matmul(view(ta, [6, 5]), view(tb, [5, 7]), { transposeA: false, transposeB: false }, [6, 7]);
        await g.read(view(out, [6, 7]));
        for (const id of [ta, tb, out]) g.release(id);
      });
      expect(sent.filter((c) => c.dims?.length === 2).length).toBe(2);
      const maps = sent.filter((c) => c.subs?.length === 3 && c.outs?.length === 3);
      expect(maps.length).toBe(1);
      // the GLSL dialect of the engine: ES 3.00 (texelFetch) on WebGL2, ES 1.00 (texture2D) on headless-gl
      expect(maps[0].src).toContain(engine === 'chromium' ? 'texelFetch(user_a' : 'texture2D(user_a');
    });

    it('is bit-identical to the one-output-per-thread kernel (same K order per output)', async (t) => {
      if (!b) return t.skip(reason);
      for (const c of [cases[3], cases[8], cases[12]]) {
        const ta = b.write(randn(size(c.as)), 'f32', c.as);
        const tb = b.write(randn(size(c.bs)), 'f32', c.bs);
        const opts = { transposeA: !!c.tA, transposeB: !!c.tB };
        const fast = b.matmul(view(ta, c.as), view(tb, c.bs), opts, c.out);
        b.packedGemms = false;
        const slow = b.matmul(view(ta, c.as), view(tb, c.bs), opts, c.out);
        b.packedGemms = true;
        const x = (await b.read(view(fast, c.out))) as Float32Array;
        const y = (await b.read(view(slow, c.out))) as Float32Array;
        let diff = 0;
        for (let i = 0; i < x.length; i++) if (!Object.is(x[i], y[i])) diff++;
        expect(diff, JSON.stringify(c)).toBe(0);
        for (const id of [ta, tb, fast, slow]) b.release(id);
      }
    });

    it('releases its packed temporaries', async (t) => {
      if (!b) return t.skip(reason);
      const before = b.memory();
      const ta = b.write(randn(30 * 20), 'f32', [30, 20]);
      const tb = b.write(randn(20 * 10), 'f32', [20, 10]);
      const out = b.matmul(view(ta, [30, 20]), view(tb, [20, 10]), { transposeA: false, transposeB: false }, [30, 10]);
      await b.read(view(out, [30, 10]));
      for (const id of [ta, tb, out]) b.release(id);
      await b.sync();
      expect(b.memory()).toEqual(before);
    });
  });

  describe(`gpujs packed FP8 block GEMM on ${engine}`, () => {
    const codes = (n: number, fmt: 'e4m3' | 'e5m2', specials: boolean): Uint8Array =>
      Uint8Array.from({ length: n }, () => {
        const c = Math.floor(rnd() * 256);
        if (specials) return c; // NaN (and e5m2 inf) codes too
        return fmt === 'e4m3' ? ((c & 0x7f) === 0x7f ? c - 1 : c) : (c & 0x7c) === 0x7c ? c & 0x83 : c;
      });
    const shapes: [number, number, number][] = [
      [1, 1, 1],
      [5, 7, 3],
      [9, 130, 256],
      [33, 17, 300],
      [4, 4, 129],
      [130, 6, 131],
    ];
    it('takes the packed FP8 path (pack with decode, the FP8 kernel map)', async (t) => {
      if (!b) return t.skip(reason);
      const sent = await sentDuring(b, async (g) => {
        const [M, N, K] = [6, 5, 40];
        const ids = [g.write(codes(M * K, 'e4m3', false), 'e4m3', [M, K]), g.write(new Float32Array(M).fill(0.5), 'f32', [M, 1]), g.write(codes(N * K, 'e4m3', false), 'e4m3', [N, K]), g.write(new Float32Array(1).fill(2), 'f32', [1, 1])];
        const out = g.matmulFp8(
          { codes: view(ids[0], [M, K], 'e4m3'), scales: view(ids[1], [M, 1]), block: [1, 128] },
          { codes: view(ids[2], [N, K], 'e4m3'), scales: view(ids[3], [1, 1]), block: [128, 128] },
          { promotionInterval: 128 },
        );
        await g.read(view(out, [M, N]));
        for (const id of [...ids, out]) g.release(id);
      });
      expect(sent.filter((c) => c.src?.includes('kilnPackA_e4m3')).length).toBe(1);
      expect(sent.filter((c) => c.src?.includes('kilnPackB_e4m3')).length).toBe(1);
      expect(sent.filter((c) => c.subs?.length === 3 && c.src?.includes('kilnGemm44Fp8')).length).toBe(1);
    });

    it('gives +-inf for inf codes and NaN for NaN codes, as fp8GemmReference (one special per row, K not a multiple of 4)', async (t) => {
      if (!b) return t.skip(reason);
      const [M, N, K] = [6, 5, 10];
      for (const [fmt, specials, one] of [
        ['e5m2', [0x7c, 0xfc, 0x7d, 0xfe, 0x3c, 0x01], 0x3c],
        ['e4m3', [0x7f, 0xff, 0x38, 0xb8, 0x01, 0x81], 0x38],
      ] as const) {
        const ac = new Uint8Array(M * K);
        const bc = new Uint8Array(N * K);
        for (let i = 0; i < M; i++) ac[i * K + 9] = specials[i];
        for (let j = 0; j < N; j++) bc[j * K + 9] = j === 2 ? one + 128 : one; // column 2: -1
        const ref = fp8GemmReference(
          { codes: ac, scales: new Float32Array(M).fill(1), shape: [M, K], block: [1, 128], format: fmt },
          { codes: bc, scales: new Float32Array(1).fill(1), shape: [N, K], block: [128, 128], format: fmt },
          { promotionInterval: 128 },
        );
        const ids = [b.write(ac, fmt, [M, K]), b.write(new Float32Array(M).fill(1), 'f32', [M, 1]), b.write(bc, fmt, [N, K]), b.write(new Float32Array(1).fill(1), 'f32', [1, 1])];
        const out = b.matmulFp8(
          { codes: view(ids[0], [M, K], fmt), scales: view(ids[1], [M, 1]), block: [1, 128] },
          { codes: view(ids[2], [N, K], fmt), scales: view(ids[3], [1, 1]), block: [128, 128] },
          { promotionInterval: 128 },
        );
        const got = Array.from((await b.read(view(out, [M, N]))) as Float32Array);
        expect(got, fmt).toEqual(Array.from(ref));
        if (fmt === 'e5m2') expect([got[0], got[2], got[N]], 'e5m2 inf rows').toEqual([Infinity, -Infinity, -Infinity]);
        for (const id of [...ids, out]) b.release(id);
      }
    });

    it('equals fp8GemmReference bit for bit (odd M/N/K, e4m3/e5m2, promotion 128/32/16/2/Infinity, 1x128 and 128x128 scales)', async (t) => {
      if (!b) return t.skip(reason);
      for (const [M, N, K] of shapes) {
        for (const [fa, fb, nc, specials] of [
          ['e4m3', 'e4m3', 128, false],
          ['e5m2', 'e4m3', 32, false],
          ['e4m3', 'e5m2', 16, false],
          ['e4m3', 'e4m3', Infinity, false],
          ['e4m3', 'e5m2', 2, false], // not a multiple of 4: the one-output-per-thread kernel
          ['e5m2', 'e5m2', 128, true],
        ] as const) {
          const { ref, ids, product } = fp8Problem(b, M, N, K, nc, fa, fb, codes(M * K, fa, specials), codes(N * K, fb, specials));
          const out = product();
          const got = (await b.read(view(out, [M, N]))) as Float32Array;
          let diff = 0;
          for (let i = 0; i < M * N; i++) if (!Object.is(got[i], ref[i])) diff++;
          expect(diff, `${M}x${N}x${K} ${fa} x ${fb}, promotion ${nc}${specials ? ', NaN/inf codes' : ''}`).toBe(0);
          for (const id of [...ids, out]) b.release(id);
        }
      }
    });
  });

  describe(`gpujs packed FP8 block GEMM scale blocks on ${engine}`, () => {
    it('equals fp8GemmReference bit for bit with A and B scale blocks of 4, 3 and 128 rows (the rows of a block share one fetched scale, or not)', async (t) => {
      if (!b) return t.skip(reason);
      const saved = b.flatFp8GemmMax;
      b.flatFp8GemmMax = 0; // the 4x4 blocks (the flat kernel has its own test above)
      try {
        for (const [M, N, K, aRows, bRows] of [
          [21, 18, 260, 4, 128],
          [21, 18, 260, 3, 3],
          [16, 24, 136, 128, 4],
          [13, 10, 300, 2, 5],
        ] as const) {
          const ac = Uint8Array.from({ length: M * K }, () => Math.floor(rnd() * 126) | (rnd() < 0.5 ? 0x80 : 0));
          const bc = Uint8Array.from({ length: N * K }, () => Math.floor(rnd() * 123) | (rnd() < 0.5 ? 0x80 : 0));
          const { ref, ids, product } = fp8Problem(b, M, N, K, 128, 'e4m3', 'e4m3', ac, bc, bRows, aRows);
          const out = product();
          const got = (await b.read(view(out, [M, N]))) as Float32Array;
          let diff = 0;
          for (let i = 0; i < M * N; i++) if (!Object.is(got[i], ref[i])) diff++;
          expect(diff, `${M}x${N}x${K}, A blocks of ${aRows} rows, B blocks of ${bRows}`).toBe(0);
          for (const id of [...ids, out]) b.release(id);
        }
      } finally {
        b.flatFp8GemmMax = saved;
      }
    });
  });

  describe(`gpujs flat 1x4-block GEMM on ${engine}`, () => {
    // shapes with N % 4 == 0 (the flat kernel's condition): odd M and K, transposes, batches, broadcasts
    const flatCases: { as: number[]; bs: number[]; tA?: boolean; tB?: boolean; out: number[] }[] = [
      { as: [5, 7], bs: [7, 8], out: [5, 8] },
      { as: [17, 33], bs: [33, 20], out: [17, 20] },
      { as: [21, 13], bs: [12, 21], tA: true, tB: true, out: [13, 12] },
      { as: [3, 6, 10], bs: [3, 10, 12], out: [3, 6, 12] },
      { as: [7, 9], bs: [4, 9, 8], out: [4, 7, 8] },
      { as: [2, 1, 5, 8], bs: [1, 3, 8, 4], out: [2, 3, 5, 4] },
    ];
    const flatSent = (sent: { src?: string }[]): number => sent.filter((c) => /@glsl kilnGemm14Gl1/.test(c.src ?? '')).length;

    it('gives the 4x4-block path bits (same K order per output) and float64 within bounds; used only on headless-gl', async (t) => {
      if (!b) return t.skip(reason);
      for (const c of flatCases) {
        const A = randn(size(c.as));
        const B = randn(size(c.bs));
        const ta = b.write(A, 'f32', c.as);
        const tb = b.write(B, 'f32', c.bs);
        const run = async (flat: boolean): Promise<{ got: Float32Array; flats: number }> => {
          b!.flatGemmMax = flat ? 1 << 20 : 0;
          let out: object = {};
          const sent = await sentDuring(b!, async (g) => {
            out = g.matmul(view(ta, c.as), view(tb, c.bs), { transposeA: !!c.tA, transposeB: !!c.tB }, c.out);
          });
          const got = (await b!.read(view(out, c.out))) as Float32Array;
          b!.release(out);
          return { got, flats: flatSent(sent) };
        };
        try {
          const flat = await run(true);
          const blocks = await run(false);
          expect(flat.flats, JSON.stringify(c)).toBe(engine === 'headless-gl' ? 1 : 0);
          expect(blocks.flats).toBe(0);
          let differ = 0;
          for (let i = 0; i < flat.got.length; i++) if (!Object.is(flat.got[i], blocks.got[i])) differ++;
          expect(differ, JSON.stringify(c)).toBe(0);
          const ref = refMatmul(A, c.as, B, c.bs, !!c.tA, !!c.tB, c.out);
          const K = c.tA ? c.as[c.as.length - 2] : c.as[c.as.length - 1];
          for (let i = 0; i < flat.got.length; i++) expect(Math.abs(flat.got[i] - ref.v[i])).toBeLessThanOrEqual(4 * K * 2 ** -24 * ref.mag[i] + 1e-30);
        } finally {
          b.flatGemmMax = 256 * 256;
          b.release(ta);
          b.release(tb);
        }
      }
    });

    it('FP8: the flat kernel is bit-exact with fp8GemmReference and the 4x4 blocks (promotion 128, 16 and one chunk; B scale blocks of 128 and 3 rows)', async (t) => {
      if (!b) return t.skip(reason);
      for (const [M, N, K, nc, fa, fb, bRows] of [
        [7, 12, 300, 128, 'e4m3', 'e4m3', 128],
        [33, 20, 96, 16, 'e5m2', 'e4m3', 128],
        [5, 8, 40, Infinity, 'e4m3', 'e5m2', 128],
        // a fragment's four columns in two B scale blocks (its four scales fetched one by one)
        [6, 16, 260, 128, 'e4m3', 'e4m3', 3],
      ] as const) {
        const ac = Uint8Array.from({ length: M * K }, () => Math.floor(rnd() * 126) | (rnd() < 0.5 ? 0x80 : 0));
        const bc = Uint8Array.from({ length: N * K }, () => Math.floor(rnd() * 123) | (rnd() < 0.5 ? 0x80 : 0));
        const { ref, ids, product } = fp8Problem(b, M, N, K, nc, fa, fb, ac, bc, bRows);
        const run = async (flat: boolean): Promise<{ got: Float32Array; flats: number }> => {
          b!.flatFp8GemmMax = flat ? 1 << 20 : 0;
          let out: object = {};
          const sent = await sentDuring(b!, async (g) => {
            out = product(g);
          });
          const got = (await b!.read(view(out, [M, N]))) as Float32Array;
          b!.release(out);
          return { got, flats: sent.filter((c) => /@glsl kilnGemm14Fp8Gl1/.test(c.src ?? '')).length };
        };
        try {
          const flat = await run(true);
          const blocks = await run(false);
          expect(flat.flats).toBe(engine === 'headless-gl' ? 1 : 0);
          let vsRef = 0;
          let vsBlocks = 0;
          for (let i = 0; i < M * N; i++) {
            if (!Object.is(flat.got[i], ref[i])) vsRef++;
            if (!Object.is(flat.got[i], blocks.got[i])) vsBlocks++;
          }
          expect(vsRef, `${M}x${N}x${K} ${fa} x ${fb}, promotion ${nc}`).toBe(0);
          expect(vsBlocks).toBe(0);
        } finally {
          b.flatFp8GemmMax = 256 * 256;
          for (const id of ids) b.release(id);
        }
      }
    });

    it('FP8 kernels compiled for one K (constant trip counts) give the bits of the kernels for every K, flat and 4x4; f32 kernels are never compiled per K', async (t) => {
      if (!b) return t.skip(reason);
      const gl1 = engine === 'headless-gl';
      // f32: flat (12 columns) and 4x4 blocks (flat off); K = 45 (a partial last step), 128
      for (const [M, K, N, flat] of [
        [9, 45, 12, true],
        [19, 128, 24, false],
      ] as const) {
        const A = randn(M * K);
        const B = randn(K * N);
        const ta = b.write(A, 'f32', [M, K]);
        const tb = b.write(B, 'f32', [K, N]);
        const run = async (maxKq: number): Promise<{ got: Float32Array; loops: string[] }> => {
          b!.shapeKernelsMaxKq = maxKq;
          b!.flatGemmMax = flat ? 1 << 20 : 0;
          let out: object = {};
          const sent = await sentDuring(b!, async (g) => {
            out = g.matmul(view(ta, [M, K]), view(tb, [K, N]), { transposeA: false, transposeB: false }, [M, N]);
          });
          const got = (await b!.read(view(out, [M, N]))) as Float32Array;
          b!.release(out);
          const loops = sent.filter((c) => /@glsl kilnGemm(14|44)Gl1/.test(c.src ?? '')).map((c) => /for \(int q = 0; q < (\d+)/.exec(c.src!)?.[1] ?? '');
          return { got, loops };
        };
        try {
          const shaped = await run(1024);
          const every = await run(0);
          const Kq = String(Math.ceil(K / 4));
          // f32: one program for every K either way (see shapeKernelsMaxKq)
          if (gl1) {
            expect(shaped.loops).toEqual(['65536']);
            expect(every.loops).toEqual(['65536']);
          }
          expect(Kq).not.toBe('65536');
          for (let i = 0; i < M * N; i++) expect(Object.is(shaped.got[i], every.got[i]), `f32 ${M}x${K}x${N} [${i}]`).toBe(true);
        } finally {
          b.shapeKernelsMaxKq = 1024;
          b.flatGemmMax = 256 * 256;
          b.release(ta);
          b.release(tb);
        }
      }
      // FP8: flat and 4x4 blocks; whole chunks (K 256, promotion 128) and a short last chunk (K 300)
      for (const [M, N, K, flat] of [
        [7, 12, 300, true],
        [10, 16, 256, false],
        [10, 16, 256, true],
      ] as const) {
        const ac = Uint8Array.from({ length: M * K }, () => Math.floor(rnd() * 126) | (rnd() < 0.5 ? 0x80 : 0));
        const bc = Uint8Array.from({ length: N * K }, () => Math.floor(rnd() * 123) | (rnd() < 0.5 ? 0x80 : 0));
        const { ref, ids, product } = fp8Problem(b, M, N, K, 128, 'e4m3', 'e4m3', ac, bc);
        const run = async (maxKq: number): Promise<{ got: Float32Array; loops: string[] }> => {
          b!.shapeKernelsMaxKq = maxKq;
          b!.flatFp8GemmMax = flat ? 1 << 20 : 0;
          let out: object = {};
          const sent = await sentDuring(b!, async (g) => {
            out = product(g);
          });
          const got = Float32Array.from((await b!.read(view(out, [M, N]))) as Float32Array);
          b!.release(out);
          const loops = sent.filter((c) => /@glsl kilnGemm(14|44)Fp8Gl1/.test(c.src ?? '')).map((c) => /for \(int ch = 0; ch < (\d+)/.exec(c.src!)?.[1] ?? '');
          return { got, loops };
        };
        try {
          const shaped = await run(1024);
          const every = await run(0);
          if (gl1) {
            expect(shaped.loops).toEqual([String(Math.ceil(Math.ceil(K / 4) / 32))]);
            expect(every.loops).toEqual(['65536']);
          }
          for (let i = 0; i < M * N; i++) {
            expect(Object.is(shaped.got[i], every.got[i]), `FP8 ${M}x${N}x${K} flat ${flat} [${i}]`).toBe(true);
            expect(Object.is(shaped.got[i], ref[i])).toBe(true);
          }
        } finally {
          b.shapeKernelsMaxKq = 1024;
          b.flatFp8GemmMax = 256 * 256;
          for (const id of ids) b.release(id);
        }
      }
    });

    it('a flat result is read as is, expanded when a kernel takes it, and freed unused without a leak', async (t) => {
      if (!b) return t.skip(reason);
      const [M, K, N] = [9, 20, 12];
      const A = randn(M * K);
      const B = randn(K * N);
      const ta = b.write(A, 'f32', [M, K]);
      const tb = b.write(B, 'f32', [K, N]);
      const mm = (): object => b!.matmul(view(ta, [M, K]), view(tb, [K, N]), { transposeA: false, transposeB: false }, [M, N]);
      const c1 = mm();
      const first = Float32Array.from((await b.read(view(c1, [M, N]))) as Float32Array);
      // consumed by a kernel (expanded), then read again: the same values; the sum is right
      const ones = b.fill([M, N], 'f32', 1);
      const sum = b.binary('add', view(c1, [M, N]), view(ones, [M, N]), [M, N], 'f32');
      const again = (await b.read(view(c1, [M, N]))) as Float32Array;
      const plus = (await b.read(view(sum, [M, N]))) as Float32Array;
      for (let i = 0; i < M * N; i++) {
        expect(Object.is(again[i], first[i])).toBe(true);
        expect(plus[i]).toBe(Math.fround(first[i] + 1));
      }
      // readSync of a fresh flat result (headless-gl runs in process)
      const c2 = mm();
      if (b.readSync) expect(Array.from(b.readSync(view(c2, [M, N])) as Float32Array)).toEqual(Array.from(first));
      // a flat result freed without ever being read or used
      const before = b.memory().buffers;
      b.release(mm());
      expect(b.memory().buffers).toBe(before);
      for (const id of [ta, tb, c1, c2, ones, sum]) b.release(id);
    });
  });

  describe(`gpujs packed-operand cache on ${engine}`, () => {
    const packs = (sent: { src?: string }[]): number => sent.filter((c) => /@glsl kilnPack/.test(c.src ?? '')).length;

    it('a tensor multiplied again reuses its packed form (no pack pass), same bits; released with it', async (t) => {
      if (!b) return t.skip(reason);
      const [M, K, N] = [33, 70, 21];
      const A = randn(M * K);
      const B = randn(K * N);
      const ia = b.write(A, 'f32', [M, K]);
      const ib = b.write(B, 'f32', [K, N]);
      const mm = (x: object, tA = false): object => b!.matmul(tA ? view(x, [K, M]) : view(x, [M, K]), view(ib, [K, N]), { transposeA: tA, transposeB: false }, [M, N]);
      let first: object = {};
      const s1 = await sentDuring(b, async () => {
        first = mm(ia);
      });
      expect(packs(s1)).toBe(2);
      let second: object = {};
      const s2 = await sentDuring(b, async () => {
        second = mm(ia);
      });
      expect(packs(s2)).toBe(0);
      const g1 = (await b.read(view(first, [M, N]))) as Float32Array;
      const g2 = (await b.read(view(second, [M, N]))) as Float32Array;
      expect(Array.from(g2)).toEqual(Array.from(g1));
      const ref = refMatmul(A, [M, K], B, [K, N], false, false, [M, N]);
      for (let i = 0; i < M * N; i++) expect(Math.abs(g1[i] - ref.v[i])).toBeLessThanOrEqual(K * 2 ** -24 * ref.mag[i] + 1e-30);
      // the same tensor read as Aᵀ (another layout): its own pack, right values
      const at = b.write(A, 'f32', [K, M]); // A's values seen as [K, M], multiplied transposed
      const s3 = await sentDuring(b, async () => {
        b!.release(mm(at, true));
      });
      expect(packs(s3)).toBe(1); // B's pack is reused, Aᵀ's is new
      // releasing A releases its packed form too; a new tensor (new storage) is packed afresh and right
      const before = b.memory().buffers;
      b.release(ia);
      expect(b.memory().buffers).toBe(before - 2);
      const A2 = randn(M * K);
      const ia2 = b.write(A2, 'f32', [M, K]);
      let third: object = {};
      const s4 = await sentDuring(b, async () => {
        third = mm(ia2);
      });
      expect(packs(s4)).toBe(1);
      const g3 = (await b.read(view(third, [M, N]))) as Float32Array;
      const ref2 = refMatmul(A2, [M, K], B, [K, N], false, false, [M, N]);
      for (let i = 0; i < M * N; i++) expect(Math.abs(g3[i] - ref2.v[i])).toBeLessThanOrEqual(K * 2 ** -24 * ref2.mag[i] + 1e-30);
      for (const id of [ib, at, ia2, first, second, third]) b.release(id);
    });

    it('with the cache off every product packs its operands', async (t) => {
      if (!b) return t.skip(reason);
      b.packCacheEnabled = false;
      try {
        const ia = b.write(randn(20 * 30), 'f32', [20, 30]);
        const ib = b.write(randn(30 * 10), 'f32', [30, 10]);
        for (let r = 0; r < 2; r++) {
          const sent = await sentDuring(b, async () => {
            b!.release(b!.matmul(view(ia, [20, 30]), view(ib, [30, 10]), { transposeA: false, transposeB: false }, [20, 10]));
          });
          expect(packs(sent)).toBe(2);
        }
        b.release(ia);
        b.release(ib);
      } finally {
        b.packCacheEnabled = true;
      }
    });
  });
});
