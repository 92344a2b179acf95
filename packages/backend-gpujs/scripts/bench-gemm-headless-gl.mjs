#!/usr/bin/env node
// f32 GEMM (and the FP8 block GEMM) of @kiln/backend-gpujs on its headless-gl engine (gpu.js's
// Node build on the `gl` package, WebGL 1.0 through GLX) against @tensorflow/tfjs-backend-webgl's
// matMul on its own headless-gl context in the same process (same GL implementation: Mesa
// llvmpipe under Xvfb, or the GPU's GLX with __GLX_VENDOR_LIBRARY_NAME=nvidia). The gpujs side
// goes through the backend (`matmul`, `matmulFp8`, `read`), so it measures whatever path the
// backend takes on WebGL 1.0 (the packed GLSL ES 1.00 GEMMs of src/gemm.ts where
// WEBGL_draw_buffers gives 4 render targets).
//
// Per size, for every f32 GEMM variant in GPUJS_GEMM_VARIANTS (src/gemm.ts GEMM_VARIANTS, e.g.
// packed,unroll2; 'onepass' = the one-output-per-thread kernel) and for the FP8 GEMM:
// - e2e: compute + readback (matmul then readSync, as tfjs's dataSync; read() where there is no
//   readSync), median (fastest) of BENCH_REPS after a warm-up,
//   timed in alternation with tfjs's matMul + dataSync (one call of each per round, so a change of
//   machine load is shared; the small sizes moved by ±30% between runs when timed apart);
// - chain: BENCH_CHAIN GEMMs issued back to back, then one gl.finish(): GPU time per GEMM (plus
//   the submission cost, no readback);
// - stages: one GEMM with gl.finish() after every engine command (pack A, pack B, GEMM, unpack)
//   and the readback of the result, median of 3;
// and tfjs-webgl's matMul in the same process: e2e (matMul + dataSync) and chain (BENCH_CHAIN
// matMuls, then gl.finish() on its context), with the ratios tfjs / gpujs. The FP8 rows (kiln's
// FP8 block GEMM, e4m3, 1x128 / 128x128 scales, promotion 128) compare with tfjs's f32
// matMul(a, b, false, true) of the same shape (tfjs has no FP8). All variants' results are
// checked bit for bit against the first variant's. The load average is recorded.
// Needs an X display (DISPLAY) and the built `gl` addon.
//   node scripts/bench-gemm-headless-gl.mjs [sizes...]          (default 256 512 1024)
//   GPUJS_GEMM_VARIANTS=packed,unroll2,onepass   (default: packed; onepass is run up to BENCH_OLD_MAX)
//   BENCH_REPS (11), BENCH_CHAIN (5), BENCH_OLD_MAX (512), BENCH_FP8 (1; 0 skips the FP8 rows)
//   GPUJS_BENCH_RESULTS=dir   writes dir/gemm-headless-gl.json and dir/gemm-headless-gl.md
//   (GPUJS_BENCH_JSON=file / GPUJS_BENCH_MD=file: the same two files by name)
//   KILN_GPUJS_SMALL_GEMM: the backend's one-pass threshold (batch*M*N*K; default 32768)
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpus, loadavg } from 'node:os';
import { GEMM_VARIANTS } from '../dist/index.js';
import { headlessGlBackendOrExit, tfjsWebglOnHeadlessGl } from './headless-gl-backend.mjs';

