import { Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_PRESET, PRESETS } from '../presets/index.js';
import { resolveTrainConfig, type TrainOverrides } from '../train/config.js';
import { isLaunchedRank, joinNcclFromEnv, launchDistributedTraining, runDistributedTraining } from '../train/distributed.js';
import { formatVerdict, runTraining, type TrainRunResult } from '../train/trainer.js';
import { disposeBackends, positiveInt, selectBackend, writeOut } from './shared.js';

export interface TrainCommandOptions {
  preset?: string;
  config?: string;
  backend?: string;
  precision?: 'fp32' | 'bf16' | 'fp8';
  steps?: number;
  out?: string;
  seed?: number;
  resume?: boolean;
  balanceGamma?: number;
  auxAlpha?: number;
  mtpDepth?: number;
  mtpLambda?: number;
  mtpLambdaFinal?: number;
  mtpLambdaSwitch?: number;
  lr?: number;
  batchTokens?: number;
  microBatch?: number;
  seqLen?: number;
  vocabSize?: number;
  evalEvery?: number;
  logEvery?: number;
  checkpointEvery?: number;
  stopAfter?: number;
  data?: string;
  tokenizer?: string;
  progress?: 'auto' | 'bar' | 'lines' | 'none';
  json?: boolean;
  /** Data parallel over this many processes, one GPU each (needs --backend cuda). */
  nproc?: number;
}

/** A non-negative number option. */
function number(label: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`${label} must be a non-negative number, got ${JSON.stringify(value)}.`);
    return n;
  };
}

/** A non-negative integer option. */
function count(label: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n)) throw new InvalidArgumentError(`${label} must be a non-negative integer, got ${JSON.stringify(value)}.`);
    return n;
  };
}

function formatResult(r: TrainRunResult): string {
  const lines: string[] = [];
  const mb = `, peak tensor memory ${(r.peakBytes / 2 ** 20).toFixed(1)} MiB`;
  if (r.stopped) lines.push(`stopped at step ${r.step}/${r.config.train.steps}, checkpoint saved (resume with: kiln train --resume --out ${r.runDir})`);
  else lines.push(`trained ${r.step} steps in ${r.seconds.toFixed(1)} s (${Math.round(r.tokensPerSec)} tokens/s${mb}); ${r.skipped} step${r.skipped === 1 ? '' : 's'} skipped for non-finite gradients`);
  if (r.val && r.xz) lines.push(formatVerdict(r.val, r.xz));
  else if (r.val) lines.push(`validation: ${r.val.bpb.toFixed(4)} bits/byte`);
  lines.push(`run: ${r.runDir} (metrics.jsonl, run.json, checkpoints/, tokenizer.json, config.json)`);
  return `${lines.join('\n')}\n`;
}

/** `kiln train`: trains a DeepSeek-V3-style model and compares its validation BPB with xz. */
export async function runTrainCommand(opts: TrainCommandOptions): Promise<TrainRunResult> {
  const backend = await selectBackend('train', opts.backend);
  try {
    const overrides: TrainOverrides = {
      steps: opts.steps,
      seed: opts.seed,
      precision: opts.precision,
      balanceGamma: opts.balanceGamma,
      auxAlpha: opts.auxAlpha,
      mtpDepth: opts.mtpDepth,
      mtpLambda: opts.mtpLambda,
      mtpLambdaFinal: opts.mtpLambdaFinal,
      mtpLambdaSwitch: opts.mtpLambdaSwitch,
      lr: opts.lr,
      batchTokens: opts.batchTokens,
      microBatch: opts.microBatch,
      seqLen: opts.seqLen,
      vocabSize: opts.vocabSize,
      evalEvery: opts.evalEvery,
      logEvery: opts.logEvery,
      checkpointEvery: opts.checkpointEvery,
    };
    const runOptions = {
      preset: opts.preset,
      configFile: opts.config,
      overrides,
      backend,
      out: opts.out,
      resume: opts.resume,
      data: opts.data,
      tokenizer: opts.tokenizer,
      stopAfter: opts.stopAfter,
      handleSigint: true,
      progress: opts.json ? 'none' : opts.progress,
      log: opts.json ? () => undefined : undefined,
    };
    // A rank of `kiln train --nproc N` (started by the launcher): data parallel over NCCL.
    const rank = isLaunchedRank() ? await joinNcclFromEnv(backend) : undefined;
    const result = rank ? await runDistributedTraining({ ...runOptions, backend }, { collective: rank }) : await runTraining(runOptions);
    if (rank && rank.rank !== 0) return result;
    await writeOut(opts.json ? `${JSON.stringify({ ...result, config: result.config })}\n` : formatResult(result));
    return result;
  } finally {
    await disposeBackends([backend.name]);
  }
}

