import { mkdir } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { ArgumentError } from '@kiln/core';
import { writeFileAtomic } from '../checkpoint/atomic.js';
import { readRunMetrics, type RunMetrics } from './metrics.js';

export type ChartId = 'loss' | 'val-bpb' | 'expert-load' | 'expert-heatmap';

export interface Chart {
  id: ChartId;
  title: string;
  spec: TopLevelSpec;
  svg: string;
}

export interface PlotOptions {
  /** Exponential-moving-average weight for the loss curves, in [0, 1) (default 0.8; 0 = raw). */
  smoothing?: number;
  /** Run (directory name or label) whose expert-load heat map is drawn (default: the first with router data). */
  heatmapRun?: string;
  /** Most step columns in the heat map; steps are averaged into this many bins (default 80). */
  heatmapColumns?: number;
}

const WIDTH = 640;
const HEIGHT = 320;

/** One label per run: `name (precision)`, made unique when two runs share a name. */
export function runLabels(runs: RunMetrics[]): string[] {
  const labels = runs.map((r) => (r.precision ? `${r.name} (${r.precision})` : r.name));
  const seen = new Map<string, number>();
  return labels.map((l) => {
    const n = (seen.get(l) ?? 0) + 1;
    seen.set(l, n);
    return n > 1 ? `${l} #${n}` : l;
  });
}

/** Debiased exponential moving average (TensorBoard's smoothing); null/NaN values are left out. */
export function smooth(values: (number | null)[], weight: number): (number | null)[] {
  let acc = 0;
  let n = 0;
  return values.map((v) => {
    if (v === null || !Number.isFinite(v)) return null;
    acc = weight * acc + (1 - weight) * v;
    n++;
    return weight === 0 ? v : acc / (1 - weight ** n);
  });
}

/** The charts the runs have data for; `notes` says which were left out and why. */
export async function renderCharts(runs: RunMetrics[], options: PlotOptions = {}): Promise<{ charts: Chart[]; notes: string[] }> {
  const w = options.smoothing ?? 0.8;
  if (!(w >= 0 && w < 1)) throw new ArgumentError('plot', `smoothing must be in [0, 1), got ${w}`);
  const labels = runLabels(runs);
  const specs: { id: ChartId; title: string; spec: TopLevelSpec }[] = [];
  const notes: string[] = [];
  const color = { field: 'run', type: 'nominal', title: 'run', sort: labels, scale: { domain: labels }, legend: { labelLimit: 360, orient: 'bottom', columns: 1 } } as const;

  // 1. training loss, raw (faint) and smoothed
  const loss = runs.flatMap((r, i) => {
    const s = smooth(r.train.map((t) => t.loss), w);
    return r.train.map((t, j) => ({ run: labels[i], step: t.step, loss: t.loss, smoothed: s[j] })).filter((d) => d.loss !== null && Number.isFinite(d.loss));
  });
  if (loss.length) {
    const title = 'Training loss';
    specs.push({
      id: 'loss',
      title,
      spec: base(title, `smoothed: debiased EMA, weight ${w}; faint: per step`, {
        data: { values: loss },
        layer: [
          { mark: { type: 'line', opacity: 0.25, strokeWidth: 1 }, encoding: { x: stepX, y: { field: 'loss', type: 'quantitative', scale: { zero: false }, title: 'loss (nats/token)' }, color } },
          { mark: { type: 'line', strokeWidth: 2 }, encoding: { x: stepX, y: { field: 'smoothed', type: 'quantitative', scale: { zero: false } }, color } },
        ],
      }),
    });
  } else notes.push('no training steps with a loss: loss chart left out');

  // 2. validation bits per byte
  const val = runs.flatMap((r, i) => r.val.filter((v) => v.bpb !== null && Number.isFinite(v.bpb)).map((v) => ({ run: labels[i], step: v.step, bpb: v.bpb })));
  if (val.length) {
    const title = 'Validation bits per byte';
    specs.push({
      id: 'val-bpb',
      title,
      spec: base(title, 'lower is better; tokenizer-independent', {
        data: { values: val },
        mark: { type: 'line', point: true, strokeWidth: 2 },
        encoding: { x: stepX, y: { field: 'bpb', type: 'quantitative', scale: { zero: false }, title: 'bits per byte' }, color },
      }),
    });
  } else notes.push('no validation records: validation BPB chart left out');

  // 3. max/mean expert load per run: mean over MoE layers and the worst layer
  const load = runs.flatMap((r, i) =>
    r.train.flatMap((t) => {
      const v = t.router.map((e) => e.maxOverMean).filter((x) => Number.isFinite(x));
      if (!v.length) return [];
      return [
        { run: labels[i], step: t.step, value: v.reduce((a, b) => a + b, 0) / v.length, stat: 'mean over layers' },
        { run: labels[i], step: t.step, value: Math.max(...v), stat: 'worst layer' },
      ];
    }),
  );
  if (load.length) {
    const title = 'Expert load balance (max / mean load)';
    specs.push({
      id: 'expert-load',
      title,
      spec: base(title, '1 = perfectly balanced; solid: mean over MoE layers, dashed: worst layer', {
        layer: [
          {
            data: { values: load },
            mark: { type: 'line', strokeWidth: 1.5 },
            encoding: {
              x: stepX,
              y: { field: 'value', type: 'quantitative', title: 'max / mean expert load', scale: { zero: false } },
              color,
              strokeDash: { field: 'stat', type: 'nominal', title: null, scale: { domain: ['mean over layers', 'worst layer'], range: [[1, 0], [5, 3]] } },
            },
          },
          { data: { values: [{ y: 1 }] }, mark: { type: 'rule', color: '#999', strokeDash: [2, 2] }, encoding: { y: { field: 'y', type: 'quantitative' } } },
        ],
      }),
    });
  } else notes.push('no router records: expert-load charts left out');

  // 4. heat map of one run: expert load relative to the layer's mean, layer x expert over steps
  const hm = heatmap(runs, labels, options, notes);
  if (hm) specs.push(hm);

  const charts: Chart[] = [];
  for (const s of specs) charts.push({ ...s, svg: await toSvg(s.spec) });
  return { charts, notes };
}

