// Helpers shared by the FP8 benchmarks (bench/fp8-*.bench.mjs): loading kiln, machine
// description, timing, writing results. Same conventions as bench/gemm-cpu.bench.mjs.
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const benchDir = join(dirname(fileURLToPath(import.meta.url)), '..');
export const repoDir = join(benchDir, '..');

/**
 * kiln's public API with the CPU backend active: the built @kiln/core and @kiln/backend-cpu,
 * or, with KILN_BENCH_FP8_MODULE set, one module that exports both (a local bundle of the
 * sources, for trying a kernel change without rebuilding the packages).
 */
export async function loadKiln() {
  const override = process.env.KILN_BENCH_FP8_MODULE;
  let k;
  if (override) {
    k = await import(pathToFileURL(override).href);
  } else {
    const core = await import('@kiln/core');
    const cpu = await import('@kiln/backend-cpu');
    k = { ...core, ...cpu };
  }
  await k.setBackend('cpu');
  return { k, source: override ? `${override} (KILN_BENCH_FP8_MODULE)` : '@kiln/core + @kiln/backend-cpu (built dist)' };
}

export function machineInfo() {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    availableParallelism: typeof os.availableParallelism === 'function' ? os.availableParallelism() : cpus.length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    node: process.version,
    v8: process.versions.v8,
    // other processes compete for the 2 cores of a shared machine: recorded, not corrected for
    loadAverage: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

export const machineLine = (m, date) =>
  `${date.slice(0, 10)} · ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB · Node ${m.node} (V8 ${m.v8}) · load average before the run ${m.loadAverage[0]}`;

function summarise(ts) {
  ts.sort((x, y) => x - y);
  const mid = ts.length >> 1;
  return { medianMs: ts.length % 2 ? ts[mid] : (ts[mid - 1] + ts[mid]) / 2, minMs: ts[0], reps: ts.length };
}

/**
 * Several contenders timed in alternation (one call each per round), so that a change of
 * machine load during the run is shared fairly between them. Median per contender.
 */
export function measureInterleaved(fns, { minReps = 7, maxReps = 30, budgetMs = 3000, warmup = 2 } = {}) {
  for (let i = 0; i < warmup; i++) for (const fn of fns) fn();
  const times = fns.map(() => []);
  const start = performance.now();
  while (times[0].length < maxReps && (times[0].length < minReps || performance.now() - start < budgetMs)) {
    fns.forEach((fn, i) => {
      const t = performance.now();
      fn();
      times[i].push(performance.now() - t);
    });
  }
  return times.map(summarise);
}

export function writeResults(name, result, md) {
  const dir = join(benchDir, 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${name}.json`), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(join(dir, `${name}.md`), md);
}

/** Relative error of got against a float64 reference: Σ|got − ref| / Σ|ref|, plus two other views. */
export function relativeError(got, ref) {
  let e1 = 0;
  let r1 = 0;
  let e2 = 0;
  let r2 = 0;
  const rel = new Float64Array(ref.length);
  for (let i = 0; i < ref.length; i++) {
    const e = Math.abs(got[i] - ref[i]);
    e1 += e;
    r1 += Math.abs(ref[i]);
    e2 += e * e;
    r2 += ref[i] * ref[i];
    rel[i] = ref[i] === 0 ? (e === 0 ? 0 : Infinity) : e / Math.abs(ref[i]);
  }
  rel.sort();
  return { l1: e1 / r1, frobenius: Math.sqrt(e2 / r2), medianElementwise: rel[rel.length >> 1] };
}