const sizes = process.argv.slice(2).map(Number).filter(Boolean);
if (sizes.length === 0) sizes.push(256, 512, 1024);
const REPS = Number(process.env.BENCH_REPS ?? 11);
const CHAIN = Number(process.env.BENCH_CHAIN ?? 5);
const OLD_MAX = Number(process.env.BENCH_OLD_MAX ?? 512);
const FP8 = process.env.BENCH_FP8 !== '0';
const variants = (process.env.GPUJS_GEMM_VARIANTS || 'packed').split(',').map((v) => v.trim()).filter(Boolean);
for (const v of variants) if (v !== 'onepass' && !GEMM_VARIANTS.includes(v)) throw new Error(`GPUJS_GEMM_VARIANTS: unknown ${v} (${[...GEMM_VARIANTS, 'onepass'].join(', ')})`);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
/** median and fastest of REPS timed calls after one warm-up; f returns what to keep from the last call */
async function time(f, reps = REPS) {
  const ts = [];
  let last;
  for (let r = 0; r <= reps; r++) {
    const t0 = performance.now();
    last = await f();
    if (r > 0) ts.push(performance.now() - t0);
  }
  return { ms: median(ts), fastestMs: Math.min(...ts), times: ts, last };
}
/** time() of fa and fb in alternation (one call each per round, after one warm-up call of each) */
async function timePair(fa, fb, reps = REPS) {
  const ta = [];
  const tb = [];
  let la;
  let lb;
  for (let r = 0; r <= reps; r++) {
    let t0 = performance.now();
    la = await fa();
    if (r > 0) ta.push(performance.now() - t0);
    t0 = performance.now();
    lb = await fb();
    if (r > 0) tb.push(performance.now() - t0);
  }
  const stat = (ts, last) => ({ ms: median(ts), fastestMs: Math.min(...ts), times: ts, last });
  return [stat(ta, la), stat(tb, lb)];
}
const load0 = loadavg();
const t00 = performance.now();

const b = await headlessGlBackendOrExit();
console.log(`gpujs: ${b.device.name} | ${b.device.details.via} | ${b.device.details.glVersion}`);
const sp = b.syncPage;
const finish = () => sp.finish();

// per-command stage timing (gl.finish after each command) while `staging` is set
let staging;
const exec0 = sp.exec;
const stageOf = (c) => {
  if (c.t !== 'k') return c.t;
  const names = [...c.src.matchAll(/\/\*@glsl (\w+)/g)].map((m) => m[1]);
  return names.find((x) => /Pack|Gemm|Unpack/.test(x)) ?? (names.length ? names[0] : 'kernel');
};
sp.exec = (batch) => {
  if (!staging) return exec0(batch);
  for (const c of batch) {
    const t0 = performance.now();
    exec0([c]);
    finish();
    const k = stageOf(c);
    if (k !== 'free') staging[k] = (staging[k] ?? 0) + performance.now() - t0;
  }
};

// tfjs-backend-webgl on its own headless-gl context
let tf;
let tfGl;
try {
  ({ tf, gl: tfGl } = await tfjsWebglOnHeadlessGl());
  console.log(`tfjs-webgl: WebGL ${tf.env().get('WEBGL_VERSION')}, render float32 ${tf.env().getBool('WEBGL_RENDER_FLOAT32_ENABLED')}, packed ${tf.env().getBool('WEBGL_PACK')}`);
} catch (e) {
  console.log(`tfjs-webgl unavailable: ${e.message}`);
  tfGl = undefined;
}

const f = (x) => (x === undefined || !Number.isFinite(x) ? '-' : x < 10 ? x.toFixed(2) : x.toFixed(1));
const both = (t) => (t ? `${f(t.ms)} (${f(t.fastestMs)})` : '-');
const ratio = (a, b) => (a && b ? `${(a / b).toFixed(2)}x` : '-');
const rows = [];
const lines = [
  '| GEMM | M=N=K | variant | e2e ms | chain ms/GEMM | stages ms (finish after each) | tfjs e2e ms | tfjs chain ms | tfjs/gpujs e2e | tfjs/gpujs chain | bits vs first |',
  '| --- | ---: | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |',
];
console.log(`${lines[0]}\n${lines[1]}`);

