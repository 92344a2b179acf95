import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CheckpointError } from '../src/checkpoint/errors.js';
import {
  CheckpointDiskFullError,
  ConfigMismatchError,
  assertSameConfig,
  listSnapshotDirs,
  loadLatestSnapshot,
  loadSnapshot,
  saveSnapshot,
  type TrainingSnapshot,
} from '../src/train/snapshot.js';
// @ts-expect-error plain-JS fixture shared with the child process
import { makeSnapshot as makeSnapshotJs } from './fixtures/snapshot/data.mjs';
import { expectCheckpointError } from './helpers.js';

const makeSnapshot = makeSnapshotJs as (step: number, floats: number) => TrainingSnapshot;

let root: string;
let nextRun = 0;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'kiln-snap-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));
const newRun = () => join(root, `run${nextRun++}`);

function bytes(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Bit-exact equality of two snapshots (tensor order, dtypes, shapes, bytes, JSON). */
function expectSame(got: TrainingSnapshot | undefined, want: TrainingSnapshot): void {
  expect(got).toBeDefined();
  expect(got!.step).toBe(want.step);
  expect(got!.configJson).toEqual(want.configJson);
  expect(got!.state).toEqual(want.state);
  expect([...got!.tensors.keys()]).toEqual([...want.tensors.keys()]);
  for (const [name, w] of want.tensors) {
    const g = got!.tensors.get(name)!;
    expect(g.dtype, name).toBe(w.dtype);
    expect(g.shape, name).toEqual(w.shape);
    expect(g.data.constructor, name).toBe(w.data.constructor);
    expect(Buffer.compare(bytes(g.data), bytes(w.data)), name).toBe(0);
  }
}


const quiet = { onWarning: () => undefined };

describe('saveSnapshot / loadSnapshot', () => {
  it('round-trips bit-exactly, with the documented layout and manifest', async () => {
    const run = newRun();
    const snap = makeSnapshot(1234, 1000);
    const dir = await saveSnapshot(run, snap);
    expect(dir).toBe(join(run, 'checkpoints', 'step-00001234'));
    expect(readdirSync(dir).sort()).toEqual(['manifest.json', 'state.json', 'tensors.safetensors']);
    const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
    expect(manifest).toMatchObject({ format: 'kiln-training-snapshot', version: 1, step: 1234 });
    expect(manifest.files['tensors.safetensors'].bytes).toBe(readFileSync(join(dir, 'tensors.safetensors')).length);
    expect(manifest.files['state.json'].sha256).toMatch(/^[0-9a-f]{64}$/);
    expectSame(await loadSnapshot(dir), snap);
    expectSame(await loadLatestSnapshot(run), snap);
    // no temporary directories are left behind
    expect(readdirSync(join(run, 'checkpoints'))).toEqual(['step-00001234']);
  });

  it('loads f32/i32 tensors as aligned views even after odd-sized bf16 tensors', async () => {
    const run = newRun();
    const snap = makeSnapshot(3, 7);
    await saveSnapshot(run, snap);
    const got = (await loadLatestSnapshot(run))!;
    for (const t of got.tensors.values()) expect(t.data.byteOffset % t.data.BYTES_PER_ELEMENT).toBe(0);
  });

  it('returns undefined for a run without checkpoints', async () => {
    expect(await loadLatestSnapshot(newRun())).toBeUndefined();
  });

  it('keeps the last `keep` checkpoints (default 3) and replaces a re-saved step', async () => {
    const run = newRun();
    for (let s = 1; s <= 5; s++) await saveSnapshot(run, makeSnapshot(s, 10));
    expect((await listSnapshotDirs(run)).map((d) => d.step)).toEqual([3, 4, 5]);
    await saveSnapshot(run, makeSnapshot(6, 10), { keep: 1 });
    expect((await listSnapshotDirs(run)).map((d) => d.step)).toEqual([6]);
    const again = makeSnapshot(6, 20);
    await saveSnapshot(run, again);
    expectSame(await loadLatestSnapshot(run), again);
    expect(readdirSync(join(run, 'checkpoints'))).toEqual(['step-00000006']);
  });

  it('refuses malformed snapshots before writing anything', async () => {
    const run = newRun();
    const bad = makeSnapshot(1, 4);
    bad.tensors.set('x', { dtype: 'f32', shape: [3], data: new Float32Array(2) });
    await expect(saveSnapshot(run, bad)).rejects.toThrow(/'x'.*3 elements.*2/);
    bad.tensors.set('x', { dtype: 'bf16', shape: [2], data: new Float32Array(2) });
    await expect(saveSnapshot(run, bad)).rejects.toThrow(/'x'.*Uint16Array/);
    await expect(saveSnapshot(run, { ...makeSnapshot(1, 4), step: -1 })).rejects.toThrow(/step/);
    expect(await listSnapshotDirs(run)).toEqual([]);
  });
});

describe('corrupt and partial checkpoints', () => {
  async function twoCheckpoints(): Promise<{ run: string; one: TrainingSnapshot; dir2: string }> {
    const run = newRun();
    const one = makeSnapshot(1, 300);
    await saveSnapshot(run, one);
    const dir2 = await saveSnapshot(run, makeSnapshot(2, 300));
    return { run, one, dir2 };
  }

  it('skips a newer checkpoint with a flipped byte, with a warning naming the file and field', async () => {
    const { run, one, dir2 } = await twoCheckpoints();
    const p = join(dir2, 'tensors.safetensors');
    const buf = readFileSync(p);
    buf[buf.length - 100]! ^= 0x01;
    writeFileSync(p, buf);
    await expectCheckpointError(loadSnapshot(dir2), 'tensors.safetensors', /sha256/, /corrupt/);
    const warnings: string[] = [];
    const got = await loadLatestSnapshot(run, { onWarning: (m) => warnings.push(m) });
    expectSame(got, one);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/step-00000002.*tensors\.safetensors.*sha256/);
    expect(got!.warnings).toEqual(warnings);
  });

  it('skips a truncated file, a missing manifest, an invalid manifest and a newer format version', async () => {
    const cases: [string, (dir: string) => void, RegExp][] = [
      ['truncated state', (d) => truncateSync(join(d, 'state.json'), 5), /state\.json.*bytes/],
      ['missing manifest', (d) => rmSync(join(d, 'manifest.json')), /manifest\.json.*missing/],
      ['manifest not JSON', (d) => writeFileSync(join(d, 'manifest.json'), '{"format": "kiln-tr'), /manifest\.json.*not valid JSON/],
      [
        'newer version',
        (d) => {
          const m = JSON.parse(readFileSync(join(d, 'manifest.json'), 'utf8'));
          writeFileSync(join(d, 'manifest.json'), JSON.stringify({ ...m, version: 2 }));
        },
        /field version is 2.*newer kiln/,
      ],
      [
        'bad checksum field',
        (d) => {
          const m = JSON.parse(readFileSync(join(d, 'manifest.json'), 'utf8'));
          m.files['state.json'].sha256 = 'xyz';
          writeFileSync(join(d, 'manifest.json'), JSON.stringify(m));
        },
        /files\["state\.json"\]\.sha256/,
      ],
      ['missing tensors', (d) => rmSync(join(d, 'tensors.safetensors')), /tensors\.safetensors.*cannot open/],
    ];
    for (const [what, damage, message] of cases) {
      const { run, one, dir2 } = await twoCheckpoints();
      damage(dir2);
      await expectCheckpointError(loadSnapshot(dir2), message);
      const warnings: string[] = [];
      expectSame(await loadLatestSnapshot(run, { onWarning: (m) => warnings.push(m) }), one);
      expect(warnings.length, what).toBe(1);
    }
  });

  it('refuses a manifest whose step disagrees with its directory', async () => {
    const { dir2 } = await twoCheckpoints();
    const m = JSON.parse(readFileSync(join(dir2, 'manifest.json'), 'utf8'));
    writeFileSync(join(dir2, 'manifest.json'), JSON.stringify({ ...m, step: 7 }));
    await expectCheckpointError(loadSnapshot(dir2), /field step is 7.*step 2/);
  });

  it('returns undefined (with warnings) when no checkpoint verifies', async () => {
    const { run, dir2 } = await twoCheckpoints();
    rmSync(join(dir2, 'manifest.json'));
    rmSync(join(run, 'checkpoints', 'step-00000001', 'state.json'));
    const warnings: string[] = [];
    expect(await loadLatestSnapshot(run, { onWarning: (m) => warnings.push(m) })).toBeUndefined();
    expect(warnings).toHaveLength(2);
  });
});

