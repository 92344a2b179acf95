import type { Backend, BackendFactory, DataId } from './backend.js';
import { dtypeInfo, type DType } from './dtype.js';
import { BackendError, DisposedTensorError } from './errors.js';
import type { Shape } from './shape.js';
import { sizeOf } from './shape.js';
import { Tensor } from './tensor.js';

/**
 * The engine owns global state: registered backends, the current backend, tensor scopes
 * (`tidy`) and the bookkeeping behind `memory()`. Storage is reference counted per DataId
 * because reshape shares storage between tensors.
 */

interface DataRecord {
  backend: Backend;
  refs: number;
  bytes: number;
}

interface BackendStats {
  tensors: number;
  bytes: number;
  buffers: number;
  /** Most `bytes` held at once since the last resetPeakMemory(). */
  peakBytes: number;
}

class Engine {
  readonly factories = new Map<string, BackendFactory>();
  readonly instances = new Map<string, Backend>();
  readonly failures = new Map<string, string>();
  current: Backend | undefined;
  private readonly data = new WeakMap<DataId, DataRecord>();
  readonly stats = new Map<string, BackendStats>();
  private readonly scopes: Set<Tensor>[] = [];
  /** Active gradient tapes, innermost last (see autograd/tape.ts). */
  readonly tapes: unknown[] = [];
  /** > 0 inside noGrad(): nothing is recorded. */
  noGradDepth = 0;
  /** Live tensor storage over all backends, and its maximum since the last resetPeakMemory(). */
  liveBytes = 0;
  peakBytes = 0;
  private nextId = 1;

  statsOf(name: string): BackendStats {
    let s = this.stats.get(name);
    if (!s) {
      s = { tensors: 0, bytes: 0, buffers: 0, peakBytes: 0 };
      this.stats.set(name, s);
    }
    return s;
  }

  /** Wraps backend storage in a new Tensor, registering it with the innermost scope. */
  makeTensor(backend: Backend, dataId: DataId, shape: Shape, dtype: DType): Tensor {
    let rec = this.data.get(dataId);
    const s = this.statsOf(backend.name);
    if (!rec) {
      rec = { backend, refs: 0, bytes: sizeOf(shape) * dtypeInfo(dtype).bytes };
      this.data.set(dataId, rec);
      s.buffers += 1;
      s.bytes += rec.bytes;
      if (s.peakBytes < s.bytes) s.peakBytes = s.bytes;
      this.liveBytes += rec.bytes;
      if (this.peakBytes < this.liveBytes) this.peakBytes = this.liveBytes;
    }
    rec.refs += 1;
    s.tensors += 1;
    const t = new Tensor(this.nextId++, backend, dataId, shape, dtype);
    const scope = this.scopes[this.scopes.length - 1];
    if (scope) scope.add(t);
    return t;
  }

  releaseTensor(t: Tensor): void {
    const rec = this.data.get(t.dataId);
    const s = this.statsOf(t.backend.name);
    s.tensors -= 1;
    if (!rec) return;
    rec.refs -= 1;
    if (rec.refs === 0) {
      s.buffers -= 1;
      s.bytes -= rec.bytes;
      this.liveBytes -= rec.bytes;
      this.data.delete(t.dataId);
      rec.backend.release(t.dataId);
    }
  }

  /**
   * A second Tensor sharing `t`'s storage (reference counted), outside every scope: the
   * autograd tape keeps what backward needs this way, so `tidy`/`dispose` of the original
   * cannot free it early.
   */
  alias(t: Tensor): Tensor {
    const scopes = this.scopes.splice(0, this.scopes.length);
    try {
      return this.makeTensor(t.backend, t.dataId, t.shape, t.dtype);
    } finally {
      this.scopes.push(...scopes);
    }
  }

  untrack(t: Tensor): void {
    for (const scope of this.scopes) scope.delete(t);
  }

  tidy<T>(fn: () => T): T {
    const scope = new Set<Tensor>();
    this.scopes.push(scope);
    let result: T;
    try {
      result = fn();
      if (result instanceof Promise) {
        throw new BackendError('tidy', 'the function returned a Promise; tidy only tracks synchronous work (await outside tidy)');
      }
    } catch (err) {
      this.scopes.pop();
      for (const t of scope) if (!t.isDisposed) t.dispose();
      throw err;
    }
    this.scopes.pop();
    const keep = new Set<Tensor>();
    collectTensors(result, keep);
    const parent = this.scopes[this.scopes.length - 1];
    for (const t of scope) {
      if (keep.has(t)) {
        if (parent) parent.add(t);
      } else if (!t.isDisposed) t.dispose();
    }
    return result;
  }

