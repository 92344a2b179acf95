import type { DeepseekV3Config } from './config.js';

/**
 * The transformers `config.json` of a DeepSeek-V3 config (snake_case, `model_type: deepseek_v3`),
 * the inverse of `parseDeepseekV3Config`: `parseDeepseekV3Config(toConfigJson(c))` equals `c`.
 *
 * RoPE is written both ways so old and new transformers read it: the legacy top-level
 * `rope_theta` + `rope_scaling` (null without YaRN; `type` and `rope_type`), and
 * `rope_parameters` (transformers 5: `rope_type`, `rope_theta` and the scaling keys).
 * `original_max_position_embeddings` is written only when the parsed config had it, since its
 * presence changes the YaRN factor transformers uses (max / original instead of `factor`).
 */
export function toConfigJson(c: DeepseekV3Config, options: { dtype?: 'float32' | 'bfloat16' } = {}): Record<string, unknown> {
  const dtype = options.dtype ?? 'float32';
  let scaling: Record<string, unknown> | null = null;
  const s = c.ropeScaling;
  if (s) {
    scaling = { type: 'yarn', rope_type: 'yarn', factor: s.factor };
    if (s.maxPositionEmbeddings !== undefined) scaling.original_max_position_embeddings = s.originalMaxPositionEmbeddings;
    const opt: [string, unknown][] = [
      ['beta_fast', s.betaFast],
      ['beta_slow', s.betaSlow],
      ['mscale', s.mscale],
      ['mscale_all_dim', s.mscaleAllDim],
      ['attention_factor', s.attentionFactor],
      ['truncate', s.truncate],
    ];
    for (const [k, v] of opt) if (v !== undefined) scaling[k] = v;
  }
  const { type: _legacyType, ...scalingParams } = scaling ?? {};
  const ropeParameters: Record<string, unknown> = scaling ? { ...scalingParams, rope_theta: c.ropeTheta } : { rope_type: 'default', rope_theta: c.ropeTheta };
  return {
    architectures: ['DeepseekV3ForCausalLM'],
    model_type: 'deepseek_v3',
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    moe_intermediate_size: c.moeIntermediateSize,
    num_hidden_layers: c.numHiddenLayers,
    num_attention_heads: c.numAttentionHeads,
    num_key_value_heads: c.numAttentionHeads,
    n_shared_experts: c.nSharedExperts,
    n_routed_experts: c.nRoutedExperts,
    routed_scaling_factor: c.routedScalingFactor,
    kv_lora_rank: c.kvLoraRank,
    q_lora_rank: c.qLoraRank,
    qk_rope_head_dim: c.qkRopeHeadDim,
    qk_nope_head_dim: c.qkNopeHeadDim,
    v_head_dim: c.vHeadDim,
    n_group: c.nGroup,
    topk_group: c.topkGroup,
    num_experts_per_tok: c.numExpertsPerTok,
    first_k_dense_replace: c.firstKDenseReplace,
    norm_topk_prob: c.normTopkProb,
    scoring_func: 'sigmoid',
    topk_method: 'noaux_tc',
    moe_layer_freq: 1,
    hidden_act: 'silu',
    max_position_embeddings: c.maxPositionEmbeddings,
    initializer_range: c.initializerRange,
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    rope_scaling: scaling,
    rope_parameters: ropeParameters,
    rope_interleave: c.ropeInterleave,
    attention_bias: c.attentionBias,
    attention_dropout: 0.0,
    num_nextn_predict_layers: c.numNextnPredictLayers,
    tie_word_embeddings: false,
    use_cache: true,
    torch_dtype: dtype,
    dtype,
  };
}