describe('a full disk', () => {
  const enospc = (code: string, after: number) => {
    let written = 0;
    return async (h: import('node:fs/promises').FileHandle, d: Uint8Array, pos: number) => {
      if (written + d.length > after) throw Object.assign(new Error(`${code}: no space left on device, write`), { code });
      written += d.length;
      return (await h.write(d, 0, d.length, pos)).bytesWritten;
    };
  };

  for (const [code, after] of [['ENOSPC', 10_000], ['EDQUOT', 0], ['ENOSPC', 4_000_000]] as const) {
    it(`${code} after ${after} bytes: typed error, temp files removed, previous checkpoint intact`, async () => {
      const run = newRun();
      const one = makeSnapshot(1, 500);
      await saveSnapshot(run, one);
      const err = await expectCheckpointError(saveSnapshot(run, makeSnapshot(2, 1_100_000), { write: enospc(code, after) }), /disk is full/, code);
      expect(err).toBeInstanceOf(CheckpointDiskFullError);
      expect((err as CheckpointDiskFullError).code).toBe(code);
      expect(err.file).toMatch(/\.tmp-step-00000002-.*(tensors\.safetensors|state\.json|manifest\.json)$/);
      expect(readdirSync(join(run, 'checkpoints'))).toEqual(['step-00000001']);
      expectSame(await loadLatestSnapshot(run, quiet), one);
    });
  }

  it('a full disk while writing the manifest leaves no checkpoint behind', async () => {
    const run = newRun();
    const one = makeSnapshot(1, 50);
    await saveSnapshot(run, one);
    let files = 0;
    const write = async (h: import('node:fs/promises').FileHandle, d: Uint8Array, pos: number) => {
      if (pos === 0) files++;
      if (files === 3) throw Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' });
      return (await h.write(d, 0, d.length, pos)).bytesWritten;
    };
    const err = await expectCheckpointError(saveSnapshot(run, makeSnapshot(2, 50), { write }), /manifest\.json/);
    expect(err).toBeInstanceOf(CheckpointDiskFullError);
    expect(readdirSync(join(run, 'checkpoints'))).toEqual(['step-00000001']);
    expectSame(await loadLatestSnapshot(run, quiet), one);
  });
});

