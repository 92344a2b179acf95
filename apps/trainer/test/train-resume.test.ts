import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isKilnError } from '../src/errors.js';
import { ConfigMismatchError, loadLatestSnapshot } from '../src/train/snapshot.js';
import { runTraining, type TrainRunOptions } from '../src/train/trainer.js';
import { useCpuBackendForTests, useTempDirForTests } from './helpers.js';

const cpuBackend = useCpuBackendForTests();
const tempDir = useTempDirForTests('kiln-resume-');

const N = 3;
const base = (out: string, extra: Partial<TrainRunOptions> = {}): TrainRunOptions => ({
  preset: 'micro',
  backend: cpuBackend(),
  out,
  cacheDir: join(tempDir(), 'cache'),
  progress: 'none',
  baseline: false,
  ...extra,
  overrides: { steps: 2 * N, evalBytes: 2000, ...(extra.overrides ?? {}) },
});

function bitsOf(data: Float32Array | Uint16Array | Int32Array): Uint32Array | Uint16Array | Int32Array {
  return data instanceof Float32Array ? new Uint32Array(data.buffer, data.byteOffset, data.length) : data;
}

describe('checkpoint and resume (CPU backend)', () => {
  it(`${2 * N} steps straight and ${N} + resume + ${N} give bit-identical weights, optimizer state and data position`, async () => {
    const straight = join(tempDir(), 'straight');
    const split = join(tempDir(), 'split');
    await runTraining(base(straight));
    const first = await runTraining(base(split, { stopAfter: N }));
    expect(first.stopped).toBe(true);
    expect(first.step).toBe(N);
    expect(first.val).toBeUndefined();
    const resumed = await runTraining(base(split, { resume: true }));
    expect(resumed.stopped).toBe(false);
    expect(resumed.step).toBe(2 * N);
    const run = JSON.parse(readFileSync(join(split, 'run.json'), 'utf8'));
    expect(run.resumedFrom).toBe(N);
    expect(run.result.stepsThisInvocation).toBe(N);

    const a = (await loadLatestSnapshot(straight))!;
    const b = (await loadLatestSnapshot(split))!;
    expect(a.step).toBe(2 * N);
    expect(b.step).toBe(2 * N);
    expect([...b.tensors.keys()].sort()).toEqual([...a.tensors.keys()].sort());
    const names = [...a.tensors.keys()];
    expect(names.some((n) => n.endsWith('e_score_correction_bias'))).toBe(true);
    expect(names.some((n) => n.startsWith('optim/m/'))).toBe(true);
    for (const name of names) {
      const x = a.tensors.get(name)!;
      const y = b.tensors.get(name)!;
      expect(y.shape, name).toEqual(x.shape);
      expect(Array.from(bitsOf(y.data)), name).toEqual(Array.from(bitsOf(x.data)));
    }
    // the bias did move (balancing ran) and the weights did change from their initialisation
    const bias = a.tensors.get('model/model.layers.1.mlp.gate.e_score_correction_bias')!.data as Float32Array;
    expect(bias.some((v) => v !== 0)).toBe(true);
    expect((b.state as { stream: unknown }).stream).toEqual((a.state as { stream: unknown }).stream);
    expect((b.state as { adamw: { step: number } }).adamw.step).toBe(2 * N);

    // metrics.jsonl of the split run: every step once, losses equal to the straight run's
    const lines = (d: string) =>
      readFileSync(join(d, 'metrics.jsonl'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { type: string; step: number; loss: number; bpb?: number });
    const la = lines(straight).filter((l) => l.type === 'train');
    const lb = lines(split).filter((l) => l.type === 'train');
    expect(lb.map((l) => l.step)).toEqual(la.map((l) => l.step));
    expect(lb.map((l) => l.loss)).toEqual(la.map((l) => l.loss));
    expect(resumed.val!.bpb).toBe(lines(straight).find((l) => l.type === 'val')!.bpb);
  });

  it('refuses to resume against a different config, with a typed error naming the field', async () => {
    const split = join(tempDir(), 'split');
    let err: unknown;
    try {
      await runTraining(base(split, { resume: true, overrides: { steps: 2 * N, evalBytes: 2000, lr: 0.5 } }));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigMismatchError);
    expect(isKilnError(err)).toBe(true);
    expect((err as ConfigMismatchError).field).toBe('train.lr');
    await expect(runTraining(base(split, { resume: true, configJson: { model: { hidden_size: 48 } } }))).rejects.toThrow(/model\.hidden_size/);
    // runtime-only settings may change
    const again = await runTraining(base(split, { resume: true, overrides: { steps: 2 * N, evalBytes: 1000, logEvery: 3 } }));
    expect(again.step).toBe(2 * N);
    // no checkpoint at all
    await expect(runTraining(base(join(tempDir(), 'empty'), { resume: true }))).rejects.toThrow(/no checkpoint/);
  });
});
