#!/usr/bin/env node
// Training-step throughput on the CPU: kiln's CPU backend against PyTorch (transformers'
// DeepseekV3ForCausalLM) on the same CPU, in one run.
//
// The model is the `tiny` preset of @kiln/trainer (hidden 128, 2 layers: 1 dense + 1 MoE with 8
// routed experts top-2 in 4 groups and 1 shared expert, MLA with 4 heads, vocab 1024). One step is
// what `kiln train` does for one micro-batch: forward, cross-entropy, backward (valueAndGrads over
// every parameter but the routers' e_score_correction_bias), the gradients gathered to the host
// (GradAccumulator), AdamW (β 0.9/0.95, weight decay 0.1 on matrices, clipping at 1.0, FP32
// moments to match torch.optim.AdamW) and the new weights set in the model. The rows compared
// with PyTorch build the model without MTP (num_nextn_predict_layers 0: transformers has no MTP
// layers); one kiln-only row per batch keeps MTP D = 1 (λ 0.3), the step `kiln train` runs.
// Not timed on either side: the auxiliary-loss-free bias update and the sequence-wise balance
// loss (tiny's α = 1e-4), which the peer does not have.
//
// The peer (bench/peers/train_step_torch.py) gets the config.json this script builds
// (toConfigJson of the same parsed config), the same batch shapes and torch.set_num_threads(T)
// with T = kiln's GEMM thread count (KILN_CPU_THREADS, else the available parallelism). It runs
// when `python3 -c "import torch, transformers"` works; otherwise the peer is recorded as
// unavailable with the reason.
//
//   node bench/train-step.bench.mjs                      # kiln + peer (if available)
//   node bench/train-step.bench.mjs --write-config FILE  # write the peer's config.json and exit
// Environment: KILN_CPU_THREADS (threads, both sides), TRAIN_STEP_SHAPES (default "4x64,16x128"),
// TRAIN_STEP_PRECISIONS (default "fp32,bf16,fp8"), TRAIN_STEP_WARMUP (2), TRAIN_STEP_STEPS (6),
// TRAIN_STEP_MTP (1: add the fp32 MTP row; 0: skip it), TRAIN_STEP_PYTHON (python3),
// TRAIN_STEP_PEER (0: skip the peer), TRAIN_STEP_PEER_TIMEOUT (seconds, 300), TRAIN_STEP_RESULTS (results directory, default bench/results),
// TRAIN_STEP_MACHINE (a label for the machine line).
// Writes <results>/train-step.json and <results>/train-step.md and prints the table.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { machineInfo } from './lib/fp8-common.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');

// The built packages by path (bench/package.json does not depend on @kiln/trainer). These are the
// files the trainer's own `@kiln/core` / `@kiln/backend-cpu` imports resolve to (pnpm links them to
// packages/*), so there is one instance of each module.
const load = (p) => import(pathToFileURL(join(root, p)).href);
const core = await load('packages/core/dist/index.js');
const cpu = await load('packages/backend-cpu/dist/index.js');
// TRAIN_STEP_BACKEND=cuda runs kiln on @kiln/backend-cuda and the peer on the GPU in BF16.
const BACKEND = process.env.TRAIN_STEP_BACKEND ?? 'cpu';
if (BACKEND === 'cuda') await load('packages/backend-cuda/dist/index.js');
const trainer = await load('apps/trainer/dist/index.js');
const { crossEntropy, add, mul, setBackend, sliceAxis, tensor, valueAndGrads, nn } = core;
const { DeepseekV3ForCausalLM, parseDeepseekV3Config, resolveTrainConfig, modelConfigJson, toConfigJson, AdamW, GradAccumulator, DeviceAdamW, DeviceGradAccumulator, deviceOptimizerOf } = trainer;