/** e2e, chain and stage timings of one GEMM issued by `issue` (returns its DataId) */
/** kiln's e2e (in alternation with `peer`'s, when given: returned as peerE2e), chain and stages */
async function measure(issue, shape, peer) {
  const v = (id) => ({ dataId: id, shape, dtype: 'f32' });
  const kilnE2e = async () => {
    const c = issue();
    // a synchronous read where the engine runs in process, like tfjs's dataSync() (an awaited
    // read() first yields one event-loop turn: ~0.25 ms on the H200 host)
    const d = b.readSync ? b.readSync(v(c)) : await b.read(v(c));
    b.release(c);
    return d;
  };
  let e2e;
  let peerE2e;
  if (peer) [e2e, peerE2e] = await timePair(kilnE2e, peer);
  else e2e = await time(kilnE2e);
  const chain = await time(() => {
    const ids = [];
    for (let i = 0; i < CHAIN; i++) ids.push(issue());
    b.flush();
    finish();
    for (const id of ids) b.release(id);
  }, 2);
  const stages = [];
  for (let r = 0; r < 3; r++) {
    staging = {};
    const c = issue();
    b.flush();
    const t0 = performance.now();
    sp.readF32(c.id);
    staging.readback = performance.now() - t0;
    const st = staging;
    staging = undefined;
    b.release(c);
    stages.push(st);
  }
  const keys = Object.keys(stages[0]);
  const stage = Object.fromEntries(keys.map((k) => [k, median(stages.map((s) => s[k] ?? 0))]));
  return { e2e, peerE2e, chainMs: chain.ms / CHAIN, stage };
}
const stageText = (s) => Object.entries(s).map(([k, x]) => `${k.replace(/^kiln/, '').replace(/Gl1$/, '')} ${f(x)}`).join(', ');
const strip = (t) => ({ ms: t.ms, fastestMs: t.fastestMs, times: t.times });

