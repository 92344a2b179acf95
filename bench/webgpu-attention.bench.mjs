#!/usr/bin/env node
// Scaled dot-product attention on WebGPU: kiln's fused kernel (@kiln/backend-webgpu, built
// dist; `backend.fused.attention` on backend views: one pass, online softmax, no score matrix
// in memory, out + logSumExp) against @tensorflow/tfjs-backend-webgpu doing the same math the
// usual way: tf.matMul(q, k, false, true) * scale (+ a causal mask), tf.softmax, tf.matMul
// with v (out only). One process, the same adapter, kiln and tfjs timed in alternation.
// Shapes [B, H, T, dk/dv]: causal self-attention (S = T) and decode (Tq = 1 after S - 1
// cached keys, nothing masked). Default: small shapes that finish in a couple of minutes on
// llvmpipe; KILN_BENCH_LARGE=1 adds DeepSeek-V3's heads (dk 192, dv 128) at T 512 / 1024 and
// decode against 1024 keys. WEBGPU_ATTENTION_SHAPES='1x16x512x192x128:causal,1x16x1x192x128:1024'
// replaces the list (B x H x Tq x dk x dv : 'causal' | 'full' | S for decode).
// Two timings per shape: one call and its readback, and WEBGPU_ATTENTION_CHAIN (8) calls back
// to back with one readback (per-call time). Medians after a warm-up.
// Writes webgpu-attention.json and .md to bench/results (WEBGPU_ATTENTION_RESULTS overrides the dir).
import { kilnWebGpuOrExit, measurePair as measurePairShared, randomF32, tfjsOnDawn } from './lib/webgpu-peer.mjs';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const quick = process.env.KILN_BENCH_QUICK === '1';

/** [B, H, Tq, dk, dv, mode]: mode 'causal' (S = Tq, offset 0), 'full' (S = Tq, no mask) or S (decode: offset S - Tq). */
const SHAPES = [
  [1, 4, 128, 48, 32, 'causal'], // the tiny preset's heads
  [1, 4, 256, 48, 32, 'causal'],
  [1, 4, 128, 64, 64, 'full'],
  [1, 2, 128, 192, 128, 'causal'], // DeepSeek-V3's heads
  [1, 16, 1, 192, 128, 256], // decode
];
if (process.env.KILN_BENCH_LARGE === '1') {
  SHAPES.push(
    [16, 4, 128, 48, 32, 'causal'], // the tiny preset's micro-batch
    [1, 16, 512, 192, 128, 'causal'],
    [1, 16, 1024, 192, 128, 'causal'],
    [1, 16, 2048, 192, 128, 'causal'],
    [1, 16, 1, 192, 128, 1024],
    [8, 16, 1, 192, 128, 1024],
  );
}
if (process.env.WEBGPU_ATTENTION_SHAPES) {
  SHAPES.length = 0;
  for (const item of process.env.WEBGPU_ATTENTION_SHAPES.split(',')) {
    const [dims, mode] = item.split(':');
    SHAPES.push([...dims.split('x').map(Number), mode === 'causal' || mode === 'full' ? mode : Number(mode)]);
  }
}
const RESULTS = process.env.WEBGPU_ATTENTION_RESULTS ?? join(here, 'results');
const CHAIN = Number(process.env.WEBGPU_ATTENTION_CHAIN ?? 8);

process.env.EGL_PLATFORM ??= 'surfaceless';

// ---------------------------------------------------------------------------------------
// kiln
const { WebGpuBackend, parseDawnFlags } = await import('@kiln/backend-webgpu');
const kiln = await kilnWebGpuOrExit(WebGpuBackend, 'webgpu-attention');
if (!kiln.fused.attention) {
  console.log('webgpu-attention: skipped: this build of @kiln/backend-webgpu has no fused attention (rebuild: npx turbo run build --filter=@kiln/backend-webgpu)');
  process.exit(0);
}
const view = (dataId, shape) => ({ dataId, shape, dtype: 'f32' });

// tfjs-backend-webgpu on Dawn (bench/lib/webgpu-peer.mjs)
const { tf, version: tfVersion } = await tfjsOnDawn(kiln, parseDawnFlags);
const measurePair = (fa, fb) => measurePairShared(fa, fb, { budgetMs: quick ? 1000 : 4000 });

const rows = [];
const gf = (x) => (x >= 100 ? x.toFixed(0) : x.toPrecision(3));

