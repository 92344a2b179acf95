import { ArgumentError, FormatError, nn } from '@kiln/core';

/** DeepSeek-V3's architecture, read from a transformers `config.json` (camelCase fields). */
export interface DeepseekV3Config {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  moeIntermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  nSharedExperts: number;
  nRoutedExperts: number;
  routedScalingFactor: number;
  kvLoraRank: number;
  /** null: attention uses a direct q_proj. */
  qLoraRank: number | null;
  qkRopeHeadDim: number;
  qkNopeHeadDim: number;
  vHeadDim: number;
  nGroup: number;
  topkGroup: number;
  numExpertsPerTok: number;
  firstKDenseReplace: number;
  normTopkProb: boolean;
  maxPositionEmbeddings: number;
  initializerRange: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeInterleave: boolean;
  ropeScaling: nn.YarnScaling | null;
  attentionBias: boolean;
  numNextnPredictLayers: number;
}

// transformers' DeepseekV3Config defaults (used for keys a config.json leaves out).
const DEFAULTS = {
  vocab_size: 129280,
  hidden_size: 7168,
  intermediate_size: 18432,
  moe_intermediate_size: 2048,
  num_hidden_layers: 61,
  num_attention_heads: 128,
  n_shared_experts: 1,
  n_routed_experts: 256,
  routed_scaling_factor: 2.5,
  kv_lora_rank: 512,
  q_lora_rank: 1536,
  qk_rope_head_dim: 64,
  qk_nope_head_dim: 128,
  v_head_dim: 128,
  n_group: 8,
  topk_group: 4,
  num_experts_per_tok: 8,
  first_k_dense_replace: 3,
  norm_topk_prob: true,
  max_position_embeddings: 4096,
  initializer_range: 0.02,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  rope_interleave: true,
  attention_bias: false,
  num_nextn_predict_layers: 0,
} as const;

/**
 * Parses a transformers DeepSeek-V3 `config.json` (already JSON-decoded). Accepts both
 * `rope_scaling` and the newer `rope_parameters` spelling. Throws FormatError for a malformed
 * document or a wrong `model_type`, ArgumentError (naming the field) for unsupported values.
 */
