#!/usr/bin/env node
// Where a small GEMM's time goes on the headless-gl engine: end to end (matmul + read, async and
// sync reads) and per engine command (pack A, pack B, GEMM, unpack, upload, readback), each
// stage timed with gl.finish() after it (so the GL work is inside its stage), against
// tfjs-backend-webgl's matMul + dataSync on its own headless-gl context in the same process.
//   xvfb-run -a node scripts/profile-gemm-overhead.mjs [sizes...]   (default 16 64 256)
//   PROFILE_REPS (default 30); KILN_GPUJS_TEXTURE_POOL=0 for the engine without its texture pool
import { headlessGlBackendOrExit, tfjsWebglOnHeadlessGl } from './headless-gl-backend.mjs';

const sizes = process.argv.slice(2).map(Number).filter(Boolean);
if (sizes.length === 0) sizes.push(16, 64, 256);
const R = Number(process.env.PROFILE_REPS ?? 30);
const med = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

const b = await headlessGlBackendOrExit();
console.log(`gpujs: ${b.device.name}`);
if (process.env.PROFILE_OLD) b.packedGemms = false;
const sp = b.syncPage;
const stats = {};
let staged = false;
const origExec = sp.exec;
const stageOf = (c) => {
  if (c.t !== 'k') return c.t;
  const names = [...c.src.matchAll(/\/\*@glsl (\w+)/g)].map((m) => m[1]);
  const main = names.find((x) => /Pack|Gemm|Unpack|Read/.test(x));
  return main ?? (c.src.length > 60 ? 'kernel' : 'copy');
};
sp.exec = (batch) => {
  if (!staged) return origExec(batch);
  for (const c of batch) {
    const t0 = performance.now();
    origExec([c]);
    sp.finish?.();
    (stats[stageOf(c)] ??= []).push(performance.now() - t0);
  }
};
const origRead = sp.readF32 ?? sp.read;
const readKey = sp.readF32 ? 'readF32' : 'read (b64)';
if (sp.readF32) sp.readF32 = (id) => {
  const t0 = performance.now();
  const r = origRead(id);
  if (staged) (stats[readKey] ??= []).push(performance.now() - t0);
  return r;
};

let tf;
try {
  ({ tf } = await tfjsWebglOnHeadlessGl());
} catch (e) {
  console.log(`tfjs-webgl unavailable: ${e.message}`);
  tf = undefined;
}

for (const n of sizes) {
  const A = Float32Array.from({ length: n * n }, (_, i) => (i % 7) - 3);
  const B = Float32Array.from({ length: n * n }, (_, i) => (i % 5) - 2);
  const va = { dataId: b.write(A, 'f32', [n, n]), shape: [n, n], dtype: 'f32' };
  const vb = { dataId: b.write(B, 'f32', [n, n]), shape: [n, n], dtype: 'f32' };
  const out = (c) => ({ dataId: c, shape: [n, n], dtype: 'f32' });
  const runAsync = async () => {
    const c = b.matmul(va, vb, {}, [n, n]);
    const d = await b.read(out(c));
    b.release(c);
    return d;
  };
  const runSync = () => {
    const c = b.matmul(va, vb, {}, [n, n]);
    const d = b.readSync(out(c));
    b.release(c);
    return d;
  };
  for (let i = 0; i < 3; i++) await runAsync();
  const st0 = sp.stats?.();
  let t0 = performance.now();
  for (let i = 0; i < R; i++) await runAsync();
  const tAsync = (performance.now() - t0) / R;
  const st1 = sp.stats?.();
  const made = st0 && st1 ? `; per matmul + read (texture pool ${st1.pool ? 'on' : 'off'}): ${((st1.created - st0.created) / R).toFixed(2)} textures created, ${((st1.reused - st0.reused) / R).toFixed(2)} pooled reused, ${((st1.setOutput - st0.setOutput) / R).toFixed(2)} setOutput` : '';
  t0 = performance.now();
  for (let i = 0; i < R; i++) runSync();
  const tSync = (performance.now() - t0) / R;
  for (const k in stats) delete stats[k];
  staged = true;
  for (let i = 0; i < R; i++) runSync();
  staged = false;
  const st = Object.entries(stats).map(([k, v]) => `${k} ${med(v).toFixed(3)}`).join(', ');
  let tfl = '';
  if (tf) {
    const xa = tf.tensor2d(A, [n, n]);
    const xb = tf.tensor2d(B, [n, n]);
    const mm = () => {
      const c = tf.matMul(xa, xb);
      const d = c.dataSync();
      c.dispose();
      return d;
    };
    for (let i = 0; i < 3; i++) mm();
    t0 = performance.now();
    for (let i = 0; i < R; i++) mm();
    tfl = `; tfjs-webgl matMul + dataSync ${((performance.now() - t0) / R).toFixed(3)} ms`;
    xa.dispose();
    xb.dispose();
  }
  console.log(`${n}^3: matmul + await read ${tAsync.toFixed(3)} ms, matmul + readSync ${tSync.toFixed(3)} ms${tfl}`);
  console.log(`  stages (median ms, gl.finish after each): ${st}${made}`);
  b.release(va.dataId);
  b.release(vb.dataId);
}
b.dispose();
