import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MetricsError, readRunMetrics } from '../src/plot/metrics.js';
import { plotRuns, renderCharts, smooth } from '../src/plot/charts.js';
import { runPlot } from '../src/commands/plot.js';

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'kiln-plot-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A synthetic run: `steps` train lines (loss decaying, router loads per layer) and val lines. */
function makeRun(name: string, opts: { precision?: string; steps?: number; layers?: number[]; experts?: number; tail?: string; noRunJson?: boolean; val?: boolean } = {}): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  const steps = opts.steps ?? 30;
  const layers = opts.layers ?? [1, 2];
  const E = opts.experts ?? 8;
  const lines: string[] = [];
  for (let s = 1; s <= steps; s++) {
    const router = layers.map((layer) => {
      const load = Array.from({ length: E }, (_, e) => 10 + ((e * 7 + s * 3 + layer) % 11) + (e === 0 ? 40 / s : 0));
      const mean = load.reduce((a, b) => a + b, 0) / E;
      return { layer, load, maxOverMean: Math.max(...load) / mean, bias: load.map(() => 0) };
    });
    lines.push(JSON.stringify({ type: 'train', step: s, loss: 5 * Math.exp(-s / 10) + 1 + 0.1 * Math.sin(s), ceLoss: 4, mtpLoss: 0.5, balanceLoss: 0, lr: 1e-3, gradNorm: 1, skipped: false, tokens: s * 1000, tokensPerSec: 500, elapsedSec: s, router }));
    if ((opts.val ?? true) && s % 10 === 0) lines.push(JSON.stringify({ type: 'val', step: s, loss: 3, bpb: 3 - s / 30, tokens: 100, bytes: 350 }));
  }
  writeFileSync(join(dir, 'metrics.jsonl'), `${lines.join('\n')}\n${opts.tail ?? ''}`);
  if (!opts.noRunJson) writeFileSync(join(dir, 'run.json'), JSON.stringify({ precision: opts.precision ?? 'fp32', preset: 'tiny', config: {} }));
  return dir;
}

describe('readRunMetrics', () => {
  it('reads train and val lines, precision and preset', async () => {
    const r = await readRunMetrics(makeRun('read-a', { precision: 'bf16', steps: 20 }));
    expect(r).toMatchObject({ name: 'read-a', precision: 'bf16', preset: 'tiny' });
    expect(r.train).toHaveLength(20);
    expect(r.val.map((v) => v.step)).toEqual([10, 20]);
    expect(r.train[0]!.router).toHaveLength(2);
    expect(r.warnings).toEqual([]);
  });

  it('skips a truncated last line with a warning', async () => {
    const dir = makeRun('trunc', { steps: 5, tail: '{"type":"train","step":6,"loss":1.2,"rou' });
    const r = await readRunMetrics(dir);
    expect(r.train).toHaveLength(5);
    expect(r.warnings.join('\n')).toMatch(/metrics\.jsonl:6: the last line is incomplete/);
  });

  it('a malformed line elsewhere is a MetricsError naming the file and line', async () => {
    const dir = makeRun('bad', { steps: 3 });
    const p = join(dir, 'metrics.jsonl');
    const lines = readFileSync(p, 'utf8').split('\n');
    lines[1] = '{"type":"train","step":2,"loss":';
    writeFileSync(p, lines.join('\n'));
    const err = await readRunMetrics(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MetricsError);
    expect((err as MetricsError).file).toBe(p);
    expect((err as MetricsError).line).toBe(2);
    expect((err as Error).message).toContain(`${p}:2: not valid JSON`);

    lines[1] = '{"type":"train","step":"two","loss":1}';
    writeFileSync(p, lines.join('\n'));
    await expect(readRunMetrics(dir)).rejects.toThrow(/metrics\.jsonl:2: field step/);
    lines[1] = '{"type":"val","step":2,"loss":1,"bpb":"x"}';
    writeFileSync(p, lines.join('\n'));
    await expect(readRunMetrics(dir)).rejects.toThrow(/metrics\.jsonl:2: field bpb must be a number/);
    lines[1] = '{"type":"train","step":2,"loss":1,"router":[{"layer":1,"load":"x"}]}';
    writeFileSync(p, lines.join('\n'));
    await expect(readRunMetrics(dir)).rejects.toThrow(/metrics\.jsonl:2: field router\[0\]\.load/);
  });

  it('a missing metrics.jsonl or malformed run.json is a MetricsError; a missing run.json a warning', async () => {
    const empty = join(root, 'empty');
    mkdirSync(empty);
    await expect(readRunMetrics(empty)).rejects.toThrow(/metrics\.jsonl: missing/);
    const noRun = await readRunMetrics(makeRun('norun', { steps: 2, noRunJson: true }));
    expect(noRun.precision).toBeUndefined();
    expect(noRun.warnings.join()).toMatch(/run\.json is missing/);
    const dir = makeRun('badrun', { steps: 2 });
    writeFileSync(join(dir, 'run.json'), '{"precision": ');
    await expect(readRunMetrics(dir)).rejects.toThrow(MetricsError);
    await expect(readRunMetrics(dir)).rejects.toThrow(/run\.json: not valid JSON/);
  });
});

