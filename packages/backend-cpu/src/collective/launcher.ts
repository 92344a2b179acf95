/**
 * `runCpuRanks`: runs an ES module's default export on N worker threads (Node.js), one per
 * rank, each with a CPU backend made current and a `CpuCollective` joined to a shared group.
 */
import { ArgumentError, CollectiveError, CollectiveTimeoutError, type Backend, type Collective } from '@kiln/core';
import type { CpuBackendOptions } from '../cpu-backend.js';
import { DEFAULT_TIMEOUT_MS } from './cpu-collective.js';
import { abortCpuCollectiveGroup, createCpuCollectiveGroup } from './group.js';

/** What a rank's entry function receives. */
export interface RankContext<D = unknown> {
  readonly rank: number;
  readonly worldSize: number;
  /** This rank's collective (closed by the launcher after the entry returns). */
  readonly collective: Collective;
  /** `options.data`, structured-cloned into the worker. */
  readonly data: D;
  /** The rank's CPU backend (already current). */
  readonly backend: Backend;
}

/** The default export of a rank module. Its result must be structured-cloneable. */
export type RankEntry<D = unknown, R = unknown> = (ctx: RankContext<D>) => R | Promise<R>;

export interface RunCpuRanksOptions<D = unknown> {
  /** Number of ranks (worker threads), >= 1. */
  readonly worldSize: number;
  /** ES module (path, `file:` URL string or URL) whose default export is a `RankEntry`. */
  readonly module: string | URL;
  /** Passed to every rank as `ctx.data` (structured clone). */
  readonly data?: D;
  /** Default timeout of every collective call in the ranks, ms (default 60000). */
  readonly timeoutMs?: number;
  /** Wall-clock limit of the whole run, ms (default: none). */
  readonly runTimeoutMs?: number;
  /** Exchange slot bytes of the group (see `createCpuCollectiveGroup`). */
  readonly slotBytes?: number;
  /** GEMM threads of each rank's CPU backend (default: hardware threads / worldSize, at least 1). */
  readonly threadsPerRank?: number;
  /**
   * ES module entries the workers import. By default `@kiln/backend-cpu` is resolved from the
   * rank module's location (then the working directory) and `@kiln/core` from there, both
   * through their package.json `exports` (the built `dist`).
   */
  readonly packages?: { readonly core?: string | URL; readonly backendCpu?: string | URL };
}

/** A rank of `runCpuRanks` failed; `rank` and the original error's name and message are kept. */
export class CpuRankError extends CollectiveError {
  readonly rank: number;
  /** `name` of the error the rank threw, e.g. 'ShapeError'. */
  readonly errorName: string;
  /** Message of the error the rank threw (without the `op: ` prefix added here). */
  readonly errorMessage: string;
  constructor(rank: number, errorName: string, errorMessage: string, message: string, cause: Error) {
    super('runCpuRanks', message);
    this.rank = rank;
    this.errorName = errorName;
    this.errorMessage = errorMessage;
    Object.defineProperty(this, 'cause', { value: cause, configurable: true, writable: true, enumerable: false });
  }
}

interface SerialisedError {
  name: string;
  message: string;
  stack?: string;
}

type WorkerMessage = { kind: 'result'; result: unknown } | { kind: 'error'; error: SerialisedError };

/** How long to wait after a first failure for other ranks' errors, to report the root cause. */
const GRACE_MS = 100;

/**
 * Worker body (CommonJS script run with `eval: true`): imports the built packages and the
 * rank module, runs the entry, posts its result or error back.
 */