const stepX = { field: 'step', type: 'quantitative', title: 'step' } as const;

function base(title: string, subtitle: string, body: Record<string, unknown>): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: title, subtitle, anchor: 'start' },
    width: WIDTH,
    height: HEIGHT,
    background: 'white',
    padding: 12,
    ...body,
  } as TopLevelSpec;
}

function heatmap(runs: RunMetrics[], labels: string[], options: PlotOptions, notes: string[]): { id: ChartId; title: string; spec: TopLevelSpec } | undefined {
  let idx: number;
  if (options.heatmapRun !== undefined) {
    idx = runs.findIndex((r, i) => r.name === options.heatmapRun || labels[i] === options.heatmapRun);
    if (idx < 0) throw new ArgumentError('plot', `--heatmap-run ${JSON.stringify(options.heatmapRun)} is none of the runs (${labels.join(', ')})`);
  } else idx = runs.findIndex((r) => r.train.some((t) => t.router.length > 0));
  if (idx < 0) return undefined;
  const recs = runs[idx]!.train.filter((t) => t.router.length > 0);
  if (!recs.length) {
    notes.push(`run ${labels[idx]} has no router records: heat map left out`);
    return undefined;
  }
  const cols = Math.max(1, Math.min(options.heatmapColumns ?? 80, recs.length));
  // rows: (layer, expert) in order of first appearance of the layer
  const layers = [...new Set(recs.flatMap((t) => t.router.map((e) => e.layer)))].sort((a, b) => a - b);
  const experts = new Map<number, number>();
  for (const t of recs) for (const e of t.router) experts.set(e.layer, Math.max(experts.get(e.layer) ?? 0, e.load.length));
  const values: { step0: number; step1: number; row: string; rel: number }[] = [];
  const rows: string[] = [];
  for (const l of layers) for (let e = 0; e < experts.get(l)!; e++) rows.push(`layer ${l} · expert ${e}`);
  for (let c = 0; c < cols; c++) {
    const lo = Math.floor((c * recs.length) / cols);
    const hi = Math.floor(((c + 1) * recs.length) / cols);
    const group = recs.slice(lo, hi);
    const step0 = group[0]!.step;
    const step1 = hi < recs.length ? recs[hi]!.step : group[group.length - 1]!.step + 1;
    for (const l of layers) {
      const n = experts.get(l)!;
      const sum = new Float64Array(n);
      let count = 0;
      for (const t of group) {
        const e = t.router.find((r) => r.layer === l);
        if (!e) continue;
        const mean = e.load.reduce((a, b) => a + b, 0) / e.load.length;
        if (!(mean > 0)) continue;
        e.load.forEach((x, j) => (sum[j] += x / mean));
        count++;
      }
      if (!count) continue;
      for (let j = 0; j < n; j++) values.push({ step0, step1, row: `layer ${l} · expert ${j}`, rel: sum[j]! / count });
    }
  }
  const title = `Expert load heat map: ${labels[idx]}`;
  return {
    id: 'expert-heatmap',
    title,
    spec: base(title, `load / mean load of the layer${recs.length > cols ? `, averaged over ${cols} step bins` : ''}; 1 = balanced`, {
      height: Math.min(1600, Math.max(120, rows.length * 10)),
      data: { values },
      mark: { type: 'rect' },
      encoding: {
        x: { field: 'step0', type: 'quantitative', title: 'step' },
        x2: { field: 'step1' },
        y: { field: 'row', type: 'ordinal', sort: rows, title: null, axis: { labelFontSize: rows.length > 64 ? 6 : 10 } },
        color: { field: 'rel', type: 'quantitative', title: 'load / mean', scale: { scheme: 'viridis' } },
        tooltip: [{ field: 'row' }, { field: 'step0', title: 'from step' }, { field: 'rel', format: '.2f' }],
      },
    }),
  };
}