for (const n of sizes) {
  const A = Float32Array.from({ length: n * n }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
  const B = Float32Array.from({ length: n * n }, (_, i) => ((i * 104729) % 1000) / 1000 - 0.5);
  const va = { dataId: b.write(A, 'f32', [n, n]), shape: [n, n], dtype: 'f32' };
  const vb = { dataId: b.write(B, 'f32', [n, n]), shape: [n, n], dtype: 'f32' };
  // tfjs first (same inputs)
  let tt;
  let tt8;
  let tchain;
  let tchain8;
  let tfE2e;
  let tfE2e8;
  let tfDispose = () => {};
  if (tfGl) {
    const xa = tf.tensor2d(A, [n, n]);
    const xb = tf.tensor2d(B, [n, n]);
    const mm = (tB) => () => {
      const c = tf.matMul(xa, xb, false, tB);
      const d = c.dataSync();
      c.dispose();
      return d;
    };
    const chain = (tB) => () => {
      const cs = [];
      for (let i = 0; i < CHAIN; i++) cs.push(tf.matMul(xa, xb, false, tB));
      tfGl.finish();
      for (const c of cs) c.dispose();
    };
    tchain = (await time(chain(false), 2)).ms / CHAIN;
    if (FP8) tchain8 = (await time(chain(true), 2)).ms / CHAIN;
    // e2e: timed in alternation with kiln's below
    tfE2e = mm(false);
    tfE2e8 = mm(true);
    tfDispose = () => {
      xa.dispose();
      xb.dispose();
    };
  }
  let first;
  for (const variant of variants) {
    if (variant === 'onepass' && n > OLD_MAX) continue;
    b.packedGemms = variant !== 'onepass';
    if (variant !== 'onepass') b.gemmVariant = variant;
    const m = await measure(() => b.matmul(va, vb, { transposeA: false, transposeB: false }, [n, n]), [n, n], tfE2e);
    if (m.peerE2e) tt = m.peerE2e;
    b.packedGemms = true;
    b.gemmVariant = 'packed';
    let bits = '-';
    if (!first) first = m.e2e.last;
    else {
      let d = 0;
      for (let i = 0; i < first.length; i++) if (!Object.is(first[i], m.e2e.last[i])) d++;
      bits = d === 0 ? 'identical' : `${d} DIFFER`;
    }
    let diff = 0;
    if (tt) for (let i = 0; i < tt.last.length; i++) diff = Math.max(diff, Math.abs(tt.last[i] - m.e2e.last[i]));
    rows.push({ gemm: 'f32', n, variant, e2e: strip(m.e2e), chainMs: m.chainMs, stagesMs: m.stage, tfjs: tt && { e2e: strip(tt), chainMs: tchain }, maxAbsDiffVsTfjs: tt ? diff : undefined, bitsVsFirst: bits });
    const l = `| f32 | ${n} | ${variant} | ${both(m.e2e)} | ${f(m.chainMs)} | ${stageText(m.stage)} | ${both(tt)} | ${f(tchain)} | ${ratio(tt?.ms, m.e2e.ms)} | ${ratio(tchain, m.chainMs)} | ${bits} |`;
    lines.push(l);
    console.log(l);
  }
  if (FP8) {
    // FP8: e4m3 codes (no NaN code), 1x128 / 128x128 scales, promotion 128
    const kb = Math.ceil(n / 128);
    const codes = Uint8Array.from({ length: n * n }, (_, i) => (i * 37) % 126);
    const vc = { dataId: b.write(codes, 'e4m3', [n, n]), shape: [n, n], dtype: 'e4m3' };
    const sa = { dataId: b.write(new Float32Array(n * kb).fill(0.5), 'f32', [n, kb]), shape: [n, kb], dtype: 'f32' };
    const sb = { dataId: b.write(new Float32Array(kb * kb).fill(0.25), 'f32', [kb, kb]), shape: [kb, kb], dtype: 'f32' };
    const m = await measure(() => b.matmulFp8({ codes: vc, scales: sa, block: [1, 128] }, { codes: vc, scales: sb, block: [128, 128] }, { promotionInterval: 128 }), [n, n], tfE2e8);
    if (m.peerE2e) tt8 = m.peerE2e;
    rows.push({ gemm: 'fp8', n, variant: 'packed', e2e: strip(m.e2e), chainMs: m.chainMs, stagesMs: m.stage, tfjsF32ABt: tt8 && { e2e: strip(tt8), chainMs: tchain8 } });
    const l = `| FP8 | ${n} | packed | ${both(m.e2e)} | ${f(m.chainMs)} | ${stageText(m.stage)} | ${both(tt8)} | ${f(tchain8)} | ${ratio(tt8?.ms, m.e2e.ms)} | ${ratio(tchain8, m.chainMs)} | - |`;
    lines.push(l);
    console.log(l);
    for (const v of [vc, sa, sb]) b.release(v.dataId);
  }
  for (const v of [va, vb]) b.release(v.dataId);
  tfDispose();
}
const load1 = loadavg();
const meta = {
  date: new Date().toISOString(),
  reps: REPS,
  chain: CHAIN,
  variants,
  smallGemmWork: b.smallGemmWork,
  wallS: (performance.now() - t00) / 1000,
  cpus: cpus().length,
  cpu: cpus()[0]?.model,
  loadavgBefore: load0,
  loadavgAfter: load1,
};
const la = (l) => l.map((x) => x.toFixed(2)).join(' ');
console.log(`load average (1/5/15 min) before ${la(load0)}, after ${la(load1)}; ${meta.cpus} x ${meta.cpu}; ${meta.wallS.toFixed(1)} s`);
const head = `gpujs (headless-gl: ${b.device.name}) vs tfjs-backend-webgl (WebGL 1 on its own headless-gl context, same process); ${meta.date}; e2e = compute + synchronous readback (readSync / dataSync), median (fastest) of ${REPS} after a warm-up, kiln and tfjs in alternation; chain = ${CHAIN} GEMMs then one gl.finish(), per GEMM; stages = one GEMM with gl.finish() after each pass, then the readback; one-pass threshold (batch*M*N*K) ${b.smallGemmWork}; load average before ${la(load0)}, after ${la(load1)}; ${meta.cpus} x ${meta.cpu}; ${meta.wallS.toFixed(1)} s. FP8 rows: kiln's FP8 block GEMM (e4m3, 1x128 / 128x128 scales, promotion 128) vs tfjs f32 matMul(a, b, false, true).`;
const md = `${head}\n\n${lines.join('\n')}\n`;
const json = JSON.stringify({ ...meta, device: b.device, rows }, null, 2);
const dir = process.env.GPUJS_BENCH_RESULTS;
if (dir) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'gemm-headless-gl.md'), md);
  writeFileSync(join(dir, 'gemm-headless-gl.json'), json);
  console.log(`wrote ${join(dir, 'gemm-headless-gl.md')} and .json`);
}
if (process.env.GPUJS_BENCH_MD) writeFileSync(process.env.GPUJS_BENCH_MD, md);
if (process.env.GPUJS_BENCH_JSON) writeFileSync(process.env.GPUJS_BENCH_JSON, json);
b.dispose();
