#!/usr/bin/env node
// f32 GEMM on the CPU: kiln (@kiln/backend-cpu, built dist) against
// @tensorflow/tfjs-backend-wasm and @tensorflow/tfjs-backend-cpu, in one process, one run.
// Sizes m x n x k: 256^3, 512^3, 1024^3, 2048x2048x512. Each timing is the median of
// several repetitions after warm-up; GFLOP/s = 2mnk / time. Every timed call includes
// getting the result into a JS Float32Array (kiln: sgemm writes the caller's array;
// tfjs: matMul + dataSync).
// Writes bench/results/gemm-cpu.json and bench/results/gemm-cpu.md and prints the table.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const SIZES = [
  [256, 256, 256],
  [512, 512, 512],
  [1024, 1024, 1024],
  [2048, 2048, 512],
];

// ---------------------------------------------------------------------------------------
// Probe (child process): can tfjs-backend-wasm's threaded SIMD binary run in this Node?
if (process.argv[2] === '--probe-threaded') {
  const tf = await import('@tensorflow/tfjs-core');
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  wasm.setWasmPaths(tfjsWasmDir());
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
  const ok = await tf.setBackend('wasm').catch(() => false);
  const x = ok ? tf.ones([64, 64]) : null;
  const okRun = ok && tf.matMul(x, x).dataSync()[0] === 64;
  console.log(JSON.stringify({ ok: Boolean(okRun), threads: ok ? wasm.getThreadsCount() : 0 }));
  process.exit(0);
}

function tfjsWasmDir() {
  return join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + '/';
}

// ---------------------------------------------------------------------------------------
// kiln
async function loadKiln() {
  const override = process.env.KILN_BENCH_GEMM_MODULE; // e.g. a locally built bundle of src/gemm/public.ts
  const mod = override ? await import(pathToFileURL(override).href) : await import('@kiln/backend-cpu');
  if (typeof mod.sgemm !== 'function' || typeof mod.gemmInfo !== 'function') {
    throw new Error(
      "@kiln/backend-cpu does not export sgemm/gemmInfo: its src/index.ts must re-export './gemm/public.js' " +
        '(or set KILN_BENCH_GEMM_MODULE to a module that does)',
    );
  }
  return { mod, source: override ? `${override} (KILN_BENCH_GEMM_MODULE)` : '@kiln/backend-cpu (built dist)' };
}

// ---------------------------------------------------------------------------------------
// timing
function measure(fn, { minReps = 5, maxReps = 30, budgetMs = 1500, warmup = 2 } = {}) {
  let t = performance.now();
  fn();
  const first = performance.now() - t;
  // slow calls (tfjs-cpu at the large sizes) get one warm-up call only
  for (let i = 1; i < warmup && first < 1000; i++) fn();
  const times = [];
  const start = performance.now();
  while (times.length < maxReps && (times.length < minReps || performance.now() - start < budgetMs)) {
    t = performance.now();
    fn();
    times.push(performance.now() - t);
  }
  times.sort((x, y) => x - y);
  const mid = times.length >> 1;
  const median = times.length % 2 ? times[mid] : (times[mid - 1] + times[mid]) / 2;
  return { medianMs: median, minMs: times[0], reps: times.length };
}

// Several contenders timed in alternation (one call each per round), so that a change of
// machine load during the run (other processes) is shared fairly between them.
function measureInterleaved(fns, { minReps = 7, maxReps = 30, budgetMs = 3000, warmup = 2 } = {}) {
  for (let i = 0; i < warmup; i++) for (const fn of fns) fn();
  const times = fns.map(() => []);
  const start = performance.now();
  while (times[0].length < maxReps && (times[0].length < minReps || performance.now() - start < budgetMs)) {
    fns.forEach((fn, i) => {
      const t = performance.now();
      fn();
      times[i].push(performance.now() - t);
    });
  }
  return times.map((ts) => {
    ts.sort((x, y) => x - y);
    const mid = ts.length >> 1;
    return { medianMs: ts.length % 2 ? ts[mid] : (ts[mid - 1] + ts[mid]) / 2, minMs: ts[0], reps: ts.length };
  });
}

function fill(len, seed) {
  let s = seed >>> 0;
  const out = new Float32Array(len);
  for (let i = 0; i < len; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 4294967296 - 0.5;
  }
  return out;
}

