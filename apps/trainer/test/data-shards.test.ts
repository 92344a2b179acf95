import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as k from '@kiln/core';
import { CpuBackend } from '@kiln/backend-cpu';
import { Command } from 'commander';
import { registerTokenizerCommand, runTokenizerEncode } from '../src/commands/tokenizer.js';
import { brownDocuments } from '../src/data/brown.js';
import { encodeTokenShard, readTextData } from '../src/data/readers.js';
import { ShardTokenSource } from '../src/data/shards.js';
import { ArrayTokenSource, TokenStream } from '../src/data/stream.js';
import { BpeTokenizer, END_OF_TEXT } from '../src/tokenizer/bpe.js';
import { loadTokenizer } from '../src/tokenizer/train.js';
import { runTraining, type TrainMetrics } from '../src/train/trainer.js';

let backend: CpuBackend;
let dir: string;
beforeAll(() => {
  backend = new CpuBackend();
  k.useBackend(backend);
  dir = mkdtempSync(join(tmpdir(), 'kiln-shards-'));
});
afterAll(() => {
  backend.dispose();
  rmSync(dir, { recursive: true, force: true });
});

/** Deterministic pseudo-random ids below `max`. */
function randomIds(n: number, max: number, seed: number): number[] {
  let s = seed >>> 0;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out.push(s % max);
  }
  return out;
}

function trainMetrics(runDir: string): TrainMetrics[] {
  return readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as TrainMetrics)
    .filter((l) => l.type === 'train');
}

