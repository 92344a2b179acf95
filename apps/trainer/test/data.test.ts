import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArgumentError, FormatError, useBackend } from '@kiln/core';
import { createCpuBackend } from '@kiln/backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { brownDocuments, brownText, stripTags } from '../src/data/brown.js';
import { encodeTokenShard, listDataFiles, readDocuments, readTextData, readTokenShard } from '../src/data/readers.js';
import { TokenStream } from '../src/data/stream.js';

beforeAll(() => useBackend(createCpuBackend()));

async function collect<T>(g: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of g) out.push(x);
  return out;
}

const tmp = (): string => mkdtempSync(join(tmpdir(), 'kiln-data-'));

describe('Brown corpus', () => {
  it('strips POS tags to plain text', () => {
    expect(stripTags("\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, Atlanta's/np$ (/( 1960/cd )/) ./.")).toBe(
      `The jury said "no evidence", Atlanta's (1960).`,
    );
  });

  it('has 500 documents split 475/25 (every 20th document is validation), fixed sizes', () => {
    const all = brownDocuments();
    expect(all).toHaveLength(500);
    const train = brownDocuments('train');
    const val = brownDocuments('validation');
    expect(train).toHaveLength(475);
    expect(val).toHaveLength(25);
    expect(val[0].id).toBe('ca20');
    expect(val.map((d) => d.id)).not.toContain(train[0].id);
    const valText = brownText('validation');
    expect(valText).not.toMatch(/\S\/(?:at|nn|vbd|in)\s/); // no tags left
    expect(Buffer.byteLength(valText)).toBeGreaterThan(200_000);
    expect(Buffer.byteLength(brownText('train'))).toBeGreaterThan(20 * Buffer.byteLength(valText) * 0.8);
  });
});

describe('TokenStream', () => {
  const ids = Int32Array.from({ length: 1001 }, (_, i) => i);

  it('serves [batch, seq+1] windows that cover every window once per epoch', () => {
    const s = new TokenStream(ids, { batchSize: 4, seqLen: 10, seed: 7 });
    expect(s.windows).toBe(100);
    const starts = new Set<number>();
    for (let k = 0; k < 25; k++) {
      const b = s.nextHost();
      for (let r = 0; r < 4; r++) {
        const row = b.subarray(r * 11, r * 11 + 11);
        for (let i = 1; i < 11; i++) expect(row[i]).toBe(row[0] + i);
        expect(row[0] % 10).toBe(0);
        starts.add(row[0]);
      }
    }
    expect(starts.size).toBe(100);
    expect(s.getState()).toMatchObject({ epoch: 0, offset: 100 });
    s.nextHost();
    expect(s.getState()).toMatchObject({ epoch: 1, offset: 4 });
    const t = s.next();
    expect(t.shape).toEqual([4, 11]);
    expect(t.dtype).toBe('i32');
  });

  it('is deterministic per seed and resumes exactly from its state', () => {
    const a = new TokenStream(ids, { batchSize: 3, seqLen: 10, seed: 1 });
    const b = new TokenStream(ids, { batchSize: 3, seqLen: 10, seed: 1 });
    const c = new TokenStream(ids, { batchSize: 3, seqLen: 10, seed: 2 });
    expect(a.nextHost()).toEqual(b.nextHost());
    expect(Array.from(c.nextHost())).not.toEqual(Array.from(new TokenStream(ids, { batchSize: 3, seqLen: 10, seed: 1 }).nextHost()));
    for (let i = 0; i < 40; i++) a.nextHost(); // crosses an epoch boundary
    const state = a.getState();
    const resumed = new TokenStream(ids, { batchSize: 3, seqLen: 10, seed: 999 }, state);
    for (let i = 0; i < 50; i++) expect(resumed.nextHost()).toEqual(a.nextHost());
  });

  it('rejects too few tokens', () => {
    expect(() => new TokenStream([1, 2, 3], { batchSize: 1, seqLen: 8 })).toThrow(ArgumentError);
  });
});

describe('streaming readers', () => {
  it('reads txt documents (blank-line separated) and jsonl text fields', async () => {
    const d = tmp();
    writeFileSync(join(d, 'a.txt'), 'one\ntwo\n\n\nthree\r\nfour');
    writeFileSync(join(d, 'b.jsonl'), '{"text":"x y"}\n\n{"text":"é\\nz"}\n');
    expect(await collect(readDocuments(join(d, 'a.txt')))).toEqual(['one\ntwo', 'three\nfour']);
    expect(await collect(readTextData(d))).toEqual(['one\ntwo', 'three\nfour', 'x y', 'é\nz']);
  });

  it('handles multi-byte characters split across chunks', async () => {
    const d = tmp();
    const text = '🙂é東'.repeat(5000);
    writeFileSync(join(d, 'u.txt'), text);
    const lines: string[] = [];
    const { readLines } = await import('../src/data/readers.js');
    for await (const l of readLines(join(d, 'u.txt'), 7)) lines.push(l);
    expect(lines).toEqual([text]);
  });

  it('typed errors for empty, binary, invalid UTF-8 and bad jsonl files', async () => {
    const d = tmp();
    writeFileSync(join(d, 'empty.txt'), '');
    writeFileSync(join(d, 'nul.txt'), Buffer.from([0x61, 0x00, 0x62]));
    writeFileSync(join(d, 'bad.txt'), Buffer.from([0x61, 0x0a, 0xff, 0xfe]));
    writeFileSync(join(d, 'bad.jsonl'), '{"text": 3}\n');
    await expect(collect(readDocuments(join(d, 'empty.txt')))).rejects.toThrow(ArgumentError);
    await expect(collect(readDocuments(join(d, 'nul.txt')))).rejects.toThrow(FormatError);
    await expect(collect(readDocuments(join(d, 'bad.txt')))).rejects.toThrow(FormatError);
    await expect(collect(readDocuments(join(d, 'bad.jsonl')))).rejects.toThrow(FormatError);
    expect(() => listDataFiles(join(d, 'missing'))).toThrow(ArgumentError);
  });

  it('streams u16/u32 shards in blocks', async () => {
    const d = tmp();
    const ids = Array.from({ length: 1000 }, (_, i) => (i * 37) % 65536);
    writeFileSync(join(d, 's.bin'), encodeTokenShard(ids, 'u16'));
    writeFileSync(join(d, 's.u32.bin'), encodeTokenShard(ids.map((x) => x * 70000), 'u32'));
    writeFileSync(join(d, 'odd.bin'), Buffer.from([1, 2, 3]));
    const blocks = await collect(readTokenShard(join(d, 's.bin'), 'u16', 64));
    expect(blocks.length).toBeGreaterThan(10);
    expect(blocks.flatMap((b) => Array.from(b))).toEqual(ids);
    const big = await collect(readTokenShard(join(d, 's.u32.bin'), undefined, 33));
    expect(big.flatMap((b) => Array.from(b))).toEqual(ids.map((x) => x * 70000));
    await expect(collect(readTokenShard(join(d, 'odd.bin')))).rejects.toThrow(FormatError);
  });
});