const PRESET = process.env.TRAIN_STEP_PRESET ?? 'tiny';
const BIAS_SUFFIX = '.gate.e_score_correction_bias';
const LR = 1e-3;
const MTP_LAMBDA = 0.3;
const env = process.env;
const SHAPES = (env.TRAIN_STEP_SHAPES ?? '4x64,16x128').split(',').map((s) => s.split('x').map(Number));
const PRECISIONS = (env.TRAIN_STEP_PRECISIONS ?? 'fp32,bf16,fp8').split(',');
const WARMUP = Number(env.TRAIN_STEP_WARMUP ?? 2);
const STEPS = Number(env.TRAIN_STEP_STEPS ?? 6);
const WITH_MTP_ROW = env.TRAIN_STEP_MTP !== '0';
const PYTHON = env.TRAIN_STEP_PYTHON ?? 'python3';
const resultsDir = resolve(env.TRAIN_STEP_RESULTS ?? join(here, 'results'));

// ---------------------------------------------------------------------------------------
// config: the tiny preset, as `kiln train` builds it (vocab = tiny's vocabSize)
const cfg = resolveTrainConfig({ preset: PRESET });
const vocab = cfg.train.vocabSize;
function modelConfig(mtpDepth) {
  const json = modelConfigJson({ ...cfg, model: { ...cfg.model, num_nextn_predict_layers: mtpDepth } }, vocab);
  return parseDeepseekV3Config(json, `preset ${PRESET}`);
}
const peerConfigJson = toConfigJson(modelConfig(0));

const writeAt = process.argv.indexOf('--write-config');
if (writeAt >= 0) {
  const file = process.argv[writeAt + 1];
  if (!file) throw new Error('--write-config FILE');
  writeFileSync(file, `${JSON.stringify(peerConfigJson, null, 2)}\n`);
  console.log(`wrote ${file}`);
  process.exit(0);
}

// ---------------------------------------------------------------------------------------
const backend = await setBackend(BACKEND);
const onGpu = BACKEND !== 'cpu';
const gemm = onGpu ? { kernel: backend.device.details?.cublasLt ? `cuBLASLt ${backend.device.details.cublasLt} (f32), kiln FP8 ${backend.device.details.fp8Gemm}` : 'kiln CUDA kernels', threads: 1 } : cpu.gemmInfo();
const threads = gemm.threads;
const PEER_DTYPE = onGpu ? 'bf16' : 'fp32';

function ids(B, T, seed) {
  let s = seed >>> 0;
  const out = new Int32Array(B * (T + 1));
  for (let i = 0; i < out.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s % vocab;
  }
  return out;
}

const median = (xs) => {
  const t = [...xs].sort((a, b) => a - b);
  const m = t.length >> 1;
  return t.length % 2 ? t[m] : (t[m - 1] + t[m]) / 2;
};

async function kilnRow(B, T, precision, mtp) {
  const model = DeepseekV3ForCausalLM.create(modelConfig(mtp ? 1 : 0), { seed: 0 });
  const linears = nn.setLinearPrecision(model, precision, { exclude: (n) => n === 'lm_head' });
  const trained = new Map([...model.parameters()].filter(([n]) => !n.endsWith(BIAS_SUFFIX)));
  let parameters = 0;
  for (const p of trained.values()) parameters += p.size;
  const adamOptions = { beta1: 0.9, beta2: 0.95, weightDecay: 0.1, maxGradNorm: 1.0, momentDtype: 'f32' };
  // As `kiln train`: on a backend with a device optimizer the weights and moments stay on the GPU.
  const device = deviceOptimizerOf(backend);
  const opt = device ? await DeviceAdamW.create(trained, device, adamOptions) : await AdamW.create(trained, adamOptions);
  const data = ids(B, T, 1234);
  const losses = [];
  const step = async () => {
    const batch = tensor(data, [B, T + 1], 'i32');
    const params = Object.fromEntries([...model.parameters()].filter(([n]) => !n.endsWith(BIAS_SUFFIX)));
    const acc = device ? new DeviceGradAccumulator() : new GradAccumulator();
    try {
      const { value, grads } = valueAndGrads(() => {
        const inputs = sliceAxis(batch, 1, 0, T);
        const targets = sliceAxis(batch, 1, 1, T);
        if (!mtp) return crossEntropy(model.forward(inputs), targets);
        const { logits, mtpLogits } = model.forwardWithMtp(inputs);
        let extra = crossEntropy(mtpLogits[0], sliceAxis(batch, 1, 2, T - 1));
        extra = mul(extra, MTP_LAMBDA);
        return add(crossEntropy(logits, targets), extra);
      }, params);
      losses.push(value.valuesSync()[0]);
      value.dispose();
      await acc.add(new Map(Object.entries(grads)));
      for (const g of Object.values(grads)) g.dispose();
    } finally {
      batch.dispose();
    }
    const g = acc.take();
    const r = await opt.step(g, LR);
    if (device) for (const t of g.values()) t.dispose();
    if (!r.applied) throw new Error('kiln: a step was skipped (non-finite gradients)');
    for (const [name, p] of r.params) model.setParameter(name, p);
  };
  for (let i = 0; i < WARMUP; i++) await step();
  core.resetPeakMemory();
  const times = [];
  for (let i = 0; i < STEPS; i++) {
    const t0 = performance.now();
    await step();
    times.push(performance.now() - t0);
  }
  const peakBytes = core.memory().peakBytes;
  model.dispose();
  opt.dispose?.();
  const ms = median(times);
  return {
    batch: B, seqLen: T, tokens: B * T, precision, mtp: mtp ? 1 : 0, side: 'kiln',
    parameters, linearsAtPrecision: linears, peakTensorBytes: peakBytes,
    medianMs: ms, minMs: Math.min(...times), timesMs: times, tokensPerSec: (B * T) / (ms / 1000),
    firstLoss: losses[0], lastLoss: losses[losses.length - 1],
  };
}

