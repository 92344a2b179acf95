import { readFileSync } from 'node:fs';
import { ArgumentError, FormatError } from '@kiln/core';
import { z } from 'zod';
import { DEFAULT_PRESET, PRESETS, type ModelSettings, type Preset, type TrainSettings } from '../presets/index.js';

/**
 * The training config: a preset, optionally a config file over it, then command-line overrides, each
 * validated with zod. Errors are typed (`ArgumentError`, a KilnError) and name the field:
 * `train.lr: expected number, received string`, `model.n_group (3) must divide model.n_routed_experts (8)`.
 */

const int = (min: number) => z.number().int().min(min);
const pos = () => z.number().positive();
const nonneg = () => z.number().min(0);

export const ModelSettingsSchema = z.strictObject({
  hidden_size: int(1),
  intermediate_size: int(1),
  moe_intermediate_size: int(1),
  num_hidden_layers: int(1),
  num_attention_heads: int(1),
  n_shared_experts: int(0),
  n_routed_experts: int(1),
  routed_scaling_factor: pos(),
  kv_lora_rank: int(1),
  q_lora_rank: int(1).nullable(),
  qk_rope_head_dim: int(2),
  qk_nope_head_dim: int(1),
  v_head_dim: int(1),
  n_group: int(1),
  topk_group: int(1),
  num_experts_per_tok: int(1),
  first_k_dense_replace: int(0),
  norm_topk_prob: z.boolean(),
  max_position_embeddings: int(1),
  initializer_range: pos(),
  rms_norm_eps: pos(),
  rope_theta: pos(),
  num_nextn_predict_layers: int(0),
}) satisfies z.ZodType<ModelSettings>;

export const TrainSettingsSchema = z.strictObject({
  vocabSize: int(258).max(65535),
  seqLen: int(2),
  batchTokens: int(1),
  microBatch: int(1),
  steps: int(1),
  lr: pos(),
  minLrRatio: z.number().min(0).max(1),
  warmupSteps: int(0),
  schedule: z.enum(['cosine', 'constant-decay']),
  decayFrom: z.number().min(0).max(1),
  weightDecay: nonneg(),
  beta1: z.number().min(0).lt(1),
  beta2: z.number().min(0).lt(1),
  gradClip: nonneg(),
  balanceGamma: nonneg(),
  auxAlpha: nonneg(),
  mtpLambda: nonneg(),
  mtpLambdaFinal: nonneg().optional(),
  mtpLambdaSwitch: z.number().min(0).max(1).optional(),
  evalEvery: int(0),
  logEvery: int(1),
  checkpointEvery: int(0),
  keepCheckpoints: int(1),
  seed: int(0).max(0xffffffff),
  precision: z.enum(['fp32', 'bf16', 'fp8']),
  momentDtype: z.enum(['bf16', 'f32']),
  evalBytes: int(0),
}) satisfies z.ZodType<TrainSettings>;

const ConfigFileSchema = z.strictObject({
  preset: z.string().optional(),
  model: z.record(z.string(), z.unknown()).optional(),
  train: z.record(z.string(), z.unknown()).optional(),
});

/** A fully resolved, validated training config. */
export interface TrainConfig {
  preset: string;
  model: ModelSettings;
  train: TrainSettings;
}

/** Command-line overrides (undefined: keep the preset's / file's value). */
export interface TrainOverrides extends Partial<TrainSettings> {
  /** MTP depth D (model.num_nextn_predict_layers). */
  mtpDepth?: number;
}

export interface ResolveOptions {
  preset?: string;
  /** A JSON config file: `{ "preset"?, "model"?: {...}, "train"?: {...} }`. */
  configFile?: string;
  /** Already-parsed config file contents (instead of configFile). */
  configJson?: unknown;
  overrides?: TrainOverrides;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number' && Number.isNaN(v)) return 'NaN';
  return typeof v;
}

/** First zod issue as `section.field: message` (an ArgumentError). */
function zodError(section: string, error: z.ZodError, input: Record<string, unknown>, source: string): ArgumentError {
  const issue = error.issues[0]!;
  const path = [section, ...issue.path.map(String)].filter(Boolean).join('.');
  let msg = issue.message;
  if (issue.code === 'unrecognized_keys') {
    const keys = (issue as { keys?: string[] }).keys ?? [];
    const hint = section === 'model' && keys.includes('vocab_size') ? ' (the vocabulary comes from the tokenizer: set train.vocabSize)' : '';
    return new ArgumentError('train', `${source}: unknown field${keys.length > 1 ? 's' : ''} ${keys.map((k) => `${section}.${k}`).join(', ')}${hint}`);
  }
  if (issue.code === 'invalid_type') {
    const key = issue.path[0];
    const got = key !== undefined ? input[String(key)] : undefined;
    msg = `expected ${(issue as { expected?: string }).expected}, got ${describe(got)}${got !== undefined && typeof got !== 'object' ? ` ${JSON.stringify(got)}` : ''}`;
  }
  return new ArgumentError('train', `${source}: ${path}: ${msg}`);
}