async function toSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/**
 * Reads the runs and writes their charts: `out` ending in `.html` gives one HTML page with every
 * chart; ending in `.svg` gives `<out minus .svg>-<chart>.svg`; anything else is a directory of
 * `<chart>.svg` (default: `<first run>/plots/`). Returns the files written.
 */
export async function plotRuns(runDirs: string[], options: PlotOptions & { out?: string } = {}): Promise<{ files: string[]; notes: string[]; runs: RunMetrics[] }> {
  if (!runDirs.length) throw new ArgumentError('plot', 'at least one run directory is needed');
  const runs: RunMetrics[] = [];
  for (const d of runDirs) runs.push(await readRunMetrics(d));
  const { charts, notes } = await renderCharts(runs, options);
  for (const r of runs) notes.unshift(...r.warnings);
  if (!charts.length) throw new ArgumentError('plot', `nothing to plot: ${notes.join('; ')}`);
  const out = options.out ?? join(runs[0]!.dir, 'plots');
  const files: string[] = [];
  const ext = extname(out).toLowerCase();
  if (ext === '.html' || ext === '.htm') {
    await mkdir(dirname(out), { recursive: true });
    await writeFileAtomic(out, new TextEncoder().encode(htmlPage(runs, runLabels(runs), charts, notes)));
    files.push(out);
  } else if (ext === '.svg') {
    await mkdir(dirname(out), { recursive: true });
    const stem = join(dirname(out), basename(out, extname(out)));
    for (const c of charts) {
      const f = `${stem}-${c.id}.svg`;
      await writeFileAtomic(f, new TextEncoder().encode(c.svg));
      files.push(f);
    }
  } else {
    await mkdir(out, { recursive: true });
    for (const c of charts) {
      const f = join(out, `${c.id}.svg`);
      await writeFileAtomic(f, new TextEncoder().encode(c.svg));
      files.push(f);
    }
  }
  return { files, notes, runs };
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function htmlPage(runs: RunMetrics[], labels: string[], charts: Chart[], notes: string[]): string {
  const items = runs.map((r, i) => `<li><b>${esc(labels[i]!)}</b>: ${esc(r.dir)}${r.preset ? `, preset ${esc(r.preset)}` : ''}, ${r.train.length} steps, ${r.val.length} validation passes</li>`);
  return [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8">',
    `<title>kiln: ${esc(labels.join(', '))}</title>`,
    '<style>body{font-family:system-ui,sans-serif;margin:24px;max-width:1000px} section{margin:24px 0} .notes{color:#666}</style>',
    '</head><body>',
    '<h1>kiln training runs</h1>',
    `<ul>${items.join('')}</ul>`,
    ...charts.map((c) => `<section id="${c.id}"><h2>${esc(c.title)}</h2>\n${c.svg}\n</section>`),
    notes.length ? `<ul class="notes">${notes.map((n) => `<li>${esc(n)}</li>`).join('')}</ul>` : '',
    '</body></html>',
    '',
  ].join('\n');
}
