/**
 * Data-parallel training (`kiln train --nproc N --backend cuda`): N processes, one GPU each.
 *
 * The launcher side (`launchDistributedTraining`) starts N copies of the same `kiln train`
 * command through @kiln/backend-cuda's `launchRanks`, without `--nproc` and with one `--out`
 * for all (the default run directory has a timestamp, which the ranks must agree on).
 *
 * The rank side (`runDistributedTraining`): every rank builds the same model from the same
 * seed and draws the same batches from the same token stream (so a checkpoint's stream state
 * is every rank's); each rank trains on its share of every step:
 *   - 'micro-batches' (when the step's micro-batch count divides by N): rank r takes micro-
 *     batches r, r + N, ... whole, so every GPU runs full --micro-batch sized GEMMs;
 *   - 'rows' (otherwise, when --micro-batch divides by N): rank r takes its slice of the rows
 *     of every micro-batch.
 * Before the optimizer step one allReduce (sum) over a single packed f32 buffer averages the
 * gradients (each rank's local mean / N = the mean over the whole batch, as one process would
 * compute it, up to float summation order), averages the logged losses, sums the routed-expert
 * loads (so the auxiliary-loss-free bias update is the same on every rank) and ORs a stop flag
 * (Ctrl-C stops every rank after the same step). Every rank then applies the same update.
 * Only rank 0 writes (run directory, metrics, checkpoints, logs) and computes the xz baseline;
 * rank 0 also sets up first (tokenizer / encoded-corpus caches) while the others wait at a
 * barrier, then they read those caches.
 */
import { ArgumentError, fromStorage, sliceAxis, type Backend, type Collective, type Tensor } from '@kiln/core';
import { Trainer, type TrainRunOptions, type TrainRunResult } from './trainer.js';

/** What the trainer asks of data parallelism (TrainRunOptions.dataParallel). */
export interface DataParallelHook {
  readonly rank: number;
  readonly worldSize: number;
  /** This rank's part of micro-batch `i` of `micro`: the batch itself, a new tensor of its rows, or undefined (another rank's). */
  shard(batch: Tensor, i: number, micro: number): Tensor | undefined;
  /** How many of a step's `micro` micro-batches this rank trains on (the divisor of its loss means). */
  localMicroBatches(micro: number): number;
  /** Reduces a step over the ranks, in place: gradients and losses averaged, expert loads summed; stop if any rank asks. */
  reduce(step: StepSync): Promise<{ stop: boolean }>;
}

export interface StepSync {
  /** This rank's mean gradients (every trained parameter); replaced by the mean over ranks. */
  grads: Map<string, Float32Array>;
  /** Tokens routed to each expert, per MoE layer; replaced by the sums over ranks. */
  loads: Float64Array[];
  /** Loss parts (ce, mtp, balance) of this rank; replaced by the means over ranks. */
  losses: number[];
  /** This rank wants to stop after this step (Ctrl-C). */
  stop: boolean;
}

export type ShardMode = { mode: 'micro-batches' } | { mode: 'rows'; rows: number };

/** How a step's batch is split over `worldSize` ranks (see the module comment). */
export function dataParallelPlan(microBatches: number, microBatch: number, worldSize: number): ShardMode {
  if (worldSize === 1 || microBatches % worldSize === 0) return { mode: 'micro-batches' };
  if (microBatch % worldSize === 0) return { mode: 'rows', rows: microBatch / worldSize };
  throw new ArgumentError(
    'train',
    `--nproc ${worldSize} cannot split a step of ${microBatches} micro-batch(es) of ${microBatch} sequences evenly: make --batch-tokens / (--micro-batch x --seq-len) or --micro-batch a multiple of ${worldSize}`,
  );
}

/** The arguments of `kiln train` for the ranks: without `--nproc`, with `--out` when given. */
export function rankArgv(argv: readonly string[], out: string | undefined): string[] {
  const args: string[] = [];
  let hasOut = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--nproc') {
      i++;
      continue;
    }
    if (a.startsWith('--nproc=')) continue;
    if (a === '--out' || a.startsWith('--out=')) hasOut = true;
    args.push(a);
  }
  if (!hasOut && out !== undefined) args.push('--out', out);
  return args;
}

