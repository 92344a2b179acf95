import { Command } from 'commander';
import { DEFAULT_TOKENIZER_PATH, DEFAULT_VOCAB_SIZE, saveTokenizer, trainTokenizer } from '../tokenizer/train.js';
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

/** The `kiln tokenizer` command group (train). */
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
  return cmd;
}

/** Adds `kiln tokenizer` to the program. */
export function registerTokenizerCommand(program: Command): Command {
  return program.addCommand(tokenizerCommand());
}
