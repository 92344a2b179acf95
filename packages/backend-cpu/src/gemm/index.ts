/**
 * f32 GEMM entry point of the CPU backend.
 *
 * Large problems run in a WebAssembly SIMD kernel (assembly/gemm.ts: packed panels,
 * 2x16 register-blocked microkernel, cache blocking on K/M/N) on one shared wasm memory,
 * spread over a lazily created pool of worker_threads with the main thread taking part.
 * Tiny problems, and hosts without WebAssembly SIMD or shared memory, use a TypeScript loop.
 * Accumulation is f32 on every path. See docs/gemm-cpu.md.
 */
import { disposeEngine, engineFailure, ensureMemory, getEngine, getPool, hardwareThreads, runOnPool, threadsSupported, type Engine, type JobParams } from './engine.js';
import { SCRATCH_BYTES } from './runner.js';
import { sgemmTs } from './ts-kernel.js';

export interface GemmJob {
  /** Rows of op(A) and C. */
  readonly m: number;
  /** Columns of op(B) and C. */
  readonly n: number;
  /** Inner dimension. */
  readonly k: number;
  /** A stored [k, m] (row-major) when true, else [m, k]. */
  readonly transA: boolean;
  /** B stored [n, k] when true, else [k, n]. */
  readonly transB: boolean;
  readonly a: Float32Array;
  readonly b: Float32Array;
  /** Output, row-major [m, n] per batch entry; fully overwritten. */
  readonly c: Float32Array;
  /** One entry per batch element: element offsets of each matrix in a, b, c. */
  readonly aOffsets: ArrayLike<number>;
  readonly bOffsets: ArrayLike<number>;
  readonly cOffsets: ArrayLike<number>;
}

export interface GemmConfig {
  /** Threads for large GEMMs, the calling thread included. Default: env KILN_CPU_THREADS, else os.availableParallelism(). */
  readonly threads: number;
  /** Problems of at least this many flops (2·m·n·k·batch) are spread over the threads. */
  readonly parallelMinFlops: number;
  /** Problems of fewer multiply-adds (m·n·k·batch) than this use the TypeScript loop (no copy into wasm memory). */
  readonly wasmMinMacs: number;
  /** 'auto' picks by size; 'wasm' or 'ts' forces a kernel ('wasm' throws where it cannot load). */
  readonly kernel: 'auto' | 'wasm' | 'ts';
}

export interface GemmInfo {
  /** The WebAssembly SIMD kernel loaded. */
  readonly simd: boolean;
  /** Threads a large GEMM uses (1 where worker threads are unavailable). */
  readonly threads: number;
  /** Kernel a large GEMM uses. */
  readonly kernel: 'wasm-simd' | 'ts';
  /** Why the wasm kernel is unavailable, if it is. */
  readonly reason?: string;
}

function defaultThreads(): number {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.KILN_CPU_THREADS;
  const v = env !== undefined ? Number.parseInt(env, 10) : Number.NaN;
  if (Number.isFinite(v) && v >= 1) return v;
  return hardwareThreads();
}

let config: GemmConfig | undefined;

function cfg(): GemmConfig {
  config ??= { threads: defaultThreads(), parallelMinFlops: 2 * 160 ** 3, wasmMinMacs: 256, kernel: 'auto' };
  return config;
}

/** Changes GEMM settings (only the given keys) and returns the settings now in force. */
export function configureGemm(options: Partial<GemmConfig> = {}): GemmConfig {
  const next = { ...cfg(), ...options };
  if (!Number.isInteger(next.threads) || next.threads < 1) throw new RangeError(`configureGemm: threads must be an integer >= 1, got ${next.threads}`);
  config = next;
  return config;
}

/** What kernel and how many threads a large GEMM uses here. */
export function gemmInfo(): GemmInfo {
  const c = cfg();
  const e = c.kernel === 'ts' ? null : getEngine();
  const threads = e && threadsSupported() ? c.threads : 1;
  const err = engineFailure();
  return {
    simd: e !== null,
    threads,
    kernel: e ? 'wasm-simd' : 'ts',
    ...(e === null && err !== undefined ? { reason: err instanceof Error ? err.message : String(err) } : {}),
  };
}

