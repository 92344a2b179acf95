import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { describe, expect, it } from 'vitest';
import { runTokenizerTrain, registerTokenizerCommand } from '../src/commands/tokenizer.js';
import { brownText } from '../src/data/brown.js';
import { BpeTokenizer, END_OF_TEXT, WordCounter, byteToUnicode, preTokenize, trainBpe } from '../src/tokenizer/bpe.js';
import { loadTokenizer, trainTokenizer } from '../src/tokenizer/train.js';
import { Command } from 'commander';

describe('byte-level BPE', () => {
  it('maps the 256 bytes to 256 distinct printable characters (GPT-2 table)', () => {
    const t = byteToUnicode();
    expect(new Set(t).size).toBe(256);
    expect(t[0x41]).toBe('A');
    expect(t[0x20]).toBe('Ġ');
    expect(t[0x0a]).toBe('Ċ');
  });

  it('pre-tokenizes like GPT-2', () => {
    expect(preTokenize("Hello world, it's 2026!\n\n  ok")).toEqual(['Hello', ' world', ',', ' it', "'s", ' 2026', '!', '\n\n ', ' ok']);
  });

  it('learns the most frequent pairs first and round-trips any text', () => {
    const c = new WordCounter();
    c.add('low low low low lower lower newest newest newest widest');
    const tok = new BpeTokenizer(trainBpe(c.counts, { vocabSize: 270, minFrequency: 1 }));
    expect(tok.vocabSize).toBe(270);
    expect(tok.tokens[256]).toBe('lo'); // "lo" and "ow" appear 6 times each; ties go to the smaller pair of ids
    expect(tok.tokens[257]).toBe('low');
    expect(tok.tokens[tok.vocabSize - 1]).toBe(END_OF_TEXT);
    for (const s of ['lower newest', 'héllo wörld ✓ 🙂', '\u0000\u00ff tabs\tand\r\nlines', `a${END_OF_TEXT}b`]) expect(tok.decode(tok.encode(s))).toBe(s);
    expect(tok.encode(`x${END_OF_TEXT}`)).toEqual([...tok.encode('x'), tok.vocabSize - 1]);
  });

  it('trains on the Brown training split in seconds; @huggingface/tokenizers loads the tokenizer.json and agrees exactly', async () => {
    const r = await trainTokenizer({ vocabSize: 4096 });
    const tok = r.tokenizer;
    expect(tok.vocabSize).toBe(4096);
    expect(r.documents).toBe(475);
    expect(r.seconds).toBeLessThan(60);
    const dir = mkdtempSync(join(tmpdir(), 'kiln-tok-'));
    const path = join(dir, 'tokenizer.json');
    writeFileSync(path, JSON.stringify(tok.toHuggingFaceJson()));
    const hf = new Tokenizer(JSON.parse(readFileSync(path, 'utf8')), {});
    const val = brownText('validation');
    const ours = tok.encode(val);
    const theirs = hf.encode(val, { add_special_tokens: false }).ids;
    expect(theirs.length).toBe(ours.length);
    expect(theirs).toEqual(ours);
    expect(tok.decode(ours)).toBe(val);
    expect(hf.decode(theirs, { skip_special_tokens: false, clean_up_tokenization_spaces: false })).toBe(val);
    // Compression sanity: far fewer tokens than bytes.
    expect(ours.length / Buffer.byteLength(val)).toBeLessThan(0.35);
    const tricky = `Unicode: naïve café — 東京 🙂\n\n\tend ${END_OF_TEXT} next`;
    expect(hf.encode(tricky, { add_special_tokens: false }).ids).toEqual(tok.encode(tricky));
    // And our loader reads the file back identically.
    const back = loadTokenizer(path);
    expect(back.encode(val)).toEqual(ours);
  });

  it('kiln tokenizer train: trains on --data and writes --out', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-tok-cmd-'));
    const data = join(dir, 'my.txt');
    writeFileSync(data, 'the cat sat on the mat\n\nthe dog sat on the log\n'.repeat(50));
    const out = join(dir, 'sub', 'tok.json');
    const rep = await runTokenizerTrain({ vocabSize: 300, data, out }, false);
    expect(rep.documents).toBe(51); // blank lines separate documents; the repeats run into each other
    expect(rep.vocabSize).toBeLessThanOrEqual(300);
    const hf = new Tokenizer(JSON.parse(readFileSync(out, 'utf8')), {});
    expect(hf.encode('the cat', { add_special_tokens: false }).ids).toEqual(loadTokenizer(out).encode('the cat'));
    const program = registerTokenizerCommand(new Command('kiln'));
    expect(program.commands.map((c) => c.name())).toContain('tokenizer');
  });
});
