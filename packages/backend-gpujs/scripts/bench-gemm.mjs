#!/usr/bin/env node
// f32 GEMM (and the FP8 block GEMM) of @kiln/backend-gpujs's gpu.js kernels against
// @tensorflow/tfjs-backend-webgl's matMul, in the same headless Chromium page (same WebGL2
// implementation: SwiftShader by default, KILN_GPUJS_ANGLE=gl|vulkan for a GPU). Each timing
// is compute + readback of the result, median of 3 after a warm-up.
//   node scripts/bench-gemm.mjs [sizes...]   (default 256 512 1024)
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';
import { findChromium, kernelSources } from '../dist/index.js';

const require = createRequire(import.meta.url);
const sizes = process.argv.slice(2).map(Number).filter(Boolean);
if (sizes.length === 0) sizes.push(256, 512, 1024);
const found = await findChromium();
if ('reason' in found) {
  console.log(`skipped: ${found.reason}`);
  process.exit(0);
}
const angle = process.env.KILN_GPUJS_ANGLE ?? 'swiftshader';
const browser = await chromium.launch({ executablePath: found.path, args: [`--use-angle=${angle}`, '--enable-unsafe-swiftshader', '--ignore-gpu-blocklist', '--no-sandbox', '--disable-dev-shm-usage'] });
const page = await browser.newPage();
await page.addScriptTag({ path: require.resolve('gpu.js/dist/gpu-browser.min.js') });
await page.addScriptTag({ path: require.resolve('@tensorflow/tfjs-core/dist/tf-core.min.js') });
await page.addScriptTag({ path: require.resolve('@tensorflow/tfjs-backend-webgl/dist/tf-backend-webgl.min.js') });
const src = kernelSources();
const renderer = await page.evaluate(() => {
  const gl = document.createElement('canvas').getContext('webgl2');
  const d = gl.getExtension('WEBGL_debug_renderer_info');
  return d ? gl.getParameter(d.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
});
console.log(`WebGL2: ${renderer}`);
console.log('| M=N=K | gpujs f32 ms | tfjs-webgl matMul ms | gpujs / tfjs speed | gpujs FP8 block GEMM ms |');
console.log('| --- | --- | --- | --- | --- |');
for (const n of sizes) {
  const r = await page.evaluate(async ({ n, src }) => {
    const median = (xs) => xs.sort((a, b) => a - b)[1];
    const A = Float32Array.from({ length: n * n }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
    const B = Float32Array.from({ length: n * n }, (_, i) => ((i * 104729) % 1000) / 1000 - 0.5);
    const gpu = new GPU.GPU({ mode: 'webgl2' });
    const opts = { output: [n * n], pipeline: true, immutable: true, precision: 'single', dynamicOutput: true, dynamicArguments: true, loopMaxIterations: 1 << 24, tactic: 'precision' };
    gpu.addFunction(src.helpers[0], { argumentTypes: ['Number'], returnType: 'Number' });
    const up = gpu.createKernel('function (a) { return a[this.thread.x]; }', opts);
    const ta = up(A);
    const tb = up(B);
    const mm = gpu.createKernel(src.matmul, opts);
    const meta = new Float32Array([n * n, n, n, n, 0, 0, n, 1, n, 1]);
    const times = [];
    for (let r = 0; r < 4; r++) {
      const t0 = performance.now();
      const out = mm(ta, tb, meta);
      out.toArray();
      out.delete();
      if (r > 0) times.push(performance.now() - t0);
    }
    // FP8: e4m3 codes, 1x128 / 128x128 scales, promotion 128
    const codes = Float32Array.from({ length: n * n }, (_, i) => (i * 37) % 126);
    const tc = up(codes);
    const sa = up(new Float32Array(n * Math.ceil(n / 128)).fill(0.5));
    const sb = up(new Float32Array(Math.ceil(n / 128) ** 2).fill(0.25));
    const f8 = gpu.createKernel(src.fp8, opts);
    const kb = Math.ceil(n / 128);
    const meta8 = new Float32Array([n * n, n, n, n, 128, 1, 128, 128, 128, kb, kb]);
    const t8 = [];
    for (let r = 0; r < 4; r++) {
      const t0 = performance.now();
      const out = f8(tc, tc, sa, sb, meta8);
      out.toArray();
      out.delete();
      if (r > 0) t8.push(performance.now() - t0);
    }
    await tf.setBackend('webgl');
    await tf.ready();
    const xa = tf.tensor2d(A, [n, n]);
    const xb = tf.tensor2d(B, [n, n]);
    const tt = [];
    for (let r = 0; r < 4; r++) {
      const t0 = performance.now();
      const c = tf.matMul(xa, xb);
      c.dataSync();
      c.dispose();
      if (r > 0) tt.push(performance.now() - t0);
    }
    xa.dispose();
    xb.dispose();
    gpu.destroy();
    return { g: median(times), t: median(tt), f8: median(t8) };
  }, { n, src });
  console.log(`| ${n} | ${r.g.toFixed(1)} | ${r.t.toFixed(1)} | ${(r.t / r.g).toFixed(2)}x | ${r.f8.toFixed(1)} |`);
}
await browser.close();