const gflops = (m, n, k, ms) => (2 * m * n * k) / (ms * 1e6);
const fmt = (x, d = 1) => x.toFixed(d);

// ---------------------------------------------------------------------------------------
const { mod: kiln, source: kilnSource } = await loadKiln();
const kilnInfo = kiln.gemmInfo();
const defaultThreads = kilnInfo.threads;

const probe = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--probe-threaded'], { encoding: 'utf8', timeout: 60_000 });
let threadedProbe = { ok: false };
try {
  threadedProbe = JSON.parse(probe.stdout.trim().split('\n').pop());
} catch {
  /* probe crashed: not usable */
}

const tf = await import('@tensorflow/tfjs-core');
await import('@tensorflow/tfjs-backend-cpu');
const tfwasm = await import('@tensorflow/tfjs-backend-wasm');
tfwasm.setWasmPaths(tfjsWasmDir());
if (threadedProbe.ok) tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
if (!(await tf.setBackend('wasm'))) throw new Error('tfjs-backend-wasm failed to initialise');
const wasmSimd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
const wasmThreads = threadedProbe.ok ? tfwasm.getThreadsCount() : 1;
const wasmVariant = `${threadedProbe.ok ? 'threaded-' : ''}${wasmSimd ? 'simd' : 'plain'} (tfjs-backend-wasm${threadedProbe.ok ? '-threaded' : ''}${wasmSimd ? '-simd' : ''}.wasm, ${wasmThreads} thread${wasmThreads > 1 ? 's' : ''})`;
const wasmNote = threadedProbe.ok
  ? ''
  : 'the threaded-SIMD binary does not initialise under Node (its Emscripten pthread workers are started from a blob: URL, which worker_threads rejects), so tfjs-wasm runs its single-threaded SIMD binary';
console.log(`kiln: ${kilnInfo.kernel}, ${defaultThreads} thread(s); tfjs-wasm: ${wasmVariant}`);

const rows = [];
for (const [m, n, k] of SIZES) {
  const a = fill(m * k, 1);
  const b = fill(k * n, 2);
  const c = new Float32Array(m * n);
  const job = { m, n, k, transA: false, transB: false, a, b, c, aOffsets: [0], bOffsets: [0], cOffsets: [0] };
  const big = m * n * k >= 1024 ** 3;

  await tf.setBackend('wasm');
  const wa = tf.tensor2d(a, [m, k]);
  const wb = tf.tensor2d(b, [k, n]);
  let wasmOut;
  let kilnOut;
  const [kAll, k1, tw] = measureInterleaved(
    [
      () => {
        kiln.configureGemm({ threads: defaultThreads });
        kiln.sgemm(job);
        kilnOut = c;
      },
      () => {
        kiln.configureGemm({ threads: 1 });
        kiln.sgemm(job);
        kiln.configureGemm({ threads: defaultThreads });
      },
      () => {
        const r = tf.matMul(wa, wb);
        wasmOut = r.dataSync();
        r.dispose();
      },
    ],
    { minReps: big ? 7 : 15 },
  );
  wa.dispose();
  wb.dispose();

  await tf.setBackend('cpu');
  const ca = tf.tensor2d(a, [m, k]);
  const cb = tf.tensor2d(b, [k, n]);
  const tc = measure(() => {
    const r = tf.matMul(ca, cb);
    r.dataSync();
    r.dispose();
  }, big ? { minReps: 3, maxReps: 3, warmup: 1 } : { minReps: 3, maxReps: 10, budgetMs: 1500 });
  ca.dispose();
  cb.dispose();

  // agreement of kiln with tfjs-wasm (both f32): max |diff| relative to max |value|
  let maxDiff = 0;
  let maxVal = 0;
  for (let i = 0; i < kilnOut.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(kilnOut[i] - wasmOut[i]));
    maxVal = Math.max(maxVal, Math.abs(wasmOut[i]));
  }

  const row = {
    m, n, k,
    kiln: { ...kAll, gflops: gflops(m, n, k, kAll.medianMs), threads: defaultThreads },
    kiln1: { ...k1, gflops: gflops(m, n, k, k1.medianMs), threads: 1 },
    tfjsWasm: { ...tw, gflops: gflops(m, n, k, tw.medianMs) },
    tfjsCpu: { ...tc, gflops: gflops(m, n, k, tc.medianMs) },
    ratioVsTfjsWasm: tw.medianMs / kAll.medianMs,
    ratioVsTfjsCpu: tc.medianMs / kAll.medianMs,
    ratio1ThreadVsTfjsWasm: tw.medianMs / k1.medianMs,
    maxRelDiffVsTfjsWasm: maxDiff / maxVal,
  };
  rows.push(row);
  console.log(
    `${m}x${n}x${k}: kiln ${fmt(row.kiln.gflops)} GFLOP/s (${defaultThreads}t), kiln-1t ${fmt(row.kiln1.gflops)}, ` +
      `tfjs-wasm ${fmt(row.tfjsWasm.gflops)}, tfjs-cpu ${fmt(row.tfjsCpu.gflops, 2)}  ` +
      `-> x${fmt(row.ratioVsTfjsWasm, 2)} tfjs-wasm, x${fmt(row.ratioVsTfjsCpu)} tfjs-cpu`,
  );
}
kiln.disposeGemmPool?.();

