#!/usr/bin/env node
// GEMM on WebGPU: kiln (@kiln/backend-webgpu, built dist; Dawn in a worker thread) against
// @tensorflow/tfjs-backend-webgpu (Dawn on the main thread), in one process, one run, on the
// same adapter (here: Dawn's OpenGL backend on Mesa's llvmpipe, i.e. the CPU).
//  - f32 GEMM m x n x k: square 256..1024 and DeepSeek-like skinny shapes (few tokens x wide
//    weights). kiln: Backend.matmul; tfjs: tf.matMul.
//  - FP8 block GEMM (DeepSeek-V3's recipe: e4m3, 1x128 activation scales, 128x128 weight
//    scales, f32 promotion every 128 along K). kiln: Backend.matmulFp8; tfjs has no FP8, so its
//    row is tf.matMul on the dequantised f32 operands (what a tfjs user would run).
// Two timings per shape: a single product and its readback into a JS array (kiln:
// backend.read; tfjs: await data()), and WEBGPU_GEMM_CHAIN (8) products back to back with one
// readback, from which the marginal per-product time (what a training step sees). Medians
// after a warm-up.
// WEBGPU_GEMM_SHAPES='f32:4096x4096x4096,fp8:128x7168x2048' replaces the shape lists (tuning).
// Writes bench/results/webgpu-gemm.json and .md and prints the table.
import { kilnWebGpuOrExit, measurePair as measurePairShared, randomF32, tfjsOnDawn } from './lib/webgpu-peer.mjs';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const quick = process.env.KILN_BENCH_QUICK === '1';

const F32_SHAPES = [
  [256, 256, 256],
  [512, 512, 512],
  [1024, 1024, 1024],
  [32, 1536, 2048], // a few tokens x a q_a_proj-like weight
  [64, 2048, 1024],
];
const FP8_SHAPES = [
  [128, 512, 512],
  [256, 1024, 1024],
  [32, 1536, 2048],
];
// On a real GPU (KILN_BENCH_LARGE=1): the issue's 2048³ and 4096³ and DeepSeek-like skinny shapes.
if (process.env.KILN_BENCH_LARGE === '1') {
  F32_SHAPES.push([2048, 2048, 2048], [4096, 4096, 4096], [128, 7168, 2048]);
  FP8_SHAPES.push([1024, 1024, 1024], [2048, 2048, 2048], [4096, 4096, 4096], [128, 7168, 2048]);
}
if (process.env.WEBGPU_GEMM_SHAPES) {
  F32_SHAPES.length = 0;
  FP8_SHAPES.length = 0;
  for (const item of process.env.WEBGPU_GEMM_SHAPES.split(',')) {
    const [kind, dims] = item.split(':');
    (kind === 'fp8' ? FP8_SHAPES : F32_SHAPES).push(dims.split('x').map(Number));
  }
}
const RESULTS = process.env.WEBGPU_GEMM_RESULTS ?? join(dirname(fileURLToPath(import.meta.url)), 'results');

process.env.EGL_PLATFORM ??= 'surfaceless';

// ---------------------------------------------------------------------------------------
// kiln
const { WebGpuBackend, parseDawnFlags } = await import('@kiln/backend-webgpu');
const kiln = await kilnWebGpuOrExit(WebGpuBackend, 'webgpu-gemm');
const view = (dataId, shape, dtype = 'f32') => ({ dataId, shape, dtype });

// tfjs-backend-webgpu on Dawn (bench/lib/webgpu-peer.mjs)
const { tf, version: tfVersion } = await tfjsOnDawn(kiln, parseDawnFlags);
const measurePair = (fa, fb) => measurePairShared(fa, fb, { budgetMs: Number(process.env.WEBGPU_BENCH_BUDGET_MS ?? (quick ? 1000 : 4000)) });

const rows = [];
const gflops = (m, n, k, ms) => (2 * m * n * k) / ms / 1e6;
// Chained: CHAIN products issued back to back, then one readback of the last; per-product
// time = the marginal cost (chain − single) / (CHAIN − 1) (see compare()).
const gf = (x) => (x >= 100 ? x.toFixed(0) : x.toPrecision(3));
const CHAIN = Number(process.env.WEBGPU_GEMM_CHAIN ?? 8);

/** Times kiln and tfjs on one shape: single call + readback, and CHAIN calls + one readback. */
// small products get longer chains (up to 128), so the chain's extra work stands well above the
// jitter of the single call it is compared with
const chainFor = (m, n, k) => Math.max(CHAIN, Math.min(128, Math.round(2 ** 33 / (2 * m * n * k))));