/**
 * Terminates the worker threads and releases the wasm memory, which otherwise keeps the
 * size of the largest GEMM run so far. Never needed to let the process exit (the workers
 * are unref()'d); the next large GEMM starts afresh.
 */
export function disposeGemmPool(): void {
  disposeEngine();
}

function checkOffsets(name: string, offs: ArrayLike<number>, count: number, size: number, len: number): [number, number] {
  if (offs.length < count) throw new RangeError(`sgemm: ${name}Offsets has ${offs.length} entries, cOffsets has ${count}`);
  let lo = Infinity;
  let hi = -Infinity;
  for (let e = 0; e < count; e++) {
    const o = offs[e];
    if (!Number.isInteger(o) || o < 0 || o + size > len) {
      throw new RangeError(`sgemm: ${name}Offsets[${e}] = ${o} is out of range for a ${size}-element matrix in ${len} elements`);
    }
    if (o < lo) lo = o;
    if (o > hi) hi = o;
  }
  return [lo, hi + size];
}

/** C[e] = op(A[e]) · op(B[e]) for every batch entry e (row-major f32, f32 accumulation). */
export function sgemm(job: GemmJob): void {
  const { m, n, k } = job;
  if (![m, n, k].every((d) => Number.isInteger(d) && d >= 0)) throw new RangeError(`sgemm: bad shape m=${m} n=${n} k=${k}`);
  const count = job.cOffsets.length;
  if (count === 0 || m === 0 || n === 0) return;
  checkOffsets('c', job.cOffsets, count, m * n, job.c.length);
  if (k === 0) {
    for (let e = 0; e < count; e++) job.c.fill(0, job.cOffsets[e], job.cOffsets[e] + m * n);
    return;
  }
  checkOffsets('a', job.aOffsets, count, m * k, job.a.length);
  checkOffsets('b', job.bOffsets, count, k * n, job.b.length);
  const c = cfg();
  const e = c.kernel === 'ts' ? null : getEngine();
  if (c.kernel === 'wasm' && !e) throw new Error(`sgemm: the wasm kernel is unavailable: ${String(engineFailure())}`);
  if (!e || (c.kernel === 'auto' && m * n * k * count < c.wasmMinMacs)) {
    sgemmTs(job);
    return;
  }
  runWasm(e, job, 0, count, c);
}

const align = (x: number) => Math.ceil(x / 64) * 64;
const BASE = 65536; // below: the module's own (empty) data area

