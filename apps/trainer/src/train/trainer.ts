import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  add,
  ArgumentError,
  BackendError,
  bestAvailableBackend,
  crossEntropy,
  getBackend,
  keep,
  memory,
  mul,
  nn,
  noGrad,
  resetPeakMemory,
  setBackend,
  sliceAxis,
  tensor,
  tidy,
  valueAndGrads,
  type Backend,
  type Tensor,
} from '@kiln/core';
import { bitsPerByte, utf8Bytes, xzBitsPerByte, type CompressionBaseline } from '../baseline/bpb.js';
import { brownText } from '../data/brown.js';
import { listDataFiles, readTextData } from '../data/readers.js';
import { isShardFile, ShardTokenSource, ShardWriter } from '../data/shards.js';
import { ArrayTokenSource, TokenStream, type TokenSource, type TokenStreamState } from '../data/stream.js';
import { parseDeepseekV3Config } from '../model/config.js';
import { DeepseekV3ForCausalLM } from '../model/deepseek-v3.js';
import { AdamW, GradAccumulator, type AdamWState } from '../optim/adamw.js';
import { DeviceAdamW, DeviceGradAccumulator, deviceOptimizerOf } from '../optim/device-adamw.js';
import { warmupConstantDecay, warmupCosine } from '../optim/schedule.js';
import type { TrainSettings } from '../presets/index.js';
import { BpeTokenizer, END_OF_TEXT } from '../tokenizer/bpe.js';
import { loadTokenizer, saveTokenizer, trainTokenizer } from '../tokenizer/train.js';
import { VERSION } from '../version.js';
import { balanceBiasUpdate, maxOverMean, sequenceBalanceLoss } from './balance.js';
import { modelConfigJson, resolveTrainConfig, type ResolveOptions, type TrainConfig } from './config.js';
import type { DataParallelHook } from './distributed.js';
import { Progress, type ProgressMode } from './progress.js';
import { assertSameConfig, loadLatestSnapshot, MODEL_TENSOR_PREFIX, saveSnapshot, type SnapshotTensor, type TrainingSnapshot } from './snapshot.js';

/** One line of metrics.jsonl for a training step (field names are read by `kiln plot`). */
export interface TrainMetrics {
  type: 'train';
  step: number;
  loss: number;
  ceLoss: number;
  mtpLoss: number;
  balanceLoss: number;
  lr: number;
  gradNorm: number;
  skipped: boolean;
  tokens: number;
  tokensPerSec: number;
  elapsedSec: number;
  router: RouterMetrics[];
}

export interface RouterMetrics {
  /** Decoder layer index (MTP modules continue after the last main layer). */
  layer: number;
  /** Tokens routed to each expert over the step. */
  load: number[];
  maxOverMean: number;
  /** e_score_correction_bias after the step's balancing update. */
  bias: number[];
}

/** One line of metrics.jsonl for a validation pass. */
export interface ValMetrics {
  type: 'val';
  step: number;
  /** Mean cross-entropy, nats per token. */
  loss: number;
  /** Bits per UTF-8 byte of the validation text. */
  bpb: number;
  tokens: number;
  bytes: number;
}

export interface TrainRunOptions extends ResolveOptions {
  /** Backend name (default: the best available), or an initialised backend. */
  backend?: string | Backend;
  /** Run directory (default runs/<preset>-<UTC timestamp>; with resume: the latest runs/<preset>-*). */
  out?: string;
  /** Continue from the run directory's latest checkpoint. */
  resume?: boolean;
  /** Training text (.txt/.jsonl file or directory) instead of the Brown training split. */
  data?: string;
  /** A byte-level BPE tokenizer.json to use instead of training one. */
  tokenizer?: string;
  /** Where trained tokenizers and encoded corpora are cached (default runs/.cache or $KILN_CACHE_DIR). */
  cacheDir?: string;
  /** Stop after this many steps in this invocation (the schedule still runs to train.steps). */
  stopAfter?: number;
  /** Progress display: a bar on a TTY, plain lines otherwise (auto), or nothing. */
  progress?: ProgressMode;
  /** Where plain lines go (default stdout). */
  log?: (line: string) => void;
  /** On SIGINT, finish the current step, checkpoint and return (stopped) instead of dying (the CLI sets it). */
  handleSigint?: boolean;
  /** Skip the final xz baseline (tests). */
  baseline?: boolean;
  /** Sees (and may modify) the accumulated FP32 gradients of each step before the optimizer. */
  onGradients?: (step: number, grads: Map<string, Float32Array>) => void;
  /**
   * Data parallelism (`kiln train --nproc`, see distributed.ts): this rank's share of every
   * step's batches and the reduction over ranks before the optimizer. Only rank 0 writes files.
   */
  dataParallel?: DataParallelHook;
}

export interface TrainRunResult {
  runDir: string;
  config: TrainConfig;
  /** Steps completed in total (the next step index). */
  step: number;
  /** True when the run stopped before train.steps (stopAfter). */
  stopped: boolean;
  /** Steps skipped for non-finite gradients, over the whole run. */
  skipped: number;
  /** Final validation (absent when stopped early). */
  val?: ValMetrics;
  xz?: CompressionBaseline;
  /** Training wall time of this invocation (seconds), all phases included. */
  seconds: number;
  /** Mean training throughput of this invocation. */
  tokensPerSec: number;
  /** Peak bytes of live tensor storage during this invocation (core's memory().peakBytes). */
  peakBytes: number;
  parameters: number;
  backend: string;
  device: string;
}

