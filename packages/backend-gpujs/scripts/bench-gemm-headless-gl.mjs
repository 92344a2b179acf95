#!/usr/bin/env node
// f32 GEMM (and the FP8 block GEMM) of @kiln/backend-gpujs on its headless-gl engine (gpu.js's
// Node build on the `gl` package, WebGL 1.0 through GLX) against @tensorflow/tfjs-backend-webgl's
// matMul on its own headless-gl context in the same process (same GL implementation: Mesa
// llvmpipe under Xvfb, or the GPU's GLX with __GLX_VENDOR_LIBRARY_NAME=nvidia). The gpujs side
// goes through the backend (`matmul`, `matmulFp8`, then `read`), so it measures whatever GEMM
// path the backend takes on WebGL 1.0 (the packed GLSL ES 1.00 GEMMs of src/gemm.ts where
// WEBGL_draw_buffers gives 4 render targets). "old" = the one-output-per-thread kernels
// (`packedGemms = false`), same run, up to BENCH_OLD_MAX. FP8 rows: kiln's FP8 block GEMM (e4m3,
// 1x128 / 128x128 scales, promotion 128) against tfjs's f32 matMul(a, b, false, true) of the
// same shape (tfjs has no FP8; b is [N, K] as in kiln's FP8 GEMM). Each timing is compute +
// readback of the result, median (and fastest) of BENCH_REPS after a warm-up; the load average
// is recorded before and after. Needs an X display (DISPLAY) and the built `gl` addon.
//   node scripts/bench-gemm-headless-gl.mjs [sizes...]   (default 256 512 1024)
//   BENCH_REPS (default 5), BENCH_OLD_MAX (default 512; 0: no old-kernel rows)
//   GPUJS_BENCH_JSON=file / GPUJS_BENCH_MD=file  also write the rows as JSON / markdown
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg } from 'node:os';
import { GpujsBackend } from '../dist/index.js';

