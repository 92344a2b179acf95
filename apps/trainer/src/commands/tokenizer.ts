import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { ArgumentError } from '@kiln/core';
import { Command, Option } from 'commander';
import { readTextData, type ShardDtype } from '../data/readers.js';
import { ShardWriter } from '../data/shards.js';
import { END_OF_TEXT } from '../tokenizer/bpe.js';
import { DEFAULT_TOKENIZER_PATH, DEFAULT_VOCAB_SIZE, loadTokenizer, saveTokenizer, trainTokenizer } from '../tokenizer/train.js';
import { positiveInt, writeOut } from './shared.js';

export interface TokenizerTrainOptions {
  vocabSize?: number;
  data?: string;
  out?: string;
  json?: boolean;
}

export interface TokenizerTrainReport {
  out: string;
  vocabSize: number;
  merges: number;
  documents: number;
  bytes: number;
  uniqueWords: number;
  seconds: number;
  data: string;
}

/** `kiln tokenizer train`: trains a byte-level BPE and writes tokenizer.json; returns what it did. */
export async function runTokenizerTrain(options: TokenizerTrainOptions = {}, print = true): Promise<TokenizerTrainReport> {
  const out = options.out ?? DEFAULT_TOKENIZER_PATH;
  const r = await trainTokenizer({ vocabSize: options.vocabSize ?? DEFAULT_VOCAB_SIZE, data: options.data });
  saveTokenizer(r.tokenizer, out);
  const report: TokenizerTrainReport = {
    out,
    vocabSize: r.tokenizer.vocabSize,
    merges: r.tokenizer.merges.length,
    documents: r.documents,
    bytes: r.bytes,
    uniqueWords: r.uniqueWords,
    seconds: Math.round(r.seconds * 1000) / 1000,
    data: options.data ?? 'brown (train split)',
  };
  if (print) {
    await writeOut(
      options.json
        ? `${JSON.stringify(report)}\n`
        : `tokenizer: vocab ${report.vocabSize} (${report.merges} merges) from ${report.documents} documents, ${report.bytes} bytes of ${report.data} in ${report.seconds.toFixed(2)} s\nwrote ${out}\n`,
    );
  }
  return report;
}

export interface TokenizerEncodeOptions {
  tokenizer?: string;
  data?: string;
  out?: string;
  /** Id width (default: from --out, `*.u32.bin` is u32, other `*.bin` u16). */
  dtype?: ShardDtype;
  json?: boolean;
}

export interface TokenizerEncodeReport {
  out: string;
  dtype: ShardDtype;
  tokens: number;
  documents: number;
  bytes: number;
  seconds: number;
  data: string;
  tokenizer: string;
}

/**
 * `kiln tokenizer encode`: tokenizes text (.txt/.jsonl file or directory, streamed) into a shard of raw
 * little-endian ids that `kiln train --data` reads directly: each document is <|endoftext|> then its ids,
 * exactly as training on the text would see it.
 */