export function parseDeepseekV3Config(json: unknown, source: string): DeepseekV3Config {
  const op = 'parseDeepseekV3Config';
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new FormatError(op, `${source}: config must be a JSON object`);
  const o = json as Record<string, unknown>;
  if (o.model_type !== undefined && o.model_type !== 'deepseek_v3') {
    throw new FormatError(op, `${source}: model_type must be "deepseek_v3", got ${JSON.stringify(o.model_type)}`);
  }
  const int = (key: keyof typeof DEFAULTS, min = 1): number => {
    const v = o[key] ?? DEFAULTS[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new ArgumentError(op, `${source}: ${key} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
    return v;
  };
  const num = (key: keyof typeof DEFAULTS, positive = true): number => {
    const v = o[key] ?? DEFAULTS[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || (positive && v <= 0)) throw new ArgumentError(op, `${source}: ${key} must be a ${positive ? 'positive ' : ''}number, got ${JSON.stringify(v)}`);
    return v;
  };
  const bool = (key: keyof typeof DEFAULTS): boolean => {
    const v = o[key] ?? DEFAULTS[key];
    if (typeof v !== 'boolean') throw new ArgumentError(op, `${source}: ${key} must be a boolean, got ${JSON.stringify(v)}`);
    return v;
  };
  const expect = (key: string, allowed: readonly unknown[]) => {
    if (o[key] !== undefined && o[key] !== null && !allowed.includes(o[key])) {
      throw new ArgumentError(op, `${source}: ${key} ${JSON.stringify(o[key])} is not supported (supported: ${allowed.map((a) => JSON.stringify(a)).join(', ')})`);
    }
  };
  expect('hidden_act', ['silu']);
  expect('scoring_func', ['sigmoid']);
  expect('topk_method', ['noaux_tc']);
  expect('moe_layer_freq', [1]);
  expect('tie_word_embeddings', [false]);

  const qLoraRank = o.q_lora_rank === null ? null : int('q_lora_rank');
  const cfg: DeepseekV3Config = {
    vocabSize: int('vocab_size'),
    hiddenSize: int('hidden_size'),
    intermediateSize: int('intermediate_size'),
    moeIntermediateSize: int('moe_intermediate_size'),
    numHiddenLayers: int('num_hidden_layers'),
    numAttentionHeads: int('num_attention_heads'),
    nSharedExperts: int('n_shared_experts', 0),
    nRoutedExperts: int('n_routed_experts'),
    routedScalingFactor: num('routed_scaling_factor'),
    kvLoraRank: int('kv_lora_rank'),
    qLoraRank,
    qkRopeHeadDim: int('qk_rope_head_dim'),
    qkNopeHeadDim: int('qk_nope_head_dim'),
    vHeadDim: int('v_head_dim'),
    nGroup: int('n_group'),
    topkGroup: int('topk_group'),
    numExpertsPerTok: int('num_experts_per_tok'),
    firstKDenseReplace: int('first_k_dense_replace', 0),
    normTopkProb: bool('norm_topk_prob'),
    maxPositionEmbeddings: int('max_position_embeddings'),
    initializerRange: num('initializer_range'),
    rmsNormEps: num('rms_norm_eps'),
    ropeTheta: 0,
    ropeInterleave: bool('rope_interleave'),
    ropeScaling: null,
    attentionBias: bool('attention_bias'),
    numNextnPredictLayers: int('num_nextn_predict_layers', 0),
  };
  if (cfg.qkRopeHeadDim % 2 !== 0) throw new ArgumentError(op, `${source}: qk_rope_head_dim must be even, got ${cfg.qkRopeHeadDim}`);
  if (cfg.nRoutedExperts % cfg.nGroup !== 0) throw new ArgumentError(op, `${source}: n_routed_experts (${cfg.nRoutedExperts}) must be divisible by n_group (${cfg.nGroup})`);
  if (cfg.nRoutedExperts / cfg.nGroup < 2) throw new ArgumentError(op, `${source}: n_group must leave at least 2 experts per group (group score is a top-2 sum)`);
  if (cfg.topkGroup > cfg.nGroup) throw new ArgumentError(op, `${source}: topk_group (${cfg.topkGroup}) exceeds n_group (${cfg.nGroup})`);
  if (cfg.numExpertsPerTok > (cfg.nRoutedExperts / cfg.nGroup) * cfg.topkGroup) {
    throw new ArgumentError(op, `${source}: num_experts_per_tok (${cfg.numExpertsPerTok}) exceeds the experts of topk_group groups`);
  }

  // Rope: `rope_parameters` (newer transformers; carries rope_theta) or `rope_scaling` + `rope_theta`.
  const params = o.rope_parameters ?? o.rope_scaling;
  const field = o.rope_parameters !== undefined ? 'rope_parameters' : 'rope_scaling';
  let theta = o.rope_theta;
  if (params !== undefined && params !== null) {
    if (typeof params !== 'object' || Array.isArray(params)) throw new FormatError(op, `${source}: ${field} must be an object`);
    const p = params as Record<string, unknown>;
    if (p.rope_theta !== undefined) theta = p.rope_theta;
    const type = p.rope_type ?? p.type ?? 'default';
    if (type === 'yarn') {
      const pn = (k: string, required: boolean): number | undefined => {
        const v = p[k];
        if (v === undefined || v === null) {
          if (required) throw new ArgumentError(op, `${source}: ${field}.${k} is required for yarn`);
          return undefined;
        }
        if (typeof v !== 'number' || !Number.isFinite(v)) throw new ArgumentError(op, `${source}: ${field}.${k} must be a number, got ${JSON.stringify(v)}`);
        return v;
      };
      const factor = pn('factor', true)!;
      if (factor < 1) throw new ArgumentError(op, `${source}: ${field}.factor must be >= 1, got ${factor}`);
      const ompGiven = pn('original_max_position_embeddings', false);
      const omp = ompGiven ?? cfg.maxPositionEmbeddings;
      cfg.ropeScaling = {
        type: 'yarn',
        factor,
        originalMaxPositionEmbeddings: omp,
        betaFast: pn('beta_fast', false),
        betaSlow: pn('beta_slow', false),
        mscale: pn('mscale', false),
        mscaleAllDim: pn('mscale_all_dim', false),
        truncate: typeof p.truncate === 'boolean' ? p.truncate : undefined,
        attentionFactor: pn('attention_factor', false),
        // transformers' RoPE uses max_position_embeddings / original_max_position_embeddings when the latter is given.
        maxPositionEmbeddings: ompGiven !== undefined ? cfg.maxPositionEmbeddings : undefined,
      };
    } else if (type !== 'default') {
      throw new ArgumentError(op, `${source}: ${field} type ${JSON.stringify(type)} is not supported (supported: "yarn", "default")`);
    }
  }
  theta ??= DEFAULTS.rope_theta;
  if (typeof theta !== 'number' || !(theta > 0)) throw new ArgumentError(op, `${source}: rope_theta must be a positive number, got ${JSON.stringify(theta)}`);
  cfg.ropeTheta = theta;
  return cfg;
}
