import { Command, InvalidArgumentError } from 'commander';
import { plotRuns, type PlotOptions } from '../plot/charts.js';
import { writeOut } from './shared.js';

export interface PlotCommandOptions extends PlotOptions {
  out?: string;
  json?: boolean;
}

/** `kiln plot`: charts of one or more runs' metrics.jsonl; returns the files written. */
export async function runPlot(runDirs: string[], options: PlotCommandOptions = {}, print = true): Promise<{ files: string[]; notes: string[] }> {
  const { files, notes, runs } = await plotRuns(runDirs, options);
  if (print) {
    if (options.json) await writeOut(`${JSON.stringify({ files, notes, runs: runs.map((r) => ({ name: r.name, dir: r.dir, precision: r.precision, preset: r.preset, steps: r.train.length, validations: r.val.length })) })}\n`);
    else await writeOut([...notes.map((n) => `note: ${n}`), ...files.map((f) => `wrote ${f}`), ''].join('\n'));
  }
  return { files, notes };
}

function fraction(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !(n >= 0 && n < 1)) throw new InvalidArgumentError(`--smooth must be a number in [0, 1), got ${JSON.stringify(value)}.`);
  return n;
}

function columns(value: string): number {
  const n = Number(value);
  if (!/^\s*\d+\s*$/.test(value) || n < 1) throw new InvalidArgumentError(`--heatmap-columns must be a positive integer, got ${JSON.stringify(value)}.`);
  return n;
}

export function plotCommand(): Command {
  return new Command('plot')
    .description('plot runs: smoothed loss, validation bits per byte, expert load balance and an expert-load heat map (SVG or one HTML page)')
    .argument('<run-dir...>', 'run directories (each with metrics.jsonl and run.json)')
    .option('--out <path>', 'FILE.html: one page with every chart; FILE.svg: FILE-<chart>.svg per chart; otherwise a directory of <chart>.svg (default: <first run>/plots/)')
    .option('--smooth <w>', 'EMA weight of the loss smoothing, in [0, 1) (default 0.8)', fraction)
    .option('--heatmap-run <name>', 'the run whose expert-load heat map is drawn (default: the first with router data)')
    .option('--heatmap-columns <n>', 'step bins of the heat map (default 80)', columns)
    .option('--json', 'print the result as JSON')
    .action(async (dirs: string[], opts: { out?: string; smooth?: number; heatmapRun?: string; heatmapColumns?: number; json?: boolean }) => {
      await runPlot(dirs, { out: opts.out, smoothing: opts.smooth, heatmapRun: opts.heatmapRun, heatmapColumns: opts.heatmapColumns, json: opts.json });
    });
}