function runWasm(eng: Engine, job: GemmJob, e0: number, e1: number, c: GemmConfig): void {
  const { m, n, k } = job;
  const entries = e1 - e0;
  const span = (offs: ArrayLike<number>, size: number): [number, number] => {
    let lo = Infinity;
    let hi = -Infinity;
    for (let e = e0; e < e1; e++) {
      lo = Math.min(lo, offs[e]);
      hi = Math.max(hi, offs[e]);
    }
    return [lo, hi + size];
  };
  const [aLo, aHi] = span(job.aOffsets, m * k);
  const [bLo, bHi] = span(job.bOffsets, k * n);
  // Few rows (m <= smallLimit): the kernel reads B in place (no packed B) and is bound by
  // memory bandwidth; splitting one such product over threads measured slower, so only a
  // batch of them is spread (whole entries per thread).
  const small = m <= eng.ex.smallLimit();
  const ms = (m + 1) >> 1;
  const ns = (n + 15) >> 4;
  const paBytes = align(ms * k * 8);
  const pbBytes = small ? 0 : align(ns * k * 64);
  const flops = 2 * m * n * k * entries;

  let threads = Math.max(1, c.threads);
  if (flops < c.parallelMinFlops || (small && entries < 2 * threads)) threads = 1;
  const pool = threads > 1 ? getPool(eng, threads) : null;
  if (!pool) threads = 1;
  const perEntry = 2 * m * n * k;
  const mode: 1 | 2 = threads === 1 || entries >= 2 * threads || (entries >= threads && perEntry < 2 * 256 * 256 * 256) || perEntry < 2 * 64 * 64 * 64 ? 1 : 2;

  // layout
  let at = BASE;
  const table = at;
  at = align(at + entries * 12);
  const aBase = at;
  at = align(at + (aHi - aLo) * 4);
  const bBase = at;
  at = align(at + (bHi - bLo) * 4);
  const cBase = at;
  at = align(at + entries * m * n * 4);
  let pa = 0;
  let pb = 0;
  if (mode === 2) {
    pa = at;
    at += paBytes;
    pb = at;
    at += pbBytes;
  }
  const thrBase = at;
  const thrStride = mode === 1 ? SCRATCH_BYTES + paBytes + pbBytes : SCRATCH_BYTES;
  at += thrStride * threads;

  if (at > eng.maxBytes) {
    if (entries > 1) {
      const mid = e0 + (entries >> 1);
      runWasm(eng, job, e0, mid, c);
      runWasm(eng, job, mid, e1, c);
    } else {
      sgemmTs(job, e0, e1);
    }
    return;
  }
  try {
    ensureMemory(eng, at);
  } catch {
    // the host refused to grow the memory this far: smaller pieces, or the TS loop
    if (entries > 1) {
      const mid = e0 + (entries >> 1);
      runWasm(eng, job, e0, mid, c);
      runWasm(eng, job, mid, e1, c);
    } else {
      sgemmTs(job, e0, e1);
    }
    return;
  }
  const buf = eng.memory.buffer;
  const f32 = new Float32Array(buf);
  const u32 = new Uint32Array(buf);
  f32.set(job.a.subarray(aLo, aHi), aBase >> 2);
  f32.set(job.b.subarray(bLo, bHi), bBase >> 2);
  for (let i = 0; i < entries; i++) {
    const t = (table >> 2) + i * 3;
    u32[t] = aBase + (job.aOffsets[e0 + i] - aLo) * 4;
    u32[t + 1] = bBase + (job.bOffsets[e0 + i] - bLo) * 4;
    u32[t + 2] = cBase + i * m * n * 4;
  }

  if (!pool) {
    eng.ex.batch(table, 0, entries, m, n, k, job.transA ? 1 : 0, job.transB ? 1 : 0, thrBase + SCRATCH_BYTES, thrBase + SCRATCH_BYTES + paBytes, thrBase);
  } else {
    const p: JobParams = {
      threads,
      mode, tasks: 0, m, n, k, transA: job.transA, transB: job.transB, table, entries,
      group: 1, thrBase, thrStride, pa, pb, aTasks: 0, bTasks: 0, mch: 0, nch: 0, mt: 0, nt: 0,
    };
    if (mode === 1) {
      p.group = Math.max(1, Math.floor(entries / (4 * threads)));
      p.tasks = Math.ceil(entries / p.group);
    } else {
      const target = 4 * threads;
      const roundUp = (x: number, q: number) => Math.ceil(x / q) * q;
      if (m >= n) {
        p.mch = roundUp(Math.ceil(m / target), 2);
        p.mt = Math.ceil(m / p.mch);
        const want = p.mt >= target ? 1 : Math.ceil(target / p.mt);
        p.nch = roundUp(Math.ceil(n / want), 16);
        p.nt = Math.ceil(n / p.nch);
      } else {
        p.nch = roundUp(Math.ceil(n / target), 16);
        p.nt = Math.ceil(n / p.nch);
        const want = p.nt >= target ? 1 : Math.ceil(target / p.nt);
        p.mch = roundUp(Math.ceil(m / want), 2);
        p.mt = Math.ceil(m / p.mch);
      }
      p.aTasks = Math.min(ms, threads);
      p.bTasks = Math.min(ns, threads);
      p.tasks = entries * (p.aTasks + p.bTasks + p.mt * p.nt);
    }
    runOnPool(pool, p);
  }

  const mn = m * n;
  const cf = new Float32Array(buf, cBase, entries * mn);
  for (let i = 0; i < entries; i++) job.c.set(cf.subarray(i * mn, (i + 1) * mn), job.cOffsets[e0 + i]);
}