for (const [B, H, Tq, dk, dv, mode] of quick ? SHAPES.slice(0, 2) : SHAPES) {
  const S = typeof mode === 'number' ? mode : Tq;
  const causalOffset = mode === 'full' ? null : S - Tq;
  const scale = 1 / Math.sqrt(dk);
  const qs = [B, H, Tq, dk];
  const ks = [B, H, S, dk];
  const vs = [B, H, S, dv];
  const q = randomF32(B * H * Tq * dk, 1);
  const k = randomF32(B * H * S * dk, 2);
  const v = randomF32(B * H * S * dv, 3);
  const kq = kiln.write(q, 'f32', qs);
  const kk = kiln.write(k, 'f32', ks);
  const kv = kiln.write(v, 'f32', vs);
  const tq = tf.tensor(q, qs);
  const tk = tf.tensor(k, ks);
  const tv = tf.tensor(v, vs);
  // tfjs's mask: 0 where visible, -1e9 above the diagonal (none when every key is visible)
  let mask = null;
  if (causalOffset !== null && causalOffset < S - 1) {
    const m = new Float32Array(Tq * S);
    for (let i = 0; i < Tq; i++) for (let j = 0; j < S; j++) m[i * S + j] = j <= causalOffset + i ? 0 : -1e9;
    mask = tf.tensor(m, [Tq, S]);
  }
  const kilnOp = () => kiln.fused.attention(view(kq, qs), view(kk, ks), view(kv, vs), { scale, causalOffset });
  const tfOp = () =>
    tf.tidy(() => {
      let s = tf.mul(tf.matMul(tq, tk, false, true), scale);
      if (mask) s = tf.add(s, mask);
      return tf.matMul(tf.softmax(s), tv);
    });
  const kilnRun = (times) => async () => {
    const outs = [];
    for (let i = 0; i < times; i++) outs.push(kilnOp());
    await kiln.read(view(outs[outs.length - 1].out, [B, H, Tq, dv]));
    for (const o of outs) {
      kiln.release(o.out);
      kiln.release(o.logSumExp);
    }
  };
  const tfRun = (times) => async () => {
    const ts = [];
    for (let i = 0; i < times; i++) ts.push(tfOp());
    await ts[ts.length - 1].data();
    for (const t of ts) t.dispose();
  };
  // agreement check: the two results (kiln vs tfjs) on this shape
  const ko = kilnOp();
  const got = await kiln.read(view(ko.out, [B, H, Tq, dv]));
  kiln.release(ko.out);
  kiln.release(ko.logSumExp);
  const to = tfOp();
  const want = await to.data();
  to.dispose();
  let maxDiff = 0;
  for (let i = 0; i < got.length; i++) maxDiff = Math.max(maxDiff, Math.abs(got[i] - want[i]));

  const [k1, t1] = await measurePair(kilnRun(1), tfRun(1));
  const [kc, tc] = await measurePair(kilnRun(CHAIN), tfRun(CHAIN));
  // multiply-adds over visible (query, key) pairs only: q kᵀ and p v
  let pairs = 0;
  for (let i = 0; i < Tq; i++) pairs += causalOffset === null ? S : Math.min(S, causalOffset + i + 1);
  const flop = 2 * B * H * pairs * (dk + dv);
  const row = {
    B, H, Tq, S, dk, dv, mask: causalOffset === null ? 'none' : causalOffset === 0 ? 'causal' : `causal, offset ${causalOffset}`,
    kilnMs: k1.medianMs, tfjsMs: t1.medianMs, ratio: t1.medianMs / k1.medianMs,
    chain: CHAIN,
    kilnChainMs: kc.medianMs / CHAIN, tfjsChainMs: tc.medianMs / CHAIN, chainRatio: tc.medianMs / kc.medianMs,
    maxDiff,
  };
  row.kilnGflops = flop / row.kilnChainMs / 1e6;
  row.tfjsGflops = flop / row.tfjsChainMs / 1e6;
  rows.push(row);
  console.log(`[${B},${H},${Tq},${dk}/${dv}] S ${S} ${row.mask}: chained kiln ${row.kilnChainMs.toFixed(2)} ms (${gf(row.kilnGflops)} GFLOP/s) vs tfjs ${row.tfjsChainMs.toFixed(2)} ms (${gf(row.tfjsGflops)} GFLOP/s): ${row.chainRatio.toFixed(2)}x; single call + readback ${row.kilnMs.toFixed(2)} vs ${row.tfjsMs.toFixed(2)} ms: ${row.ratio.toFixed(2)}x; max |kiln - tfjs| ${maxDiff.toExponential(1)}`);
  for (const id of [kq, kk, kv]) kiln.release(id);
  for (const t of [tq, tk, tv, mask]) t?.dispose();
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
  workgroupStorage: kiln.limits.maxComputeWorkgroupStorageSize,
  attentionLayout: process.env.KILN_WEBGPU_ATTENTION ?? 'auto',
};
mkdirSync(RESULTS, { recursive: true });
writeFileSync(join(RESULTS, 'webgpu-attention.json'), JSON.stringify({ machine, rows }, null, 2) + '\n');
const md = [
  '## webgpu-attention: kiln fused attention vs tfjs-backend-webgpu (matMul, softmax, matMul)',
  '',
  `${machine.date.slice(0, 10)}, adapter ${machine.adapter} via ${machine.via} (workgroup memory ${machine.workgroupStorage} B, layout ${machine.attentionLayout}); ${machine.cpu}, ${machine.cores} cores (LP_NUM_THREADS=${machine.lpNumThreads}); Node ${machine.node}; @tensorflow/tfjs-backend-webgpu ${machine.tfjsWebgpu}.`,
  `Chained: ${CHAIN} calls back to back and one readback of the last, ms per call; single: one call and its readback. Medians, kiln and tfjs timed in alternation; ratio = tfjs time / kiln time (>1: kiln faster). GFLOP/s: 2 (dk + dv) per visible (query, key) pair, from the chained time. kiln also writes logSumExp; tfjs materialises the [Tq, S] scores.`,
  '',
  '| B×H | Tq | S | dk/dv | mask | kiln ms (chained) | kiln GFLOP/s | tfjs ms (chained) | tfjs GFLOP/s | ratio (chained) | kiln ms (single) | tfjs ms (single) | ratio (single) | max diff |',
  '| --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...rows.map((r) => `| ${r.B}×${r.H} | ${r.Tq} | ${r.S} | ${r.dk}/${r.dv} | ${r.mask} | ${r.kilnChainMs.toFixed(2)} | ${gf(r.kilnGflops)} | ${r.tfjsChainMs.toFixed(2)} | ${gf(r.tfjsGflops)} | **${r.chainRatio.toFixed(2)}x** | ${r.kilnMs.toFixed(2)} | ${r.tfjsMs.toFixed(2)} | ${r.ratio.toFixed(2)}x | ${r.maxDiff.toExponential(1)} |`),
  '',
];
writeFileSync(join(RESULTS, 'webgpu-attention.md'), md.join('\n'));
console.log('\n' + md.join('\n'));
await kiln.close();
process.exit(0);