/** Config fields that do not change the trained weights (free to differ on resume). */
const RUNTIME_ONLY: readonly (keyof TrainSettings)[] = ['evalEvery', 'logEvery', 'checkpointEvery', 'keepCheckpoints', 'evalBytes'];

const BIAS_SUFFIX = '.gate.e_score_correction_bias';

function defaultCacheDir(): string {
  return process.env.KILN_CACHE_DIR || join('runs', '.cache');
}

function timestamp(): string {
  return new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-');
}

/** Learning rate of step `step` (0-based). */
export function learningRate(step: number, t: TrainSettings): number {
  const minLr = t.lr * t.minLrRatio;
  if (t.schedule === 'cosine') return warmupCosine(step, { peakLr: t.lr, warmupSteps: t.warmupSteps, totalSteps: t.steps, minLr });
  const decayStart = Math.max(t.warmupSteps, Math.round(t.decayFrom * t.steps));
  return warmupConstantDecay(step, { peakLr: t.lr, warmupSteps: t.warmupSteps, decayStart, decaySteps: t.steps - decayStart, minLr });
}

interface MoEEntry {
  name: string;
  layer: number;
  moe: nn.DeepseekMoE;
  biasName: string;
  bias: Float32Array;
  load: Float64Array;
}

type RoutingStats = Parameters<NonNullable<nn.DeepseekMoE['onRouting']>>[0];

interface Corpus {
  tokenizer: BpeTokenizer;
  tokenizerHash: string;
  /** Training ids: in memory (Brown) or streamed from shard files (`--data`). */
  train: TokenSource;
  /** Shard files to close when the run ends (undefined for the in-memory source). */
  shards?: ShardTokenSource;
  /** UTF-8 bytes of the training text (null for pre-tokenized shards: the text is not known). */
  trainBytes: number | null;
  valText: string;
  valIds: Int32Array;
}

function sha(text: string | Uint8Array): string {
  return createHash('sha256').update(text).digest('hex');
}

/** How `--data` is read: text documents (encoded and cached), or pre-tokenized shards (ids used directly). */
function dataKind(data: string | undefined): 'brown' | 'text' | 'shards' {
  if (!data) return 'brown';
  const files = listDataFiles(data);
  const shards = files.filter(isShardFile);
  if (shards.length === 0) return 'text';
  if (shards.length < files.length) {
    const text = files.find((f) => !isShardFile(f));
    throw new ArgumentError('data', `--data ${data} mixes token shards (${shards[0]}) with text (${text}); put .bin shards and .txt/.jsonl text in separate directories`);
  }
  return 'shards';
}

/** Loads or trains (and caches) the tokenizer, then encodes the training and validation text. */
async function prepareCorpus(cfg: TrainConfig, options: TrainRunOptions, log: (s: string) => void): Promise<Corpus> {
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  mkdirSync(cacheDir, { recursive: true });
  const kind = dataKind(options.data);
  if (kind === 'shards' && !options.tokenizer) {
    throw new ArgumentError('train', `--data ${options.data} holds pre-tokenized shards: pass --tokenizer FILE (the tokenizer.json they were encoded with; validation BPB is measured on Brown text with it)`);
  }
  let tokenizer: BpeTokenizer;
  if (options.tokenizer) {
    tokenizer = loadTokenizer(options.tokenizer);
  } else {
    const source = options.data ? `data-${sha(options.data).slice(0, 12)}` : 'brown';
    const path = join(cacheDir, `tokenizer-${source}-${cfg.train.vocabSize}.json`);
    if (existsSync(path)) tokenizer = loadTokenizer(path);
    else {
      const r = await trainTokenizer({ vocabSize: cfg.train.vocabSize, data: options.data });
      tokenizer = r.tokenizer;
      saveTokenizer(tokenizer, path);
      log(`tokenizer: trained a ${tokenizer.vocabSize}-token byte-level BPE in ${r.seconds.toFixed(1)} s (cached at ${path})`);
    }
  }
  const tokenizerJson = JSON.stringify(tokenizer.toHuggingFaceJson());
  const tokenizerHash = sha(tokenizerJson).slice(0, 16);
  const eot = tokenizer.tokenId(END_OF_TEXT);
  if (eot === undefined) throw new ArgumentError('train', `the tokenizer has no ${END_OF_TEXT} token`);
  const valText = brownText('validation');
  const valIds = Int32Array.from([eot, ...tokenizer.encode(valText)]);

  if (kind === 'shards') {
    // Pre-tokenized: ids are used as they are, checked against the vocabulary as each window is read.
    const shards = ShardTokenSource.fromPath(options.data as string, { vocabSize: tokenizer.vocabSize });
    return { tokenizer, tokenizerHash, train: shards, shards, trainBytes: null, valText, valIds };
  }

  // Training ids: <|endoftext|> then each document's text, cached per tokenizer and data (a u32 shard).
  const dataKey = options.data ? sha(options.data).slice(0, 12) : 'brown-train';
  const cachePath = join(cacheDir, `ids-${dataKey}-${tokenizerHash}.u32.bin`);
  const metaPath = `${cachePath}.json`;
  let trainBytes: number;
  if (existsSync(cachePath) && existsSync(metaPath)) {
    trainBytes = (JSON.parse(readFileSync(metaPath, 'utf8')) as { bytes: number }).bytes;
  } else {
    // Encoded document by document and appended to the shard (temporary file, renamed when complete).
    const writer = new ShardWriter(cachePath, 'u32');
    trainBytes = 0;
    try {
      const addDoc = (text: string): void => {
        writer.write([eot]);
        writer.write(tokenizer.encode(text));
        trainBytes += utf8Bytes(text);
      };
      if (options.data) for await (const doc of readTextData(options.data)) addDoc(doc);
      else addDoc(brownText('train'));
      writer.finish();
    } catch (err) {
      writer.abort();
      throw err;
    }
    const tmpMeta = `${metaPath}.tmp-${process.pid}`;
    writeFileSync(tmpMeta, JSON.stringify({ bytes: trainBytes, tokens: writer.tokens }));
    renameSync(tmpMeta, metaPath);
  }
  if (options.data) {
    // User text can be any size: its ids stream from the cached shard (positioned reads).
    const shards = new ShardTokenSource([cachePath], { vocabSize: tokenizer.vocabSize });
    return { tokenizer, tokenizerHash, train: shards, shards, trainBytes, valText, valIds };
  }
  // Brown's training split is small (a few MB of ids): held in memory, as before (the same ids and batches
  // as streaming them from the cached shard would give).
  const buf = readFileSync(cachePath);
  const trainIds = new Int32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  return { tokenizer, tokenizerHash, train: new ArrayTokenSource(trainIds), trainBytes, valText, valIds };
}