  newId(): number {
    return this.nextId++;
  }
}

function collectTensors(value: unknown, out: Set<Tensor>, depth = 0): void {
  if (depth > 8 || value === null || typeof value !== 'object') return;
  if (value instanceof Tensor) {
    out.add(value);
    return;
  }
  if (Array.isArray(value)) {
    for (const v of value) collectTensors(v, out, depth + 1);
    return;
  }
  if (value instanceof Map) {
    for (const v of value.values()) collectTensors(v, out, depth + 1);
    return;
  }
  if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value as Record<string, unknown>)) collectTensors(v, out, depth + 1);
  }
}

// One engine per realm, shared by every copy of @kiln/core that gets loaded (ESM and CJS builds).
const GLOBAL_KEY = Symbol.for('kiln.engine.v1');
const g = globalThis as unknown as Record<symbol, Engine | undefined>;
export const engine: Engine = g[GLOBAL_KEY] ?? (g[GLOBAL_KEY] = new Engine());

// ---------------------------------------------------------------------------------------
// Public registry API

/** Registers a backend factory (backend packages call this on import). Re-registering replaces it. */
export function registerBackend(factory: BackendFactory): void {
  if (!factory || typeof factory.name !== 'string' || typeof factory.create !== 'function') {
    throw new BackendError('registerBackend', 'expected a BackendFactory { name, priority, create() }');
  }
  engine.factories.set(factory.name, factory);
  engine.failures.delete(factory.name);
}

export function registeredBackends(): string[] {
  return [...engine.factories.values()].sort((a, b) => b.priority - a.priority).map((f) => f.name);
}

/** Creates (once) and returns the named backend, without making it current. */
export async function initBackend(name: string): Promise<Backend> {
  const existing = engine.instances.get(name);
  if (existing) return existing;
  const factory = engine.factories.get(name);
  if (!factory) {
    throw new BackendError('initBackend', `no backend named ${JSON.stringify(name)} is registered (registered: ${registeredBackends().join(', ') || 'none'}); import its package, e.g. @kiln/backend-${name}`);
  }
  try {
    const backend = await factory.create();
    engine.instances.set(name, backend);
    return backend;
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    engine.failures.set(name, reason);
    if (err instanceof BackendError) throw err;
    throw new BackendError('initBackend', `backend ${JSON.stringify(name)} failed to initialise: ${reason}`);
  }
}

/** Makes the named backend current, initialising it if needed. */
export async function setBackend(name: string): Promise<Backend> {
  const backend = await initBackend(name);
  engine.current = backend;
  return backend;
}

/** Makes an already created backend instance current (tests, custom backends). */
export function useBackend(backend: Backend): void {
  engine.instances.set(backend.name, backend);
  engine.current = backend;
}

/** The current backend. Throws if none was set. */
export function getBackend(): Backend {
  if (!engine.current) {
    throw new BackendError('getBackend', 'no backend is active; call `await setBackend(name)` or `await bestAvailableBackend()` first');
  }
  return engine.current;
}

export interface BackendAvailability {
  readonly name: string;
  readonly priority: number;
  readonly available: boolean;
  readonly device?: string;
  readonly accelerated?: boolean;
  /** Why `bestAvailableBackend()` passes over it although it works (Backend.notPreferred). */
  readonly notPreferred?: string;
  /** Why it is unavailable. */
  readonly reason?: string;
}

/** Tries every registered backend and reports which initialise on this machine. */
export async function probeBackends(): Promise<BackendAvailability[]> {
  const out: BackendAvailability[] = [];
  for (const f of [...engine.factories.values()].sort((a, b) => b.priority - a.priority)) {
    try {
      const b = await initBackend(f.name);
      out.push({ name: f.name, priority: f.priority, available: true, device: b.device.name, accelerated: b.device.accelerated, ...(b.notPreferred ? { notPreferred: b.notPreferred } : {}) });
    } catch (err) {
      out.push({ name: f.name, priority: f.priority, available: false, reason: err instanceof Error ? err.message : String(err) });
    }
  }
  return out;
}