describe('assertSameConfig', () => {
  const cfg = { model: { hidden_size: 16, rope_scaling: { type: 'yarn', factor: 4 }, layers: [1, 2] }, train: { lr: 1e-3 } };
  it('accepts an equal config whatever the key order', () => {
    expect(() => assertSameConfig(cfg, { train: { lr: 1e-3 }, model: { layers: [1, 2], rope_scaling: { factor: 4, type: 'yarn' }, hidden_size: 16 } })).not.toThrow();
  });
  it('names the first differing field', () => {
    const check = (current: Record<string, unknown>, field: string, pattern: RegExp) => {
      let err: unknown;
      try {
        assertSameConfig(cfg, current, 'runs/a/checkpoints/step-00000010');
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigMismatchError);
      expect(err).toBeInstanceOf(CheckpointError);
      expect((err as ConfigMismatchError).field).toBe(field);
      expect((err as Error).message).toMatch(pattern);
      expect((err as Error).message).toContain('runs/a/checkpoints/step-00000010');
    };
    check({ ...cfg, model: { ...cfg.model, hidden_size: 32 } }, 'model.hidden_size', /'model\.hidden_size'.*has 16.*has 32/);
    check({ ...cfg, model: { ...cfg.model, rope_scaling: { type: 'yarn', factor: 8 } } }, 'model.rope_scaling.factor', /factor/);
    check({ ...cfg, model: { ...cfg.model, layers: [1, 3] } }, 'model.layers[1]', /layers\[1\]/);
    check({ ...cfg, model: { ...cfg.model, extra: true } }, 'model.extra', /absent/);
  });
});