const WORKER_SOURCE = `'use strict';
const { parentPort, workerData: w } = require('node:worker_threads');
const describe = (err) => {
  if (err instanceof Error) return { name: err.name, message: err.message, stack: err.stack };
  return { name: 'Error', message: 'non-Error thrown: ' + String(err) };
};
(async () => {
  const core = await import(w.coreUrl);
  const cpu = await import(w.backendUrl);
  if (typeof cpu.joinCpuCollective !== 'function' || typeof cpu.CpuBackend !== 'function') {
    throw new Error(w.backendUrl + ' does not export CpuBackend and joinCpuCollective; rebuild @kiln/backend-cpu');
  }
  const backend = new cpu.CpuBackend(w.backendOptions);
  core.useBackend(backend);
  const collective = cpu.joinCpuCollective(w.group, w.rank, { timeoutMs: w.timeoutMs });
  let result;
  try {
    const mod = await import(w.moduleUrl);
    const entry = mod.default;
    if (typeof entry !== 'function') throw new TypeError(w.moduleUrl + ' has no default export function (rank entry)');
    result = await entry({ rank: w.rank, worldSize: w.worldSize, collective, data: w.data, backend });
  } finally {
    collective.close();
  }
  try {
    parentPort.postMessage({ kind: 'result', result });
  } catch (err) {
    throw new TypeError('the rank entry returned a value that cannot be structured-cloned: ' + (err && err.message));
  }
  try { if (typeof backend.dispose === 'function') backend.dispose(); } catch {}
})().catch((err) => {
  parentPort.postMessage({ kind: 'error', error: describe(err) });
});
`;

type NodeRequire = (id: string) => unknown;
declare const require: NodeRequire | undefined;

async function builtin<T>(id: string): Promise<T | undefined> {
  const p = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  if (p && typeof p.getBuiltinModule === 'function') {
    const m = p.getBuiltinModule(id);
    if (m) return m as T;
  }
  if (typeof require === 'function') {
    try {
      return require(id) as T;
    } catch {
      return undefined;
    }
  }
  try {
    // hidden from bundlers: this code only runs on Node.js
    const load = new Function('id', 'return import(id)') as (id: string) => Promise<T>;
    return await load(id);
  } catch {
    return undefined;
  }
}

interface NodeApis {
  wt: typeof import('node:worker_threads');
  mod: typeof import('node:module');
  url: typeof import('node:url');
  fs: typeof import('node:fs');
  path: typeof import('node:path');
  os: typeof import('node:os');
}

async function nodeApis(): Promise<NodeApis> {
  const [wt, mod, url, fs, path, os] = await Promise.all([
    builtin<NodeApis['wt']>('node:worker_threads'),
    builtin<NodeApis['mod']>('node:module'),
    builtin<NodeApis['url']>('node:url'),
    builtin<NodeApis['fs']>('node:fs'),
    builtin<NodeApis['path']>('node:path'),
    builtin<NodeApis['os']>('node:os'),
  ]);
  if (!wt?.Worker || !mod || !url || !fs || !path || !os) {
    throw new CollectiveError('runCpuRanks', 'needs Node.js worker_threads; elsewhere create a group with createCpuCollectiveGroup() and joinCpuCollective() in your own workers');
  }
  return { wt, mod, url, fs, path, os };
}

function toUrl(spec: string | URL, api: NodeApis, what: string): string {
  if (spec instanceof URL) return spec.href;
  if (typeof spec !== 'string' || spec.length === 0) throw new ArgumentError('runCpuRanks', `${what} must be a path or URL, got ${String(spec)}`);
  if (/^(file|data|node):/.test(spec)) return spec;
  return api.url.pathToFileURL(api.path.resolve(spec)).href;
}

/** The ES module entry of a package.json (exports '.', conditions import/node/default). */
function esmEntryOf(json: { exports?: unknown; module?: unknown; main?: unknown }): string {
  const pick = (e: unknown): string | undefined => {
    if (typeof e === 'string') return e;
    if (Array.isArray(e)) {
      for (const x of e) {
        const r = pick(x);
        if (r) return r;
      }
      return undefined;
    }
    if (e && typeof e === 'object') {
      for (const [k, v] of Object.entries(e)) {
        if (k === 'import' || k === 'node' || k === 'default') {
          const r = pick(v);
          if (r) return r;
        }
      }
    }
    return undefined;
  };
  let root = json.exports;
  if (root && typeof root === 'object' && !Array.isArray(root) && Object.keys(root).some((k) => k.startsWith('.'))) {
    root = (root as Record<string, unknown>)['.'];
  }
  const entry = pick(root) ?? (typeof json.module === 'string' ? json.module : undefined) ?? (typeof json.main === 'string' ? json.main : undefined);
  return entry ?? 'index.js';
}