/**
 * Picks the highest-priority registered backend that initialises here (cuda > webgpu >
 * gpujs > cpu), makes it current and returns it. A backend that sets `notPreferred` (e.g.
 * WebGPU on a software adapter) is passed over for the next one that initialises, and used
 * only when none does.
 */
export async function bestAvailableBackend(): Promise<Backend> {
  const errors: string[] = [];
  let fallback: Backend | undefined;
  for (const f of [...engine.factories.values()].sort((a, b) => b.priority - a.priority)) {
    try {
      const backend = await initBackend(f.name);
      if (backend.notPreferred) {
        fallback ??= backend;
        errors.push(`${f.name}: ${backend.notPreferred}`);
        continue;
      }
      engine.current = backend;
      return backend;
    } catch (err) {
      errors.push(`${f.name}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  if (fallback) {
    engine.current = fallback;
    return fallback;
  }
  throw new BackendError('bestAvailableBackend', `no registered backend initialised${errors.length ? ` (${errors.join('; ')})` : '; import @kiln/backend-cpu'}`);
}

// ---------------------------------------------------------------------------------------
// Scopes and memory

/**
 * Runs `fn` and disposes every tensor it created except those it returns (in a value,
 * array, plain object or Map) or `keep()`s. Must be synchronous.
 */
export function tidy<T>(fn: () => T): T {
  return engine.tidy(fn);
}

/** Excludes a tensor from the enclosing `tidy` scopes. */
export function keep<T extends Tensor>(t: T): T {
  engine.untrack(t);
  return t;
}

/** Disposes every tensor found in a value (tensor, array, object, Map). */
export function dispose(value: unknown): void {
  const found = new Set<Tensor>();
  collectTensors(value, found);
  for (const t of found) if (!t.isDisposed) t.dispose();
}

export interface BackendMemoryInfo {
  tensors: number;
  bytes: number;
  buffers: number;
  backendBytes: number;
  /** Most tensor-storage bytes this backend held at once since the last `resetPeakMemory()`. */
  peakBytes: number;
}

export interface MemoryInfo {
  /** Live tensors, all backends. */
  readonly tensors: number;
  /** Bytes of live storage, all backends (shared storage counted once). */
  readonly bytes: number;
  /**
   * Most bytes of live tensor storage held at once, all backends together, since the last
   * `resetPeakMemory()` (or since the engine started). Counts tensor storage as `bytes` does
   * (storage dtype size × elements, shared storage once), at every allocation; a kernel's own
   * scratch buffers are not included.
   */
  readonly peakBytes: number;
  readonly backends: Readonly<Record<string, BackendMemoryInfo>>;
}

/**
 * Live tensors and bytes, per backend, and the peak since `resetPeakMemory()`. `backendBytes`
 * is what the backend itself reports holding.
 */
export function memory(): MemoryInfo {
  let tensors = 0;
  let bytes = 0;
  const backends: Record<string, BackendMemoryInfo> = {};
  for (const [name, s] of engine.stats) {
    tensors += s.tensors;
    bytes += s.bytes;
    const inst = engine.instances.get(name);
    backends[name] = { tensors: s.tensors, bytes: s.bytes, buffers: s.buffers, backendBytes: inst ? inst.memory().bytes : 0, peakBytes: Math.max(s.peakBytes, s.bytes) };
  }
  return { tensors, bytes, peakBytes: Math.max(engine.peakBytes, bytes), backends };
}

/**
 * Starts a new peak-memory window: every backend's `peakBytes` (and the total) is set to what
 * is live now. Returns the live byte count.
 */
export function resetPeakMemory(): number {
  let live = 0;
  for (const s of engine.stats.values()) {
    s.peakBytes = s.bytes;
    live += s.bytes;
  }
  engine.liveBytes = live;
  engine.peakBytes = live;
  return live;
}

export function assertLive(t: Tensor, op: string): void {
  if (!(t instanceof Tensor)) throw new BackendError(op, `expected a Tensor, got ${t === null ? 'null' : typeof t}`);
  if (t.isDisposed) throw new DisposedTensorError(op, `tensor #${t.id} (shape [${t.shape.join(', ')}], ${t.dtype}) was disposed`);
}
