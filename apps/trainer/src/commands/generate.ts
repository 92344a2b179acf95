import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { Command, InvalidArgumentError } from 'commander';
import { ArgumentError } from '@kiln/core';
import { CheckpointError } from '../checkpoint/index.js';
import { generate, type GenerateResult } from '../generate/index.js';
import { loadPretrained } from '../model/pretrained.js';
import { disposeBackends, positiveInt, selectBackend, writeOut } from './shared.js';

export interface GenerateCommandOptions {
  model: string;
  prompt: string;
  maxNewTokens?: number;
  temperature?: number;
  topP?: number;
  seed?: number;
  backend?: string;
  fp8?: boolean;
  tokenizer?: string;
  json?: boolean;
  /** Write the streamed text here (default stdout). */
  write?: (text: string) => void;
}

export interface GenerateReport extends GenerateResult {
  text: string;
  backend: string;
  promptIds: number[];
}

function readJsonFile(path: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new CheckpointError(path, `not readable JSON: ${(err as Error).message}`);
  }
}

/** Loads the checkpoint's tokenizer.json (and tokenizer_config.json when present). */
export function loadHfTokenizer(modelDir: string, path?: string): { tokenizer: Tokenizer; eos?: number } {
  const file = path ?? join(modelDir, 'tokenizer.json');
  if (!existsSync(file)) throw new CheckpointError(file, 'no tokenizer.json: generate needs the checkpoint\'s tokenizer (or pass --tokenizer FILE)');
  const json = readJsonFile(file);
  const cfgPath = join(modelDir, 'tokenizer_config.json');
  const cfg = existsSync(cfgPath) ? readJsonFile(cfgPath) : {};
  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(json as never, cfg as never);
  } catch (err) {
    throw new CheckpointError(file, `@huggingface/tokenizers could not load it: ${(err as Error).message}`);
  }
  const eosName = typeof cfg.eos_token === 'string' ? cfg.eos_token : '<|endoftext|>';
  const eos = tokenizer.token_to_id(eosName) ?? undefined;
  return { tokenizer, eos };
}

/** `kiln generate`: tokenizes the prompt, decodes with the compressed KV cache, streams tokens. */
export async function runGenerate(options: GenerateCommandOptions): Promise<GenerateReport> {
  const write = options.write ?? ((t: string) => process.stdout.write(t));
  const backend = await selectBackend('generate', options.backend);
  try {
    const modelDir = resolve(options.model);
    const { tokenizer, eos } = loadHfTokenizer(modelDir, options.tokenizer && resolve(options.tokenizer));
    const promptIds = tokenizer.encode(options.prompt, { add_special_tokens: false }).ids;
    if (promptIds.length === 0) throw new ArgumentError('generate', '--prompt encodes to no tokens; give some text');
    const { model } = await loadPretrained(modelDir, { backend, fp8: options.fp8 });
    try {
      let shown = '';
      const ids: number[] = [];
      const decode = (t: number[]) => tokenizer.decode(t, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
      if (!options.json) write(options.prompt);
      const result = generate(model, promptIds, {
        maxNewTokens: options.maxNewTokens ?? 32,
        temperature: options.temperature ?? 0,
        topP: options.topP ?? 1,
        seed: options.seed ?? 0,
        eosTokenId: eos,
        onToken: (id) => {
          ids.push(id);
          // Byte-level tokens can split a UTF-8 character: hold back a trailing U+FFFD.
          const text = decode(ids);
          const stable = text.endsWith('\uFFFD') ? text.slice(0, -1) : text;
          if (!options.json && stable.length > shown.length && stable.startsWith(shown)) write(stable.slice(shown.length));
          if (stable.startsWith(shown)) shown = stable;
        },
      });
      const text = decode(result.tokens);
      if (!options.json && text.length > shown.length) write(text.slice(shown.length));
      const report: GenerateReport = { ...result, text, backend: backend.name, promptIds };
      if (options.json) write(`${JSON.stringify({ ...report })}\n`);
      else {
        write(
          `\n\n[${result.tokens.length} tokens; prefill ${result.promptTokens} tokens in ${result.prefillSeconds.toFixed(3)} s; decode ${result.tokensPerSec.toFixed(1)} tokens/s on ${backend.name}; KV cache ${result.cacheWidthPerToken} values/token/layer]\n`,
        );
      }
      return report;
    } finally {
      model.dispose();
    }
  } finally {
    if (!options.write) await disposeBackends([backend.name]);
  }
}

function finiteNumber(label: string, lo: number, hi: number) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < lo || n > hi) throw new InvalidArgumentError(`${label} must be a number from ${lo} to ${hi}, got ${JSON.stringify(value)}.`);
    return n;
  };
}

export function generateCommand(): Command {
  return new Command('generate')
    .description("generate text from a Hugging Face DeepseekV3ForCausalLM checkpoint with its tokenizer.json, decoding from MLA's compressed KV cache")
    .requiredOption('--model <dir>', 'checkpoint directory (config.json, safetensors, tokenizer.json)')
    .requiredOption('--prompt <text>', 'the prompt')
    .option('--max-new-tokens <n>', 'how many tokens to generate (default 32)', positiveInt('--max-new-tokens', 1 << 20))
    .option('--temperature <t>', 'sampling temperature; 0 is greedy (default 0)', finiteNumber('--temperature', 0, 100))
    .option('--top-p <p>', 'nucleus sampling mass (default 1)', finiteNumber('--top-p', Number.MIN_VALUE, 1))
    .option('--seed <s>', 'sampling seed (default 0)', positiveIntOrZero)
    .option('--tokenizer <file>', 'tokenizer.json to use instead of the checkpoint\'s')
    .option('--backend <name>', 'backend to run on (default: the best available)')
    .option('--fp8', 'FP8 checkpoints: FP8 weights and 1x128-tile FP8 activations')
    .option('--json', 'print one JSON report instead of streaming')
    .action(async (opts: GenerateCommandOptions) => {
      await runGenerate(opts);
    });
}

function positiveIntOrZero(value: string): number {
  const n = Number(value);
  if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n > 0xffffffff) throw new InvalidArgumentError(`--seed must be an integer from 0 to 4294967295, got ${JSON.stringify(value)}.`);
  return n;
}
