import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { FormatError } from '@kiln/core';
import { brownDocuments } from '../data/brown.js';
import { readTextData } from '../data/readers.js';
import { BpeTokenizer, END_OF_TEXT, WordCounter, trainBpe } from './bpe.js';

export const DEFAULT_VOCAB_SIZE = 4096;
export const DEFAULT_TOKENIZER_PATH = 'runs/tokenizer.json';

export interface TrainTokenizerOptions {
  vocabSize?: number;
  /** A .txt/.jsonl file or a directory of them; default: the Brown corpus training split. */
  data?: string;
  specialTokens?: string[];
  minFrequency?: number;
}

export interface TrainTokenizerResult {
  tokenizer: BpeTokenizer;
  documents: number;
  bytes: number;
  uniqueWords: number;
  seconds: number;
}

/** Trains a byte-level BPE on the Brown training split or on the user's text (streamed). */
export async function trainTokenizer(options: TrainTokenizerOptions = {}): Promise<TrainTokenizerResult> {
  const t0 = performance.now();
  const counter = new WordCounter();
  let documents = 0;
  let bytes = 0;
  const add = (text: string): void => {
    counter.add(text);
    documents++;
    bytes += Buffer.byteLength(text, 'utf8');
  };
  if (options.data) for await (const doc of readTextData(options.data)) add(doc);
  else for (const doc of brownDocuments('train')) add(doc.text);
  const model = trainBpe(counter.counts, {
    vocabSize: options.vocabSize ?? DEFAULT_VOCAB_SIZE,
    specialTokens: options.specialTokens ?? [END_OF_TEXT],
    minFrequency: options.minFrequency,
  });
  return { tokenizer: new BpeTokenizer(model), documents, bytes, uniqueWords: counter.counts.size, seconds: (performance.now() - t0) / 1000 };
}

/** Writes the tokenizer as a Hugging Face tokenizer.json (directories created as needed). */
export function saveTokenizer(tokenizer: BpeTokenizer, path: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(tokenizer.toHuggingFaceJson(), null, 1)}\n`);
}

/** Loads a byte-level BPE tokenizer.json (ours or a checkpoint's). */
export function loadTokenizer(path: string): BpeTokenizer {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new FormatError('tokenizer', `${path}: cannot read a tokenizer.json (${err instanceof Error ? err.message : String(err)})`);
  }
  return BpeTokenizer.fromHuggingFaceJson(json);
}