// ---------------------------------------------------------------------------------------------
// SIGKILL mid-write: a child process (the BUILT trainer) is killed at several points of writing
// checkpoint 2; checkpoint 1 must then load bit-exactly (or checkpoint 2, once it is committed).

const child = fileURLToPath(new URL('./fixtures/snapshot/kill-child.mjs', import.meta.url));
const dist = fileURLToPath(new URL('../dist/index.js', import.meta.url));
const BIG = 3_000_000; // 12 MB of f32: three 4 MiB chunks

function killAt(run: string, point: string): Promise<{ signal: string | null; lines: string[] }> {
  return new Promise((resolve, reject) => {
    const race = point.startsWith('race:');
    const target = `at ${race ? point.slice(5) : point}`;
    const p = spawn(process.execPath, [child, run, point, String(BIG)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: string[] = [];
    let out = '';
    let err = '';
    p.stdout.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      let i;
      while ((i = out.indexOf('\n')) >= 0) {
        const line = out.slice(0, i);
        out = out.slice(i + 1);
        lines.push(line);
        if (line === target) p.kill('SIGKILL');
      }
    });
    p.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
    p.on('error', reject);
    p.on('close', (code, signal) => {
      if (signal !== 'SIGKILL' && code !== 0) reject(new Error(`child exited with ${code}: ${err}`));
      else resolve({ signal, lines });
    });
  });
}

describe('SIGKILL while writing a checkpoint (child process, built dist)', () => {
  beforeAll(() => {
    if (!existsSync(dist)) throw new Error(`${dist} is missing: build first with \`npm run setup\` (npm test does it for you)`);
    if (!readFileSync(dist, 'utf8').includes('saveSnapshot')) throw new Error(`${dist} predates saveSnapshot: rebuild with \`npm run setup\``);
  });

  const points: [string, number][] = [
    ['tensors:1', 1], // header written
    ['tensors:3', 1], // in the middle of the tensor data
    ['file-written', 1], // tensors.safetensors complete, state.json not yet
    ['manifest-written', 1], // all three files written, not yet renamed into place
    ['committed', 2], // renamed: checkpoint 2 exists
  ];
  for (const [point, want] of points) {
    it(`killed at "${point}": the newest complete checkpoint is step ${want}, bit-exact`, async () => {
      const run = newRun();
      const { signal, lines } = await killAt(run, point);
      expect(signal).toBe('SIGKILL');
      expect(lines).toContain('saved 1');
      expect(lines).not.toContain('saved 2');
      const expected = want === 1 ? makeSnapshot(1, 5000) : makeSnapshot(2, BIG);
      expectSame(await loadLatestSnapshot(run, quiet), expected);
      const names = readdirSync(join(run, 'checkpoints'));
      if (want === 1) {
        expect(names.filter((n) => n.startsWith('.tmp-step-00000002-'))).toHaveLength(1); // killed mid-save
        // The next save cleans the dead process's temporary directory up.
        await saveSnapshot(run, makeSnapshot(3, 10));
        expect(readdirSync(join(run, 'checkpoints')).sort()).toEqual(['step-00000001', 'step-00000003']);
      }
    });
  }

  it('killed without waiting (a real race): whatever survived loads bit-exactly', async () => {
    const run = newRun();
    const { lines } = await killAt(run, 'race:tensors:2');
    expect(lines).toContain('saved 1');
    const got = await loadLatestSnapshot(run, quiet);
    expectSame(got, got!.step === 2 ? makeSnapshot(2, BIG) : makeSnapshot(1, 5000));
  });
});
