/**
 * Smoke tests of the BUILT `kiln` binary (dist/cli.js), run as a child process the way a user
 * runs it. `npm test` builds first (scripts/setup.mjs); under a bare `vitest`, run `npm run setup`.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { brownText } from '../src/data/brown.js';
import { BpeTokenizer, WordCounter, trainBpe } from '../src/tokenizer/bpe.js';

const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function kiln(args: string[], env: Record<string, string> = {}): Run {
  const r = spawnSync(process.execPath, [cli, ...args], {
    encoding: 'utf8',
    env: { ...process.env, KILN_DEBUG: '', ...env },
    timeout: 120_000,
  });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: build first with \`npm run setup\` (npm test does it for you)`);
});

describe('kiln CLI (built)', () => {
  it('--help lists the commands and exits 0', () => {
    const r = kiln(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Usage: kiln');
    expect(r.stdout).toMatch(/^\s+info\b/m);
    expect(r.stdout).toMatch(/^\s+demo\b/m);
  });

  it('logits and generate run a Hugging Face checkpoint', () => {
    const fixture = fileURLToPath(new URL('./fixtures/dsv3-noqlora-sharded', import.meta.url));
    const dir = mkdtempSync(join(tmpdir(), 'kiln-cli-'));
    const out = join(dir, 'logits.safetensors');
    const r = kiln(['logits', '--model', fixture, '--input', join(fixture, 'reference.safetensors'), '--out', out, '--backend', 'cpu']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/logits \[2, 10, 320\] f32 .* tokens\/s/);
    expect(existsSync(out)).toBe(true);
    cpSync(fixture, dir, { recursive: true });
    const counts = new WordCounter();
    counts.add(brownText('train').slice(0, 100_000));
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(new BpeTokenizer(trainBpe(counts.counts, { vocabSize: 320, minFrequency: 2 })).toHuggingFaceJson()));
    const g = kiln(['generate', '--model', dir, '--prompt', 'The jury', '--max-new-tokens', '5', '--temperature', '0.8', '--seed', '3']);
    expect(g.stderr).toBe('');
    expect(g.code).toBe(0);
    expect(g.stdout.startsWith('The jury')).toBe(true);
    expect(g.stdout).toMatch(/decode [\d.]+ tokens\/s on cpu; KV cache 32 values\/token\/layer/);
    const bad = kiln(['generate', '--model', dir, '--prompt', 'x', '--top-p', '2']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/--top-p must be a number/);
  });

  it('--version prints the package version', () => {
    const r = kiln(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(pkg.version);
  });

  it('info --json reports the CPU backend as available, with a device name', () => {
    const r = kiln(['info', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as {
      backends: { name: string; available: boolean; device?: string; accelerated?: boolean; notPreferred?: string; installed: boolean; reason?: string }[];
      best: { name: string; device: string } | null;
      system: { node: string; cores: number };
      memory: { tensors: number };
    };
    const cpu = report.backends.find((b) => b.name === 'cpu');
    expect(cpu, JSON.stringify(report.backends)).toBeDefined();
    expect(cpu!.available, cpu!.reason).toBe(true);
    expect(typeof cpu!.device).toBe('string');
    expect(cpu!.device!.length).toBeGreaterThan(0);
    // Every known backend package shows up, installed or not.
    for (const name of ['cuda', 'webgpu', 'gpujs']) expect(report.backends.map((b) => b.name)).toContain(name);
    for (const b of report.backends) if (!b.installed) expect(b.reason).toBe('not installed');
    // A backend that works but is passed over says why (WebGPU on a software adapter such as
    // llvmpipe); machines without an adapter simply have no such entry.
    for (const b of report.backends) {
      if (b.notPreferred !== undefined) expect(b.available).toBe(true);
      if (b.name === 'webgpu' && b.available && b.accelerated === false) expect(b.notPreferred).toMatch(/^software adapter \(.+\): the CPU backend is faster$/);
    }
    // ...and is picked only when nothing else initialises
    if (report.backends.find((b) => b.name === report.best?.name)?.notPreferred) {
      expect(report.backends.filter((b) => b.available && b.notPreferred === undefined)).toEqual([]);
    }
    expect(report.best).not.toBeNull();
    expect(report.system.node).toBe(process.version);
    expect(report.system.cores).toBeGreaterThan(0);
    expect(report.memory.tensors).toBe(0);
  });

  it('info prints the backend table and the pick of bestAvailableBackend()', () => {
    const r = kiln(['info']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^cpu\s+\S+\s+\d+\s+yes\s+\S/m);
    // the reason column of an available backend that is passed over: "not preferred: ..."
    const json = JSON.parse(kiln(['info', '--json']).stdout) as { backends: { name: string; notPreferred?: string }[] };
    for (const b of json.backends) {
      if (b.notPreferred === undefined) continue;
      const row = r.stdout.split('\n').find((l) => l.startsWith(`${b.name} `));
      expect(row, r.stdout).toMatch(/\syes\s/);
      expect(row).toContain(`not preferred: ${b.notPreferred}`);
    }
    expect(r.stdout).toMatch(/^Best available backend: \w+ \(/m);
    expect(r.stdout).toContain('kiln memory: 0 tensors');
  });

  it('demo --size 64 runs a checked GEMM and frees every tensor', () => {
    const r = kiln(['demo', '--size', '64', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as { size: number; gflops: number; maxRelError: number; ok: boolean; checked: number; memoryAfter: { tensors: number; bytes: number } };
    expect(result.size).toBe(64);
    expect(result.ok).toBe(true);
    expect(result.checked).toBeGreaterThan(0);
    expect(result.maxRelError).toBeLessThan(1e-5);
    expect(result.gflops).toBeGreaterThan(0);
    expect(result.memoryAfter).toMatchObject({ tensors: 0, bytes: 0 });

    const text = kiln(['demo', '--size', '64']);
    expect(text.code, text.stderr).toBe(0);
    const err = /max rel error\s+(\S+)/.exec(text.stdout);
    expect(err, text.stdout).not.toBeNull();
    expect(Number(err![1])).toBeLessThan(1e-5);
    expect(text.stdout).toMatch(/GFLOP\/s/);
    expect(text.stdout).toContain('memory after   0 tensors');
  });

  it('an unknown command fails with a message and the usage', () => {
    const r = kiln(['frobnicate']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("unknown command 'frobnicate'");
    expect(r.stderr).toContain('Usage: kiln');
  });

  it('an unknown option or a bad value fails with a message', () => {
    const bad = kiln(['info', '--no-such-option']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain("unknown option '--no-such-option'");
    const size = kiln(['demo', '--size', 'big']);
    expect(size.code).not.toBe(0);
    expect(size.stderr).toContain('size must be an integer');
  });

  it('a KilnError prints its message without a stack, unless --verbose or KILN_DEBUG=1', () => {
    const r = kiln(['demo', '--backend', 'no-such-backend', '--size', '8']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^kiln: .*no-such-backend/);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    const verbose = kiln(['demo', '--backend', 'no-such-backend', '--size', '8', '--verbose']);
    expect(verbose.code).toBe(1);
    expect(verbose.stderr).toMatch(/^\s+at /m);
    const debug = kiln(['demo', '--backend', 'no-such-backend', '--size', '8'], { KILN_DEBUG: '1' });
    expect(debug.code).toBe(1);
    expect(debug.stderr).toMatch(/^\s+at /m);
  });
});
