/**
 * Data-parallel training (`kiln train --nproc`): the split arithmetic, the rank argv, and
 * two ranks training in step over the CPU collective (ranks on one thread), compared with one
 * process training the same batches. The NCCL path is the same code with another Collective.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCpuCollectiveGroup, joinCpuCollective } from '@kiln/backend-cpu';
import { ArgumentError } from '@kiln/core';
import { describe, expect, it } from 'vitest';
import { dataParallelPlan, launchDistributedTraining, rankArgv, runDistributedTraining } from '../src/train/distributed.js';
import { runTraining, type TrainMetrics, type TrainRunOptions } from '../src/train/trainer.js';
import { useCpuBackendForTests, useTempDirForTests } from './helpers.js';

const cpuBackend = useCpuBackendForTests();
const tempDir = useTempDirForTests('kiln-ddp-');

const trainLines = (dir: string): TrainMetrics[] =>
  readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as TrainMetrics)
    .filter((l) => l.type === 'train');

const run = (out: string, overrides: TrainRunOptions['overrides'], extra: Partial<TrainRunOptions> = {}): TrainRunOptions => ({
  preset: 'micro',
  backend: cpuBackend(),
  out,
  cacheDir: join(tempDir(), 'cache'),
  progress: 'none',
  baseline: false,
  overrides,
  ...extra,
});

/** Trains with 2 ranks on this thread; returns each rank's gradients as the optimizer saw them. */
async function twoRanks(out: string, overrides: TrainRunOptions['overrides']) {
  const group = createCpuCollectiveGroup(2);
  const grads: Map<string, Float32Array>[][] = [[], []];
  const results = await Promise.all(
    [0, 1].map((rank) =>
      runDistributedTraining(
        { ...run(out, overrides, { onGradients: (_s, g) => grads[rank].push(new Map([...g].map(([k, v]) => [k, v.slice()]))) }), backend: cpuBackend() },
        { collective: joinCpuCollective(group, rank, { timeoutMs: 60_000 }) },
      ),
    ),
  );
  return { results, grads };
}

describe('data parallel: arithmetic', () => {
  it('splits whole micro-batches when it can, else the rows of each', () => {
    expect(dataParallelPlan(4, 16, 2)).toEqual({ mode: 'micro-batches' });
    expect(dataParallelPlan(1, 16, 2)).toEqual({ mode: 'rows', rows: 8 });
    expect(() => dataParallelPlan(2, 6, 4)).toThrow(ArgumentError);
    expect(dataParallelPlan(3, 5, 1)).toEqual({ mode: 'micro-batches' });
  });

  it('ranks run the same command without --nproc and with one --out', () => {
    expect(rankArgv(['train', '--nproc', '2', '--backend', 'cuda'], 'runs/x')).toEqual(['train', '--backend', 'cuda', '--out', 'runs/x']);
    expect(rankArgv(['train', '--nproc=2', '--out', 'a'], 'runs/x')).toEqual(['train', '--out', 'a']);
    expect(rankArgv(['train', '--nproc', '2', '--resume'], undefined)).toEqual(['train', '--resume']);
  });

  it('--nproc needs --backend cuda', async () => {
    await expect(launchDistributedTraining({ nproc: 2, backend: 'cpu' })).rejects.toThrow(/needs --backend cuda/);
  });
});

describe('data parallel: 2 ranks over the CPU collective', () => {
  it('micro-batch split: the same updates as one process, identical on both ranks; only rank 0 writes', async () => {
    const overrides = { steps: 4, evalBytes: 2000 };
    const single = join(tempDir(), 'single');
    const ddp = join(tempDir(), 'ddp');
    const ref = await runTraining(run(single, overrides));
    const { results, grads } = await twoRanks(ddp, overrides);
    expect(results.map((r) => r.step)).toEqual([4, 4]);
    const a = trainLines(single);
    const b = trainLines(ddp); // rank 0 only: 4 lines, not 8
    expect(b.map((l) => l.step)).toEqual([0, 1, 2, 3]);
    for (let i = 0; i < 4; i++) {
      // Gradients are bit-identical to one process (mean of the 2 micro-batches, same f32 order), so is the norm.
      expect(b[i].gradNorm).toBe(a[i].gradNorm);
      expect(b[i].ceLoss).toBeCloseTo(a[i].ceLoss, 5); // losses travel as f32
      expect(b[i].router.map((r) => r.load)).toEqual(a[i].router.map((r) => r.load)); // loads summed over ranks
      expect(b[i].router.map((r) => r.bias)).toEqual(a[i].router.map((r) => r.bias));
      expect(b[i].tokens).toBe(a[i].tokens);
    }
    expect(results[0].val?.bpb).toBe(ref.val?.bpb);
    expect(results[1].val?.bpb).toBe(ref.val?.bpb);
    // Both ranks handed the optimizer the same gradients at every step.
    for (let s = 0; s < 4; s++) for (const [name, g] of grads[0][s]) expect(Array.from(grads[1][s].get(name)!)).toEqual(Array.from(g));
  });

  it('row split (one micro-batch per step): each rank trains on half the rows', async () => {
    const overrides = { steps: 2, batchTokens: 128, microBatch: 4, evalBytes: 2000 };
    const ref = await runTraining(run(join(tempDir(), 'single-rows'), overrides));
    const { results } = await twoRanks(join(tempDir(), 'ddp-rows'), overrides);
    const a = trainLines(join(tempDir(), 'single-rows'));
    const b = trainLines(join(tempDir(), 'ddp-rows'));
    expect(b).toHaveLength(2);
    // Mean of the two half-batch means = the full-batch mean (equal halves), up to float order.
    for (let i = 0; i < 2; i++) expect(b[i].ceLoss).toBeCloseTo(a[i].ceLoss, 4);
    expect(results[0].val!.bpb).toBeCloseTo(ref.val!.bpb, 3);
  });
});