function latestRunDir(preset: string): string | undefined {
  if (!existsSync('runs')) return undefined;
  const names = readdirSync('runs')
    .filter((n) => n.startsWith(`${preset}-`))
    .sort();
  return names.length ? join('runs', names[names.length - 1]) : undefined;
}

/** The config part a checkpoint must match to resume (everything that changes the weights). */
function fingerprint(cfg: TrainConfig, vocabSize: number, tokenizerHash: string, data: string | undefined): Record<string, unknown> {
  const train: Record<string, unknown> = { ...cfg.train };
  for (const k of RUNTIME_ONLY) delete train[k];
  return { preset: cfg.preset, model: modelConfigJson(cfg, vocabSize), train, tokenizer: { vocabSize, sha256: tokenizerHash }, data: data ?? 'brown:train' };
}

/**
 * A training run: the loop behind `kiln train`. Sets up backend, tokenizer, data, model and
 * optimizer (or restores them from the run's latest checkpoint), trains with gradient
 * accumulation, balancing and MTP, writes metrics.jsonl / run.json / checkpoints, validates,
 * and compares with xz at the end.
 */
export class Trainer {
  readonly config: TrainConfig;
  readonly runDir: string;
  model!: DeepseekV3ForCausalLM;
  private opt!: AdamW | DeviceAdamW;
  private stream!: TokenStream;
  private corpus!: Corpus;
  private moes: MoEEntry[] = [];
  private configJson!: Record<string, unknown>;
  private collected: { entry: MoEEntry; s: RoutingStats }[] = [];
  private collecting = false;
  /** Next step to run. */
  step = 0;
  /** Steps skipped for non-finite gradients. */
  skipped = 0;
  /** Tokens trained on (over the whole run, resumed ones included). */
  tokens = 0;
  /** Training seconds of earlier invocations (resume). */
  private priorSeconds = 0;
  private log: (s: string) => void;
  private lastVal: ValMetrics | undefined;
  backendName = '';
  device = '';
  /** The checkpoint step this invocation resumed from. */
  resumedFrom: number | undefined;
  /** Linear layers set to the run's precision (all but lm_head). */
  linearsAtPrecision = 0;
  /** Ctrl-C was pressed here; `interrupted`: the loop stops (with data parallelism: once every rank knows). */
  private stopRequested = false;
  private interrupted = false;

  /** Whether this process writes the run directory (with data parallelism only rank 0 does). */
  private get writes(): boolean {
    return (this.options.dataParallel?.rank ?? 0) === 0;
  }

  private constructor(config: TrainConfig, runDir: string, private readonly options: TrainRunOptions) {
    this.config = config;
    this.runDir = runDir;
    this.log = options.log ?? ((s: string) => process.stdout.write(`${s}\n`));
  }

  /** Resolves the config, picks the run directory and sets everything up (resuming if asked). */
  static async create(options: TrainRunOptions = {}): Promise<Trainer> {
    const config = resolveTrainConfig(options);
    let runDir = options.out;
    if (runDir === undefined) {
      runDir = options.resume ? latestRunDir(config.preset) : join('runs', `${config.preset}-${timestamp()}`);
      if (runDir === undefined) throw new ArgumentError('train', `--resume: no run of preset ${config.preset} under runs/; pass --out RUN_DIR`);
    }
    if (options.stopAfter !== undefined && !(Number.isInteger(options.stopAfter) && options.stopAfter >= 1)) {
      throw new ArgumentError('train', `stopAfter must be a positive integer, got ${options.stopAfter}`);
    }
    const t = new Trainer(config, runDir, options);
    await t.setup();
    return t;
  }

