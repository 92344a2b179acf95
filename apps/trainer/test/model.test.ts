import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as k from '@kiln/core';
import { CpuBackend } from '@kiln/backend-cpu';
import { parseDeepseekV3Config, type DeepseekV3Config } from '../src/model/config.js';
import { DeepseekV3ForCausalLM } from '../src/model/deepseek-v3.js';

let backend: CpuBackend;
beforeAll(() => {
  backend = new CpuBackend();
  k.useBackend(backend);
});
afterAll(() => backend.dispose());

const tinyJson = {
  model_type: 'deepseek_v3',
  vocab_size: 32,
  hidden_size: 16,
  intermediate_size: 24,
  moe_intermediate_size: 8,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  n_shared_experts: 1,
  n_routed_experts: 8,
  routed_scaling_factor: 2.5,
  kv_lora_rank: 8,
  q_lora_rank: 12,
  qk_rope_head_dim: 4,
  qk_nope_head_dim: 4,
  v_head_dim: 4,
  n_group: 4,
  topk_group: 2,
  num_experts_per_tok: 2,
  first_k_dense_replace: 1,
  norm_topk_prob: true,
  max_position_embeddings: 256,
  rope_theta: 10000,
  rope_scaling: { type: 'yarn', factor: 4, original_max_position_embeddings: 64, beta_fast: 32, beta_slow: 1, mscale: 1, mscale_all_dim: 1 },
  num_nextn_predict_layers: 1,
  hidden_act: 'silu',
};

const tiny = (over: Record<string, unknown> = {}): DeepseekV3Config => parseDeepseekV3Config({ ...tinyJson, ...over }, 'tiny/config.json');

describe('parseDeepseekV3Config', () => {
  it('reads the fields, rope_scaling and rope_parameters alike', () => {
    const a = tiny();
    expect(a.hiddenSize).toBe(16);
    expect(a.qLoraRank).toBe(12);
    expect(a.ropeScaling).toMatchObject({ type: 'yarn', factor: 4, originalMaxPositionEmbeddings: 64, mscaleAllDim: 1, maxPositionEmbeddings: 256 });
    const b = tiny({ rope_scaling: undefined, rope_theta: undefined, rope_parameters: { rope_type: 'yarn', rope_theta: 5000, factor: 4, original_max_position_embeddings: 64, mscale: 1, mscale_all_dim: 1 } });
    expect(b.ropeTheta).toBe(5000);
    expect(b.ropeScaling?.factor).toBe(4);
    expect(tiny({ q_lora_rank: null }).qLoraRank).toBeNull();
    expect(tiny({ rope_scaling: null }).ropeScaling).toBeNull();
  });
  it('rejects a wrong model_type and unsupported values, naming the field', () => {
    expect(() => tiny({ model_type: 'llama' })).toThrow(k.FormatError);
    expect(() => tiny({ model_type: 'llama' })).toThrow(/model_type/);
    expect(() => tiny({ hidden_act: 'gelu' })).toThrow(/hidden_act/);
    expect(() => tiny({ rope_scaling: { type: 'longrope', factor: 2 } })).toThrow(/rope_scaling/);
    expect(() => tiny({ n_group: 3 })).toThrow(k.ArgumentError);
    expect(() => tiny({ hidden_size: 0 })).toThrow(/hidden_size/);
    expect(() => parseDeepseekV3Config([], 'x')).toThrow(k.FormatError);
  });
});

