#!/usr/bin/env node
// FP8 GEMM speed on the CPU: kiln's matmulFp8 (e4m3, 1×128 activation tiles, 128×128 weight
// blocks, f32 promotion every 128 along K) against kiln's f32 matmul and tfjs-wasm's f32
// matMul at the same shapes, x [M, K] · Wᵀ with W [N, K] (a Linear layer). Quantisation is
// outside the GEMM timing (weights are quantised once; an activation once per GEMM) and is
// timed separately. GFLOP/s = 2·M·N·K / time (the same nominal count for every contender).
// Each timing is the median of repetitions after warm-up, contenders interleaved; each call
// includes reading the result into a JS Float32Array.
// Writes bench/results/fp8-gemm-cpu.{json,md} and prints the table.
//   node bench/fp8-gemm-cpu.bench.mjs
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { loadKiln, machineInfo, machineLine, measureInterleaved, writeResults } from './lib/fp8-common.mjs';

const require = createRequire(import.meta.url);
// DeepSeek-like skinny shapes (tokens × hidden), scaled to a CPU, and a square one
const SHAPES = [
  [128, 1024, 1024],
  [128, 2048, 2048],
  [512, 1024, 1024],
  [512, 2048, 2048],
  [1024, 1024, 1024],
];

const machine = machineInfo(); // before the run: its load average is that of the other processes
const { k, source } = await loadKiln();
const { randomNormal, quantize, matmulFp8, matmul, WEIGHT_BLOCK } = k;
const gemm = typeof k.gemmInfo === 'function' ? k.gemmInfo() : { kernel: 'unknown', threads: 1 };

const tf = await import('@tensorflow/tfjs-core');
const tfwasm = await import('@tensorflow/tfjs-backend-wasm');
tfwasm.setWasmPaths(`${join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist')}/`);
if (!(await tf.setBackend('wasm'))) throw new Error('tfjs-backend-wasm failed to initialise');
const wasmSimd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
const wasmThreads = tfwasm.getThreadsCount();
const wasmVariant = `${wasmSimd ? 'simd' : 'plain'}, ${wasmThreads} thread${wasmThreads > 1 ? 's' : ''}`;

const gflops = (m, n, kk, ms) => (2 * m * n * kk) / (ms * 1e6);
const fmt = (x, d = 1) => x.toFixed(d);
console.log(`kiln: ${gemm.kernel} GEMM, ${gemm.threads} thread(s); tfjs-wasm ${tf.version_core}: ${wasmVariant}`);

const rows = [];
for (const [M, N, K] of SHAPES) {
  const x = randomNormal([M, K], 1);
  const w = randomNormal([N, K], 2, 0, 0.05);
  const qa = quantize(x);
  const qb = quantize(w, { block: WEIGHT_BLOCK });
  const xs = x.dataSync();
  const ws = w.dataSync();
  const tx = tf.tensor2d(xs, [M, K]);
  // tfjs-wasm gets W as [K, N]: its matMul with transposeB is about 10x slower here
  const wt = new Float32Array(K * N);
  for (let n = 0; n < N; n++) for (let q = 0; q < K; q++) wt[q * N + n] = ws[n * K + q];
  const tw = tf.tensor2d(wt, [K, N]);
  let out8;
  let out32;
  const [t8, t32, twasm] = measureInterleaved(
    [
      () => {
        const o = matmulFp8(qa, qb);
        out8 = o.dataSync();
        o.dispose();
      },
      () => {
        const o = matmul(x, w, { transposeB: true });
        out32 = o.dataSync();
        o.dispose();
      },
      () => {
        const o = tf.matMul(tx, tw);
        o.dataSync();
        o.dispose();
      },
    ],
    { minReps: 7, budgetMs: 4000 },
  );
  const [qAct, qWeight] = measureInterleaved(
    [() => quantize(x).dispose(), () => quantize(w, { block: WEIGHT_BLOCK }).dispose()],
    { minReps: 5, budgetMs: 1500, warmup: 1 },
  );
  // how far the FP8 result is from the f32 one: FP8 rounding of the inputs, mostly
  let num = 0;
  let den = 0;
  for (let i = 0; i < out32.length; i++) {
    num += Math.abs(out8[i] - out32[i]);
    den += Math.abs(out32[i]);
  }
  const row = {
    m: M, n: N, k: K,
    fp8: { ...t8, gflops: gflops(M, N, K, t8.medianMs) },
    f32: { ...t32, gflops: gflops(M, N, K, t32.medianMs) },
    tfjsWasm: { ...twasm, gflops: gflops(M, N, K, twasm.medianMs) },
    quantizeActivationMs: qAct.medianMs,
    quantizeWeightMs: qWeight.medianMs,
    fp8VsF32: t32.medianMs / t8.medianMs,
    fp8VsTfjsWasm: twasm.medianMs / t8.medianMs,
    f32VsTfjsWasm: twasm.medianMs / t32.medianMs,
    relDiffFp8VsF32: num / den,
  };
  rows.push(row);
  console.log(
    `${M}x${N}x${K}: fp8 ${fmt(row.fp8.gflops)} GFLOP/s (${fmt(t8.medianMs, 2)} ms), f32 ${fmt(row.f32.gflops)}, tfjs-wasm ${fmt(row.tfjsWasm.gflops)}; ` +
      `fp8/f32 x${fmt(row.fp8VsF32, 2)}, fp8/tfjs-wasm x${fmt(row.fp8VsTfjsWasm, 2)}; quantize act ${fmt(qAct.medianMs, 2)} ms, weight ${fmt(qWeight.medianMs, 2)} ms`,
  );
  for (const t of [x, w, qa, qb, tx, tw]) t.dispose();
}
k.disposeGemmPool?.();

