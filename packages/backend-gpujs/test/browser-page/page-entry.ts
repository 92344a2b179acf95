/**
 * The in-page half of test/browser-page.test.ts: bundled with esbuild (iife, platform browser)
 * together with @kiln/core and @kiln/backend-gpujs's sources and gpu.js's browser build, loaded
 * into a Chromium page. `globalThis.__kilnPageTest.run(options)` creates the gpu.js backend on
 * the page engine and checks it against float64 references computed here; it returns the
 * measured errors for the Node side to assert.
 */
import * as K from '@kiln/core';
import { GpujsBackend, type GpujsBackendOptions } from '@kiln/backend-gpujs';

let seed = 20261127;
const rnd = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
const randF32 = (n: number, scale = 1): Float32Array => Float32Array.from({ length: n }, () => (rnd() * 2 - 1) * scale);

/** max over elements of |got - ref| / (sum_k |a_ik b_kj| + tiny): the error relative to the dot product's magnitude */
function matmulErr(a: Float32Array, b: Float32Array, got: ArrayLike<number>, M: number, K_: number, N: number): number {
  let worst = 0;
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      let mag = 0;
      for (let k = 0; k < K_; k++) {
        const p = a[i * K_ + k] * b[k * N + j];
        s += p;
        mag += Math.abs(p);
      }
      const e = Math.abs(got[i * N + j] - s) / (mag + 1e-30);
      if (!(e <= worst)) worst = e; // NaN propagates
    }
  }
  return worst;
}

function maxAbs(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (got.length !== ref.length) return Infinity;
  let worst = 0;
  for (let i = 0; i < ref.length; i++) {
    const e = Math.abs(got[i] - ref[i]);
    if (!(e <= worst)) worst = e;
  }
  return worst;
}

export interface PageResult {
  device: { name: string; accelerated: boolean; notPreferred?: string; details: Record<string, unknown> };
  hasReadSync: boolean;
  matmul: Record<string, number>;
  /** kernels compiled with GLSL native functions (the packed GEMM's, gemm.ts) after each matmul */
  packedKernels: Record<string, number>;
  fp8: { mismatches: number; total: number; maxAbsVsRef: number };
  quantizeHost: { codeMismatches: number; scaleMismatches: number };
  softmax: number;
  rmsNorm: number;
  readSync: { mismatches: number; n: number };
  chain: number;
  grad: { dA: number; dB: number; value: number };
  liveAfter: number;
  noContext: string;
  wrongEngine: string;
  lostRead: string;
  lostOp: string;
}