async function compare(kind, m, n, k, kilnOp, tfOp, chain = chainFor(m, n, k)) {
  // full: read the last result back; sync: read back only its sum (4 bytes), so the timing
  // is not dominated by the readback's own jitter
  const kilnRun = (times, full) => async () => {
    const ids = [];
    for (let i = 0; i < times; i++) ids.push(kilnOp());
    const last = ids[ids.length - 1];
    if (full) await kiln.read(view(last, [m, n]));
    else {
      const rowsSum = kiln.reduce('sum', view(last, [m, n]), 1);
      const total = kiln.reduce('sum', view(rowsSum, [m]), 0);
      await kiln.read(view(total, []));
      kiln.release(rowsSum);
      kiln.release(total);
    }
    for (const id of ids) kiln.release(id);
  };
  const tfRun = (times, full) => async () => {
    const ts = [];
    for (let i = 0; i < times; i++) ts.push(tfOp());
    if (full) await ts[ts.length - 1].data();
    else {
      const total = tf.sum(ts[ts.length - 1]);
      await total.data();
      total.dispose();
    }
    for (const t of ts) t.dispose();
  };
  const [k1, t1] = await measurePair(kilnRun(1, true), tfRun(1, true));
  const [k1s, t1s] = await measurePair(kilnRun(1, false), tfRun(1, false));
  const [kc, tc] = await measurePair(kilnRun(chain, false), tfRun(chain, false));
  // per product: the marginal cost of the chain's extra products (the final sum, its 4-byte
  // readback and the fixed latency cancel)
  const marginal = (c, one) => Math.max((c.medianMs - one.medianMs) / (chain - 1), 1e-6);
  const row = {
    kind, m, n, k,
    kilnMs: k1.medianMs, tfjsMs: t1.medianMs, ratio: t1.medianMs / k1.medianMs,
    chain,
    kilnChainMs: marginal(kc, k1s), tfjsChainMs: marginal(tc, t1s),
  };
  row.chainRatio = row.tfjsChainMs / row.kilnChainMs;
  row.kilnGflops = gflops(m, n, k, row.kilnChainMs);
  row.tfjsGflops = gflops(m, n, k, row.tfjsChainMs);
  rows.push(row);
  console.log(`${kind} ${m}x${n}x${k}: per product kiln ${row.kilnChainMs.toFixed(2)} ms (${row.kilnGflops.toFixed(0)} GFLOP/s) vs tfjs ${row.tfjsChainMs.toFixed(2)} ms (${row.tfjsGflops.toFixed(0)} GFLOP/s): ${row.chainRatio.toFixed(2)}x; single call + readback ${row.kilnMs.toFixed(2)} vs ${row.tfjsMs.toFixed(2)} ms: ${row.ratio.toFixed(2)}x`);
}

for (const [m, n, k] of quick ? F32_SHAPES.slice(0, 2) : F32_SHAPES) {
  const a = randomF32(m * k, 1);
  const b = randomF32(k * n, 2);
  const ka = kiln.write(a, 'f32', [m, k]);
  const kb = kiln.write(b, 'f32', [k, n]);
  const ta = tf.tensor2d(a, [m, k]);
  const tb = tf.tensor2d(b, [k, n]);
  await compare('f32', m, n, k, () => kiln.matmul(view(ka, [m, k]), view(kb, [k, n]), { transposeA: false, transposeB: false }, [m, n]), () => tf.matMul(ta, tb));
  kiln.release(ka);
  kiln.release(kb);
  ta.dispose();
  tb.dispose();
}

// Per-op overhead: 256 products of 8x8 matrices back to back, one readback (the GPU work is
// nil, so this is the host + dispatch cost per op; WEBGPU_GEMM_OVERHEAD=0 skips it)
if (process.env.WEBGPU_GEMM_OVERHEAD !== '0' && !process.env.WEBGPU_GEMM_SHAPES) {
  const e = 8;
  const a = randomF32(e * e, 7);
  const ka = kiln.write(a, 'f32', [e, e]);
  const ta = tf.tensor2d(a, [e, e]);
  await compare('f32 per-op overhead', e, e, e, () => kiln.matmul(view(ka, [e, e]), view(ka, [e, e]), { transposeA: false, transposeB: false }, [e, e]), () => tf.matMul(ta, ta), 256);
  kiln.release(ka);
  ta.dispose();
}