describe('charts', () => {
  it('smooth: debiased EMA, nulls skipped', () => {
    expect(smooth([2, 2, 2], 0.9)).toEqual([2, 2, 2].map(() => expect.closeTo(2, 12)));
    const s = smooth([1, null, 3], 0.5);
    expect(s[0]).toBeCloseTo(1, 12);
    expect(s[1]).toBeNull();
    expect(s[2]).toBeCloseTo((0.5 * 0.5 + 0.5 * 3) / 0.75, 12);
    expect(smooth([1, 5], 0)).toEqual([1, 5]);
  });

  it('renders the four charts as SVG with the runs as series', async () => {
    const a = await readRunMetrics(makeRun('chart-a', { precision: 'bf16' }));
    const b = await readRunMetrics(makeRun('chart-b', { precision: 'fp8', steps: 25, layers: [1, 2, 3] }));
    const { charts, notes } = await renderCharts([a, b]);
    expect(charts.map((c) => c.id)).toEqual(['loss', 'val-bpb', 'expert-load', 'expert-heatmap']);
    expect(notes).toEqual([]);
    for (const c of charts) expect(c.svg.startsWith('<svg')).toBe(true);
    const [loss, val, load, heat] = charts;
    for (const c of [loss!, val!, load!]) {
      expect(c.svg).toContain('chart-a (bf16)');
      expect(c.svg).toContain('chart-b (fp8)');
    }
    expect(loss!.svg).toContain('Training loss');
    expect(val!.svg).toContain('bits per byte');
    expect(load!.svg).toContain('worst layer');
    expect(heat!.svg).toContain('chart-a (bf16)');
    expect(heat!.svg).toContain('layer 2 · expert 7');
    // one path per run for the smoothed curve plus the faint raw ones
    expect((loss!.svg.match(/<path/g) ?? []).length).toBeGreaterThanOrEqual(4);
  });

  it('the heat map follows --heatmap-run and bins long runs', async () => {
    const a = await readRunMetrics(makeRun('hm-a'));
    const b = await readRunMetrics(makeRun('hm-b', { steps: 200, layers: [5], experts: 4 }));
    const { charts } = await renderCharts([a, b], { heatmapRun: 'hm-b', heatmapColumns: 10 });
    const heat = charts.find((c) => c.id === 'expert-heatmap')!;
    expect(heat.svg).toContain('hm-b (fp32)');
    expect(heat.svg).toContain('layer 5 · expert 3');
    expect(heat.svg).not.toContain('layer 1 · expert');
    expect(heat.svg).toContain('averaged over 10 step bins');
    expect((heat.spec as { data: { values: unknown[] } }).data.values).toHaveLength(10 * 4);
    await expect(renderCharts([a], { heatmapRun: 'nope' })).rejects.toThrow(/nope/);
  });

  it('leaves out charts without data, with a note', async () => {
    const r = await readRunMetrics(makeRun('noval', { val: false, layers: [] }));
    const { charts, notes } = await renderCharts([r]);
    expect(charts.map((c) => c.id)).toEqual(['loss']);
    expect(notes.join('\n')).toMatch(/validation/);
    expect(notes.join('\n')).toMatch(/router/);
  });
});