// ---------------------------------------------------------------------------------------
// the peer
function runPeer() {
  if (env.TRAIN_STEP_PEER === '0') return { available: false, reason: 'skipped (TRAIN_STEP_PEER=0)' };
  const probe = spawnSync(PYTHON, ['-c', 'import torch, transformers'], { encoding: 'utf8', timeout: 120_000 });
  if (probe.error || probe.status !== 0) {
    const why = probe.error ? probe.error.message : (probe.stderr || '').trim().split('\n').pop();
    return { available: false, reason: `${PYTHON} -c "import torch, transformers" failed: ${why}` };
  }
  const tmp = mkdtempSync(join(os.tmpdir(), 'kiln-train-step-'));
  const configPath = join(tmp, 'config.json');
  writeFileSync(configPath, `${JSON.stringify(peerConfigJson, null, 2)}\n`);
  const args = [
    join(here, 'peers', 'train_step_torch.py'),
    '--config', configPath,
    '--threads', String(threads),
    '--shapes', SHAPES.map(([b, t]) => `${b}x${t}`).join(','),
    '--warmup', String(WARMUP),
    '--steps', String(STEPS),
    '--lr', String(LR),
    '--device', onGpu ? 'cuda' : 'cpu',
    '--dtype', PEER_DTYPE,
  ];
  const t0 = Date.now();
  const r = spawnSync(PYTHON, args, { encoding: 'utf8', timeout: Number(env.TRAIN_STEP_PEER_TIMEOUT ?? 300) * 1000, env: { ...env, ...(onGpu ? {} : { CUDA_VISIBLE_DEVICES: '' }), PYTHONUNBUFFERED: '1' } });
  rmSync(tmp, { recursive: true, force: true });
  if (r.stderr) process.stderr.write(r.stderr.split('\n').filter((l) => l.trim()).slice(-20).map((l) => `peer: ${l}\n`).join(''));
  const last = (r.stdout || '').trim().split('\n').pop();
  try {
    const out = JSON.parse(last);
    return { available: !out.error, ...(out.error ? { reason: `peer failed: ${out.error}` } : {}), seconds: (Date.now() - t0) / 1000, ...out };
  } catch {
    return { available: false, reason: `peer exited ${r.status ?? r.signal}${r.error ? ` (${r.error.message})` : ''}: ${(r.stderr || '').trim().split('\n').pop()}` };
  }
}

// ---------------------------------------------------------------------------------------
const machine = { ...machineInfo(), loadAverageBefore: os.loadavg()[0], label: env.TRAIN_STEP_MACHINE ?? null };
console.log(`kiln: ${backend.device.name}; GEMM ${gemm.kernel}, ${threads} thread(s); preset ${PRESET}, vocab ${vocab}; warm-up ${WARMUP}, timed ${STEPS} steps`);

