/**
 * The WebAssembly side of the GEMM: one shared linear memory, the module instance of the
 * main thread, and a lazily created pool of worker_threads that instantiate the same
 * module on the same memory.
 */
import { GEMM_WASM_BASE64, GEMM_WASM_MAX_PAGES } from '../generated/gemm-wasm.js';
import { C, RUNNER_SOURCE, WORKER_SOURCE, type KernelExports, type Runner } from './runner.js';

const PAGE = 65536;

// Minimal typing of the WebAssembly JS API (the project's lib setting has no DOM types).
interface WasmMemory {
  readonly buffer: SharedArrayBuffer;
  grow(deltaPages: number): number;
}
type WasmModule = object;
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule, imports: object) => { readonly exports: object };
  Memory: new (descriptor: { initial: number; maximum: number; shared: boolean }) => WasmMemory;
}
const wasmApi = (): WasmApi | undefined => (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

type WorkerCtor = typeof import('node:worker_threads').Worker;
type WorkerLike = InstanceType<WorkerCtor>;

export interface Engine {
  readonly ex: KernelExports;
  readonly memory: WasmMemory;
  /** Largest byte size the memory may reach. */
  readonly maxBytes: number;
}

let engine: Engine | null | undefined;
let engineError: unknown;

function decodeBase64(s: string): Uint8Array {
  const B = (globalThis as { Buffer?: { from(s: string, enc: string): Uint8Array } }).Buffer;
  if (B) return B.from(s, 'base64');
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

let compiled: WasmModule | undefined;

/** The wasm engine, or null when WebAssembly SIMD or shared memory is unavailable here. */
export function getEngine(): Engine | null {
  if (engine !== undefined) return engine;
  try {
    const W = wasmApi();
    if (!W) throw new Error('WebAssembly is not available');
    const bytes = decodeBase64(GEMM_WASM_BASE64);
    if (!W.validate(bytes)) throw new Error('WebAssembly SIMD is not supported');
    compiled = new W.Module(bytes);
    let memory: WasmMemory | undefined;
    let maxPages = GEMM_WASM_MAX_PAGES;
    // Reserve the full 4 GiB address space if we can (64-bit hosts), less otherwise.
    while (!memory && maxPages >= 1024) {
      try {
        memory = new W.Memory({ initial: 16, maximum: maxPages, shared: true });
      } catch {
        maxPages >>= 1;
      }
    }
    if (!memory) throw new Error('shared WebAssembly.Memory is not available');
    const instance = new W.Instance(compiled, { env: { memory } });
    engine = { ex: instance.exports as unknown as KernelExports, memory, maxBytes: maxPages * PAGE };
  } catch (err) {
    engineError = err;
    engine = null;
  }
  return engine;
}

export function engineFailure(): unknown {
  return engineError;
}

/** Grows the shared memory so that it holds at least `bytes`. */
export function ensureMemory(e: Engine, bytes: number): void {
  const have = e.memory.buffer.byteLength;
  if (bytes <= have) return;
  const pages = Math.ceil((bytes - have) / PAGE);
  // grow a bit more than needed to avoid growing again for slightly larger problems
  const extra = Math.min(Math.ceil(pages / 4), Math.floor((e.maxBytes - have) / PAGE) - pages);
  e.memory.grow(pages + Math.max(0, extra));
}

// ---------------------------------------------------------------------------------------
// thread pool

interface Pool {
  readonly size: number; // threads including the main thread
  readonly workers: WorkerLike[];
  readonly ctrl: Int32Array;
  readonly run: Runner;
}

let pool: Pool | null = null;

function nodeBuiltin<T>(id: string): T | undefined {
  const p = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  if (p && typeof p.getBuiltinModule === 'function') {
    try {
      return p.getBuiltinModule(id) as T | undefined;
    } catch {
      return undefined;
    }
  }
  // CJS builds on Node versions without process.getBuiltinModule
  const req = (globalThis as { require?: (id: string) => unknown }).require ?? (typeof require === 'function' ? require : undefined);
  if (req) {
    try {
      return req(id) as T;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** Hardware threads available (os.availableParallelism), 1 where unknown. */
export function hardwareThreads(): number {
  const os = nodeBuiltin<typeof import('node:os')>('node:os');
  if (os) {
    if (typeof os.availableParallelism === 'function') return Math.max(1, os.availableParallelism());
    return Math.max(1, os.cpus().length);
  }
  const nav = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator;
  return Math.max(1, nav?.hardwareConcurrency ?? 1);
}

/** Whether worker threads can be created in this environment. */
export function threadsSupported(): boolean {
  return nodeBuiltin<{ Worker?: unknown }>('node:worker_threads')?.Worker !== undefined;
}

/**
 * A pool with at least `size` threads (main thread included), created on first use and
 * re-created only to grow; null if size < 2 or worker threads are unsupported.
 */
export function getPool(e: Engine, size: number): Pool | null {
  if (size < 2) return null;
  if (pool && pool.size >= size) return pool;
  disposePool();
  const wt = nodeBuiltin<typeof import('node:worker_threads')>('node:worker_threads');
  if (!wt || !compiled) return null;
  const ctrlBuffer = new SharedArrayBuffer(C.SIZE * 4);
  const ctrl = new Int32Array(ctrlBuffer);
  const workers: WorkerLike[] = [];
  try {
    for (let tid = 1; tid < size; tid++) {
      const w = new wt.Worker(WORKER_SOURCE, {
        eval: true,
        workerData: { module: compiled, memory: e.memory, ctrlBuffer, tid },
        stdout: false,
        stderr: false,
      });
      w.unref();
      // A dead worker only stops taking tasks (scheduling is dynamic); nothing to do.
      w.on('error', () => {});
      workers.push(w);
    }
  } catch {
    for (const w of workers) void w.terminate();
    return null;
  }
  const makeRunner = new Function(`return ${RUNNER_SOURCE};`)() as (ex: KernelExports, ctrl: Int32Array) => Runner;
  pool = { size, workers, ctrl, run: makeRunner(e.ex, ctrl) };
  return pool;
}

/** Stops the pool and drops the wasm memory (it can only grow; a new one is made on next use). */
export function disposeEngine(): void {
  disposePool();
  engine = undefined;
  engineError = undefined;
}

export function disposePool(): void {
  if (!pool) return;
  const { ctrl, workers } = pool;
  pool = null;
  Atomics.store(ctrl, C.STOP, 1);
  Atomics.add(ctrl, C.GEN, 2);
  Atomics.notify(ctrl, C.GEN);
  for (const w of workers) void w.terminate();
}

export interface JobParams {
  /** Threads taking part, main thread included (<= pool size). */
  threads: number;
  mode: 1 | 2;
  tasks: number;
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
  table: number;
  entries: number;
  group: number;
  thrBase: number;
  thrStride: number;
  pa: number;
  pb: number;
  aTasks: number;
  bTasks: number;
  mch: number;
  nch: number;
  mt: number;
  nt: number;
}

function waitWhileNot(ctrl: Int32Array, index: number, pred: (v: number) => boolean): void {
  for (let spin = 0; ; spin++) {
    const v = Atomics.load(ctrl, index);
    if (pred(v)) return;
    if (spin > 2000) Atomics.wait(ctrl, index, v, 5);
  }
}

/** Publishes a job to the pool, takes part in it on this thread, returns when it is complete. */
export function runOnPool(p: Pool, job: JobParams): void {
  const { ctrl } = p;
  const g = Atomics.load(ctrl, C.GEN);
  Atomics.store(ctrl, C.GEN, g + 1); // odd: being written
  waitWhileNot(ctrl, C.ACTIVE, (v) => v === 0);
  ctrl[C.THREADS] = job.threads;
  ctrl[C.MODE] = job.mode;
  ctrl[C.NTASKS] = job.tasks;
  ctrl[C.M] = job.m;
  ctrl[C.N] = job.n;
  ctrl[C.K] = job.k;
  ctrl[C.TRANS_A] = job.transA ? 1 : 0;
  ctrl[C.TRANS_B] = job.transB ? 1 : 0;
  ctrl[C.TABLE] = job.table;
  ctrl[C.ENTRIES] = job.entries;
  ctrl[C.GROUP] = job.group;
  ctrl[C.THR_BASE] = job.thrBase;
  ctrl[C.THR_STRIDE] = job.thrStride;
  ctrl[C.PA] = job.pa;
  ctrl[C.PB] = job.pb;
  ctrl[C.A_TASKS] = job.aTasks;
  ctrl[C.B_TASKS] = job.bTasks;
  ctrl[C.MCH] = job.mch;
  ctrl[C.NCH] = job.nch;
  ctrl[C.MT] = job.mt;
  ctrl[C.NT] = job.nt;
  Atomics.store(ctrl, C.ERROR, 0);
  Atomics.store(ctrl, C.DONE, 0);
  Atomics.store(ctrl, C.NEXT, 0);
  Atomics.store(ctrl, C.GEN, g + 2); // published
  Atomics.notify(ctrl, C.GEN);
  p.run(0);
  waitWhileNot(ctrl, C.DONE, (v) => v >= job.tasks);
  if (Atomics.load(ctrl, C.ERROR) !== 0) throw new Error('sgemm: a GEMM task failed in the wasm kernel');
}
