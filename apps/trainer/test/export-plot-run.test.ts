/**
 * Integration: a real (micro) training run's checkpoint exports to a Hugging Face directory whose
 * logits equal the trained model's, and its metrics plot.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as k from '@kiln/core';
import { CpuBackend } from '@kiln/backend-cpu';
import { exportHuggingFace, loadHuggingFaceModel, modelFromSnapshot } from '../src/export/hf-export.js';
import { runPlot } from '../src/commands/plot.js';
import { listSnapshotDirs, loadLatestSnapshot } from '../src/train/snapshot.js';
import { runTraining } from '../src/train/trainer.js';

let backend: CpuBackend;
let dir: string;
beforeAll(() => {
  backend = new CpuBackend();
  k.useBackend(backend);
  dir = mkdtempSync(join(tmpdir(), 'kiln-run-export-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  backend.dispose();
});

describe('a micro training run: export and plot', () => {
  it('exports the checkpoint (logits identical after reload) and plots the metrics', async () => {
    const run = join(dir, 'micro-run');
    await runTraining({ preset: 'micro', backend, out: run, cacheDir: join(dir, 'cache'), progress: 'none', baseline: false, overrides: { steps: 4, evalEvery: 2, evalBytes: 2000, checkpointEvery: 2 } });
    k.useBackend(backend);
    expect((await listSnapshotDirs(run)).map((s) => s.step)).toEqual([2, 4]);
    const snap = (await loadLatestSnapshot(run))!;
    expect(snap.step).toBe(4);
    const model = modelFromSnapshot(snap, run);
    const out = join(dir, 'hf');
    await exportHuggingFace(model, out, { tokenizerJson: join(run, 'tokenizer.json'), baseConfig: snap.configJson.model as Record<string, unknown> });
    const back = await loadHuggingFaceModel(out);
    const ids = k.tensor(Int32Array.from({ length: 16 }, (_, i) => (i * 37) % model.config.vocabSize), [2, 8], 'i32');
    const a = k.noGrad(() => model.forward(ids)).dataSync() as Float32Array;
    const b = k.noGrad(() => back.forward(ids)).dataSync() as Float32Array;
    expect(Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength))).toBe(0);
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'))).toMatchObject(snap.configJson.model as object);

    const { files } = await runPlot([run], { out: join(dir, 'plots.html') }, false);
    const html = readFileSync(files[0]!, 'utf8');
    expect((html.match(/<svg/g) ?? []).length).toBe(4);
    expect(html).toContain('micro-run (fp32)');
  });
});