  private async setup(): Promise<void> {
    const o = this.options;
    const backend = typeof o.backend === 'object' ? o.backend : o.backend !== undefined ? await setBackend(o.backend) : await bestAvailableBackend();
    this.backendName = backend.name;
    this.device = backend.device.name;
    if (getBackend() !== backend) throw new ArgumentError('train', `backend ${backend.name} is not the current backend`);
    const m = this.config.model;
    assertCanRoute(backend, { firstKDenseReplace: m.first_k_dense_replace, numHiddenLayers: m.num_hidden_layers, numNextnPredictLayers: m.num_nextn_predict_layers });
    const precision = this.config.train.precision;

    if (this.writes) mkdirSync(this.runDir, { recursive: true });
    const snap = o.resume ? await loadLatestSnapshot(this.runDir) : undefined;
    if (o.resume && !snap) throw new ArgumentError('train', `--resume: ${this.runDir} has no checkpoint to resume from`);
    if (!o.resume && this.writes && existsSync(join(this.runDir, 'metrics.jsonl'))) {
      throw new ArgumentError('train', `${this.runDir} already holds a run; pass --resume to continue it or --out to start a new one`);
    }

    this.corpus = await prepareCorpus(this.config, o, this.log);
    const vocab = this.corpus.tokenizer.vocabSize;
    if (o.tokenizer) this.config.train.vocabSize = vocab;
    this.configJson = fingerprint(this.config, vocab, this.corpus.tokenizerHash, o.data);
    if (snap) assertSameConfig(snap.configJson, this.configJson, `${this.runDir} (checkpoint step ${snap.step})`);
    if (this.writes) {
      saveTokenizer(this.corpus.tokenizer, join(this.runDir, 'tokenizer.json'));
      writeFileSync(join(this.runDir, 'config.json'), `${JSON.stringify(this.configJson.model, null, 2)}\n`);
    }

    const modelCfg = parseDeepseekV3Config(this.configJson.model, `preset ${this.config.preset}`);
    this.model = DeepseekV3ForCausalLM.create(modelCfg, { seed: this.config.train.seed });
    // FP8/BF16 GEMMs in every Linear but the output head (embedding, router, norms and attention
    // are not Linears and stay in f32, as in DeepSeek-V3's recipe).
    this.linearsAtPrecision = nn.setLinearPrecision(this.model, precision, { exclude: (n) => n === 'lm_head' });
    for (const [name, m] of this.model.modules()) {
      if (!(m instanceof nn.DeepseekMoE)) continue;
      const layer = Number(/layers\.(\d+)\.mlp$/.exec(name)?.[1] ?? -1);
      const entry: MoEEntry = { name, layer, moe: m, biasName: `${name}${BIAS_SUFFIX}`, bias: new Float32Array(m.config.nRoutedExperts), load: new Float64Array(m.config.nRoutedExperts) };
      m.onRouting = (s) => {
        if (this.collecting) this.collected.push({ entry, s });
        else s.affinities?.dispose();
      };
      m.routingAffinities = this.config.train.auxAlpha > 0;
      this.moes.push(entry);
    }
    const t = this.config.train;
    const trained = new Map([...this.model.parameters()].filter(([n]) => !n.endsWith(BIAS_SUFFIX)));
    const adamOptions = { beta1: t.beta1, beta2: t.beta2, weightDecay: t.weightDecay, maxGradNorm: t.gradClip > 0 ? t.gradClip : undefined, momentDtype: t.momentDtype };
    if (snap) {
      this.restore(snap, adamOptions);
      this.resumedFrom = snap.step;
    } else {
      const dev = this.deviceOptimizer();
      this.opt = dev ? await DeviceAdamW.create(trained, dev, adamOptions) : await AdamW.create(trained, adamOptions);
      this.stream = new TokenStream(this.corpus.train, { batchSize: t.microBatch, seqLen: t.seqLen, seed: t.seed });
      if (this.writes) writeFileSync(join(this.runDir, 'metrics.jsonl'), '');
    }
    this.writeRunJson();
  }

  get parameterCount(): number {
    let n = 0;
    for (const [name, p] of this.model.parameters()) if (!name.endsWith(BIAS_SUFFIX)) n += p.size;
    return n;
  }

  private writeRunJson(result?: Record<string, unknown>): void {
    if (!this.writes) return;
    const run = {
      kiln: VERSION,
      node: process.version,
      preset: this.config.preset,
      precision: this.config.train.precision,
      linearsAtPrecision: this.linearsAtPrecision,
      backend: this.backendName,
      device: this.device,
      seed: this.config.train.seed,
      parameters: this.parameterCount,
      config: this.config,
      model: this.configJson.model,
      tokenizer: { vocabSize: this.corpus.tokenizer.vocabSize, source: this.options.tokenizer ?? `trained on ${this.options.data ?? 'brown train split'}`, sha256: this.corpus.tokenizerHash },
      data: { train: this.options.data ?? 'brown:train', trainTokens: this.corpus.train.length, trainBytes: this.corpus.trainBytes, validation: 'brown:validation', valTokens: this.corpus.valIds.length - 1, valBytes: utf8Bytes(this.corpus.valText) },
      resumedFrom: this.resumedFrom,
      result,
    };
    writeFileSync(join(this.runDir, 'run.json'), `${JSON.stringify(run, null, 2)}\n`);
  }