const date = new Date().toISOString();
const result = {
  benchmark: 'fp8-gemm-cpu',
  date,
  command: 'pnpm bench (node bench/run.mjs), bench/fp8-gemm-cpu.bench.mjs',
  machine,
  kiln: { module: source, gemm },
  tfjs: { version: tf.version_core, wasmVariant },
  operation: 'out[M, N] = x[M, K] · W[N, K]ᵀ; fp8: e4m3, x in 1×128 tiles, W in 128×128 blocks, fp32 scales, promotion every 128; kiln f32: matmul(x, W, transposeB); tfjs-wasm: matMul(x, Wt) with Wt [K, N] stored (its transposeB path is ~10x slower)',
  timing: 'median of interleaved repetitions after warm-up; each call includes reading the result into a JS Float32Array; quantisation not in the fp8 timing',
  results: rows,
};

const md = [
  '## FP8 GEMM, CPU (`bench/fp8-gemm-cpu.bench.mjs`)',
  '',
  `${machineLine(machine, date)} · tfjs ${tf.version_core}`,
  '',
  `x [M, K] · Wᵀ, W [N, K]. kiln fp8: \`matmulFp8\`, e4m3 with 1×128 / 128×128 scale blocks, promotion every 128 (operands quantised beforehand). ` +
    `kiln f32: \`matmul(x, w, { transposeB: true })\` (the same W [N, K]); tfjs-wasm: \`matMul(x, Wᵀ)\` with Wᵀ stored [K, N], its fast layout. kiln's GEMM: ${gemm.kernel}, ${gemm.threads} thread(s); tfjs-wasm: ${wasmVariant}. ` +
    'GFLOP/s = 2·M·N·K / median time; contenders interleaved; each call includes reading the result.',
  '',
  '| M×N×K | kiln fp8 GFLOP/s | kiln f32 GFLOP/s | tfjs-wasm f32 GFLOP/s | fp8 / kiln f32 | fp8 / tfjs-wasm | quantize x (1×128) | quantize W (128×128) |',
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...rows.map(
    (r) =>
      `| ${r.m}×${r.n}×${r.k} | ${fmt(r.fp8.gflops)} (${fmt(r.fp8.medianMs, 2)} ms) | ${fmt(r.f32.gflops)} (${fmt(r.f32.medianMs, 2)} ms) | ` +
      `${fmt(r.tfjsWasm.gflops)} (${fmt(r.tfjsWasm.medianMs, 2)} ms) | **${fmt(r.fp8VsF32, 2)}×** | **${fmt(r.fp8VsTfjsWasm, 2)}×** | ` +
      `${fmt(r.quantizeActivationMs, 2)} ms | ${fmt(r.quantizeWeightMs, 2)} ms |`,
  ),
  '',
  'Ratios are speed ratios (> 1: kiln fp8 is faster). The CPU has no FP8 arithmetic: kiln decodes the codes to f32 by table, ' +
    'multiplies 128-wide K slabs with its f32 GEMM and promotes each slab\'s partial with the two scales, so fp8 costs the f32 GEMM plus decode and promotion. ' +
    `FP8 result vs f32 result: Σ|Δ| / Σ|f32| = ${rows.map((r) => `${(r.relDiffFp8VsF32 * 100).toFixed(1)}%`).join(', ')} (the FP8 rounding of the inputs).`,
  '',
].join('\n');

writeResults('fp8-gemm-cpu', result, md);
console.log(`\n${md}`);
process.exit(0);