describe('DeepseekV3ForCausalLM', () => {
  it('names parameters exactly like transformers', () => {
    const m = DeepseekV3ForCausalLM.create(tiny(), { seed: 1 });
    const names = [...m.parameters().keys()];
    for (const n of [
      'model.embed_tokens.weight',
      'model.layers.0.self_attn.q_a_proj.weight',
      'model.layers.0.self_attn.q_a_layernorm.weight',
      'model.layers.0.self_attn.q_b_proj.weight',
      'model.layers.0.self_attn.kv_a_proj_with_mqa.weight',
      'model.layers.0.self_attn.kv_a_layernorm.weight',
      'model.layers.0.self_attn.kv_b_proj.weight',
      'model.layers.0.self_attn.o_proj.weight',
      'model.layers.0.mlp.gate_proj.weight',
      'model.layers.1.mlp.gate.weight',
      'model.layers.1.mlp.gate.e_score_correction_bias',
      'model.layers.1.mlp.experts.7.down_proj.weight',
      'model.layers.1.mlp.shared_experts.up_proj.weight',
      'model.layers.1.input_layernorm.weight',
      'model.layers.1.post_attention_layernorm.weight',
      'model.norm.weight',
      'lm_head.weight',
      'model.layers.2.enorm.weight',
      'model.layers.2.hnorm.weight',
      'model.layers.2.eh_proj.weight',
      'model.layers.2.shared_head.norm.weight',
      'model.layers.2.self_attn.kv_b_proj.weight',
      'model.layers.2.mlp.experts.0.gate_proj.weight',
    ]) {
      expect(names).toContain(n);
    }
    expect(m.parameters().get('model.layers.0.self_attn.kv_a_proj_with_mqa.weight')!.shape).toEqual([12, 16]);
    expect(m.parameters().get('model.layers.2.eh_proj.weight')!.shape).toEqual([16, 32]);
    m.dispose();
  });

  it('setParameter validates shapes and names; accepts FP8 block-quantized Linear weights', () => {
    const m = DeepseekV3ForCausalLM.create(tiny(), { init: 'zeros' });
    expect(() => m.setParameter('model.norm.weight', k.zeros([3]))).toThrow(k.ShapeError);
    expect(() => m.setParameter('model.norm.weight', k.zeros([3]))).toThrow(/model\.norm\.weight/);
    expect(() => m.setParameter('model.nope.weight', k.zeros([3]))).toThrow(k.ArgumentError);
    const w = k.randomNormal([16, 8], 3, 0, 0.1);
    const q = k.quantize(w, { block: k.WEIGHT_BLOCK });
    expect(m.setParameter('model.layers.0.self_attn.kv_b_proj.weight', q)).toBe(true);
    expect(() => m.setParameter('model.layers.0.self_attn.o_proj.weight', k.quantize(k.zeros([8, 12]), { block: k.WEIGHT_BLOCK }))).toThrow(k.ShapeError);
    // The quantized kv_b_proj is used by the forward (naive and absorbed paths alike).
    const ids = k.tensor([1, 2, 3], [1, 3], 'i32');
    expect(m.forward(ids).shape).toEqual([1, 3, 32]);
    expect(() => m.setParameter('model.norm.weight', k.quantize(k.zeros([16, 16]), { block: k.WEIGHT_BLOCK }))).toThrow(k.ArgumentError);
    m.dispose();
  });

  it('forward gives [B, T, V] f32 logits; cached decoding equals the full forward at every position', () => {
    for (const over of [{}, { q_lora_rank: null }]) {
      const m = DeepseekV3ForCausalLM.create(tiny(over), { seed: 7 });
      const ids = k.tensor([1, 5, 9, 3, 30, 2, 7, 4, 11, 0, 6, 8], [2, 6], 'i32');
      const full = m.forward(ids);
      expect(full.shape).toEqual([2, 6, 32]);
      expect(full.dtype).toBe('f32');
      const cache = new k.nn.KVCache();
      const parts = [m.forward(k.sliceAxis(ids, 1, 0, 2), { cache })];
      for (let t = 2; t < 6; t++) parts.push(m.forward(k.sliceAxis(ids, 1, t, 1), { cache }));
      const got = k.concat(parts, 1).valuesSync();
      const want = full.valuesSync();
      let err = 0;
      for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]));
      expect(err).toBeLessThan(1e-4);
      for (let l = 0; l < 2; l++) expect(cache.widthPerToken(l)).toBe(8 + 4);
      cache.dispose();
      m.dispose();
    }
  });

  it('MTP forward shapes', () => {
    const m = DeepseekV3ForCausalLM.create(tiny(), { seed: 2 });
    const ids = k.tensor([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [2, 5], 'i32');
    const { logits, mtpLogits } = m.forwardWithMtp(ids);
    expect(logits.shape).toEqual([2, 5, 32]);
    expect(mtpLogits).toHaveLength(1);
    expect(mtpLogits[0].shape).toEqual([2, 4, 32]);
    m.dispose();
  });
});
