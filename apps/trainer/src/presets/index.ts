/**
 * Training presets: a DeepSeek-V3-shaped model (MLA + DeepSeekMoE with shared experts and sigmoid
 * group routing + MTP) and the recipe that trains it. `model` uses transformers' config.json keys
 * (snake_case, without vocab_size: the tokenizer sets it); `train` is kiln's training config.
 *
 * `tiny` is the default (`kiln train`): sized so that on 2 CPU cores it trains in about 10 minutes
 * and beats `xz -9e` on the Brown validation split (docs/training.md has the measurement).
 */
export type Precision = 'fp32' | 'bf16' | 'fp8';
export type ScheduleKind = 'cosine' | 'constant-decay';

/** Model keys of a preset or config file (transformers' DeepseekV3Config names). */
export interface ModelSettings {
  hidden_size: number;
  intermediate_size: number;
  moe_intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  n_shared_experts: number;
  n_routed_experts: number;
  routed_scaling_factor: number;
  kv_lora_rank: number;
  q_lora_rank: number | null;
  qk_rope_head_dim: number;
  qk_nope_head_dim: number;
  v_head_dim: number;
  n_group: number;
  topk_group: number;
  num_experts_per_tok: number;
  first_k_dense_replace: number;
  norm_topk_prob: boolean;
  max_position_embeddings: number;
  initializer_range: number;
  rms_norm_eps: number;
  rope_theta: number;
  /** MTP depth D. */
  num_nextn_predict_layers: number;
}

/** The training recipe. */
export interface TrainSettings {
  /** BPE vocabulary (256 bytes + merges + <|endoftext|>); becomes the model's vocab_size. */
  vocabSize: number;
  /** Tokens per training sequence. */
  seqLen: number;
  /** Tokens per optimizer step (gradient accumulation over micro-batches reaches it). */
  batchTokens: number;
  /** Sequences per micro-batch (one forward/backward). */
  microBatch: number;
  /** Optimizer steps. */
  steps: number;
  /** Peak learning rate. */
  lr: number;
  /** Final learning rate as a fraction of the peak. */
  minLrRatio: number;
  warmupSteps: number;
  /** 'cosine': warmup then cosine to the end; 'constant-decay': DeepSeek-V3's warmup, constant, cosine decay. */
  schedule: ScheduleKind;
  /** constant-decay: fraction of the steps after which the cosine decay starts. */
  decayFrom: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  /** Clip the global gradient norm to this (0: no clipping). */
  gradClip: number;
  /** Bias update speed γ of auxiliary-loss-free balancing (0: off). */
  balanceGamma: number;
  /** Weight α of the complementary sequence-wise balance loss (0: off). */
  auxAlpha: number;
  /** Weight λ of the MTP loss, (λ/D)·Σ_d CE_d. */
  mtpLambda: number;
  /**
   * λ after `mtpLambdaSwitch` of the steps (the report uses 0.3 for the first 10T of 14.8T tokens,
   * then 0.1). Absent: λ stays `mtpLambda` throughout.
   */
  mtpLambdaFinal?: number;
  /** Fraction of the steps after which λ becomes `mtpLambdaFinal` (default 10/14.8). */
  mtpLambdaSwitch?: number;
  /** Validation every this many steps (0: only at the end). */
  evalEvery: number;
  /** A console line every this many steps (metrics.jsonl gets every step). */
  logEvery: number;
  /** A checkpoint every this many steps (0: only at the end). */
  checkpointEvery: number;
  /** Checkpoints kept. */
  keepCheckpoints: number;
  seed: number;
  precision: Precision;
  /** AdamW moments: BF16 (DeepSeek-V3) or FP32. */
  momentDtype: 'bf16' | 'f32';
  /** Validate on the first this many UTF-8 bytes of the validation text (0: all of it). */
  evalBytes: number;
}

export interface Preset {
  description: string;
  model: ModelSettings;
  train: TrainSettings;
}

const BASE_MODEL: ModelSettings = {
  hidden_size: 128,
  intermediate_size: 384,
  moe_intermediate_size: 96,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  n_shared_experts: 1,
  n_routed_experts: 8,
  routed_scaling_factor: 2.5,
  kv_lora_rank: 64,
  q_lora_rank: null,
  qk_rope_head_dim: 16,
  qk_nope_head_dim: 32,
  v_head_dim: 32,
  n_group: 4,
  topk_group: 2,
  num_experts_per_tok: 2,
  first_k_dense_replace: 1,
  norm_topk_prob: true,
  max_position_embeddings: 1024,
  initializer_range: 0.02,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  num_nextn_predict_layers: 1,
};

