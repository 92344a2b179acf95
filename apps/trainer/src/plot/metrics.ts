import { readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { FormatError } from '@kiln/core';

/** A metrics.jsonl or run.json that cannot be read; names the file and (for JSONL) the line. */
export class MetricsError extends FormatError {
  readonly file: string;
  readonly line: number | undefined;
  constructor(file: string, message: string, line?: number) {
    super('plot', `${file}${line !== undefined ? `:${line}` : ''}: ${message}`);
    this.file = file;
    this.line = line;
  }
}

export interface RouterRecord {
  layer: number;
  load: number[];
  maxOverMean: number;
  bias?: number[];
}

export interface TrainRecord {
  step: number;
  /** null when the logged value was not a finite number (NaN/Inf are written as null). */
  loss: number | null;
  ceLoss?: number | null;
  lr?: number | null;
  skipped?: boolean;
  router: RouterRecord[];
}

export interface ValRecord {
  step: number;
  loss: number | null;
  bpb: number | null;
}

export interface RunMetrics {
  /** The run directory's name. */
  name: string;
  dir: string;
  precision?: string;
  preset?: string;
  train: TrainRecord[];
  val: ValRecord[];
  /** Things skipped while reading (a truncated last line, a missing run.json). */
  warnings: string[];
}

/**
 * Reads `RUN_DIR/metrics.jsonl` (lines `{"type":"train",...}` and `{"type":"val",...}`; other
 * types are ignored) and `RUN_DIR/run.json` (precision, preset). A last line that is cut off —
 * a run still writing, or killed mid-line — is skipped with a warning; any other malformed line
 * is a MetricsError naming the file and line.
 */
export async function readRunMetrics(runDir: string): Promise<RunMetrics> {
  const dir = resolve(runDir);
  const out: RunMetrics = { name: basename(dir), dir, train: [], val: [], warnings: [] };
  const runJson = join(dir, 'run.json');
  let runText: string | undefined;
  try {
    runText = await readFile(runJson, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new MetricsError(runJson, `cannot read the file (${(err as Error).message})`);
    out.warnings.push(`${runJson} is missing: precision and preset unknown`);
  }
  if (runText !== undefined) {
    let run: unknown;
    try {
      run = JSON.parse(runText);
    } catch (err) {
      throw new MetricsError(runJson, `not valid JSON (${(err as Error).message})`);
    }
    if (run === null || typeof run !== 'object' || Array.isArray(run)) throw new MetricsError(runJson, 'expected a JSON object');
    const r = run as Record<string, unknown>;
    if (r.precision !== undefined && typeof r.precision !== 'string') throw new MetricsError(runJson, `field precision must be a string, got ${JSON.stringify(r.precision)}`);
    if (r.preset !== undefined && typeof r.preset !== 'string') throw new MetricsError(runJson, `field preset must be a string, got ${JSON.stringify(r.preset)}`);
    out.precision = r.precision as string | undefined;
    out.preset = r.preset as string | undefined;
  }

  const path = join(dir, 'metrics.jsonl');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new MetricsError(path, (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing: not a kiln run directory, or the run has not logged a step yet' : `cannot read the file (${(err as Error).message})`);
  }
  const lines = text.split('\n');
  const complete = text.endsWith('\n');
  // Index of the last non-empty line: the only one allowed to be cut off.
  let last = lines.length - 1;
  while (last >= 0 && lines[last]!.trim() === '') last--;
  for (let i = 0; i <= last; i++) {
    const raw = lines[i]!;
    if (raw.trim() === '') continue;
    let rec: unknown;
    try {
      rec = JSON.parse(raw);
    } catch (err) {
      if (i === last && !complete) {
        out.warnings.push(`${path}:${i + 1}: the last line is incomplete (run still writing or interrupted); skipped`);
        break;
      }
      throw new MetricsError(path, `not valid JSON (${(err as Error).message})`, i + 1);
    }
    parseRecord(rec, path, i + 1, out);
  }
  return out;
}

function parseRecord(rec: unknown, file: string, line: number, out: RunMetrics): void {
  if (rec === null || typeof rec !== 'object' || Array.isArray(rec)) throw new MetricsError(file, 'expected a JSON object', line);
  const r = rec as Record<string, unknown>;
  if (r.type !== 'train' && r.type !== 'val') return; // other record kinds: not plotted
  const step = r.step;
  if (typeof step !== 'number' || !Number.isInteger(step) || step < 0) throw new MetricsError(file, `field step must be an integer >= 0, got ${JSON.stringify(step)}`, line);
  const num = (key: string, required: boolean): number | null | undefined => {
    const v = r[key];
    if (v === undefined) {
      if (required) throw new MetricsError(file, `field ${key} is missing`, line);
      return undefined;
    }
    if (v === null) return null;
    if (typeof v !== 'number') throw new MetricsError(file, `field ${key} must be a number, got ${JSON.stringify(v)}`, line);
    return v;
  };
  if (r.type === 'val') {
    out.val.push({ step, loss: num('loss', true) ?? null, bpb: num('bpb', true) ?? null });
    return;
  }
  const router: RouterRecord[] = [];
  if (r.router !== undefined) {
    if (!Array.isArray(r.router)) throw new MetricsError(file, 'field router must be an array', line);
    r.router.forEach((e: unknown, j) => {
      const where = `router[${j}]`;
      if (e === null || typeof e !== 'object') throw new MetricsError(file, `field ${where} must be an object`, line);
      const o = e as Record<string, unknown>;
      if (typeof o.layer !== 'number') throw new MetricsError(file, `field ${where}.layer must be a number`, line);
      if (!Array.isArray(o.load) || !o.load.every((x) => typeof x === 'number')) throw new MetricsError(file, `field ${where}.load must be an array of numbers`, line);
      const load = o.load as number[];
      let mom = o.maxOverMean;
      if (mom === undefined || mom === null) {
        const mean = load.reduce((a, b) => a + b, 0) / Math.max(1, load.length);
        mom = mean > 0 ? Math.max(...load) / mean : null;
      }
      if (mom !== null && typeof mom !== 'number') throw new MetricsError(file, `field ${where}.maxOverMean must be a number`, line);
      router.push({ layer: o.layer, load, maxOverMean: (mom as number | null) ?? Number.NaN, bias: Array.isArray(o.bias) ? (o.bias as number[]) : undefined });
    });
  }
  out.train.push({ step, loss: num('loss', true) ?? null, ceLoss: num('ceLoss', false), lr: num('lr', false), skipped: r.skipped === true, router });
}
