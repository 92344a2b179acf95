#!/usr/bin/env node
// Training-step throughput of `kiln train --backend gpujs` against `--backend cpu`, through the
// built CLI (apps/trainer/dist/cli.js), on this machine. Each row is one `kiln train` run with
// --stop-after N (so no final validation) in a fresh run directory; tokens/s per step comes
// from the run's metrics.jsonl, and the row reports the median over the steps after the first
// (the first step compiles the gpu.js kernels / warms the CPU pool).
//
// kiln's MoE layers need Backend.readSync (the routing is read on the host mid-forward); the
// gpu.js backend has it on its in-process headless-gl engine (an X display: run under
// xvfb-run) but not on its Chromium engine, where only dense models train. The default rows use
// the presets made dense (`first_k_dense_replace` = num_hidden_layers, --mtp-depth 0) on both
// backends, plus the real tiny preset on the CPU; add `tiny:gpujs:2` under headless-gl.
//
//   node bench/train-step-gpujs.bench.mjs
// Environment: TRAIN_GPUJS_ROWS (default "micro-dense:cpu:6,micro-dense:gpujs:4,tiny-dense:cpu:4,tiny:cpu:4,tiny-dense:gpujs:2"),
// TRAIN_GPUJS_RESULTS (results directory, default bench/results), TRAIN_GPUJS_TIMEOUT (seconds per run, 1500).
// Writes <results>/train-step-gpujs.json and .md and prints the table.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
const cli = join(root, 'apps/trainer/dist/cli.js');
const env = process.env;
const resultsDir = resolve(env.TRAIN_GPUJS_RESULTS ?? join(here, 'results'));
const timeoutS = Number(env.TRAIN_GPUJS_TIMEOUT ?? 1500);
const ROWS = (env.TRAIN_GPUJS_ROWS ?? 'micro-dense:cpu:6,micro-dense:gpujs:4,tiny-dense:cpu:4,tiny:cpu:4,tiny-dense:gpujs:2').split(',').map((r) => {
  const [model, backend, steps] = r.split(':');
  return { model, backend, steps: Number(steps) };
});

const tmp = mkdtempSync(join(os.tmpdir(), 'kiln-train-gpujs-bench-'));
const cacheDir = join(tmp, 'cache');
/** kiln train arguments of a model: a preset, or a preset made dense. */
function modelArgs(model) {
  const [preset, dense] = model.split('-');
  const cfg = { preset, ...(dense ? { model: { first_k_dense_replace: 2 } } : {}) };
  const file = join(tmp, `${model}.json`);
  writeFileSync(file, JSON.stringify(cfg));
  return { args: ['--config', file, ...(dense ? ['--mtp-depth', '0'] : [])], shown: dense ? `--config ${model}.json --mtp-depth 0` : `--preset ${preset}` };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN;
};

const rows = [];
for (const { model, backend, steps } of ROWS) {
  const out = join(tmp, `${model}-${backend}`);
  const { args, shown } = modelArgs(model);
  const argv = ['train', '--backend', backend, ...args, '--stop-after', String(steps), '--out', out, '--progress', 'lines', '--log-every', '1'];
  const env2 = { ...process.env, KILN_CACHE_DIR: cacheDir };
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [cli, ...argv], { env: env2, encoding: 'utf8', timeout: timeoutS * 1000 });
  const wall = (performance.now() - t0) / 1000;
  let metrics = [];
  try {
    metrics = readFileSync(join(out, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((m) => m.type === 'train');
  } catch {
    // no metrics: the run failed before its first step
  }
  const header = (r.stdout ?? '').split('\n').find((l) => l.startsWith('kiln train:')) ?? '';
  const row = {
    model,
    backend,
    command: `kiln train --backend ${backend} ${shown} --stop-after ${steps} --progress lines --log-every 1`,
    steps: metrics.length,
    tokensPerStep: metrics[0]?.tokens ?? null,
    stepSeconds: metrics.map((m, i) => (i === 0 ? m.elapsedSec : m.elapsedSec - metrics[i - 1].elapsedSec)),
    tokensPerSec: median(metrics.slice(1).map((m) => m.tokensPerSec)),
    firstStepTokensPerSec: metrics[0]?.tokensPerSec ?? null,
    ceLoss: metrics.map((m) => m.ceLoss),
    wallSeconds: Math.round(wall),
    device: header.replace(/^.*?, (cpu|gpujs) \((.*)\), fp32;.*$/, '$2'),
    error: r.status === 0 ? undefined : `exit ${r.status ?? r.signal}: ${((r.stderr ?? '') + (r.error?.message ?? '')).trim().split('\n').slice(-2).join(' ')}`,
  };
  rows.push(row);
  console.log(JSON.stringify(row));
}
rmSync(tmp, { recursive: true, force: true });

const load = os.loadavg().map((x) => x.toFixed(1)).join(' ');
const machine = `${os.cpus()[0]?.model ?? 'cpu'}, ${os.availableParallelism()} cores; Node ${process.version}; load average at the end ${load}`;
const fmt = (x, d = 1) => (x === null || Number.isNaN(x) ? '-' : x.toFixed(d));
const md = [
  '# kiln train: gpu.js (SwiftShader) against the CPU backend',
  '',
  `${new Date().toISOString().slice(0, 10)}, ${machine}. \`node bench/train-step-gpujs.bench.mjs\` (after \`pnpm build\`).`,
  'tokens/s: median over the steps after the first (the first compiles kernels); every run is fp32 with --stop-after (no validation).',
  '',
  '| model | backend | device | steps | tokens/step | tokens/s | first step tokens/s | step seconds | ce loss per step | note |',
  '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ...rows.map((r) => `| ${r.model} | ${r.backend} | ${r.device || '-'} | ${r.steps} | ${r.tokensPerStep ?? '-'} | ${fmt(r.tokensPerSec)} | ${fmt(r.firstStepTokensPerSec)} | ${r.stepSeconds.map((s) => s.toFixed(1)).join(', ')} | ${r.ceLoss.map((l) => l.toFixed(4)).join(', ')} | ${r.error ?? ''} |`),
  '',
  'Commands (`micro-dense.json` = `{"preset":"micro","model":{"first_k_dense_replace":2}}`, `tiny-dense.json` the same with `"preset":"tiny"`; both presets have 2 layers, so these are dense, and --mtp-depth 0 drops the MTP block, which is a MoE layer too):',
  '',
  ...rows.map((r) => `- \`${r.command}\``),
  '',
].join('\n');
mkdirSync(resultsDir, { recursive: true });
writeFileSync(join(resultsDir, 'train-step-gpujs.json'), `${JSON.stringify({ machine, rows }, null, 2)}\n`);
writeFileSync(join(resultsDir, 'train-step-gpujs.md'), md);
console.log(md);