for (const [m, n, k] of quick ? FP8_SHAPES.slice(0, 1) : FP8_SHAPES) {
  const a = randomF32(m * k, 3);
  const w = randomF32(n * k, 4);
  // quantise on the GPU (DeepSeek-V3: activations 1x128, weights 128x128)
  const ka = kiln.write(a, 'f32', [m, k]);
  const kw = kiln.write(w, 'f32', [n, k]);
  const qa = kiln.quantizeBlockwise(view(ka, [m, k]), [1, 128], { format: 'e4m3', scaleFormat: 'fp32' });
  const qw = kiln.quantizeBlockwise(view(kw, [n, k]), [128, 128], { format: 'e4m3', scaleFormat: 'fp32' });
  const A = { codes: view(qa.codes, [m, k], 'e4m3'), scales: view(qa.scales, [m, Math.ceil(k / 128)]), block: [1, 128] };
  const W = { codes: view(qw.codes, [n, k], 'e4m3'), scales: view(qw.scales, [Math.ceil(n / 128), Math.ceil(k / 128)]), block: [128, 128] };
  // tfjs: f32 matMul of the dequantised operands (b transposed: [n, k] like a Linear weight)
  const ta = tf.tensor2d(a, [m, k]);
  const tw = tf.tensor2d(w, [n, k]);
  await compare('fp8', m, n, k, () => kiln.matmulFp8(A, W, { promotionInterval: 128 }), () => tf.matMul(ta, tw, false, true));
  ta.dispose();
  tw.dispose();
  for (const id of [ka, kw, qa.codes, qa.scales, qw.codes, qw.scales]) kiln.release(id);
}

// Grouped FP8 GEMM (MoE experts in one dispatch) vs tfjs: one f32 matMul per expert on the
// dequantised operands. Shapes: G experts x rows each, an expert's weight N x K.
const GROUPED_SHAPES = process.env.KILN_BENCH_LARGE === '1' ? [[8, 128, 2048, 2048], [32, 64, 2048, 1024], [8, 512, 4096, 2048]] : [[4, 32, 256, 256]];
const { tensorFromDataId, sum: coreSum } = await import('@kiln/core');
for (const [G, r, n, k] of quick ? [] : GROUPED_SHAPES) {
  const rowsAll = G * r;
  const a = randomF32(rowsAll * k, 5);
  const w = randomF32(G * n * k, 6);
  const ka = kiln.write(a, 'f32', [rowsAll, k]);
  const qa = kiln.quantizeBlockwise(view(ka, [rowsAll, k]), [1, 128], { format: 'e4m3', scaleFormat: 'fp32' });
  const kw = kiln.write(w, 'f32', [G * n, k]);
  // 128x128 blocks never straddle two experts when n is a multiple of 128
  const qw = kiln.quantizeBlockwise(view(kw, [G * n, k]), [128, 128], { format: 'e4m3', scaleFormat: 'fp32' });
  const T = (id, shape, dtype) => tensorFromDataId(kiln, id, shape, dtype);
  const kb = Math.ceil(k / 128);
  const offsets = kiln.write(Int32Array.from({ length: G + 1 }, (_, g) => g * r), 'i32', [G + 1]);
  const args = [T(qa.codes, [rowsAll, k], 'e4m3'), T(qa.scales, [rowsAll, kb], 'f32'), T(qw.codes, [G, n, k], 'e4m3'), T(qw.scales, [G, n / 128, kb], 'f32'), T(offsets, [G + 1], 'i32')];
  const tA = Array.from({ length: G }, (_, g) => tf.tensor2d(a.subarray(g * r * k, (g + 1) * r * k), [r, k]));
  const tW = Array.from({ length: G }, (_, g) => tf.tensor2d(w.subarray(g * n * k, (g + 1) * n * k), [n, k]));
  // as compare(): `times` grouped products back to back, then every expert's rows of the last
  // read back (full) or only their sum (4 bytes); per product = the chain's marginal cost
  const kilnRun = (times, full) => async () => {
    const outs = [];
    for (let i = 0; i < times; i++) outs.push(kiln.groupedMatmulFp8(...args));
    const last = outs[outs.length - 1];
    if (full) await last.data();
    else {
      const total = coreSum(last);
      await total.data();
      total.dispose();
    }
    for (const o of outs) o.dispose();
  };
  const tfRun = (times, full) => async () => {
    const all = [];
    let last = [];
    for (let i = 0; i < times; i++) {
      last = tA.map((x, g) => tf.matMul(x, tW[g], false, true));
      all.push(...last);
    }
    if (full) await Promise.all(last.map((o) => o.data())); // every expert's rows, as kiln's one result holds
    else {
      // (pairwise adds, not tf.addN: its kernel binds every input, and with 8 or more experts
      // Dawn refuses the pipeline (storage buffers per stage); tfjs then reads back without
      // having waited for the products, which made its chain look faster than the GPU's peak)
      const total = tf.tidy(() => last.map((o) => tf.sum(o)).reduce((x, y) => tf.add(x, y)));
      await total.data();
      total.dispose();
    }
    for (const o of all) o.dispose();
  };
  const chain = chainFor(rowsAll, n, k);
  const [kt, tt] = await measurePair(kilnRun(1, true), tfRun(1, true));
  const [k1s, t1s] = await measurePair(kilnRun(1, false), tfRun(1, false));
  const [kc, tc] = await measurePair(kilnRun(chain, false), tfRun(chain, false));
  const marginal = (c, one) => Math.max((c.medianMs - one.medianMs) / (chain - 1), 1e-6);
  const flops = 2 * rowsAll * n * k;
  const row = { kind: 'fp8 grouped', m: rowsAll, n, k, groups: G, kilnMs: kt.medianMs, tfjsMs: tt.medianMs, ratio: tt.medianMs / kt.medianMs, chain, kilnChainMs: marginal(kc, k1s), tfjsChainMs: marginal(tc, t1s) };
  row.chainRatio = row.tfjsChainMs / row.kilnChainMs;
  row.kilnGflops = flops / row.kilnChainMs / 1e6;
  row.tfjsGflops = flops / row.tfjsChainMs / 1e6;
  rows.push(row);
  console.log(`fp8 grouped ${G}x${r} rows x ${n}x${k}: per product kiln one dispatch ${row.kilnChainMs.toFixed(2)} ms vs tfjs ${G} matMuls ${row.tfjsChainMs.toFixed(2)} ms: ${row.chainRatio.toFixed(2)}x; single call + readback ${row.kilnMs.toFixed(2)} vs ${row.tfjsMs.toFixed(2)} ms: ${row.ratio.toFixed(2)}x`);
  for (const t of [...tA, ...tW]) t.dispose();
  for (const id of [ka, kw, qa.codes, qa.scales, qw.codes, qw.scales, offsets]) kiln.release(id);
}