/** Cross-field checks: shapes that cannot be built or batches that cannot be cut. */
export function checkTrainConfig(c: TrainConfig, source = 'config'): void {
  const m = c.model;
  const t = c.train;
  const fail = (msg: string): never => {
    throw new ArgumentError('train', `${source}: ${msg}`);
  };
  if (m.hidden_size % m.num_attention_heads !== 0) fail(`model.num_attention_heads (${m.num_attention_heads}) must divide model.hidden_size (${m.hidden_size})`);
  if (m.qk_rope_head_dim % 2 !== 0) fail(`model.qk_rope_head_dim (${m.qk_rope_head_dim}) must be even`);
  if (m.n_routed_experts % m.n_group !== 0) fail(`model.n_group (${m.n_group}) must divide model.n_routed_experts (${m.n_routed_experts})`);
  if (m.n_routed_experts / m.n_group < 2) fail(`model.n_group (${m.n_group}) must leave at least 2 experts per group of model.n_routed_experts (${m.n_routed_experts})`);
  if (m.topk_group > m.n_group) fail(`model.topk_group (${m.topk_group}) is larger than model.n_group (${m.n_group})`);
  if (m.num_experts_per_tok > m.n_routed_experts) fail(`model.num_experts_per_tok (${m.num_experts_per_tok}) is larger than model.n_routed_experts (${m.n_routed_experts})`);
  const reachable = (m.n_routed_experts / m.n_group) * m.topk_group;
  if (m.num_experts_per_tok > reachable) fail(`model.num_experts_per_tok (${m.num_experts_per_tok}) is larger than the ${reachable} experts of model.topk_group (${m.topk_group}) groups`);
  if (m.first_k_dense_replace > m.num_hidden_layers) fail(`model.first_k_dense_replace (${m.first_k_dense_replace}) exceeds model.num_hidden_layers (${m.num_hidden_layers})`);
  if (t.seqLen > m.max_position_embeddings) fail(`train.seqLen (${t.seqLen}) exceeds model.max_position_embeddings (${m.max_position_embeddings})`);
  if (m.num_nextn_predict_layers >= t.seqLen) fail(`model.num_nextn_predict_layers (${m.num_nextn_predict_layers}) must be smaller than train.seqLen (${t.seqLen})`);
  const micro = t.microBatch * t.seqLen;
  if (t.batchTokens % micro !== 0) fail(`train.batchTokens (${t.batchTokens}) must be a multiple of train.microBatch × train.seqLen (${t.microBatch} × ${t.seqLen} = ${micro})`);
  if (t.warmupSteps > t.steps) fail(`train.warmupSteps (${t.warmupSteps}) exceeds train.steps (${t.steps})`);
}

/** The preset's config, with the file and the overrides applied, validated. */
export function resolveTrainConfig(options: ResolveOptions = {}): TrainConfig {
  let file: z.infer<typeof ConfigFileSchema> = {};
  let source = 'config';
  if (options.configFile !== undefined || options.configJson !== undefined) {
    let json = options.configJson;
    if (options.configFile !== undefined) {
      source = options.configFile;
      let text: string;
      try {
        text = readFileSync(options.configFile, 'utf8');
      } catch (err) {
        throw new ArgumentError('train', `--config ${options.configFile}: cannot read it (${(err as Error).message})`);
      }
      try {
        json = JSON.parse(text);
      } catch (err) {
        throw new FormatError('train', `${options.configFile}: not valid JSON (${(err as Error).message})`);
      }
    }
    const parsed = ConfigFileSchema.safeParse(json);
    if (!parsed.success) {
      if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ArgumentError('train', `${source}: a config file must be a JSON object with optional "preset", "model" and "train"`);
      throw zodError('', parsed.error, json as Record<string, unknown>, source);
    }
    file = parsed.data;
  }
  const presetName = options.preset ?? file.preset ?? DEFAULT_PRESET;
  const preset: Preset | undefined = Object.hasOwn(PRESETS, presetName) ? PRESETS[presetName] : undefined;
  if (!preset) throw new ArgumentError('train', `unknown preset ${JSON.stringify(presetName)} (presets: ${Object.keys(PRESETS).join(', ')})`);

  const modelIn: Record<string, unknown> = { ...preset.model, ...(file.model ?? {}) };
  const { mtpDepth, ...trainOverrides } = options.overrides ?? {};
  const trainIn: Record<string, unknown> = { ...preset.train, ...(file.train ?? {}) };
  for (const [k, v] of Object.entries(trainOverrides)) if (v !== undefined) trainIn[k] = v;
  if (mtpDepth !== undefined) modelIn.num_nextn_predict_layers = mtpDepth;

  const model = ModelSettingsSchema.safeParse(modelIn);
  if (!model.success) throw zodError('model', model.error, modelIn, source);
  const train = TrainSettingsSchema.safeParse(trainIn);
  if (!train.success) throw zodError('train', train.error, trainIn, source);
  const config: TrainConfig = { preset: presetName, model: model.data, train: train.data };
  checkTrainConfig(config, source);
  return config;
}

/** transformers' config.json for the model of a training config (vocab_size from the tokenizer). */
export function modelConfigJson(c: TrainConfig, vocabSize: number): Record<string, unknown> {
  return {
    architectures: ['DeepseekV3ForCausalLM'],
    model_type: 'deepseek_v3',
    vocab_size: vocabSize,
    ...c.model,
    hidden_act: 'silu',
    scoring_func: 'sigmoid',
    topk_method: 'noaux_tc',
    moe_layer_freq: 1,
    tie_word_embeddings: false,
    attention_bias: false,
    rope_interleave: true,
    rope_scaling: null,
    bos_token_id: vocabSize - 1,
    eos_token_id: vocabSize - 1,
  };
}
