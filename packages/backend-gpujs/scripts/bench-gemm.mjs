#!/usr/bin/env node
// f32 GEMM and the FP8 block GEMM of @kiln/backend-gpujs against @tensorflow/tfjs-backend-webgl's
// matMul, on the same WebGL2 implementation (headless Chromium, SwiftShader by default;
// KILN_GPUJS_ANGLE=gl|vulkan for a GPU), in the same run, timed in alternation.
//
//   node scripts/bench-gemm.mjs [sizes...]      (default 256 512 1024 2048; needs `pnpm build`)
//   env: BENCH_REPS (default 3; median and fastest call are reported), BENCH_OLD_MAX (largest size also timed with the
//        one-output-per-thread kernels, default 512), BENCH_OUT (default <repo>/bench/results)
//
// Both peers are timed from Node: one call = the GEMM + reading the result back into Node
// (gpujs: `matmul` + `read`, through the backend's page bridge; tfjs: `matMul` + `dataSync` +
// the same base64 transfer to Node, in its own page of a second Chromium with the same flags).
// Median of BENCH_REPS after one warm-up call each (tfjs compiles its shaders per shape).
// FP8 rows: gpujs `matmulFp8` (e4m3 codes, 1x128 activation / 128x128 weight scales, promotion
// every 128) vs tfjs `matMul` of the same shape in f32 (tfjs has no FP8).
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { GpujsBackend, findChromium } from '../dist/index.js';

const require = createRequire(import.meta.url);
const here = dirname(fileURLToPath(import.meta.url));
const sizes = process.argv.slice(2).map(Number).filter(Boolean);
if (sizes.length === 0) sizes.push(256, 512, 1024, 2048);
const reps = Number(process.env.BENCH_REPS ?? 3);
const oldMax = Number(process.env.BENCH_OLD_MAX ?? 512);
const outDir = process.env.BENCH_OUT ?? join(here, '../../../bench/results');
const found = await findChromium();
if ('reason' in found) {
  console.log(`skipped: ${found.reason}`);
  process.exit(0);
}
const angle = process.env.KILN_GPUJS_ANGLE ?? 'swiftshader';

// an explicit executablePath selects the Chromium engine (WebGL2: the packed GEMMs need it)
const backend = await GpujsBackend.create({ executablePath: found.path, angle });
const browser = await chromium.launch({ executablePath: found.path, args: [`--use-angle=${angle}`, '--enable-unsafe-swiftshader', '--ignore-gpu-blocklist', '--enable-webgl', '--no-sandbox', '--disable-dev-shm-usage'] });
const page = await browser.newPage();
await page.addScriptTag({ path: require.resolve('@tensorflow/tfjs-core/dist/tf-core.min.js') });
await page.addScriptTag({ path: require.resolve('@tensorflow/tfjs-backend-webgl/dist/tf-backend-webgl.min.js') });
await page.evaluate(async () => {
  await tf.setBackend('webgl');
  await tf.ready();
  globalThis.toB64 = (f) => {
    const u8 = new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
    let s = '';
    for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode.apply(null, Array.from(u8.subarray(i, i + 0x8000)));
    return btoa(s);
  };
});
const renderer = backend.device.name;
console.log(`WebGL2: ${renderer} (${backend.device.details.via}); ${os.cpus()[0]?.model ?? 'cpu'}, ${os.cpus().length} cores; reps ${reps}`);

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const view = (dataId, shape, dtype = 'f32') => ({ dataId, shape, dtype });

/** Times each of `fns` (name -> async () => void) in alternation: warm-up, then `reps` rounds. */
async function alternate(fns) {
  const t = Object.fromEntries(Object.keys(fns).map((k) => [k, []]));
  for (const f of Object.values(fns)) await f();
  for (let r = 0; r < reps; r++) {
    for (const [k, f] of Object.entries(fns)) {
      const t0 = performance.now();
      await f();
      t[k].push(performance.now() - t0);
    }
  }
  return Object.fromEntries(Object.entries(t).flatMap(([k, v]) => [[k, median(v)], [`${k}Min`, Math.min(...v)]]));
}

