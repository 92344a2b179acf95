import { resolve } from 'node:path';
import { Command } from 'commander';
import { noGrad, tensor } from '@kiln/core';
import { checkTokenIds, readInputIds, writeSafetensorsAtomic } from '../checkpoint/index.js';
import { loadPretrained } from '../model/pretrained.js';
import { disposeBackends, selectBackend, writeOut } from './shared.js';

export interface LogitsOptions {
  model: string;
  input: string;
  out: string;
  backend?: string;
  fp8?: boolean;
  json?: boolean;
}

export interface LogitsReport {
  out: string;
  backend: string;
  shape: [number, number, number];
  fp8Linears: number;
  notes: string[];
  loadSeconds: number;
  forwardSeconds: number;
  /** Forward tokens per second (batch x seq / forward time). */
  tokensPerSec: number;
}

/** `kiln logits`: input_ids [batch, seq] from a safetensors file -> logits [batch, seq, vocab] F32. */
export async function runLogits(options: LogitsOptions, print = true): Promise<LogitsReport> {
  const backend = await selectBackend('logits', options.backend);
  try {
    const inputs = await readInputIds(resolve(options.input));
    const t0 = performance.now();
    const { model, config, report, fp8Linears } = await loadPretrained(resolve(options.model), { backend, fp8: options.fp8 });
    const t1 = performance.now();
    try {
      checkTokenIds(inputs.ids, config.vocabSize, options.input);
      const logits = noGrad(() => model.forward(tensor(inputs.ids, [inputs.batch, inputs.seq], 'i32')));
      const data = (await logits.values()) as Float32Array;
      const t2 = performance.now();
      logits.dispose();
      const shape: [number, number, number] = [inputs.batch, inputs.seq, config.vocabSize];
      await writeSafetensorsAtomic(resolve(options.out), { logits: { dtype: 'F32', shape, data } }, { producer: 'kiln logits', model: resolve(options.model), fp8: String(Boolean(options.fp8)) });
      const forwardSeconds = (t2 - t1) / 1000;
      const r: LogitsReport = {
        out: options.out,
        backend: backend.name,
        shape,
        fp8Linears,
        notes: report.notes,
        loadSeconds: (t1 - t0) / 1000,
        forwardSeconds,
        tokensPerSec: (inputs.batch * inputs.seq) / forwardSeconds,
      };
      if (print) {
        if (options.json) await writeOut(`${JSON.stringify(r)}\n`);
        else {
          const lines = r.notes.map((n) => `note: ${n}`);
          lines.push(
            `logits [${shape.join(', ')}] f32 -> ${options.out} (backend ${r.backend}${options.fp8 ? `, FP8: ${fp8Linears} Linears with 1x128 activations` : ''}; load ${r.loadSeconds.toFixed(2)} s, forward ${forwardSeconds.toFixed(3)} s, ${r.tokensPerSec.toFixed(1)} tokens/s)`,
          );
          await writeOut(`${lines.join('\n')}\n`);
        }
      }
      return r;
    } finally {
      model.dispose();
    }
  } finally {
    if (print) await disposeBackends([backend.name]);
  }
}

export function logitsCommand(): Command {
  return new Command('logits')
    .description("run a Hugging Face DeepseekV3ForCausalLM checkpoint on input ids and write its logits (like transformers' forward)")
    .requiredOption('--model <dir>', 'checkpoint directory: config.json + model.safetensors (or sharded with model.safetensors.index.json)')
    .requiredOption('--input <file>', 'safetensors file with input_ids, I32 or I64 [batch, seq]')
    .requiredOption('--out <file>', 'where to write logits, F32 [batch, seq, vocab] (written atomically)')
    .option('--backend <name>', 'backend to run on (default: the best available)')
    .option('--fp8', "FP8 checkpoints: keep FP8 weights and quantize activations per 1x128 tile, like DeepSeek's reference FP8 inference")
    .option('--json', 'print the report as JSON')
    .action(async (opts: LogitsOptions) => {
      await runLogits(opts);
    });
}