async function run(options: GpujsBackendOptions = {}): Promise<PageResult> {
  const b = await GpujsBackend.create(options);
  K.useBackend(b);
  const out = {} as PageResult;
  out.device = { name: b.device.name, accelerated: b.device.accelerated, notPreferred: b.notPreferred, details: { ...b.device.details } };
  out.hasReadSync = typeof b.readSync === 'function';
  try {
    // ---- f32 matmul: one-pass (small), packed (70x50x90, 256^3) ----------------------------
    out.matmul = {};
    out.packedKernels = {};
    // (test-only introspection of the in-process engine: which kernels were compiled)
    const shaders = (): { src: string }[] => (b as unknown as { syncPage: { shaders(): { src: string }[] } }).syncPage.shaders();
    for (const [M, K_, N] of [
      [5, 7, 3],
      [70, 50, 90],
      [256, 256, 256],
    ]) {
      const a = randF32(M * K_);
      const bb = randF32(K_ * N);
      const c = K.tidy(() => K.matmul(K.tensor(a, [M, K_]), K.tensor(bb, [K_, N])));
      const got = (await c.data()) as Float32Array;
      out.matmul[`${M}x${K_}x${N}`] = matmulErr(a, bb, got, M, K_, N);
      out.packedKernels[`${M}x${K_}x${N}`] = shaders().filter((k) => k.src.includes('/*@glsl')).length;
      c.dispose();
    }

    // ---- FP8 block GEMM: host quantizeBlockwise, bit-exact vs fp8GemmReference -------------
    {
      const M = 33;
      const N = 70;
      const K_ = 300;
      const x = randF32(M * K_, 3);
      const w = randF32(N * K_, 0.5);
      const qa = K.quantizeBlockwise(x, [M, K_], [1, 128], { format: 'e4m3' });
      const qb = K.quantizeBlockwise(w, [N, K_], [128, 128], { format: 'e4m3' });
      const ref = K.fp8GemmReference(
        { codes: qa.codes, scales: qa.scales, shape: [M, K_], block: [1, 128], format: 'e4m3' },
        { codes: qb.codes, scales: qb.scales, shape: [N, K_], block: [128, 128], format: 'e4m3' },
        { promotionInterval: 128 },
      );
      const A = new K.QuantizedTensor(K.fromStorage(qa.codes, [M, K_], 'e4m3'), K.tensor(qa.scales, [M, Math.ceil(K_ / 128)]), [1, 128]);
      const B = new K.QuantizedTensor(K.fromStorage(qb.codes, [N, K_], 'e4m3'), K.tensor(qb.scales, [Math.ceil(N / 128), Math.ceil(K_ / 128)]), [128, 128]);
      const y = K.matmulFp8(A, B, { promotionInterval: 128 });
      const got = (await y.data()) as Float32Array;
      let mismatches = 0;
      for (let i = 0; i < ref.length; i++) if (!Object.is(got[i], ref[i])) mismatches++;
      out.fp8 = { mismatches, total: ref.length, maxAbsVsRef: maxAbs(got, ref) };
      for (const t of [A.codes, A.scales, B.codes, B.scales, y]) t.dispose();

      // the host fallback (quantizeBlockwise on the CPU backend, inside the page): same codes and scales
      const xt = K.tensor(x, [M, K_]);
      const q = K.quantize(xt, { block: [1, 128], format: 'e4m3' });
      const codes = (await q.codes.data()) as Uint8Array;
      const scales = (await q.scales.data()) as Float32Array;
      let cm = 0;
      for (let i = 0; i < codes.length; i++) if (codes[i] !== qa.codes[i]) cm++;
      let sm = 0;
      for (let i = 0; i < scales.length; i++) if (!Object.is(scales[i], qa.scales[i])) sm++;
      out.quantizeHost = { codeMismatches: cm + Math.abs(codes.length - qa.codes.length), scaleMismatches: sm + Math.abs(scales.length - qa.scales.length) };
      for (const t of [xt, q.codes, q.scales]) t.dispose();
    }

    // ---- softmax / rmsNorm (fused row kernels) vs float64 ---------------------------------
    {
      const R = 37;
      const D = 300;
      const x = randF32(R * D, 4);
      const wv = randF32(D, 2);
      const eps = 1e-6;
      const refS = new Float64Array(R * D);
      const refN = new Float64Array(R * D);
      for (let r = 0; r < R; r++) {
        let m = -Infinity;
        for (let d = 0; d < D; d++) m = Math.max(m, x[r * D + d]);
        let s = 0;
        for (let d = 0; d < D; d++) s += Math.exp(x[r * D + d] - m);
        let ss = 0;
        for (let d = 0; d < D; d++) ss += x[r * D + d] ** 2;
        const inv = 1 / Math.sqrt(ss / D + eps);
        for (let d = 0; d < D; d++) {
          refS[r * D + d] = Math.exp(x[r * D + d] - m) / s;
          refN[r * D + d] = x[r * D + d] * inv * wv[d];
        }
      }
      const xt = K.tensor(x, [R, D]);
      const wt = K.tensor(wv, [D]);
      const s = K.softmax(xt);
      const n = K.rmsNorm(xt, wt, eps);
      out.softmax = maxAbs((await s.data()) as Float32Array, refS);
      out.rmsNorm = maxAbs((await n.data()) as Float32Array, refN);
      for (const t of [xt, wt, s, n]) t.dispose();
    }

    // ---- readSync: synchronous read equals the async one ----------------------------------
    {
      const a = K.tensor(randF32(40 * 24), [40, 24]);
      const at = K.transpose(a, [1, 0]);
      const c = K.matmul(a, at);
      const sync = c.dataSync() as Float32Array;
      const asyncRead = (await c.data()) as Float32Array;
      let mm = 0;
      for (let i = 0; i < asyncRead.length; i++) if (!Object.is(sync[i], asyncRead[i])) mm++;
      out.readSync = { mismatches: mm + Math.abs(sync.length - asyncRead.length), n: asyncRead.length };
      K.dispose([a, at, c]);
    }

    // ---- an elementwise chain, no readback in between --------------------------------------
    {
      const n = 5000;
      const x = randF32(n, 3);
      const y = randF32(n, 3);
      const ref = Float64Array.from(x, (v, i) => Math.tanh(v * 2 + Math.exp(-Math.abs(y[i]))) * Math.sqrt(v * v + 1) - Math.max(v, y[i]) / 4);
      const r = K.tidy(() => {
        const xt = K.tensor(x, [n]);
        const yt = K.tensor(y, [n]);
        const t1 = K.add(K.mul(xt, 2), K.exp(K.neg(K.abs(yt))));
        return K.sub(K.mul(K.tanh(t1), K.sqrt(K.add(K.square(xt), 1))), K.div(K.maximum(xt, yt), 4));
      });
      out.chain = maxAbs((await r.data()) as Float32Array, ref);
      r.dispose();
    }

    // ---- autograd: d/dA, d/dB of sum(A @ B) ------------------------------------------------
    {
      const M = 6;
      const K_ = 9;
      const N = 5;
      const a = randF32(M * K_);
      const bb = randF32(K_ * N);
      const A = K.tensor(a, [M, K_]);
      const B = K.tensor(bb, [K_, N]);
      const { value, grads } = K.valueAndGrads(() => K.sum(K.matmul(A, B)), [A, B]);
      // d sum(AB) / dA[i,k] = sum_j B[k,j]; / dB[k,j] = sum_i A[i,k]
      const refA = new Float64Array(M * K_);
      const refB = new Float64Array(K_ * N);
      let refV = 0;
      for (let i = 0; i < M; i++) for (let k = 0; k < K_; k++) for (let j = 0; j < N; j++) refV += a[i * K_ + k] * bb[k * N + j];
      for (let i = 0; i < M; i++) for (let k = 0; k < K_; k++) for (let j = 0; j < N; j++) refA[i * K_ + k] += bb[k * N + j];
      for (let k = 0; k < K_; k++) for (let j = 0; j < N; j++) for (let i = 0; i < M; i++) refB[k * N + j] += a[i * K_ + k];
      out.grad = {
        value: maxAbs((await value.data()) as Float32Array, [refV]),
        dA: maxAbs((await grads[0].data()) as Float32Array, refA),
        dB: maxAbs((await grads[1].data()) as Float32Array, refB),
      };
      K.dispose([A, B, value, ...grads]);
    }
    await b.sync();
    out.liveAfter = b.memory().buffers;
  } finally {
    b.dispose();
  }

  // ---- unavailable: no WebGL context -> BackendError with the reason -----------------------
  const reason = async (o: GpujsBackendOptions): Promise<string> =>
    GpujsBackend.create(o).then(
      (x) => {
        x.dispose();
        return 'created';
      },
      (e: Error) => `${e.name}: ${e.message}`,
    );
  out.noContext = await reason({ canvas: { getContext: () => null } });
  // a lost context: the next read and the next op are BackendErrors naming the loss, never zeros
  {
    type Gl = { getExtension(name: string): { loseContext(): void } | null };
    const doc = (globalThis as unknown as { document: { createElement(tag: string): { getContext(kind: string): Gl } } }).document;
    const gl = doc.createElement('canvas').getContext('webgl2');
    const lb = await GpujsBackend.create({ context: gl });
    const x = K.tensor(randF32(64), [8, 8], 'f32', { backend: lb });
    const y = K.matmul(x, x);
    await y.data();
    gl.getExtension('WEBGL_lose_context')?.loseContext();
    const z = K.matmul(y, x);
    out.lostRead = await z.data().then(
      () => 'read returned data',
      (e: Error) => `${e.name}: ${e.message}`,
    );
    out.lostOp = await Promise.resolve()
      .then(() => K.add(x, x).data())
      .then(
        () => 'op returned data',
        (e: Error) => `${e.name}: ${e.message}`,
      );
    lb.dispose();
  }
  out.wrongEngine = await reason({ engine: 'headless-gl' });
  return out;
}