describe('plotRuns / kiln plot', () => {
  it('writes one SVG per chart into <first run>/plots by default, or FILE-<chart>.svg', async () => {
    const a = makeRun('out-a', { precision: 'bf16' });
    const b = makeRun('out-b');
    const { files } = await plotRuns([a, b]);
    expect(files.map((f) => f.slice(a.length + 1)).sort()).toEqual(['plots/expert-heatmap.svg', 'plots/expert-load.svg', 'plots/loss.svg', 'plots/val-bpb.svg']);
    expect(readFileSync(join(a, 'plots', 'loss.svg'), 'utf8')).toContain('out-b (fp32)');
    const svgOut = join(root, 'svgs', 'cmp.svg');
    const r = await runPlot([a, b], { out: svgOut }, false);
    expect(r.files.map((f) => f.split('/').pop()).sort()).toEqual(['cmp-expert-heatmap.svg', 'cmp-expert-load.svg', 'cmp-loss.svg', 'cmp-val-bpb.svg']);
  });

  it('writes a single HTML page with every chart, and reports truncated lines as notes', async () => {
    const a = makeRun('html-a', { precision: 'bf16', tail: '{"type":"val","ste' });
    const b = makeRun('html-b', { precision: 'fp32' });
    const out = join(root, 'report', 'runs.html');
    const { files, notes } = await runPlot([a, b], { out }, false);
    expect(files).toEqual([out]);
    expect(readdirSync(join(root, 'report'))).toEqual(['runs.html']);
    const html = readFileSync(out, 'utf8');
    expect(html.startsWith('<!doctype html>')).toBe(true);
    expect((html.match(/<svg/g) ?? []).length).toBe(4);
    expect(html).toContain('html-a (bf16)');
    expect(html).toContain('html-b (fp32)');
    expect(notes.join('\n')).toMatch(/html-a.*metrics\.jsonl.*incomplete/);
  });

  it('a malformed file fails the command with a typed error naming it', async () => {
    const a = makeRun('cmd-bad', { steps: 3 });
    writeFileSync(join(a, 'metrics.jsonl'), '{"type":"train","step":1,"loss":2}\nnot json\n{"type":"train","step":3,"loss":1}\n');
    await expect(runPlot([a], {}, false)).rejects.toThrow(/cmd-bad\/metrics\.jsonl:2: not valid JSON/);
  });
});

describe('kiln plot (built CLI)', () => {
  const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
  const kiln = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env, KILN_DEBUG: '' }, timeout: 120_000 });
  beforeAll(() => {
    if (!existsSync(cli)) throw new Error(`${cli} is missing: build first with \`npm run setup\` (npm test does it for you)`);
  });

  it('plots runs into one HTML page; a malformed file exits 1 naming the file and line', () => {
    const a = makeRun('cli-a', { precision: 'bf16' });
    const out = join(root, 'cli', 'page.html');
    const r = kiln(['plot', a, '--out', out, '--json']);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).files).toEqual([out]);
    expect(readFileSync(out, 'utf8')).toContain('cli-a (bf16)');
    writeFileSync(join(a, 'metrics.jsonl'), '{"type":"train","step":1,"loss":2}\n{oops\n{"type":"train","step":3,"loss":1}\n');
    const bad = kiln(['plot', a]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain(`${join(a, 'metrics.jsonl')}:2: not valid JSON`);
  });
});
