import {
  ArgumentError,
  BackendError,
  bestAvailableBackend,
  dispose,
  matmul,
  memory,
  randomNormal,
  setBackend,
  tidy,
  type Backend,
  type MemoryInfo,
  type Tensor,
} from '@kiln/core';
import { Command, Option } from 'commander';
import { loadBackendPackages } from '../backends.js';
import { formatFields } from '../format.js';
import { formatMemory } from './info.js';
import { disposeBackends, positiveInt, selectBackend, writeOut } from './shared.js';

export interface DemoOptions {
  /** N for an N x N x N GEMM. Default 1024. */
  readonly size?: number;
  /** Backend registry name; default: `bestAvailableBackend()`. */
  readonly backend?: string;
  /** Timed repetitions (the best is reported). Default 1. */
  readonly repeat?: number;
  /** Seed of the random inputs. Default 1. */
  readonly seed?: number;
  /** Output entries checked against a float64 dot product. Default 16. */
  readonly checks?: number;
}

export interface DemoResult {
  readonly backend: string;
  readonly device: string;
  readonly size: number;
  /** Best wall time of one GEMM including reading the result back, milliseconds. */
  readonly ms: number;
  /** 2 N^3 / time. */
  readonly gflops: number;
  /** Output entries checked. */
  readonly checked: number;
  /** max |c - ref| / sum_k |a_ik * b_kj| over the checked entries, ref in float64. */
  readonly maxRelError: number;
  /** Whether maxRelError is within tolerance (1e-4). */
  readonly ok: boolean;
  /** kiln memory after everything was disposed (0 tensors when nothing leaked). */
  readonly memoryAfter: MemoryInfo;
}

/** Tolerance on the relative error of an f32 GEMM (f32 rounding over K terms is far below). */
export const DEMO_TOLERANCE = 1e-4;

/** Deterministic positions to check: the four corners, then pseudo-random entries. */
function checkPositions(n: number, count: number, seed: number): [number, number][] {
  const out: [number, number][] = [
    [0, 0],
    [0, n - 1],
    [n - 1, 0],
    [n - 1, n - 1],
  ];
  let s = (seed * 2654435761) >>> 0 || 1;
  const next = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % n;
  };
  while (out.length < count) out.push([next(), next()]);
  return out.slice(0, count);
}

/**
 * Runs an f32 N x N x N GEMM of random normal inputs on the chosen (or best) backend, checks
 * entries against float64 dot products and disposes every tensor it made. The backend stays current.
 */
export async function runDemo(options: DemoOptions = {}): Promise<DemoResult> {
  const n = options.size ?? 1024;
  const repeat = options.repeat ?? 1;
  const seed = options.seed ?? 1;
  const checks = options.checks ?? 16;
  if (!Number.isSafeInteger(n) || n < 1) throw new ArgumentError('demo', `size must be a positive integer, got ${n}`);
  if (!Number.isSafeInteger(repeat) || repeat < 1) throw new ArgumentError('demo', `repeat must be a positive integer, got ${repeat}`);
  const backend = await selectBackend('demo', options.backend);

  // Warm-up: first use of a kernel may compile or start workers.
  const warm = Math.min(n, 64);
  const w = tidy(() => matmul(randomNormal([warm, warm], seed), randomNormal([warm, warm], seed + 1)));
  await w.data();
  w.dispose();

  const a = randomNormal([n, n], seed);
  const b = randomNormal([n, n], seed + 1);
  let c: Tensor | undefined;
  try {
    let best = Infinity;
    for (let r = 0; r < repeat; r++) {
      c?.dispose();
      const t0 = performance.now();
      c = matmul(a, b);
      await c.data();
      best = Math.min(best, performance.now() - t0);
    }
    const [av, bv, cv] = await Promise.all([a.values(), b.values(), c!.values()]);
    let maxRelError = 0;
    const positions = checkPositions(n, Math.min(checks, n * n), seed);
    for (const [i, j] of positions) {
      let ref = 0;
      let mag = 0;
      for (let k = 0; k < n; k++) {
        const p = av[i * n + k] * bv[k * n + j];
        ref += p;
        mag += Math.abs(p);
      }
      const err = Math.abs(cv[i * n + j] - ref) / (mag || 1);
      maxRelError = Math.max(maxRelError, Number.isNaN(err) ? Infinity : err);
    }
    dispose([a, b, c]);
    return {
      backend: backend.name,
      device: backend.device.name,
      size: n,
      ms: best,
      gflops: (2 * n ** 3) / (best * 1e6),
      checked: positions.length,
      maxRelError,
      ok: maxRelError <= DEMO_TOLERANCE,
      memoryAfter: memory(),
    };
  } finally {
    dispose([a, b, c]);
  }
}

export function formatDemo(r: DemoResult): string {
  return [
    `kiln demo: f32 GEMM ${r.size} x ${r.size} x ${r.size} on ${r.backend} (${r.device})`,
    formatFields([
      ['time', `${r.ms.toFixed(1)} ms`],
      ['throughput', `${r.gflops.toFixed(2)} GFLOP/s`],
      ['max rel error', `${r.maxRelError.toExponential(2)} over ${r.checked} entries vs float64 (tolerance ${DEMO_TOLERANCE}) ${r.ok ? 'ok' : 'FAILED'}`],
      ['memory after', formatMemory(r.memoryAfter)],
    ]),
  ].join('\n');
}

export function demoCommand(): Command {
  return new Command('demo')
    .description('run an f32 GEMM of random inputs on the best available (or the named) backend and check it')
    .addOption(new Option('-s, --size <n>', 'matrix size N of the N x N x N GEMM').argParser(positiveInt('size', 16384)).default(1024))
    .option('-b, --backend <name>', 'backend to use (default: the best available, see `kiln info`)')
    .addOption(new Option('-r, --repeat <n>', 'timed repetitions; the best time is reported').argParser(positiveInt('repeat', 1000)).default(1))
    .addOption(new Option('--seed <n>', 'seed of the random inputs').argParser(positiveInt('seed', 0xfffffffe)).default(1))
    .option('--json', 'print a JSON result instead of text')
    .action(async (opts: { size: number; backend?: string; repeat: number; seed: number; json?: boolean }) => {
      let result: DemoResult | undefined;
      try {
        result = await runDemo({ size: opts.size, repeat: opts.repeat, seed: opts.seed, ...(opts.backend ? { backend: opts.backend } : {}) });
        await writeOut(opts.json ? `${JSON.stringify(result, null, 2)}\n` : `${formatDemo(result)}\n`);
      } finally {
        if (result) await disposeBackends([result.backend]);
      }
      if (!result.ok) {
        throw new BackendError('demo', `the GEMM result is wrong: max relative error ${result.maxRelError} exceeds ${DEMO_TOLERANCE}`);
      }
    });
}