  // ------------------------------------------------------------------------------------------
  // checkpoints

  /** Everything needed to continue bit-exactly. */
  snapshot(): TrainingSnapshot {
    const tensors = new Map<string, SnapshotTensor>();
    const host = this.opt.toHost();
    for (const [name, s] of Object.entries(host.params)) {
      tensors.set(`${MODEL_TENSOR_PREFIX}${name}`, { dtype: 'f32', shape: s.shape, data: s.master });
      const md = host.momentDtype === 'bf16' ? 'bf16' : 'f32';
      tensors.set(`optim/m/${name}`, { dtype: md, shape: s.shape, data: s.m });
      tensors.set(`optim/v/${name}`, { dtype: md, shape: s.shape, data: s.v });
    }
    for (const e of this.moes) tensors.set(`${MODEL_TENSOR_PREFIX}${e.biasName}`, { dtype: 'f32', shape: [e.bias.length], data: e.bias.slice() });
    const shapes: Record<string, { shape: number[]; dtype: string }> = {};
    for (const [name, s] of Object.entries(host.params)) shapes[name] = { shape: s.shape, dtype: s.dtype };
    return {
      step: this.step,
      configJson: this.configJson,
      tensors,
      state: {
        kiln: VERSION,
        adamw: { step: host.step, skipped: host.skipped, momentDtype: host.momentDtype, params: shapes },
        stream: this.stream.getState(),
        skipped: this.skipped,
        tokens: this.tokens,
        elapsedSec: this.elapsed(),
        lastVal: this.lastVal ?? null,
      },
    };
  }

  private restore(snap: TrainingSnapshot, adamOptions: Parameters<typeof AdamW.fromHost>[1]): void {
    const st = snap.state as { adamw: { step: number; skipped: number; momentDtype: 'bf16' | 'f32'; params: Record<string, { shape: number[]; dtype: string }> }; stream: TokenStreamState; skipped: number; tokens: number; elapsedSec: number; lastVal: ValMetrics | null };
    const get = (key: string): SnapshotTensor => {
      const t = snap.tensors.get(key);
      if (!t) throw new ArgumentError('train', `checkpoint step ${snap.step}: tensor ${key} is missing`);
      return t;
    };
    const params: AdamWState['params'] = {};
    for (const [name, meta] of Object.entries(st.adamw.params)) {
      params[name] = { shape: meta.shape, dtype: meta.dtype, master: get(`${MODEL_TENSOR_PREFIX}${name}`).data as Float32Array, m: get(`optim/m/${name}`).data as Uint16Array | Float32Array, v: get(`optim/v/${name}`).data as Uint16Array | Float32Array };
    }
    const state = { step: st.adamw.step, skipped: st.adamw.skipped, momentDtype: st.adamw.momentDtype, params };
    const dev = this.deviceOptimizer();
    this.opt = dev ? DeviceAdamW.fromHost(state, dev, adamOptions) : AdamW.fromHost(state, adamOptions);
    for (const [name, t] of this.opt.params()) this.model.setParameter(name, t);
    for (const e of this.moes) {
      e.bias = Float32Array.from(get(`${MODEL_TENSOR_PREFIX}${e.biasName}`).data as Float32Array);
      this.model.setParameter(e.biasName, tensor(e.bias, [e.bias.length]));
    }
    const t = this.config.train;
    this.stream = new TokenStream(this.corpus.train, { batchSize: t.microBatch, seqLen: t.seqLen, seed: t.seed }, st.stream);
    this.step = snap.step;
    this.skipped = st.skipped;
    this.tokens = st.tokens;
    this.priorSeconds = st.elapsedSec;
    this.lastVal = st.lastVal ?? undefined;
    // metrics.jsonl: drop lines past the checkpoint (an interrupted run may have logged more).
    const path = join(this.runDir, 'metrics.jsonl');
    if (this.writes && existsSync(path)) {
      const keepLines = readFileSync(path, 'utf8')
        .split('\n')
        .filter((l) => l.trim() !== '')
        .filter((l) => {
          try {
            const m = JSON.parse(l) as { type?: string; step?: number };
            return m.type === 'train' ? (m.step ?? 0) < this.step : (m.step ?? 0) <= this.step;
          } catch {
            return false;
          }
        });
      writeFileSync(path, keepLines.map((l) => `${l}\n`).join(''));
    }
  }

  async checkpoint(): Promise<string> {
    if (!this.writes) return this.runDir;
    return saveSnapshot(this.runDir, this.snapshot(), { keep: this.config.train.keepCheckpoints });
  }

  // ------------------------------------------------------------------------------------------
  // the loss