const require = createRequire(import.meta.url);
const sizes = process.argv.slice(2).map(Number).filter(Boolean);
if (sizes.length === 0) sizes.push(256, 512, 1024);
const REPS = Number(process.env.BENCH_REPS ?? 5);
const OLD_MAX = Number(process.env.BENCH_OLD_MAX ?? 512);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fastest = (xs) => Math.min(...xs);
/** median and fastest of REPS timed calls after one warm-up; f returns what to keep from the last call */
async function time(f) {
  const ts = [];
  let last;
  for (let r = 0; r <= REPS; r++) {
    const t0 = performance.now();
    last = await f();
    if (r > 0) ts.push(performance.now() - t0);
  }
  return { ms: median(ts), fastestMs: fastest(ts), times: ts, last };
}
const load0 = loadavg();

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
const f = (x) => (Number.isFinite(x) ? x.toFixed(1) : '-');
const both = (t) => (t ? `${f(t.ms)} (${f(t.fastestMs)})` : '-');
const ratio = (a, b) => (a && b ? `${(a.ms / b.ms).toFixed(2)}x (${(a.fastestMs / b.fastestMs).toFixed(2)}x)` : '-');
const header = '| GEMM | M=N=K | gpujs ms | tfjs-webgl ms | tfjs / gpujs | old kernel ms | packed vs old | max abs diff |';
const lines = [header, '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'];
console.log(`${lines[0]}\n${lines[1]}`);
for (const n of sizes) {
  const A = Float32Array.from({ length: n * n }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
  const B = Float32Array.from({ length: n * n }, (_, i) => ((i * 104729) % 1000) / 1000 - 0.5);
  const va = { dataId: b.write(A, 'f32', [n, n]), shape: [n, n], dtype: 'f32' };
  const vb = { dataId: b.write(B, 'f32', [n, n]), shape: [n, n], dtype: 'f32' };
  const f32 = async () => {
    const c = b.matmul(va, vb, { transposeA: false, transposeB: false }, [n, n]);
    const d = await b.read({ dataId: c, shape: [n, n], dtype: 'f32' });
    b.release(c);
    return d;
  };
  const g = await time(f32);
  let old;
  if (n <= OLD_MAX) {
    b.packedGemms = false;
    old = await time(f32);
    b.packedGemms = true;
    let same = 0;
    for (let i = 0; i < g.last.length; i++) if (Object.is(g.last[i], old.last[i])) same++;
    old.bitIdentical = same === g.last.length;
  }
  // FP8: e4m3 codes (no NaN code), 1x128 / 128x128 scales, promotion 128
  const kb = Math.ceil(n / 128);
  const codes = Uint8Array.from({ length: n * n }, (_, i) => (i * 37) % 126);
  const vc = { dataId: b.write(codes, 'e4m3', [n, n]), shape: [n, n], dtype: 'e4m3' };
  const sa = { dataId: b.write(new Float32Array(n * kb).fill(0.5), 'f32', [n, kb]), shape: [n, kb], dtype: 'f32' };
  const sb = { dataId: b.write(new Float32Array(kb * kb).fill(0.25), 'f32', [kb, kb]), shape: [kb, kb], dtype: 'f32' };
  const fp8 = async () => {
    const c = b.matmulFp8({ codes: vc, scales: sa, block: [1, 128] }, { codes: vc, scales: sb, block: [128, 128] }, { promotionInterval: 128 });
    const d = await b.read({ dataId: c, shape: [n, n], dtype: 'f32' });
    b.release(c);
    return d;
  };
  const g8 = await time(fp8);
  let old8;
  if (n <= OLD_MAX) {
    b.packedGemms = false;
    old8 = await time(fp8);
    b.packedGemms = true;
    let same = 0;
    for (let i = 0; i < g8.last.length; i++) if (Object.is(g8.last[i], old8.last[i])) same++;
    old8.bitIdentical = same === g8.last.length;
  }
  for (const v of [va, vb, vc, sa, sb]) b.release(v.dataId);
  let tt;
  let tt8;
  let diff = NaN;
  if (tfOk) {
    const xa = tf.tensor2d(A, [n, n]);
    const xb = tf.tensor2d(B, [n, n]);
    const mm = (tB) => () => {
      const c = tf.matMul(xa, xb, false, tB);
      const d = c.dataSync();
      c.dispose();
      return d;
    };
    tt = await time(mm(false));
    diff = 0;
    for (let i = 0; i < tt.last.length; i++) diff = Math.max(diff, Math.abs(tt.last[i] - g.last[i]));
    tt8 = await time(mm(true));
    xa.dispose();
    xb.dispose();
  }
  const strip = (t) => (t ? { ms: t.ms, fastestMs: t.fastestMs, times: t.times, ...(t.bitIdentical === undefined ? {} : { bitIdenticalToPacked: t.bitIdentical }) } : undefined);
  const row = { n, f32: { gpujs: strip(g), tfjs: strip(tt), old: strip(old), maxAbsDiffVsTfjs: diff }, fp8: { gpujs: strip(g8), tfjsF32ABt: strip(tt8), old: strip(old8) } };
  rows.push(row);
  const l1 = `| f32 | ${n} | ${both(g)} | ${both(tt)} | ${ratio(tt, g)} | ${both(old)} | ${old ? `${(old.ms / g.ms).toFixed(1)}x${old.bitIdentical ? ', bit-identical' : ', DIFFERS'}` : '-'} | ${diff.toExponential(2)} |`;
  const l2 = `| FP8 | ${n} | ${both(g8)} | ${both(tt8)} | ${ratio(tt8, g8)} | ${both(old8)} | ${old8 ? `${(old8.ms / g8.ms).toFixed(1)}x${old8.bitIdentical ? ', bit-identical' : ', DIFFERS'}` : '-'} | - |`;
  lines.push(l1, l2);
  console.log(`${l1}\n${l2}`);
}
const load1 = loadavg();
const meta = { date: new Date().toISOString(), reps: REPS, cpus: cpus().length, cpu: cpus()[0]?.model, loadavgBefore: load0, loadavgAfter: load1 };
console.log(`load average (1/5/15 min) before ${load0.map((x) => x.toFixed(2)).join(' ')}, after ${load1.map((x) => x.toFixed(2)).join(' ')}; ${meta.cpus} x ${meta.cpu}`);
if (process.env.GPUJS_BENCH_MD) {
  const head = `gpujs (headless-gl: ${b.device.name}) vs tfjs-backend-webgl (WebGL 1 on its own headless-gl context, same process); ${meta.date}; median (fastest) of ${REPS} after a warm-up, compute + readback; load average before ${load0.map((x) => x.toFixed(2)).join(' ')}, after ${load1.map((x) => x.toFixed(2)).join(' ')}; ${meta.cpus} x ${meta.cpu}. FP8 rows: kiln's FP8 block GEMM (e4m3, 1x128 / 128x128 scales, promotion 128) vs tfjs f32 matMul(a, b, false, true).`;
  writeFileSync(process.env.GPUJS_BENCH_MD, `${head}\n\n${lines.join('\n')}\n`);
}
if (process.env.GPUJS_BENCH_JSON) writeFileSync(process.env.GPUJS_BENCH_JSON, JSON.stringify({ ...meta, device: b.device, rows }, null, 2));
b.dispose();
