import { join } from 'node:path';
import { ArgumentError, type Backend } from '@kiln/core';
import { HfCheckpoint, loadModelWeights, type LoadReport } from '../checkpoint/index.js';
import { parseDeepseekV3Config, type DeepseekV3Config } from './config.js';
import { DeepseekV3ForCausalLM } from './deepseek-v3.js';

export interface LoadPretrainedOptions {
  backend?: Backend;
  /**
   * Run like DeepSeek-V3's reference FP8 inference: FP8 weights stay FP8 (all but kv_b_proj)
   * and activations are quantized per 1x128 tile. Needs a checkpoint with an FP8
   * `quantization_config`; without the flag, FP8 weights are dequantized to f32.
   */
  fp8?: boolean;
}

export interface Pretrained {
  model: DeepseekV3ForCausalLM;
  config: DeepseekV3Config;
  report: LoadReport;
  /** Linears that run in FP8 (with `fp8`). */
  fp8Linears: number;
}

/** Loads a Hugging Face DeepseekV3ForCausalLM directory (config.json + safetensors) into kiln. */
export async function loadPretrained(dir: string, options: LoadPretrainedOptions = {}): Promise<Pretrained> {
  const ckpt = await HfCheckpoint.open(dir);
  try {
    const config = parseDeepseekV3Config(ckpt.config, join(dir, 'config.json'));
    if (options.fp8 && !ckpt.quantization) {
      throw new ArgumentError('loadPretrained', `--fp8 needs an FP8 checkpoint (config.json quantization_config with quant_method fp8); ${join(dir, 'config.json')} has none`);
    }
    const model = DeepseekV3ForCausalLM.create(config, { init: 'zeros' });
    try {
      const report = await loadModelWeights(model, ckpt, { backend: options.backend, numHiddenLayers: config.numHiddenLayers, fp8: options.fp8 ? 'keep' : 'dequantize' });
      const fp8Linears = options.fp8 ? model.useFp8Activations() : 0;
      return { model, config, report, fp8Linears };
    } catch (err) {
      model.dispose();
      throw err;
    }
  } finally {
    await ckpt.close();
  }
}