/** Resolves a package's ES module entry from the first parent file that can see it. */
function resolvePackage(name: string, parents: readonly string[], api: NodeApis): { url: string; packageJson: string } {
  for (const parent of parents) {
    const req = api.mod.createRequire(parent);
    let packageJson: string | undefined;
    try {
      packageJson = req.resolve(`${name}/package.json`);
    } catch {
      // './package.json' not exported: walk up from the main entry
      try {
        let dir = api.path.dirname(req.resolve(name));
        for (;;) {
          const candidate = api.path.join(dir, 'package.json');
          if (api.fs.existsSync(candidate) && JSON.parse(api.fs.readFileSync(candidate, 'utf8')).name === name) {
            packageJson = candidate;
            break;
          }
          const up = api.path.dirname(dir);
          if (up === dir) break;
          dir = up;
        }
      } catch {
        // not visible from this parent
      }
    }
    if (!packageJson) continue;
    const json = JSON.parse(api.fs.readFileSync(packageJson, 'utf8'));
    const file = api.path.resolve(api.path.dirname(packageJson), esmEntryOf(json));
    return { url: api.url.pathToFileURL(file).href, packageJson };
  }
  throw new CollectiveError(
    'runCpuRanks',
    `cannot resolve ${name} from ${parents.join(' or ')}; install it where the rank module can import it (and build it), or pass options.packages`,
  );
}

function positive(x: unknown, name: string, allowInfinity: boolean): void {
  if (typeof x !== 'number' || !(x >= 0) || (!allowInfinity && !Number.isFinite(x))) {
    throw new ArgumentError('runCpuRanks', `${name} must be a number >= 0${allowInfinity ? ' (or Infinity)' : ''}, got ${String(x)}`);
  }
}

/**
 * Runs `options.module`'s default export on `worldSize` worker threads, one per rank, and
 * resolves with their results in rank order. Each worker imports the built `@kiln/core` and
 * `@kiln/backend-cpu`, makes a new CpuBackend current, joins the group and calls the entry
 * with `{ rank, worldSize, collective, data, backend }`. If a rank throws (or its worker
 * dies), the group is aborted, every worker is terminated and the promise rejects with a
 * `CpuRankError` (a CollectiveError) naming the rank and its error. Workers are terminated
 * once the run settles, so they never keep the process alive.
 */