const kilnRows = [];
for (const [B, T] of SHAPES) {
  const runs = PRECISIONS.map((p) => [p, false]);
  if (WITH_MTP_ROW) runs.push(['fp32', true]);
  for (const [precision, mtp] of runs) {
    const row = await kilnRow(B, T, precision, mtp);
    kilnRows.push(row);
    console.log(
      `kiln ${B}x${T} ${precision}${mtp ? ' +MTP' : ''}: ${row.medianMs.toFixed(1)} ms/step (min ${row.minMs.toFixed(1)}), ` +
        `${row.tokensPerSec.toFixed(0)} tokens/s, loss ${row.firstLoss.toFixed(4)} -> ${row.lastLoss.toFixed(4)}`,
    );
  }
}
cpu.disposeGemmPool?.();
if (onGpu) console.log(`kiln f32 GEMMs: ${JSON.stringify(backend.addon.matmulStats?.())}`);

const loadBeforePeer = os.loadavg()[0];
const peer = runPeer();
peer.loadAverageBefore = loadBeforePeer;
if (peer.available) {
  for (const r of peer.results ?? []) console.log(`torch ${r.batch}x${r.seqLen} ${PEER_DTYPE}: ${r.medianMs.toFixed(1)} ms/step, ${r.tokensPerSec.toFixed(0)} tokens/s, loss ${r.firstLoss.toFixed(4)} -> ${r.lastLoss.toFixed(4)}`);
} else console.log(`peer: unavailable: ${peer.reason}`);

const peerRow = (B, T) => (peer.available ? (peer.results ?? []).find((r) => r.batch === B && r.seqLen === T) : undefined);
for (const r of kilnRows) {
  // The peer runs fp32 on the CPU (compared with kiln fp32) and BF16 on the GPU (compared with every kiln precision).
  const p = (onGpu || r.precision === 'fp32') && !r.mtp ? peerRow(r.batch, r.seqLen) : undefined;
  if (p) {
    r.peerTokensPerSec = p.tokensPerSec;
    r.ratioVsPeer = r.tokensPerSec / p.tokensPerSec;
  }
}

const result = {
  benchmark: 'train-step',
  date: new Date().toISOString(),
  command: `${['KILN_CPU_THREADS', 'TRAIN_STEP_SHAPES', 'TRAIN_STEP_PRECISIONS', 'TRAIN_STEP_WARMUP', 'TRAIN_STEP_STEPS', 'TRAIN_STEP_MTP'].filter((k) => env[k] !== undefined).map((k) => `${k}=${env[k]} `).join('')}node bench/train-step.bench.mjs`,
  machine,
  kiln: { backend: backend.name, device: backend.device.name, gemm, threads },
  preset: PRESET,
  modelConfig: peerConfigJson,
  step: {
    what: 'forward (no MTP unless mtp=1), mean cross-entropy, backward over all parameters but e_score_correction_bias, AdamW (beta 0.9/0.95, eps 1e-8, weight decay 0.1 on >=2-D tensors, global-norm clipping 1.0, FP32 moments), lr 1e-3; the same token batch every step',
    kilnExtras: onGpu ? 'gradients accumulated and AdamW applied on the device (DeviceAdamW, as kiln train does on a GPU backend), new weights set in the model; no balancing bias update, no sequence-wise balance loss' : 'gradients copied to the host (GradAccumulator) and new weights set in the model, as in kiln train; no balancing bias update, no sequence-wise balance loss',
    warmup: WARMUP,
    timedSteps: STEPS,
    timing: 'median wall time of the timed steps; tokens/s = batch x seqLen / median',
  },
  peer,
  results: kilnRows,
};