  /**
   * Loss of one micro-batch [B, T+1] i32: CE(main) + (λ/D)·Σ_d CE(MTP d) + α·Σ_layers balance.
   * The parts come back kept (dispose them).
   */
  private microLoss(batch: Tensor): { total: Tensor; ce: Tensor; mtp: Tensor; bal: Tensor } {
    const t = this.config.train;
    const T = batch.shape[1] - 1;
    const inputs = sliceAxis(batch, 1, 0, T);
    const targets = sliceAxis(batch, 1, 1, T);
    const D = this.model.config.numNextnPredictLayers;
    const { logits, mtpLogits } = D > 0 ? this.model.forwardWithMtp(inputs) : { logits: this.model.forward(inputs), mtpLogits: [] as Tensor[] };
    const ce = crossEntropy(logits, targets);
    let mtp: Tensor = tensor([0], []);
    mtpLogits.forEach((l, j) => {
      // depth j at position i predicts t_{i+2+j}
      const n = T - 1 - j;
      mtp = add(mtp, crossEntropy(l, sliceAxis(batch, 1, 2 + j, n)));
    });
    if (D > 0) mtp = mul(mtp, mtpLambdaAt(this.step, t) / D);
    let bal: Tensor = tensor([0], []);
    if (t.auxAlpha > 0) {
      for (const { s } of this.collected) {
        if (!s.affinities) continue;
        const [B, S] = s.tokenShape.length === 2 ? s.tokenShape : [1, s.tokenShape[0]];
        bal = add(bal, sequenceBalanceLoss(s.affinities, s.indices, B, S, s.k));
      }
      bal = mul(bal, t.auxAlpha);
    }
    const total = add(add(ce, mtp), bal);
    return { total, ce: keep(ce), mtp: keep(mtp), bal: keep(bal) };
  }

  // ------------------------------------------------------------------------------------------
  // one step

  private elapsedStart = performance.now();
  private elapsed(): number {
    return this.priorSeconds + (performance.now() - this.elapsedStart) / 1000;
  }

  /**
   * The backend's device optimizer (master weights and moments stay on the GPU) when this run can
   * use it: a backend that offers one, a single process and no host gradient hook.
   * KILN_HOST_OPTIMIZER=1 forces the host optimizer.
   */
  private deviceOptimizer() {
    if (this.options.dataParallel || this.options.onGradients || process.env.KILN_HOST_OPTIMIZER === '1') return undefined;
    return deviceOptimizerOf(getBackend());
  }

  /** Runs one optimizer step (all its micro-batches) and returns its metrics line. */
  async trainStep(): Promise<TrainMetrics> {
    const t = this.config.train;
    const t0 = performance.now();
    const micro = t.batchTokens / (t.microBatch * t.seqLen);
    const lr = learningRate(this.step, t);
    const acc = this.opt instanceof DeviceAdamW ? new DeviceGradAccumulator() : new GradAccumulator();
    for (const e of this.moes) e.load.fill(0);
    let ce = 0;
    let mtp = 0;
    let bal = 0;
    const dp = this.options.dataParallel;
    // Micro-batches this rank trains on (all of them without data parallelism).
    const share = dp ? dp.localMicroBatches(micro) : micro;
    for (let i = 0; i < micro; i++) {
      let batch = this.stream.next();
      if (dp) {
        // Every rank draws every batch (same stream state everywhere) and trains on its share.
        const mine = dp.shard(batch, i, micro);
        if (mine !== batch) batch.dispose();
        if (!mine) continue;
        batch = mine;
      }
      const params = Object.fromEntries([...this.model.parameters()].filter(([n]) => !n.endsWith(BIAS_SUFFIX)));
      this.collected = [];
      this.collecting = true;
      let parts: { ce: Tensor; mtp: Tensor; bal: Tensor } | undefined;
      try {
        const { value, grads } = valueAndGrads(() => {
          const r = this.microLoss(batch);
          parts = r;
          return r.total;
        }, params);
        value.dispose();
        await acc.add(new Map(Object.entries(grads) as [string, Tensor][]));
        for (const g of Object.values(grads)) g.dispose();
      } finally {
        this.collecting = false;
        for (const { s } of this.collected) s.affinities?.dispose();
        batch.dispose();
      }
      const p = parts!;
      // async reads: backends without readSync (gpu.js) train too
      ce += (await p.ce.values())[0] / share;
      mtp += (await p.mtp.values())[0] / share;
      bal += (await p.bal.values())[0] / share;
      p.ce.dispose();
      p.mtp.dispose();
      p.bal.dispose();
      // Loads over the step's tokens, per MoE layer.
      for (const { entry, s } of this.collected) for (let j = 0; j < s.counts.length; j++) entry.load[j] += s.counts[j];
      this.collected = [];
    }
    const grads = acc.take();
    if (dp) {
      // Mean gradients and losses, summed expert loads, over the ranks (one allReduce).
      const losses = [ce, mtp, bal];
      const r = await dp.reduce({ grads: grads as Map<string, Float32Array>, loads: this.moes.map((e) => e.load), losses, stop: this.stopRequested });
      [ce, mtp, bal] = losses;
      if (r.stop) this.interrupted = true;
    }
    if (this.options.onGradients) this.options.onGradients(this.step, grads as Map<string, Float32Array>);
    const r = await this.opt.step(grads, lr);
    if (this.opt instanceof DeviceAdamW) for (const g of grads.values()) (g as Tensor).dispose();
    if (r.applied) {
      for (const [name, p] of r.params) this.model.setParameter(name, p);
      if (t.balanceGamma > 0) {
        for (const e of this.moes) {
          e.bias = balanceBiasUpdate(e.bias, e.load, t.balanceGamma);
          this.model.setParameter(e.biasName, tensor(e.bias, [e.bias.length]));
        }
      }
    } else {
      for (const p of r.params.values()) p.dispose();
      this.skipped++;
    }
    const stepTokens = micro * t.microBatch * t.seqLen;
    this.tokens += stepTokens;
    const seconds = (performance.now() - t0) / 1000;
    const line: TrainMetrics = {
      type: 'train',
      step: this.step,
      loss: ce + mtp + bal,
      ceLoss: ce,
      mtpLoss: mtp,
      balanceLoss: bal,
      lr,
      gradNorm: r.gradNorm,
      skipped: !r.applied,
      tokens: this.tokens,
      tokensPerSec: stepTokens / seconds,
      elapsedSec: this.elapsed(),
      router: this.moes.map((e) => ({ layer: e.layer, load: Array.from(e.load), maxOverMean: maxOverMean(e.load), bias: Array.from(e.bias) })),
    };
    this.step++;
    this.appendMetrics(line);
    return line;
  }

