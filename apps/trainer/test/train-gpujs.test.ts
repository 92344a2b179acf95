/**
 * Training on the gpu.js backend (`kiln train --backend gpujs`): the package is loaded only on
 * request (never by `kiln info` or the default pick); a dense micro model trains on gpu.js with
 * the CPU backend's losses; MoE layers need Backend.readSync (the routing is read on the host
 * mid-forward): with it the micro preset trains too, without it a MoE model is refused up front. The gpu.js
 * part runs on whichever gpu.js engine starts (headless-gl under an X display, else headless
 * Chromium) and skips with the reason when neither does.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as k from '@kiln/core';
import { CpuBackend } from '@kiln/backend-cpu';
import { loadBackendPackages } from '../src/backends.js';
import { assertCanRoute, runTraining, type TrainMetrics, type TrainRunOptions } from '../src/train/trainer.js';
import { useTempDirForTests } from './helpers.js';

const tempDir = useTempDirForTests('kiln-train-gpujs-');

describe('the gpu.js backend in the trainer', () => {
  it('is not imported (so no engine or Chromium starts) unless asked for by name', async () => {
    const statuses = await loadBackendPackages();
    const gpujs = statuses.find((s) => s.backend === 'gpujs');
    expect(gpujs?.status).toBe('on request');
    expect(k.registeredBackends()).not.toContain('gpujs');
    expect(statuses.find((s) => s.backend === 'cpu')?.status).toBe('loaded');
  });

  it('a model with MoE layers on a backend without readSync is refused up front, with the dense config that works', () => {
    const noSync = { name: 'gpujs' } as k.Backend;
    const tiny = { firstKDenseReplace: 1, numHiddenLayers: 2, numNextnPredictLayers: 1 };
    expect(() => assertCanRoute(noSync, tiny)).toThrow(k.BackendError);
    expect(() => assertCanRoute(noSync, tiny)).toThrow(
      /^train: backend gpujs cannot read tensors synchronously \(Backend\.readSync\).*first_k_dense_replace 1 < 2 layers \+ 1 MTP.*\{"model": \{"first_k_dense_replace": 2\}\} and --mtp-depth 0$/,
    );
    // the MTP block is a MoE layer too: dense needs first_k_dense_replace = L and no MTP
    expect(() => assertCanRoute(noSync, { ...tiny, firstKDenseReplace: 2 })).toThrow(/2 < 2 layers \+ 1 MTP/);
    expect(() => assertCanRoute(noSync, { ...tiny, firstKDenseReplace: 2, numNextnPredictLayers: 0 })).not.toThrow();
    expect(() => assertCanRoute({ name: 'cpu', readSync: () => new Float32Array() } as unknown as k.Backend, tiny)).not.toThrow();
  });
});

describe('training on gpu.js (headless-gl or headless Chromium)', () => {
  let gpujs: k.Backend | undefined;
  let reason = '';
  const cpu = new CpuBackend();

  beforeAll(async () => {
    const { GpujsBackend } = await import('@kiln/backend-gpujs');
    try {
      gpujs = await GpujsBackend.create();
    } catch (e) {
      if (!(e instanceof k.BackendError)) throw e;
      reason = e.message;
      console.warn(`gpu.js training tests skipped: ${reason}`);
    }
  }, 120_000);

  afterAll(() => {
    gpujs?.dispose?.();
    cpu.dispose();
  });

  const losses = (runDir: string): number[] =>
    readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as TrainMetrics)
      .filter((l) => l.type === 'train')
      .map((l) => l.ceLoss);

  /** The micro preset made dense (no MoE layer, no MTP block), 3 steps, no validation. */
  const denseMicro = (backend: k.Backend, out: string): TrainRunOptions => ({
    preset: 'micro',
    configJson: { model: { first_k_dense_replace: 2 } },
    overrides: { mtpDepth: 0 },
    stopAfter: 3, // stops before train.steps: no final validation (minutes on SwiftShader)
    backend,
    out,
    cacheDir: join(tempDir(), 'cache'),
    progress: 'none',
    baseline: false,
  });

  it('a dense micro model trains 3 steps: finite losses equal to the CPU backend\'s within 2e-4 (relative), going down', async (t) => {
    if (!gpujs) return t.skip(reason);
    k.useBackend(cpu);
    const onCpu = await runTraining(denseMicro(cpu, join(tempDir(), 'cpu')));
    k.useBackend(gpujs);
    const onGpujs = await runTraining(denseMicro(gpujs, join(tempDir(), 'gpujs')));
    expect(onGpujs.backend).toBe('gpujs');
    expect(onGpujs.step).toBe(3);
    expect(onGpujs.skipped).toBe(0);
    const [a, b] = [losses(onCpu.runDir), losses(onGpujs.runDir)];
    expect(b).toHaveLength(3);
    for (let i = 0; i < 3; i++) {
      expect(Number.isFinite(b[i])).toBe(true);
      // same init (Philox on the host) and data order; f32 on both; the difference is summation
      // order in the GPU kernels, grown through two AdamW updates
      expect(Math.abs(b[i] - a[i]) / a[i], `step ${i + 1}: gpujs ${b[i]} vs cpu ${a[i]}`).toBeLessThanOrEqual(2e-4);
    }
    expect(b[2]).toBeLessThan(b[0]);
    console.log(`gpujs dense micro: ce ${b.map((x) => x.toFixed(5)).join(', ')} (cpu ${a.map((x) => x.toFixed(5)).join(', ')}), ${onGpujs.tokensPerSec.toFixed(1)} tokens/s (cpu ${onCpu.tokensPerSec.toFixed(0)})`);
  }, 600_000);

  // The micro preset as it is: 1 dense + 1 MoE layer and an MTP block (a MoE layer too).
  const moeMicro = (backend: k.Backend, out: string): TrainRunOptions => ({ ...denseMicro(backend, out), configJson: {}, overrides: {}, stopAfter: 2 });

  it('MoE: with readSync (the in-process headless-gl engine) the micro preset trains with the CPU\'s losses; without it (Chromium) a MoE model is refused before the corpus is built', async (t) => {
    if (!gpujs) return t.skip(reason);
    if (!gpujs.readSync) {
      k.useBackend(gpujs);
      const cacheDir = join(tempDir(), 'tiny-cache');
      await expect(runTraining({ preset: 'tiny', backend: gpujs, out: join(tempDir(), 'tiny'), cacheDir, progress: 'none', baseline: false })).rejects.toThrow(
        /cannot read tensors synchronously \(Backend\.readSync\)/,
      );
      expect(existsSync(cacheDir)).toBe(false); // refused before the tokenizer was trained
      return;
    }
    k.useBackend(cpu);
    const onCpu = await runTraining(moeMicro(cpu, join(tempDir(), 'moe-cpu')));
    k.useBackend(gpujs);
    const onGpujs = await runTraining(moeMicro(gpujs, join(tempDir(), 'moe-gpujs')));
    const [a, b] = [losses(onCpu.runDir), losses(onGpujs.runDir)];
    expect(b).toHaveLength(2);
    // routing is a top-k on the host of scores computed on the GPU: a near tie may pick another
    // expert than on the CPU, so the bound is looser than the dense model's
    for (let i = 0; i < 2; i++) expect(Math.abs(b[i] - a[i]) / a[i], `step ${i + 1}: gpujs ${b[i]} vs cpu ${a[i]}`).toBeLessThanOrEqual(1e-3);
    console.log(`gpujs MoE micro: ce ${b.map((x) => x.toFixed(5)).join(', ')} (cpu ${a.map((x) => x.toFixed(5)).join(', ')})`);
  }, 600_000);
});