/** A smaller run for the WebGL 1.0 and script-tag variants: device, a matmul, a softmax, readSync. */
async function quick(options: GpujsBackendOptions = {}): Promise<{ device: PageResult['device']; matmul: number; softmax: number; readSync: boolean }> {
  const b = await GpujsBackend.create(options);
  try {
    const M = 70;
    const K_ = 50;
    const N = 90;
    const a = randF32(M * K_);
    const bb = randF32(K_ * N);
    const c = K.matmul(K.tensor(a, [M, K_], 'f32', { backend: b }), K.tensor(bb, [K_, N], 'f32', { backend: b }));
    const got = b.readSync ? (b.readSync(c) as Float32Array) : ((await c.data()) as Float32Array);
    const x = randF32(3 * 40, 4);
    const s = K.softmax(K.tensor(x, [3, 40], 'f32', { backend: b }));
    const ref = new Float64Array(120);
    for (let r = 0; r < 3; r++) {
      let m = -Infinity;
      for (let d = 0; d < 40; d++) m = Math.max(m, x[r * 40 + d]);
      let z = 0;
      for (let d = 0; d < 40; d++) z += Math.exp(x[r * 40 + d] - m);
      for (let d = 0; d < 40; d++) ref[r * 40 + d] = Math.exp(x[r * 40 + d] - m) / z;
    }
    return {
      device: { name: b.device.name, accelerated: b.device.accelerated, notPreferred: b.notPreferred, details: { ...b.device.details } },
      matmul: matmulErr(a, bb, got, M, K_, N),
      softmax: maxAbs((await s.data()) as Float32Array, ref),
      readSync: typeof b.readSync === 'function',
    };
  } finally {
    b.dispose();
  }
}

(globalThis as unknown as { __kilnPageTest: unknown }).__kilnPageTest = { run, quick };