const cpus = os.cpus();
const machine = {
  cpu: cpus[0]?.model ?? 'unknown',
  cores: cpus.length,
  availableParallelism: typeof os.availableParallelism === 'function' ? os.availableParallelism() : cpus.length,
  memoryGiB: Math.round(os.totalmem() / 2 ** 30),
  platform: `${os.platform()} ${os.release()} ${os.arch()}`,
  node: process.version,
  v8: process.versions.v8,
};
const at1024 = rows.find((r) => r.m === 1024 && r.n === 1024 && r.k === 1024);
const result = {
  benchmark: 'gemm-cpu',
  date: new Date().toISOString(),
  command: 'pnpm bench (node bench/run.mjs), bench/gemm-cpu.bench.mjs',
  machine,
  kiln: { ...kilnInfo, module: kilnSource },
  tfjs: { version: tf.version_core, wasmVariant, wasmNote },
  timing: 'median of repetitions after warm-up; each call includes reading the result into a JS Float32Array',
  target: { size: '1024x1024x1024', vsTfjsWasm: 1.0, vsTfjsCpu: 10.0 },
  targetMet: at1024 ? at1024.ratioVsTfjsWasm >= 1 && at1024.ratioVsTfjsCpu >= 10 : false,
  results: rows,
};

const md = [
  '## f32 GEMM, CPU (`bench/gemm-cpu.bench.mjs`)',
  '',
  `${result.date.slice(0, 10)} · ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB · Node ${machine.node} (V8 ${machine.v8}) · tfjs ${tf.version_core}`,
  '',
  `kiln: ${kilnInfo.kernel}, ${defaultThreads} thread(s) (\`kiln 1t\`: forced to 1 thread). tfjs-wasm: ${wasmVariant}.`,
  '',
  '| m×n×k | kiln GFLOP/s | kiln 1t GFLOP/s | tfjs-wasm GFLOP/s | tfjs-cpu GFLOP/s | kiln / tfjs-wasm | kiln / tfjs-cpu | kiln 1t / tfjs-wasm |',
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...rows.map(
    (r) =>
      `| ${r.m}×${r.n}×${r.k} | ${fmt(r.kiln.gflops)} (${fmt(r.kiln.medianMs, 2)} ms) | ${fmt(r.kiln1.gflops)} | ` +
      `${fmt(r.tfjsWasm.gflops)} (${fmt(r.tfjsWasm.medianMs, 2)} ms) | ${fmt(r.tfjsCpu.gflops, 2)} (${fmt(r.tfjsCpu.medianMs, 0)} ms) | ` +
      `**${fmt(r.ratioVsTfjsWasm, 2)}×** | **${fmt(r.ratioVsTfjsCpu, 1)}×** | ${fmt(r.ratio1ThreadVsTfjsWasm, 2)}× |`,
  ),
  '',
  `Target at 1024³: ≥ 1.0× tfjs-wasm and ≥ 10× tfjs-cpu: **${result.targetMet ? 'met' : 'NOT met'}**. ` +
    'Median of repetitions after warm-up; each call includes reading the result into a JS Float32Array.' +
    (wasmNote ? ` Note: ${wasmNote}.` : ''),
  '',
].join('\n');

const dir = join(here, 'results');
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, 'gemm-cpu.json'), `${JSON.stringify(result, null, 2)}\n`);
writeFileSync(join(dir, 'gemm-cpu.md'), md);
console.log(`\n${md}`);
process.exit(0);