  private appendMetrics(line: TrainMetrics | ValMetrics): void {
    if (!this.writes) return;
    appendFileSync(join(this.runDir, 'metrics.jsonl'), `${JSON.stringify(line)}\n`);
  }

  /** Validation: bits per byte of the main head over the Brown validation split. */
  async evaluate(): Promise<ValMetrics> {
    const t = this.config.train;
    let ids = this.corpus.valIds;
    let text = this.corpus.valText;
    if (t.evalBytes > 0 && utf8Bytes(text) > t.evalBytes) {
      // A prefix of whole tokens covering about evalBytes bytes.
      const tk = this.corpus.tokenizer;
      text = Buffer.from(text, 'utf8').subarray(0, t.evalBytes).toString('utf8').replace(/\uFFFD$/, '');
      ids = Int32Array.from([ids[0], ...tk.encode(text)]);
    }
    const T = t.seqLen;
    const rows = Math.max(1, t.microBatch * 2);
    let nats = 0;
    let tokens = 0;
    const windows: number[] = [];
    for (let s = 0; s + 1 < ids.length; s += T) windows.push(s);
    for (let w = 0; w < windows.length; ) {
      const len = Math.min(T, ids.length - 1 - windows[w]);
      const group: number[] = [];
      while (w < windows.length && group.length < rows && Math.min(T, ids.length - 1 - windows[w]) === len) group.push(windows[w++]);
      const inp = new Int32Array(group.length * len);
      const tgt = new Int32Array(group.length * len);
      group.forEach((s, b) => {
        inp.set(ids.subarray(s, s + len), b * len);
        tgt.set(ids.subarray(s + 1, s + 1 + len), b * len);
      });
      const sum = noGrad(() =>
        tidy(() => {
          const logits = this.model.forward(tensor(inp, [group.length, len], 'i32'));
          return crossEntropy(logits, tensor(tgt, [group.length, len], 'i32'), { reduction: 'sum' });
        }),
      );
      nats += (await sum.values())[0];
      sum.dispose();
      tokens += group.length * len;
    }
    const bytes = utf8Bytes(text);
    const v: ValMetrics = { type: 'val', step: this.step, loss: nats / tokens, bpb: bitsPerByte(nats, bytes), tokens, bytes };
    this.lastVal = v;
    this.appendMetrics(v);
    return v;
  }

