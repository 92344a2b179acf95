/**
 * `kiln train` through the BUILT binary (dist/cli.js), as a user runs it. Build first
 * (`npm run setup`, or `cd apps/trainer && tsup` after building core and backend-cpu).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
let dir: string;

function kiln(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', cwd: dir, env: { ...process.env, KILN_DEBUG: '', KILN_CACHE_DIR: join(dir, 'cache') }, timeout: 300_000 });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: build first with \`npm run setup\``);
  dir = mkdtempSync(join(tmpdir(), 'kiln-train-cli-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('kiln train (built CLI)', () => {
  it('reports config errors naming the field, with exit code 1', () => {
    const a = kiln(['train', '--preset', 'huge']);
    expect(a.code).toBe(1);
    expect(a.stderr).toMatch(/^kiln: train: unknown preset "huge" \(presets: micro, tiny, small, base\)/);
    writeFileSync(join(dir, 'bad.json'), JSON.stringify({ model: { n_group: 3 } }));
    const b = kiln(['train', '--config', join(dir, 'bad.json')]);
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/model\.n_group \(3\) must divide model\.n_routed_experts \(8\)/);
    const c = kiln(['train', '--steps', 'many']);
    expect(c.code).not.toBe(0);
    expect(c.stderr).toMatch(/--steps must be an integer/);
  });

  it('trains the micro preset and prints validation BPB next to xz -9e with a verdict', () => {
    const out = join(dir, 'run');
    const r = kiln(['train', '--preset', 'micro', '--steps', '3', '--out', out, '--log-every', '1', '--progress', 'lines']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/step 3\/3 loss/);
    expect(r.stdout).toMatch(/validation: \d\.\d{4} bits\/byte/);
    expect(r.stdout).toMatch(/(xz -9e|lzma \(preset 9\))\s*: \d\.\d{4} bits\/byte/);
    expect(r.stdout).toMatch(/verdict: /);
    const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.type)).toEqual(['train', 'train', 'train', 'val']);
    const run = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8'));
    expect(run.result.val.bytes).toBe(20000); // the micro preset validates on a 20 kB prefix
    expect(existsSync(join(out, 'tokenizer.json'))).toBe(true);
    expect(existsSync(join(out, 'config.json'))).toBe(true);
  });

  it('Ctrl-C checkpoints and stops; --resume continues from there', async () => {
    const out = join(dir, 'interrupted');
    const child = spawn(process.execPath, [cli, 'train', '--preset', 'micro', '--steps', '400', '--out', out, '--log-every', '1', '--progress', 'lines'], {
      cwd: dir,
      env: { ...process.env, KILN_DEBUG: '', KILN_CACHE_DIR: join(dir, 'cache') },
    });
    let stdout = '';
    let sent = false;
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (!sent && /step 2\/400/.test(stdout)) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code).toBe(0);
    const m = /stopped at step (\d+)\/400, checkpoint saved/.exec(stdout);
    expect(m, stdout).not.toBeNull();
    const at = Number(m![1]);
    expect(stdout).toMatch(new RegExp(`interrupted at step ${at}`));
    expect(at).toBeLessThan(400);
    const r = kiln(['train', '--preset', 'micro', '--steps', '400', '--out', out, '--resume', '--stop-after', '1', '--progress', 'lines']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`resuming at step ${at}`));
    expect(r.stdout).toMatch(new RegExp(`stopped at step ${at + 1}/400`));
  });
});
