#!/usr/bin/env node
// f32 GEMM (and the FP8 block GEMM) of @kiln/backend-gpujs on its headless-gl engine (gpu.js's
// Node build on the `gl` package, WebGL 1.0 through GLX) against @tensorflow/tfjs-backend-webgl's
// matMul on its own headless-gl context in the same process (same GL implementation: Mesa
// llvmpipe under Xvfb, or the GPU's GLX with __GLX_VENDOR_LIBRARY_NAME=nvidia). The gpujs side
// goes through the backend (`matmul`, `matmulFp8`, then `read`), so it measures whatever GEMM
// path the backend takes on WebGL 1.0. Each timing is compute + readback of the result, median
// of 3 after a warm-up. Needs an X display (DISPLAY) and the built `gl` addon.
//   node scripts/bench-gemm-headless-gl.mjs [sizes...]   (default 256 512 1024)
//   GPUJS_BENCH_JSON=file  also writes the rows as JSON
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { GpujsBackend } from '../dist/index.js';

const require = createRequire(import.meta.url);
const sizes = process.argv.slice(2).map(Number).filter(Boolean);
if (sizes.length === 0) sizes.push(256, 512, 1024);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

let b;
try {
  b = await GpujsBackend.create({ engine: 'headless-gl' });
} catch (e) {
  console.log(`skipped: ${e.message}`);
  process.exit(0);
}
console.log(`gpujs: ${b.device.name} | ${b.device.details.via} | ${b.device.details.glVersion}`);

// tfjs-backend-webgl on its own headless-gl context (gl resolved the way gpu.js resolves it)
const gpujsRequire = createRequire(require.resolve('gpu.js'));
const createGL = gpujsRequire('gl');
const tf = require('@tensorflow/tfjs-core');
const tfwebgl = require('@tensorflow/tfjs-backend-webgl');
let tfOk = false;
try {
  const gl = createGL(1, 1, { antialias: false, depth: false, stencil: false, alpha: false, premultipliedAlpha: false, preserveDrawingBuffer: false });
  if (!gl) throw new Error('no headless-gl context for tfjs');
  tf.env().set('WEBGL_VERSION', 1);
  tfwebgl.setWebGLContext(1, gl);
  // tfjs-backend-webgl registers its kernels for the name 'webgl' (in Node it registers no backend itself)
  tf.registerBackend('webgl', () => new tfwebgl.MathBackendWebGL(new tfwebgl.GPGPUContext(gl)), 10);
  await tf.setBackend('webgl');
  await tf.ready();
  tfOk = true;
  console.log(`tfjs-webgl: WebGL ${tf.env().get('WEBGL_VERSION')}, render float32 ${tf.env().getBool('WEBGL_RENDER_FLOAT32_ENABLED')}, packed ${tf.env().getBool('WEBGL_PACK')}`);
} catch (e) {
  console.log(`tfjs-webgl unavailable: ${e.message}`);
}

const rows = [];
console.log('| M=N=K | gpujs f32 ms | tfjs-webgl matMul ms | gpujs / tfjs speed | gpujs FP8 block GEMM (e4m3, 1x128 / 128x128, promotion 128) ms | max abs diff vs tfjs |');
console.log('| --- | --- | --- | --- | --- | --- |');
for (const n of sizes) {
  const A = Float32Array.from({ length: n * n }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
  const B = Float32Array.from({ length: n * n }, (_, i) => ((i * 104729) % 1000) / 1000 - 0.5);
  const va = { dataId: b.write(A, 'f32', [n, n]), shape: [n, n], dtype: 'f32' };
  const vb = { dataId: b.write(B, 'f32', [n, n]), shape: [n, n], dtype: 'f32' };
  const times = [];
  let got;
  for (let r = 0; r < 4; r++) {
    const t0 = performance.now();
    const c = b.matmul(va, vb, { transposeA: false, transposeB: false }, [n, n]);
    got = await b.read({ dataId: c, shape: [n, n], dtype: 'f32' });
    b.release(c);
    if (r > 0) times.push(performance.now() - t0);
  }
  // FP8: e4m3 codes (no NaN code), 1x128 / 128x128 scales, promotion 128
  const kb = Math.ceil(n / 128);
  const codes = Uint8Array.from({ length: n * n }, (_, i) => (i * 37) % 126);
  const vc = { dataId: b.write(codes, 'e4m3', [n, n]), shape: [n, n], dtype: 'e4m3' };
  const sa = { dataId: b.write(new Float32Array(n * kb).fill(0.5), 'f32', [n, kb]), shape: [n, kb], dtype: 'f32' };
  const sb = { dataId: b.write(new Float32Array(kb * kb).fill(0.25), 'f32', [kb, kb]), shape: [kb, kb], dtype: 'f32' };
  const t8 = [];
  for (let r = 0; r < 4; r++) {
    const t0 = performance.now();
    const c = b.matmulFp8({ codes: vc, scales: sa, block: [1, 128] }, { codes: vc, scales: sb, block: [128, 128] }, { promotionInterval: 128 });
    await b.read({ dataId: c, shape: [n, n], dtype: 'f32' });
    b.release(c);
    if (r > 0) t8.push(performance.now() - t0);
  }
  for (const v of [va, vb, vc, sa, sb]) b.release(v.dataId);
  let tt = [NaN];
  let diff = NaN;
  if (tfOk) {
    const xa = tf.tensor2d(A, [n, n]);
    const xb = tf.tensor2d(B, [n, n]);
    tt = [];
    for (let r = 0; r < 4; r++) {
      const t0 = performance.now();
      const c = tf.matMul(xa, xb);
      const d = c.dataSync();
      c.dispose();
      if (r > 0) tt.push(performance.now() - t0);
      if (r === 3) {
        diff = 0;
        for (let i = 0; i < d.length; i++) diff = Math.max(diff, Math.abs(d[i] - got[i]));
      }
    }
    xa.dispose();
    xb.dispose();
  }
  const row = { n, gpujsMs: median(times), tfjsMs: median(tt), fp8Ms: median(t8), maxAbsDiff: diff };
  rows.push(row);
  console.log(`| ${n} | ${row.gpujsMs.toFixed(1)} | ${row.tfjsMs.toFixed(1)} | ${(row.tfjsMs / row.gpujsMs).toFixed(2)}x | ${row.fp8Ms.toFixed(1)} | ${diff.toExponential(2)} |`);
}
if (process.env.GPUJS_BENCH_JSON) writeFileSync(process.env.GPUJS_BENCH_JSON, JSON.stringify({ device: b.device, rows }, null, 2));
b.dispose();