/** Data parallelism over a Collective (NCCL between GPUs; any Collective works, tests use the CPU one). */
export class DataParallel implements DataParallelHook {
  readonly rank: number;
  readonly worldSize: number;
  private plan: ShardMode | undefined;

  constructor(
    readonly collective: Collective,
    private readonly backend: Backend,
    private readonly microBatch: number,
  ) {
    this.rank = collective.rank;
    this.worldSize = collective.worldSize;
  }

  private planFor(micro: number): ShardMode {
    return (this.plan ??= dataParallelPlan(micro, this.microBatch, this.worldSize));
  }

  shard(batch: Tensor, i: number, micro: number): Tensor | undefined {
    const p = this.planFor(micro);
    if (p.mode === 'micro-batches') return i % this.worldSize === this.rank ? batch : undefined;
    return sliceAxis(batch, 0, this.rank * p.rows, p.rows);
  }

  localMicroBatches(micro: number): number {
    return this.planFor(micro).mode === 'micro-batches' ? micro / this.worldSize : micro;
  }

  async reduce(s: StepSync): Promise<{ stop: boolean }> {
    const names = [...s.grads.keys()].sort();
    let n = s.losses.length + 1;
    for (const name of names) n += s.grads.get(name)!.length;
    for (const l of s.loads) n += l.length;
    const flat = new Float32Array(n);
    let o = 0;
    for (const name of names) {
      const g = s.grads.get(name)!;
      flat.set(g, o);
      o += g.length;
    }
    for (const l of s.loads) for (let j = 0; j < l.length; j++) flat[o++] = l[j];
    for (const v of s.losses) flat[o++] = v;
    flat[o++] = s.stop ? 1 : 0;
    const t = fromStorage(flat, [n], 'f32', { backend: this.backend });
    let sum: Float32Array;
    try {
      const r = await this.collective.allReduce(t, 'sum');
      sum = (await r.data()) as Float32Array;
      r.dispose();
    } finally {
      t.dispose();
    }
    const N = this.worldSize;
    o = 0;
    for (const name of names) {
      const g = s.grads.get(name)!;
      for (let j = 0; j < g.length; j++) g[j] = sum[o + j] / N;
      o += g.length;
    }
    for (const l of s.loads) for (let j = 0; j < l.length; j++) l[j] = sum[o++];
    for (let j = 0; j < s.losses.length; j++) s.losses[j] = sum[o++] / N;
    return { stop: sum[o] > 0 };
  }
}

const importModule = (specifier: string): Promise<unknown> => import(specifier);

interface CudaCollectiveModule {
  launchRanks(o: { nproc: number; argv: readonly string[] }): Promise<{ exitCode: number; failedRank?: number }>;
  joinFromEnv(): Promise<{ rank: number; worldSize: number; uniqueId: Uint8Array } | undefined>;
  createNcclCollective(o: { backend: unknown; rank: number; worldSize: number; uniqueId: Uint8Array; timeoutMs?: number }): Promise<Collective>;
}

async function cudaCollectives(): Promise<CudaCollectiveModule> {
  const m = (await importModule('@kiln/backend-cuda')) as Partial<CudaCollectiveModule>;
  if (typeof m.launchRanks !== 'function' || typeof m.createNcclCollective !== 'function' || typeof m.joinFromEnv !== 'function') {
    throw new ArgumentError('train', '--nproc needs @kiln/backend-cuda with its NCCL collectives (launchRanks, createNcclCollective)');
  }
  return m as CudaCollectiveModule;
}

/** True in a process started by the launcher (a rank of `kiln train --nproc`). */
export function isLaunchedRank(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.KILN_RANK !== undefined;
}

/**
 * The launcher side of `kiln train --nproc N`: runs N ranks of the same command (this process's
 * argv without --nproc, the run directory fixed for all) and resolves with the exit code.
 */