export async function runTokenizerEncode(options: TokenizerEncodeOptions, print = true): Promise<TokenizerEncodeReport> {
  if (!options.tokenizer) throw new ArgumentError('tokenizer encode', '--tokenizer FILE is required (the tokenizer.json to encode with)');
  if (!options.data) throw new ArgumentError('tokenizer encode', '--data PATH is required (a .txt/.jsonl file or a directory of them)');
  const out = options.out;
  if (!out) throw new ArgumentError('tokenizer encode', '--out FILE.bin is required');
  if (!out.endsWith('.bin')) throw new ArgumentError('tokenizer encode', `--out ${out}: a shard's name must end in .bin (u16) or .u32.bin (u32)`);
  const named: ShardDtype = out.endsWith('.u32.bin') ? 'u32' : 'u16';
  const dtype = options.dtype ?? named;
  if (dtype !== 'u16' && dtype !== 'u32') throw new ArgumentError('tokenizer encode', `--dtype must be u16 or u32, got ${JSON.stringify(dtype)}`);
  if (dtype !== named) {
    throw new ArgumentError('tokenizer encode', `--out ${out} does not match --dtype ${dtype}: readers take the width from the name, so name u32 shards *.u32.bin and u16 shards *.bin`);
  }
  const t0 = performance.now();
  const tokenizer = loadTokenizer(options.tokenizer);
  if (dtype === 'u16' && tokenizer.vocabSize > 0x10000) {
    throw new ArgumentError('tokenizer encode', `--dtype u16 cannot hold the ids of ${options.tokenizer} (vocabulary ${tokenizer.vocabSize} > 65536); use --dtype u32 and an --out ending in .u32.bin`);
  }
  const eot = tokenizer.tokenId(END_OF_TEXT);
  if (eot === undefined) throw new ArgumentError('tokenizer encode', `--tokenizer ${options.tokenizer} has no ${END_OF_TEXT} token`);
  mkdirSync(dirname(out), { recursive: true });
  const writer = new ShardWriter(out, dtype);
  let documents = 0;
  let bytes = 0;
  try {
    for await (const doc of readTextData(options.data)) {
      writer.write([eot]);
      writer.write(tokenizer.encode(doc));
      documents++;
      bytes += Buffer.byteLength(doc, 'utf8');
    }
    writer.finish();
  } catch (err) {
    writer.abort();
    throw err;
  }
  const report: TokenizerEncodeReport = {
    out,
    dtype,
    tokens: writer.tokens,
    documents,
    bytes,
    seconds: Math.round(performance.now() - t0) / 1000,
    data: options.data,
    tokenizer: options.tokenizer,
  };
  if (print) {
    await writeOut(
      options.json
        ? `${JSON.stringify(report)}\n`
        : `encoded ${report.documents} documents, ${report.bytes} bytes of ${report.data} into ${report.tokens} ${dtype} ids in ${report.seconds.toFixed(2)} s\nwrote ${out}\n`,
    );
  }
  return report;
}

/** The `kiln tokenizer` command group (train, encode). */
export function tokenizerCommand(): Command {
  const cmd = new Command('tokenizer').description('byte-level BPE tokenizers (Hugging Face tokenizer.json)');
  cmd
    .command('train')
    .description('train a byte-level BPE on the Brown training split or on your text, and save it as tokenizer.json')
    .option('--vocab-size <n>', `vocabulary size, including 256 byte tokens and <|endoftext|> (default ${DEFAULT_VOCAB_SIZE})`, positiveInt('--vocab-size', (1 << 20) - 1))
    .option('--data <path>', 'a .txt or .jsonl file, or a directory of them (default: the Brown corpus training split)')
    .option('--out <file>', `where to write tokenizer.json (default ${DEFAULT_TOKENIZER_PATH})`)
    .option('--json', 'print the report as JSON')
    .action(async (opts: TokenizerTrainOptions) => {
      await runTokenizerTrain(opts);
    });
  cmd
    .command('encode')
    .description('tokenize text into a shard of raw little-endian ids (streamed) for kiln train --data')
    .requiredOption('--tokenizer <file>', 'the tokenizer.json to encode with')
    .requiredOption('--data <path>', 'a .txt or .jsonl file, or a directory of them')
    .requiredOption('--out <file>', 'the shard to write: *.bin (u16 ids) or *.u32.bin (u32 ids)')
    .addOption(new Option('--dtype <t>', 'id width (default: from the --out name)').choices(['u16', 'u32']))
    .option('--json', 'print the report as JSON')
    .addHelpText('after', ['', 'Example:', '  kiln tokenizer encode --tokenizer runs/tokenizer.json --data corpus/ --out shards/corpus.bin', '  kiln train --data shards/ --tokenizer runs/tokenizer.json'].join('\n'))
    .action(async (opts: TokenizerEncodeOptions) => {
      await runTokenizerEncode(opts);
    });
  return cmd;
}

/** Adds `kiln tokenizer` to the program. */
export function registerTokenizerCommand(program: Command): Command {
  return program.addCommand(tokenizerCommand());
}