const machine = {
  date: new Date().toISOString(),
  adapter: kiln.device.name,
  via: kiln.device.details.via,
  cpu: os.cpus()[0]?.model ?? 'unknown',
  cores: os.availableParallelism?.() ?? os.cpus().length,
  node: process.version,
  lpNumThreads: process.env.LP_NUM_THREADS ?? '(unset)',
  tfjsWebgpu: tfVersion,
};
mkdirSync(join(here, 'results'), { recursive: true });
mkdirSync(RESULTS, { recursive: true });
writeFileSync(join(RESULTS, 'webgpu-gemm.json'), JSON.stringify({ machine, rows }, null, 2) + '\n');
const md = [
  '## webgpu-gemm: kiln WebGPU vs tfjs-backend-webgpu',
  '',
  `${machine.date.slice(0, 10)}, adapter ${machine.adapter} via ${machine.via}; ${machine.cpu}, ${machine.cores} cores (LP_NUM_THREADS=${machine.lpNumThreads}); Node ${machine.node}; @tensorflow/tfjs-backend-webgpu ${machine.tfjsWebgpu}.`,
  'The per-op overhead row chains 256 products of 8x8 matrices (no GPU work to speak of): its per-product time is the host and dispatch cost of one op.',
  `Per product: the marginal cost of a product in a chain, (time of c products issued back to back + the sum of the last read back − time of 1 product + the same) / (c − 1), c = ${CHAIN} (up to 128 for products under 2^33 FLOP, so the chain stands above the single call's jitter), so the sync and fixed latency cancel (what a training step sees: many kernels per host round trip); single: one product and its readback. Medians, kiln and tfjs timed in alternation; ratio = tfjs time / kiln time (>1: kiln faster). GFLOP/s from the per-product time.`,
  `kiln GEMM kernels: ${kiln.device.details.gemmKernels}.`,
  'fp8 grouped rows: kiln `groupedMatmulFp8` (every expert in one dispatch) vs one tfjs `matMul` per expert on dequantised operands; per product chained as the other rows (the chain sums every expert of the last product), single call reads every expert result back.',
  'FP8 rows: kiln `matmulFp8` (e4m3, 1x128 / 128x128 scales, promotion every 128) vs tfjs `matMul` on the dequantised f32 operands (tfjs has no FP8).',
  '',
  '| GEMM | m x n x k | kiln ms per product | kiln GFLOP/s | tfjs-webgpu ms per product | tfjs GFLOP/s | ratio (per product) | kiln ms (single + readback) | tfjs ms (single + readback) | ratio (single) |',
  '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...rows.map((r) => `| ${r.kind} | ${r.groups ? `${r.groups} x ${r.m / r.groups} rows, ${r.n}x${r.k}` : `${r.m}x${r.n}x${r.k}`} | ${r.kilnChainMs.toFixed(2)} | ${gf(r.kilnGflops)} | ${r.tfjsChainMs.toFixed(2)} | ${gf(r.tfjsGflops)} | **${r.chainRatio.toFixed(2)}x** | ${r.kilnMs.toFixed(2)} | ${r.tfjsMs.toFixed(2)} | ${r.ratio.toFixed(2)}x |`),
  '',
];
writeFileSync(join(RESULTS, 'webgpu-gemm.md'), md.join('\n'));
console.log('\n' + md.join('\n'));
await kiln.close(); // the worker destroys its device before the process exits
process.exit(0);