const BASE_TRAIN: TrainSettings = {
  vocabSize: 2048,
  seqLen: 64,
  batchTokens: 2048,
  microBatch: 16,
  steps: 500,
  lr: 3e-3,
  minLrRatio: 0.1,
  warmupSteps: 20,
  schedule: 'cosine',
  decayFrom: 0.7,
  weightDecay: 0.1,
  beta1: 0.9,
  beta2: 0.95,
  gradClip: 1.0,
  balanceGamma: 0.001,
  auxAlpha: 0.0001,
  mtpLambda: 0.3,
  evalEvery: 0,
  logEvery: 10,
  checkpointEvery: 0,
  keepCheckpoints: 2,
  seed: 0,
  precision: 'fp32',
  momentDtype: 'bf16',
  evalBytes: 0,
};

export const PRESETS: Readonly<Record<string, Preset>> = {
  micro: {
    description: 'a few-second model for tests and smoke runs (not meant to beat anything)',
    model: {
      ...BASE_MODEL,
      hidden_size: 32,
      intermediate_size: 64,
      moe_intermediate_size: 16,
      num_hidden_layers: 2,
      num_attention_heads: 2,
      kv_lora_rank: 16,
      qk_rope_head_dim: 8,
      qk_nope_head_dim: 8,
      v_head_dim: 8,
      n_routed_experts: 4,
      n_group: 2,
      topk_group: 1,
      num_experts_per_tok: 2,
      max_position_embeddings: 256,
    },
    train: { ...BASE_TRAIN, vocabSize: 512, seqLen: 32, batchTokens: 256, microBatch: 4, steps: 20, lr: 1e-2, warmupSteps: 2, logEvery: 5, evalBytes: 20_000 },
  },
  tiny: {
    description: 'the default: ~10 minutes on 2 CPU cores, beats xz -9e on Brown validation',
    model: { ...BASE_MODEL },
    // γ scaled with the learning rate: DeepSeek-V3 pairs γ = 0.001 with lr 2.2e-4; with lr 4e-3 and a
    // few hundred steps, 0.001 lets the router collapse onto one or two experts before the bias catches up.
    train: { ...BASE_TRAIN, vocabSize: 1024, seqLen: 128, microBatch: 16, batchTokens: 4096, steps: 110, lr: 4e-3, warmupSteps: 10, balanceGamma: 0.01 },
  },
  small: {
    description: 'a larger CPU model (4 layers, 16 experts): about an hour on 2 cores',
    model: {
      ...BASE_MODEL,
      hidden_size: 256,
      intermediate_size: 768,
      moe_intermediate_size: 128,
      num_hidden_layers: 4,
      num_attention_heads: 8,
      kv_lora_rank: 128,
      q_lora_rank: 192,
      n_routed_experts: 16,
      n_group: 4,
      topk_group: 2,
      num_experts_per_tok: 4,
    },
    train: { ...BASE_TRAIN, vocabSize: 4096, seqLen: 128, batchTokens: 8192, microBatch: 16, steps: 1000, lr: 2e-3, warmupSteps: 50, evalEvery: 250 },
  },
  base: {
    description: 'a GPU-sized model (8 layers, 64 experts, 8 groups)',
    model: {
      ...BASE_MODEL,
      hidden_size: 768,
      intermediate_size: 2048,
      moe_intermediate_size: 256,
      num_hidden_layers: 8,
      num_attention_heads: 12,
      kv_lora_rank: 256,
      q_lora_rank: 384,
      qk_rope_head_dim: 32,
      qk_nope_head_dim: 64,
      v_head_dim: 64,
      n_routed_experts: 64,
      n_group: 8,
      topk_group: 4,
      num_experts_per_tok: 6,
      max_position_embeddings: 4096,
      initializer_range: 0.006,
    },
    train: { ...BASE_TRAIN, vocabSize: 16384, seqLen: 512, batchTokens: 131072, microBatch: 16, steps: 5000, lr: 6e-4, warmupSteps: 200, schedule: 'constant-decay', evalEvery: 500, checkpointEvery: 500 },
  },
};

export const DEFAULT_PRESET = 'tiny';