/** The `kiln train` command. */
export function trainCommand(): Command {
  const presets = Object.keys(PRESETS);
  return new Command('train')
    .description('train a DeepSeek-V3-style model (MLA, DeepSeekMoE, MTP) on the Brown corpus or your text, and compare its validation bits/byte with xz -9e')
    .option('--preset <name>', `model + recipe preset: ${presets.join(', ')} (default ${DEFAULT_PRESET})`)
    .option('--config <file>', 'JSON config: {"preset"?, "model"?: {transformers keys}, "train"?: {...}} over the preset')
    .option('--backend <name>', 'backend to train on (default: the best available)')
    .addOption(new Option('--precision <p>', 'Linear-layer GEMM precision').choices(['fp32', 'bf16', 'fp8']))
    .option('--steps <n>', 'optimizer steps', positiveInt('--steps'))
    .option('--out <dir>', 'run directory (default runs/<preset>-<time>)')
    .option('--seed <n>', 'seed of the initialisation and the data order', count('--seed'))
    .option('--resume', 'continue the run in --out (or the latest runs/<preset>-*) from its latest checkpoint')
    .option('--balance-gamma <g>', 'bias update speed of auxiliary-loss-free balancing (0: off)', number('--balance-gamma'))
    .option('--aux-alpha <a>', 'weight of the sequence-wise balance loss (0: off)', number('--aux-alpha'))
    .option('--mtp-depth <d>', 'multi-token-prediction depth D (0: off)', count('--mtp-depth'))
    .option('--mtp-lambda <l>', 'MTP loss weight λ', number('--mtp-lambda'))
    .option('--mtp-lambda-final <l>', 'λ after --mtp-lambda-switch of the steps (the report: 0.3, then 0.1)', number('--mtp-lambda-final'))
    .option('--mtp-lambda-switch <f>', 'fraction of the steps at which λ changes (default 10/14.8)', number('--mtp-lambda-switch'))
    .option('--lr <lr>', 'peak learning rate', number('--lr'))
    .option('--batch-tokens <n>', 'tokens per optimizer step (gradient accumulation)', positiveInt('--batch-tokens'))
    .option('--micro-batch <n>', 'sequences per forward/backward', positiveInt('--micro-batch'))
    .option('--seq-len <n>', 'tokens per sequence', positiveInt('--seq-len'))
    .option('--vocab-size <n>', 'BPE vocabulary size of the trained tokenizer', positiveInt('--vocab-size'))
    .option('--eval-every <n>', 'validate every n steps (0: only at the end)', count('--eval-every'))
    .option('--log-every <n>', 'a log line every n steps (metrics.jsonl gets every step)', positiveInt('--log-every'))
    .option('--checkpoint-every <n>', 'checkpoint every n steps (0: only at the end)', count('--checkpoint-every'))
    .option('--stop-after <n>', 'stop after n steps in this invocation (resume later with --resume)', positiveInt('--stop-after'))
    .option('--data <path>', 'training data: a .txt/.jsonl file, a .bin token shard (u16; .u32.bin for u32; needs --tokenizer), or a directory of either (default: the Brown training split)')
    .option('--tokenizer <file>', 'a byte-level BPE tokenizer.json (default: train one, cached under runs/.cache)')
    .addOption(new Option('--progress <mode>', 'progress display (auto: a bar on a terminal, lines otherwise)').choices(['auto', 'bar', 'lines', 'none']))
    .option('--json', 'print the result as JSON')
    .option('--nproc <n>', 'data parallel: n processes, one GPU each (needs --backend cuda); rank 0 writes the run', positiveInt('--nproc', 64))
    .addHelpText(
      'after',
      ['', 'Examples:', '  kiln train                       the default preset (~10 min on 2 CPU cores), then BPB vs xz -9e', '  kiln train --preset micro --steps 50', '  kiln train --out runs/a --checkpoint-every 100 --stop-after 200', '  kiln train --out runs/a --resume', '  kiln train --backend cuda --nproc 2   data parallel on 2 GPUs'].join('\n'),
    )
    .action(async (opts: TrainCommandOptions) => {
      if (opts.nproc !== undefined && opts.nproc > 1 && !isLaunchedRank()) {
        // The launcher: N ranks of this same command; exits with the first failing rank's code.
        process.exitCode = await launchDistributedTraining({ nproc: opts.nproc, backend: opts.backend, out: opts.out, resume: opts.resume, preset: resolveTrainConfig({ preset: opts.preset, configFile: opts.config }).preset });
        return;
      }
      await runTrainCommand(opts);
    });
}