const rows = [];
for (const n of sizes) {
  const A = Float32Array.from({ length: n * n }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
  const B = Float32Array.from({ length: n * n }, (_, i) => ((i * 104729) % 1000) / 1000 - 0.5);
  const ta = backend.write(A, 'f32', [n, n]);
  const tb = backend.write(B, 'f32', [n, n]);
  const opts = { transposeA: false, transposeB: false };
  const gemm = async (packed) => {
    backend.packedGemms = packed;
    const out = backend.matmul(view(ta, [n, n]), view(tb, [n, n]), opts, [n, n]);
    await backend.read(view(out, [n, n]));
    backend.release(out);
  };
  // the same operands, made in the page (a 2048^2 transfer as JSON crashes the page)
  await page.evaluate((n) => {
    globalThis.xa = tf.tensor2d(Float32Array.from({ length: n * n }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5), [n, n]);
    globalThis.xb = tf.tensor2d(Float32Array.from({ length: n * n }, (_, i) => ((i * 104729) % 1000) / 1000 - 0.5), [n, n]);
  }, n);
  const tfjs = (tB) => () => page.evaluate((tB) => {
    const c = tf.matMul(xa, xb, false, tB);
    const s = toB64(c.dataSync());
    c.dispose();
    return s.length;
  }, tB);
  const f32 = await alternate({ gpujs: () => gemm(true), tfjs: tfjs(false), ...(n <= oldMax ? { old: () => gemm(false) } : {}) });
  rows.push({ kind: 'f32', m: n, n, k: n, gpujsMs: f32.gpujs, tfjsMs: f32.tfjs, oldMs: f32.old ?? null, gpujsMinMs: f32.gpujsMin, tfjsMinMs: f32.tfjsMin });
  console.log(`f32 ${n}^3: gpujs ${f32.gpujs.toFixed(1)} ms (min ${f32.gpujsMin.toFixed(1)}), tfjs ${f32.tfjs.toFixed(1)} ms (min ${f32.tfjsMin.toFixed(1)}) (${(f32.tfjs / f32.gpujs).toFixed(2)}x)${f32.old ? `, old kernel ${f32.old.toFixed(1)} ms` : ''}`);

  // FP8: e4m3 codes (no NaN code), 1x128 / 128x128 scales, promotion 128; b is [N, K]
  const kb = Math.ceil(n / 128);
  const codes = Uint8Array.from({ length: n * n }, (_, i) => (i * 37) % 126);
  const cb = Uint8Array.from({ length: n * n }, (_, i) => (i * 53 + 11) % 126);
  const ids = [backend.write(codes, 'e4m3', [n, n]), backend.write(new Float32Array(n * kb).fill(0.5), 'f32', [n, kb]), backend.write(cb, 'e4m3', [n, n]), backend.write(new Float32Array(kb * kb).fill(0.25), 'f32', [kb, kb])];
  const fp8 = async (packed) => {
    backend.packedGemms = packed;
    const out = backend.matmulFp8(
      { codes: view(ids[0], [n, n], 'e4m3'), scales: view(ids[1], [n, kb]), block: [1, 128] },
      { codes: view(ids[2], [n, n], 'e4m3'), scales: view(ids[3], [kb, kb]), block: [128, 128] },
      { promotionInterval: 128 },
    );
    await backend.read(view(out, [n, n]));
    backend.release(out);
  };
  const f8 = await alternate({ gpujs: () => fp8(true), tfjs: tfjs(true), ...(n <= oldMax ? { old: () => fp8(false) } : {}) });
  rows.push({ kind: 'fp8', m: n, n, k: n, gpujsMs: f8.gpujs, tfjsMs: f8.tfjs, oldMs: f8.old ?? null, gpujsMinMs: f8.gpujsMin, tfjsMinMs: f8.tfjsMin });
  console.log(`fp8 ${n}^3: gpujs ${f8.gpujs.toFixed(1)} ms (min ${f8.gpujsMin.toFixed(1)}), tfjs f32 ${f8.tfjs.toFixed(1)} ms (min ${f8.tfjsMin.toFixed(1)}) (${(f8.tfjs / f8.gpujs).toFixed(2)}x)${f8.old ? `, old kernel ${f8.old.toFixed(1)} ms` : ''}`);
  for (const id of [ta, tb, ...ids]) backend.release(id);
  await page.evaluate(() => {
    xa.dispose();
    xb.dispose();
  });
}
backend.packedGemms = true;
backend.dispose();
await browser.close();

for (const r of rows) {
  r.gpujsGflops = (2 * r.m * r.n * r.k) / (r.gpujsMs * 1e6);
  r.tfjsGflops = (2 * r.m * r.n * r.k) / (r.tfjsMs * 1e6);
  r.ratio = r.tfjsMs / r.gpujsMs;
  r.ratioMin = r.tfjsMinMs / r.gpujsMinMs;
  r.speedupVsOld = r.oldMs ? r.oldMs / r.gpujsMs : null;
}
const tfjsVersion = require('@tensorflow/tfjs-backend-webgl/package.json').version;
const machine = {
  date: new Date().toISOString(),
  renderer,
  via: backend.device.details.via,
  cpu: os.cpus()[0]?.model ?? 'unknown',
  cores: os.cpus().length,
  loadavg: os.loadavg(),
  node: process.version,
  gpujs: require('gpu.js/package.json').version,
  tfjsWebgl: tfjsVersion,
  reps,
};
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'gpujs-gemm.json'), `${JSON.stringify({ machine, rows }, null, 2)}\n`);
const f = (x, d = 1) => (x === null ? '-' : x.toFixed(d));
const md = [
  '## gpujs-gemm: kiln gpu.js (WebGL2) vs tfjs-backend-webgl',
  '',
  `${machine.date.slice(0, 10)}, ${renderer}; ${machine.via}; ${machine.cpu}, ${machine.cores} cores (load average at the end ${machine.loadavg.map((x) => x.toFixed(1)).join(' ')}); Node ${machine.node}; gpu.js ${machine.gpujs}; @tensorflow/tfjs-backend-webgl ${tfjsVersion}.`,
  `Median (and fastest) ms of ${reps} calls after a warm-up, peers timed in alternation; one call = the GEMM + reading the result back into Node. ratio = tfjs time / gpujs time (>1: kiln faster), of the medians and of the fastest calls (less sensitive to other load on the machine). old = kiln's previous one-output-per-thread kernels (same run).`,
  'FP8 rows: kiln `matmulFp8` (e4m3, 1x128 / 128x128 scales, promotion every 128) vs tfjs `matMul` of the same shape in f32 (tfjs has no FP8).',
  '',
  '| GEMM | m x n x k | gpujs ms (fastest) | gpujs GFLOP/s | tfjs-webgl ms (fastest) | tfjs GFLOP/s | ratio (fastest) | old kernel ms | packed / old speed-up |',
  '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...rows.map((r) => `| ${r.kind} | ${r.m}x${r.n}x${r.k} | ${f(r.gpujsMs)} (${f(r.gpujsMinMs)}) | ${f(r.gpujsGflops, 2)} | ${f(r.tfjsMs)} (${f(r.tfjsMinMs)}) | ${f(r.tfjsGflops, 2)} | ${f(r.ratio, 2)}x (${f(r.ratioMin, 2)}x) | ${f(r.oldMs)} | ${r.speedupVsOld === null ? '-' : `${f(r.speedupVsOld, 1)}x`} |`),
  '',
].join('\n');
writeFileSync(join(outDir, 'gpujs-gemm.md'), md);
console.log(`\n${md}`);