export async function launchDistributedTraining(options: { nproc: number; backend?: string; out?: string; resume?: boolean; preset?: string; argv?: readonly string[] }): Promise<number> {
  if (options.backend !== 'cuda') throw new ArgumentError('train', `--nproc ${options.nproc} trains one process per GPU: it needs --backend cuda`);
  const argv = options.argv ?? process.argv;
  // The default run directory holds a timestamp: fix it here so that every rank uses the same one.
  const out = options.out ?? (options.resume ? undefined : defaultRunDir(options.preset));
  const { launchRanks } = await cudaCollectives();
  const r = await launchRanks({ nproc: options.nproc, argv: [argv[1], ...rankArgv(argv.slice(2), out)] });
  return r.exitCode;
}

function defaultRunDir(preset: string | undefined): string | undefined {
  // Same shape as the trainer's runs/<preset>-<UTC time>.
  if (preset === undefined) return undefined;
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-');
  return `runs/${preset}-${stamp}`;
}

/** A rank's group (NCCL between GPUs from joinNcclFromEnv; tests pass a CPU collective). */
export interface RankContext {
  readonly collective: Collective;
  /** Wait this long for rank 0's setup (tokenizer and corpus caches), default 30 min. */
  readonly setupTimeoutMs?: number;
}

/**
 * Joins the NCCL group of a launched rank (KILN_RANK ... from launchRanks) on `backend`. The
 * timeout of every collective call (default 10 min, KILN_COLLECTIVE_TIMEOUT_MS) bounds how long a
 * rank waits for the others at a step: rank 0 alone writes checkpoints, so it must cover one.
 */
export async function joinNcclFromEnv(backend: Backend, timeoutMs = Number(process.env.KILN_COLLECTIVE_TIMEOUT_MS ?? 600_000)): Promise<Collective> {
  const m = await cudaCollectives();
  const joined = await m.joinFromEnv();
  if (!joined) throw new ArgumentError('train', 'not a launched rank (KILN_RANK is not set)');
  return m.createNcclCollective({ backend, rank: joined.rank, worldSize: joined.worldSize, uniqueId: joined.uniqueId, timeoutMs });
}

/**
 * One rank of a data-parallel run: rank 0 sets up first, the others after it; all train in
 * step; only rank 0 writes and logs. Resolves with the run's result on every rank.
 */
export async function runDistributedTraining(options: TrainRunOptions & { backend: Backend }, ctx: RankContext): Promise<TrainRunResult> {
  const { collective } = ctx;
  const setupTimeoutMs = ctx.setupTimeoutMs ?? 30 * 60_000;
  const primary = collective.rank === 0;
  const rankOptions: TrainRunOptions = primary ? options : { ...options, progress: 'none', log: () => undefined, baseline: false };
  let trainer: Trainer | undefined;
  let dp: DataParallel | undefined;
  try {
    if (!primary) await collective.barrier({ timeoutMs: setupTimeoutMs });
    // The micro-batch size is only known once the config is resolved; the hook reads it lazily.
    const hook: DataParallelHook = {
      rank: collective.rank,
      worldSize: collective.worldSize,
      shard: (b, i, m) => dp!.shard(b, i, m),
      localMicroBatches: (m) => dp!.localMicroBatches(m),
      reduce: (s) => dp!.reduce(s),
    };
    try {
      trainer = await Trainer.create({ ...rankOptions, dataParallel: hook });
    } finally {
      // Rank 0 lets the others start even when its setup failed (they fail fast on their own, or the launcher stops them).
      if (primary) await collective.barrier({ timeoutMs: setupTimeoutMs });
    }
    const t = trainer.config.train;
    dp = new DataParallel(collective, options.backend, t.microBatch);
    // A batch that does not split over the ranks fails here, on every rank, before training.
    dp.localMicroBatches(t.batchTokens / (t.microBatch * t.seqLen));
    return await trainer.run();
  } finally {
    trainer?.dispose();
    collective.close();
  }
}