export async function runCpuRanks<R = unknown, D = unknown>(options: RunCpuRanksOptions<D>): Promise<R[]> {
  const op = 'runCpuRanks';
  if (!options || typeof options !== 'object') throw new ArgumentError(op, 'expected options { worldSize, module, data?, timeoutMs? }');
  const { worldSize } = options;
  if (!Number.isInteger(worldSize) || worldSize < 1) throw new ArgumentError(op, `worldSize must be an integer >= 1, got ${String(worldSize)}`);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  positive(timeoutMs, 'timeoutMs', true);
  if (options.runTimeoutMs !== undefined) positive(options.runTimeoutMs, 'runTimeoutMs', false);
  if (options.threadsPerRank !== undefined && (!Number.isInteger(options.threadsPerRank) || options.threadsPerRank < 1)) {
    throw new ArgumentError(op, `threadsPerRank must be an integer >= 1, got ${String(options.threadsPerRank)}`);
  }
  const api = await nodeApis();
  const moduleUrl = toUrl(options.module, api, 'module');
  const parents: string[] = [];
  if (moduleUrl.startsWith('file:')) parents.push(api.url.fileURLToPath(moduleUrl));
  parents.push(api.path.join(process.cwd(), '[runCpuRanks]'));
  let backendUrl: string;
  let coreUrl: string;
  if (options.packages?.backendCpu !== undefined) backendUrl = toUrl(options.packages.backendCpu, api, 'packages.backendCpu');
  else {
    const backend = resolvePackage('@kiln/backend-cpu', parents, api);
    backendUrl = backend.url;
    parents.unshift(backend.packageJson);
  }
  if (options.packages?.core !== undefined) coreUrl = toUrl(options.packages.core, api, 'packages.core');
  else coreUrl = resolvePackage('@kiln/core', parents, api).url;

  const hw = typeof api.os.availableParallelism === 'function' ? api.os.availableParallelism() : api.os.cpus().length;
  const backendOptions: CpuBackendOptions = { threads: options.threadsPerRank ?? Math.max(1, Math.floor(hw / worldSize)) };
  const group = createCpuCollectiveGroup(worldSize, options.slotBytes === undefined ? {} : { slotBytes: options.slotBytes });

  return new Promise<R[]>((resolve, reject) => {
    const workers: InstanceType<NodeApis['wt']['Worker']>[] = [];
    const results = new Array<R>(worldSize);
    const reported = new Array<boolean>(worldSize).fill(false);
    const errors: { rank: number; error: SerialisedError }[] = [];
    let finished = 0;
    let settled = false;
    let graceTimer: ReturnType<typeof setTimeout> | undefined;
    let runTimer: ReturnType<typeof setTimeout> | undefined;

    const settle = (err?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(graceTimer);
      clearTimeout(runTimer);
      void Promise.all(workers.map((w) => w.terminate().catch(() => 0))).then(() => (err ? reject(err) : resolve(results)));
    };

    const rankError = (): CpuRankError => {
      // Prefer a root cause (lowest rank first) over the CollectiveErrors it caused elsewhere.
      const consequence = (e: SerialisedError) => e.name === 'CollectiveError' || e.name === 'CollectiveTimeoutError';
      const roots = errors.filter((e) => !consequence(e.error)).sort((a, b) => a.rank - b.rank);
      const primary = roots[0] ?? errors[0];
      const others = errors.filter((e) => e !== primary).map((e) => `rank ${e.rank} (${e.error.name})`);
      const cause = new Error(primary.error.message);
      cause.name = primary.error.name;
      if (primary.error.stack) cause.stack = primary.error.stack;
      const message = `rank ${primary.rank} failed: ${primary.error.name}: ${primary.error.message}${others.length ? `; also failed: ${others.join(', ')}` : ''}`;
      return new CpuRankError(primary.rank, primary.error.name, primary.error.message, message, cause);
    };

    const fail = (rank: number, error: SerialisedError): void => {
      if (settled || reported[rank]) return;
      reported[rank] = true;
      errors.push({ rank, error });
      if (errors.length === 1) {
        // wake ranks blocked in collectives so they report quickly, then pick the root cause
        abortCpuCollectiveGroup(group, rank);
        graceTimer = setTimeout(() => settle(rankError()), GRACE_MS);
      }
      if (errors.length + finished === worldSize) settle(rankError());
    };

    const succeed = (rank: number, result: R): void => {
      if (settled || reported[rank]) return;
      reported[rank] = true;
      results[rank] = result;
      finished++;
      if (finished === worldSize) settle();
      else if (errors.length > 0 && errors.length + finished === worldSize) settle(rankError());
    };

    if (options.runTimeoutMs !== undefined) {
      runTimer = setTimeout(() => {
        const pending = reported.map((r, q) => (r ? -1 : q)).filter((q) => q >= 0);
        abortCpuCollectiveGroup(group, pending[0] ?? 0);
        settle(new CollectiveTimeoutError(op, `rank${pending.length > 1 ? 's' : ''} ${pending.join(', ')} did not finish within runTimeoutMs = ${options.runTimeoutMs} ms`));
      }, options.runTimeoutMs);
    }

    for (let rank = 0; rank < worldSize; rank++) {
      let worker: InstanceType<NodeApis['wt']['Worker']>;
      try {
        worker = new api.wt.Worker(WORKER_SOURCE, {
          eval: true,
          name: `kiln-rank-${rank}`,
          workerData: { group, rank, worldSize, moduleUrl, coreUrl, backendUrl, data: options.data, timeoutMs, backendOptions },
        });
      } catch (err) {
        fail(rank, { name: err instanceof Error ? err.name : 'Error', message: `could not start its worker: ${err instanceof Error ? err.message : String(err)}` });
        continue;
      }
      workers.push(worker);
      worker.on('message', (m: WorkerMessage) => {
        if (m && m.kind === 'result') succeed(rank, m.result as R);
        else if (m && m.kind === 'error') fail(rank, m.error);
      });
      worker.on('error', (err: unknown) => {
        fail(rank, err instanceof Error ? { name: err.name, message: err.message, stack: err.stack } : { name: 'Error', message: String(err) });
      });
      worker.on('exit', (code: number) => {
        fail(rank, { name: 'Error', message: `its worker exited with code ${code} before returning a result` });
      });
    }
  });
}