const fmt = (x, d = 0) => x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
const peerCell = (r) => {
  if (r.ratioVsPeer !== undefined) return [`${fmt(r.peerTokensPerSec)} (${fmt(peerRow(r.batch, r.seqLen).medianMs, 1)} ms)`, `**${r.ratioVsPeer.toFixed(2)}×**`];
  if (r.precision === 'fp8' && !onGpu) return ['— (no CPU FP8)', '—'];
  if (r.precision === 'bf16') return ['— (not run)', '—'];
  if (r.mtp) return ['— (no MTP)', '—'];
  return ['unavailable', '—'];
};
const peerLine = peer.available
  ? `PyTorch ${peer.torch} (transformers ${peer.transformers}), ${onGpu ? `eager ${PEER_DTYPE} on ${peer.device}` : `${peer.threads} thread(s) (torch.set_num_threads)`}, attention \`${peer.attnImplementation}\`${peer.expertsImplementation ? `, experts \`${peer.expertsImplementation}\`` : ''}; ${fmt(peer.parameters)} trainable parameters.`
  : `PyTorch peer: **unavailable** — ${peer.reason}.`;
const md = [
  onGpu ? `## Training step, ${backend.device.name} (\`TRAIN_STEP_BACKEND=cuda node bench/train-step.bench.mjs\`)` : '## Training step, CPU (`bench/train-step.bench.mjs`)',
  '',
  `${result.date.slice(0, 10)} · ${machine.label ? `${machine.label}: ` : ''}${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB · Node ${machine.node} (V8 ${machine.v8}) · load average before the run ${machine.loadAverageBefore.toFixed(2)}`,
  '',
  `Preset \`${PRESET}\` (vocab ${vocab}); kiln: ${onGpu ? `CUDA backend (${gemm.kernel})` : `CPU backend, GEMM ${gemm.kernel} on ${threads} thread(s)`}; ${peerLine} ` +
    `Warm-up ${WARMUP} step(s), then the median of ${STEPS} timed steps on a fixed batch; tokens/s = B·T / median step time. ` +
    'A step: forward, cross-entropy, backward, AdamW (FP32 moments, clipping 1.0).',
  '',
  `| B×T | precision | MTP | kiln ms/step | kiln tokens/s | kiln peak tensor MiB | PyTorch${onGpu ? ' BF16' : ''} tokens/s | kiln / PyTorch |`,
  '| --- | --- | :-: | ---: | ---: | ---: | ---: | ---: |',
  ...kilnRows.map((r) => {
    const [pc, ratio] = peerCell(r);
    return `| ${r.batch}×${r.seqLen} | ${r.precision} | ${r.mtp ? 'D=1' : '—'} | ${fmt(r.medianMs, 1)} | ${fmt(r.tokensPerSec)} | ${fmt(r.peakTensorBytes / 2 ** 20, 1)} | ${pc} | ${ratio} |`;
  }),
  '',
  `Parameters trained: kiln ${fmt(kilnRows.find((r) => !r.mtp)?.parameters ?? 0)} without MTP` +
    (kilnRows.some((r) => r.mtp) ? `, ${fmt(kilnRows.find((r) => r.mtp).parameters)} with MTP D=1` : '') +
    (peer.available ? `; PyTorch ${fmt(peer.parameters)}` : '') +
    (onGpu
      ? `. Ratio > 1: kiln is faster. The peer is transformers' DeepseekV3ForCausalLM in eager BF16 on the same GPU (peak allocated ${peer.results?.map((r) => `${fmt(r.peakAllocatedBytes / 2 ** 20, 1)} MiB at ${r.batch}×${r.seqLen}`).join(', ') ?? '—'}); every kiln precision is compared with it. kiln's peak is its live tensor bytes (core's memory()), without the pool's cache.`
      : '. Ratio > 1: kiln is faster. PyTorch has no CPU FP8 matmul, so fp8 (and bf16) are kiln-only rows; transformers ignores MTP layers, so the MTP row is kiln-only.'),
  '',
].join('\n');

mkdirSync(resultsDir, { recursive: true });
writeFileSync(join(resultsDir, onGpu ? 'train-step-cuda.json' : 'train-step.json'), `${JSON.stringify(result, null, 2)}\n`);
writeFileSync(join(resultsDir, onGpu ? 'train-step-cuda.md' : 'train-step.md'), md);
console.log(`\n${md}`);
process.exit(0);