describe('ShardTokenSource', () => {
  it('reads the same windows as an in-memory source, across shard boundaries, u16 and u32', () => {
    const d = join(dir, 'mixed-width');
    mkdirSync(d);
    const parts = [randomIds(1000, 60000, 1), randomIds(37, 60000, 2), randomIds(1, 60000, 3), randomIds(2500, 60000, 4)];
    // sorted order: a (u16), b (u32), c (u16), d (u32)
    writeFileSync(join(d, 'a.bin'), encodeTokenShard(parts[0], 'u16'));
    writeFileSync(join(d, 'b.u32.bin'), encodeTokenShard(parts[1], 'u32'));
    writeFileSync(join(d, 'c.bin'), encodeTokenShard(parts[2], 'u16'));
    writeFileSync(join(d, 'd.u32.bin'), encodeTokenShard(parts[3], 'u32'));
    const all = parts.flat();
    const shards = ShardTokenSource.fromPath(d, { vocabSize: 60000 });
    const mem = new ArrayTokenSource(all);
    expect(shards.length).toBe(all.length);
    expect(shards.files.map((f) => f.slice(d.length + 1))).toEqual(['a.bin', 'b.u32.bin', 'c.bin', 'd.u32.bin']);
    const a = new Int32Array(600);
    const reads: [number, number][] = [
      [0, 1000],
      [990, 50],
      [1036, 3],
      [1037, 1],
      [0, all.length],
      [all.length - 1, 1],
    ];
    for (const [start, count] of randomIds(200, all.length, 9).map((s, i): [number, number] => [s, Math.min(1 + (i * 37) % 600, all.length - s)])) reads.push([start, count]);
    for (const [start, count] of reads) {
      const x = new Int32Array(count);
      const y = new Int32Array(count);
      shards.read(start, count, x);
      mem.read(start, count, y);
      expect(Array.from(x)).toEqual(Array.from(y));
      expect(Array.from(x)).toEqual(all.slice(start, start + count));
    }
    expect(() => shards.read(all.length - 2, 3, a)).toThrow(k.ArgumentError);
    // TokenStream serves the same batches over either source, and over the plain array
    const opts = { batchSize: 5, seqLen: 64, seed: 3 };
    const s1 = new TokenStream(shards, opts);
    const s2 = new TokenStream(mem, opts);
    const s3 = new TokenStream(all, opts);
    for (let i = 0; i < 20; i++) {
      const x = s1.nextHost();
      expect(Array.from(x)).toEqual(Array.from(s2.nextHost()));
      expect(Array.from(x)).toEqual(Array.from(s3.nextHost()));
    }
    expect(s1.getState()).toEqual(s3.getState());
    shards.close();
  });

  it('refuses an id outside the vocabulary, naming the shard and the position', () => {
    const d = join(dir, 'bad-id');
    mkdirSync(d);
    const good = randomIds(100, 500, 5);
    const bad = randomIds(50, 500, 6);
    bad[17] = 512;
    writeFileSync(join(d, '00.bin'), encodeTokenShard(good, 'u16'));
    writeFileSync(join(d, '01.u32.bin'), encodeTokenShard(bad, 'u32'));
    const src = ShardTokenSource.fromPath(d, { vocabSize: 512 });
    const out = new Int32Array(150);
    src.read(0, 117, out); // up to the bad id: fine
    let err: unknown;
    try {
      src.read(90, 40, out);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(k.FormatError);
    expect((err as Error).message).toContain(join(d, '01.u32.bin'));
    expect((err as Error).message).toMatch(/token id 512 at position 17 \(byte 68\).*vocabulary size 512/);
    src.close();
  });

  it('refuses odd-sized shards, and directories that mix shards with text', () => {
    const d = join(dir, 'odd');
    mkdirSync(d);
    writeFileSync(join(d, 'x.u32.bin'), Buffer.alloc(6));
    expect(() => ShardTokenSource.fromPath(d)).toThrow(/x\.u32\.bin: 6 bytes is not a whole number of u32/);
    const m = join(dir, 'mixed');
    mkdirSync(m);
    writeFileSync(join(m, 'a.bin'), encodeTokenShard([1, 2, 3], 'u16'));
    writeFileSync(join(m, 'b.txt'), 'hello\n');
    expect(() => ShardTokenSource.fromPath(m)).toThrow(k.ArgumentError);
    expect(() => ShardTokenSource.fromPath(m)).toThrow(/mixes token shards with text/);
  });
});

describe('kiln tokenizer encode', () => {
  it('writes <|endoftext|> + ids per document, u16 or u32 by name, and checks its flags', async () => {
    const docs = brownDocuments('train').slice(0, 3);
    const text = join(dir, 'enc.txt');
    writeFileSync(text, docs.map((x) => x.text).join('\n\n'));
    const tokPath = join(dir, 'enc-tokenizer.json');
    const program = registerTokenizerCommand(new Command('kiln').exitOverride());
    await program.parseAsync(['tokenizer', 'train', '--vocab-size', '300', '--data', text, '--out', tokPath, '--json'], { from: 'user' });
    await program.parseAsync(['tokenizer', 'encode', '--tokenizer', tokPath, '--data', text, '--out', join(dir, 'enc', 'x.bin'), '--json'], { from: 'user' });
    const tok: BpeTokenizer = loadTokenizer(tokPath);
    const eot = tok.tokenId(END_OF_TEXT) as number;
    const texts: string[] = [];
    for await (const doc of readTextData(text)) texts.push(doc);
    const expected = texts.flatMap((x) => [eot, ...tok.encode(x)]);
    const u16 = readFileSync(join(dir, 'enc', 'x.bin'));
    expect(Array.from(new Uint16Array(u16.buffer, u16.byteOffset, u16.length / 2))).toEqual(expected);
    const r = await runTokenizerEncode({ tokenizer: tokPath, data: text, out: join(dir, 'enc', 'y.u32.bin'), dtype: 'u32' }, false);
    expect(r).toMatchObject({ dtype: 'u32', tokens: expected.length, documents: texts.length });
    const u32 = readFileSync(join(dir, 'enc', 'y.u32.bin'));
    expect(Array.from(new Uint32Array(u32.buffer.slice(u32.byteOffset, u32.byteOffset + u32.length)))).toEqual(expected);
    expect(readdirSync(join(dir, 'enc')).sort()).toEqual(['x.bin', 'y.u32.bin']); // no temporary files left
    await expect(runTokenizerEncode({ tokenizer: tokPath, data: text, out: join(dir, 'enc', 'z.bin'), dtype: 'u32' }, false)).rejects.toThrow(/--out .*z\.bin does not match --dtype u32/);
    await expect(runTokenizerEncode({ data: text, out: join(dir, 'enc', 'z.bin') }, false)).rejects.toThrow(/--tokenizer/);
    await expect(runTokenizerEncode({ tokenizer: tokPath, data: text, out: join(dir, 'enc', 'z.txt') }, false)).rejects.toThrow(/--out/);
  });
});

describe('training on --data', () => {
  it('text and the same text pre-tokenized into shards train on the same batches; shards need --tokenizer; the loss falls', async () => {
    const docs = brownDocuments('train');
    const textDir = join(dir, 'text');
    mkdirSync(textDir);
    writeFileSync(join(textDir, 'a.txt'), docs.slice(0, 40).map((x) => x.text).join('\n\n'));
    writeFileSync(join(textDir, 'b.jsonl'), docs.slice(40, 80).map((x) => JSON.stringify({ text: x.text })).join('\n'));
    const cacheDir = join(dir, 'cache');
    const base = { preset: 'micro', backend, cacheDir, progress: 'none' as const, log: () => undefined, baseline: false, overrides: { steps: 12, evalBytes: 2000 } };

    const textRun = join(dir, 'run-text');
    const a = await runTraining({ ...base, out: textRun, data: textDir });
    expect(a.step).toBe(12);
    // the text's ids were cached as a u32 shard (no temporary files left), and training streamed from it
    const cached = readdirSync(cacheDir).filter((f) => f.startsWith('ids-'));
    expect(cached.some((f) => f.endsWith('.u32.bin'))).toBe(true);
    expect(cached.some((f) => f.includes('.tmp-'))).toBe(false);

    // pre-tokenize the same files with the run's tokenizer: one u16 shard and one u32 shard
    const tokPath = join(textRun, 'tokenizer.json');
    const shardDir = join(dir, 'shards');
    await runTokenizerEncode({ tokenizer: tokPath, data: join(textDir, 'a.txt'), out: join(shardDir, 'a.bin') }, false);
    await runTokenizerEncode({ tokenizer: tokPath, data: join(textDir, 'b.jsonl'), out: join(shardDir, 'b.u32.bin') }, false);
    const cachedIds = readFileSync(join(cacheDir, cached.find((f) => f.endsWith('.u32.bin')) as string));
    const shardIds = ShardTokenSource.fromPath(shardDir);
    expect(shardIds.length).toBe(cachedIds.length / 4);

    await expect(runTraining({ ...base, out: join(dir, 'run-notok'), data: shardDir })).rejects.toThrow(/--tokenizer FILE/);
    const mixed = join(dir, 'mixed-train');
    mkdirSync(mixed);
    writeFileSync(join(mixed, 'a.txt'), 'some text\n');
    writeFileSync(join(mixed, 'b.bin'), encodeTokenShard([1, 2, 3], 'u16'));
    await expect(runTraining({ ...base, out: join(dir, 'run-mixed'), data: mixed, tokenizer: tokPath })).rejects.toThrow(/mixes token shards/);

    const shardRun = join(dir, 'run-shards');
    const b = await runTraining({ ...base, out: shardRun, data: shardDir, tokenizer: tokPath });
    expect(b.step).toBe(12);
    const ta = trainMetrics(textRun);
    const tb = trainMetrics(shardRun);
    expect(tb.map((l) => l.loss)).toEqual(ta.map((l) => l.loss));
    expect(b.val?.bpb).toBe(a.val?.bpb);
    const first = (tb[0].ceLoss + tb[1].ceLoss) / 2;
    const last = (tb[10].ceLoss + tb[11].ceLoss) / 2;
    expect(last).toBeLessThan(first - 0.2);
    const run = JSON.parse(readFileSync(join(shardRun, 'run.json'), 'utf8'));
    expect(run.data).toMatchObject({ train: shardDir, trainTokens: shardIds.length, trainBytes: null });

    // a bad id in a shard stops training with an error naming the shard
    const badDir = join(dir, 'bad-shards');
    mkdirSync(badDir);
    const vocab = loadTokenizer(tokPath).vocabSize;
    writeFileSync(join(badDir, 'bad.u32.bin'), encodeTokenShard(Array.from({ length: 129 }, (_, i) => (i === 5 ? vocab : i % vocab)), 'u32'));
    await expect(runTraining({ ...base, out: join(dir, 'run-bad'), data: badDir, tokenizer: tokPath, overrides: { steps: 50, evalBytes: 2000 } })).rejects.toThrow(/bad\.u32\.bin: token id \d+ at position 5/);
    expect(existsSync(join(dir, 'run-bad'))).toBe(true);
  }, 600_000);
});