  /** Trains to train.steps (or stopAfter more steps), validating and checkpointing on the way. */
  async run(): Promise<TrainRunResult> {
    const t = this.config.train;
    const o = this.options;
    const start = performance.now();
    this.elapsedStart = start;
    const startStep = this.step;
    const startTokens = this.tokens;
    const last = o.stopAfter !== undefined ? Math.min(t.steps, this.step + o.stopAfter) : t.steps;
    // Bytes per training token for the bar's running BPB (shards: the tokenizer's rate on the validation text).
    const bytesPerToken = this.corpus.trainBytes !== null ? this.corpus.trainBytes / this.corpus.train.length : utf8Bytes(this.corpus.valText) / (this.corpus.valIds.length - 1);
    const memoryPeak = (): number => memory().peakBytes;
    resetPeakMemory();
    this.log(
      `kiln train: preset ${this.config.preset}, ${(this.parameterCount / 1e6).toFixed(2)}M parameters, ${this.backendName} (${this.device}), ${t.precision}; ` +
        `${t.steps} steps of ${t.batchTokens} tokens (seq ${t.seqLen}); run dir ${this.runDir}${this.step > 0 ? `; resuming at step ${this.step}` : ''}`,
    );
    // The bar starts after the header line (it redraws its own line from then on).
    const progress = new Progress(o.progress ?? 'auto', t.steps, this.step, this.log, t.logEvery);
    // Ctrl-C (SIGINT) once: finish the step, checkpoint and stop (resumable); twice: the default exit.
    this.interrupted = false;
    this.stopRequested = false;
    const onSigint = (): void => {
      this.stopRequested = true;
      // With data parallelism every rank stops after the step in which the request was reduced.
      if (!o.dataParallel) this.interrupted = true;
    };
    if (o.handleSigint) process.once('SIGINT', onSigint);
    while (this.step < last && !this.interrupted) {
      // Let the event loop run between steps (the step's awaits are microtasks only): signals, I/O.
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (this.interrupted) break;
      const m = await this.trainStep();
      progress.update(m, m.ceLoss / Math.LN2 / bytesPerToken, this.lastVal?.bpb);
      if (t.evalEvery > 0 && this.step % t.evalEvery === 0 && this.step < t.steps) {
        const v = await this.evaluate();
        progress.note(`step ${this.step}: validation ${v.bpb.toFixed(4)} bits/byte (loss ${v.loss.toFixed(4)})`);
      }
      if (t.checkpointEvery > 0 && this.step % t.checkpointEvery === 0 && this.step < last) await this.checkpoint();
    }
    progress.stop();
    process.removeListener('SIGINT', onSigint);
    if (this.interrupted) this.log(`interrupted at step ${this.step}: saving a checkpoint`);
    const stopped = this.step < t.steps;
    let val: ValMetrics | undefined;
    let xz: CompressionBaseline | undefined;
    if (!stopped) {
      val = await this.evaluate();
      if (o.baseline !== false) xz = await xzBitsPerByte(t.evalBytes > 0 ? Buffer.from(this.corpus.valText, 'utf8').subarray(0, val.bytes).toString('utf8') : this.corpus.valText);
    }
    await this.checkpoint();
    const seconds = (performance.now() - start) / 1000;
    const result: TrainRunResult = {
      runDir: this.runDir,
      config: this.config,
      step: this.step,
      stopped,
      skipped: this.skipped,
      val,
      xz,
      seconds,
      tokensPerSec: (this.tokens - startTokens) / seconds,
      peakBytes: memoryPeak(),
      parameters: this.parameterCount,
      backend: this.backendName,
      device: this.device,
    };
    this.writeRunJson({
      step: this.step,
      stopped,
      skipped: this.skipped,
      seconds: Math.round(seconds * 10) / 10,
      tokensPerSec: Math.round(result.tokensPerSec),
      val,
      xz,
      peakBytes: result.peakBytes,
      stepsThisInvocation: this.step - startStep,
    });
    return result;
  }

  /** Releases the model's tensors. */
  dispose(): void {
    for (const e of this.moes) e.moe.onRouting = null;
    this.model?.dispose();
    this.corpus?.shards?.close();
  }
}

/** Verdict line: the model's validation BPB next to xz -9e's on the same text. */
export function formatVerdict(val: ValMetrics, xz: CompressionBaseline): string {
  const name = xz.method === 'xz' ? 'xz -9e' : 'lzma (preset 9)';
  const diff = xz.bitsPerByte - val.bpb;
  const lines = [
    `validation: ${val.bpb.toFixed(4)} bits/byte (${val.loss.toFixed(4)} nats/token over ${val.tokens.toLocaleString('en-US')} tokens, ${val.bytes.toLocaleString('en-US')} bytes)`,
    `${name.padEnd(10)}: ${xz.bitsPerByte.toFixed(4)} bits/byte (${xz.compressedBytes.toLocaleString('en-US')} bytes compressed)`,
    diff > 0
      ? `verdict: the model beats ${name} by ${diff.toFixed(4)} bits/byte (${((100 * diff) / xz.bitsPerByte).toFixed(1)}% smaller)`
      : `verdict: ${name} beats the model by ${(-diff).toFixed(4)} bits/byte; train longer or larger`,
  ];
  return lines.join('\n');
}

/** Sets up a run (new or resumed), trains it and returns the result. */
/**
 * kiln's MoE layers read the routing on the host in the middle of the forward pass
 * (`valuesSync` in core's nn/moe), so they need `Backend.readSync`. A backend without it (gpu.js
 * on its Chromium engine, an asynchronous page bridge) trains dense models only: say so before
 * the corpus and the model are built, with the config that works.
 */
export function assertCanRoute(backend: Backend, c: { firstKDenseReplace: number; numHiddenLayers: number; numNextnPredictLayers: number }): void {
  const layers = c.numHiddenLayers + c.numNextnPredictLayers; // MTP blocks are layers L..L+D-1
  if (backend.readSync || c.firstKDenseReplace >= layers) return;
  throw new BackendError(
    'train',
    `backend ${backend.name} cannot read tensors synchronously (Backend.readSync), which kiln's MoE layers need (the routing is read on the host during the forward pass); ` +
      `this model has MoE layers (first_k_dense_replace ${c.firstKDenseReplace} < ${c.numHiddenLayers} layers + ${c.numNextnPredictLayers} MTP). ` +
      `Train it on another backend, or train a dense model here: --config with {"model": {"first_k_dense_replace": ${c.numHiddenLayers}}} and --mtp-depth 0`,
  );
}

export async function runTraining(options: TrainRunOptions = {}): Promise<TrainRunResult> {
  const trainer = await Trainer.create(options);
  try {
    return await trainer.run();
  } finally {
    trainer.dispose();
  }
}

/** λ of the MTP loss at optimizer step `step` (0-based): mtpLambda, then mtpLambdaFinal once the switch fraction is reached. */
export function mtpLambdaAt(step: number, t: TrainSettings): number {
  if (t.mtpLambdaFinal === undefined) return t.mtpLambda;
  return step >= Math.round((t.mtpLambdaSwitch ?? 10 / 14.8) * t.steps) ? t.mtpLambdaFinal : t.mtpLambda;
}
