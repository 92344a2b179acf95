import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SafetensorsFile, readInputIds, writeSafetensorsAtomic } from '../src/checkpoint/index.js';
import { runGenerate } from '../src/commands/generate.js';
import { runLogits } from '../src/commands/logits.js';
import { generate, sampleToken } from '../src/generate/index.js';
import { loadPretrained } from '../src/model/pretrained.js';
import { brownText } from '../src/data/brown.js';
import { BpeTokenizer, WordCounter, trainBpe } from '../src/tokenizer/bpe.js';
import { relL2, useCpuBackendForTests } from './helpers.js';

const FIX = join(__dirname, 'fixtures');
useCpuBackendForTests();

describe('greedy generation', () => {
  it.each(['dsv3-qlora-yarn', 'dsv3-noqlora-sharded'])('%s: cached decoding = full recompute at every step = transformers.generate', async (name) => {
    const { model } = await loadPretrained(join(FIX, name));
    const inp = await readInputIds(join(FIX, name, 'reference.safetensors'));
    const prompt = Array.from(inp.ids.subarray(0, inp.seq));
    const ref = await SafetensorsFile.open(join(FIX, name, 'reference.safetensors'));
    const want = Array.from((await ref.readHost('greedy_tokens')).data as Int32Array);
    await ref.close();
    const cached = generate(model, prompt, { maxNewTokens: want.length });
    const full = generate(model, prompt, { maxNewTokens: want.length, mode: 'recompute' });
    expect(cached.tokens).toEqual(full.tokens);
    expect(cached.tokens).toEqual(want);
    expect(cached.cacheWidthPerToken).toBe(model.config.kvLoraRank + model.config.qkRopeHeadDim);
    model.dispose();
  });

  it('sampling is seeded, respects top-p and temperature 0 is the argmax', () => {
    const logits = Float32Array.from([0, 3, 2.9, -1, 1]);
    expect(sampleToken(logits, { temperature: 0 }, 0)).toBe(1);
    // top-p small enough keeps only the most likely token.
    for (let d = 0; d < 20; d++) expect(sampleToken(logits, { temperature: 1, topP: 0.05, seed: 3 }, d)).toBe(1);
    const a = Array.from({ length: 50 }, (_, d) => sampleToken(logits, { temperature: 1, seed: 9 }, d));
    const b = Array.from({ length: 50 }, (_, d) => sampleToken(logits, { temperature: 1, seed: 9 }, d));
    expect(a).toEqual(b);
    expect(new Set(a).size).toBeGreaterThan(2);
    expect(() => sampleToken(logits, { temperature: -1 }, 0)).toThrow(/temperature/);
    expect(() => sampleToken(logits, { temperature: 1, topP: 0 }, 0)).toThrow(/top-p/);
  });

  it('refuses prompt ids outside the vocabulary', async () => {
    const { model } = await loadPretrained(join(FIX, 'dsv3-qlora-yarn'));
    expect(() => generate(model, [1, 256], { maxNewTokens: 2 })).toThrow(/256.*vocab_size/);
    model.dispose();
  });
});

describe('kiln logits', () => {
  it('writes transformers-equal logits from I64 input ids of a sharded checkpoint', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-logits-'));
    const out = join(dir, 'out.safetensors');
    const r = await runLogits({ model: join(FIX, 'dsv3-noqlora-sharded'), input: join(FIX, 'dsv3-noqlora-sharded', 'reference.safetensors'), out, backend: 'cpu' }, false);
    expect(r.shape).toEqual([2, 10, 320]);
    const got = await SafetensorsFile.open(out);
    const ref = await SafetensorsFile.open(join(FIX, 'dsv3-noqlora-sharded', 'reference.safetensors'));
    expect(got.entry('logits').dtype).toBe('F32');
    expect(relL2((await got.readHost('logits')).data as Float32Array, (await ref.readHost('logits')).data as Float32Array)).toBeLessThan(1e-4);
    await got.close();
    await ref.close();
  });

  it('--fp8 on the FP8 checkpoint follows the 1x128-activation path; refuses --fp8 on a float checkpoint', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-logits-'));
    const out = join(dir, 'out.safetensors');
    const r = await runLogits({ model: join(FIX, 'dsv3-fp8'), input: join(FIX, 'dsv3-fp8', 'reference.safetensors'), out, backend: 'cpu', fp8: true }, false);
    expect(r.fp8Linears).toBeGreaterThan(10);
    const got = await SafetensorsFile.open(out);
    const ref = await SafetensorsFile.open(join(FIX, 'dsv3-fp8', 'reference.safetensors'));
    expect(relL2((await got.readHost('logits')).data as Float32Array, (await ref.readHost('logits_fp8_act')).data as Float32Array)).toBeLessThan(1e-4);
    await got.close();
    await ref.close();
    await expect(runLogits({ model: join(FIX, 'dsv3-qlora-yarn'), input: join(FIX, 'dsv3-qlora-yarn', 'reference.safetensors'), out, backend: 'cpu', fp8: true }, false)).rejects.toThrow(/--fp8 needs an FP8 checkpoint/);
  });

  it('refuses out-of-range ids and a missing input tensor, naming the file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-logits-'));
    const bad = join(dir, 'bad.safetensors');
    await writeSafetensorsAtomic(bad, { input_ids: { dtype: 'I32', shape: [1, 3], data: Int32Array.from([1, 2, 999]) } });
    await expect(runLogits({ model: join(FIX, 'dsv3-qlora-yarn'), input: bad, out: join(dir, 'o.safetensors'), backend: 'cpu' }, false)).rejects.toThrow(/bad\.safetensors.*999.*vocab_size/s);
    const none = join(dir, 'none.safetensors');
    await writeSafetensorsAtomic(none, { ids: { dtype: 'I32', shape: [1, 3], data: Int32Array.from([1, 2, 3]) } });
    await expect(runLogits({ model: join(FIX, 'dsv3-qlora-yarn'), input: none, out: join(dir, 'o.safetensors'), backend: 'cpu' }, false)).rejects.toThrow(/input_ids.*missing/s);
  });
});

describe('kiln generate', () => {
  it('tokenizes with tokenizer.json, streams text and reports tokens/s on a tiny checkpoint', async () => {
    // A byte-level BPE with exactly the checkpoint's 320 tokens, next to a copy of the checkpoint.
    const dir = mkdtempSync(join(tmpdir(), 'kiln-gen-'));
    cpSync(join(FIX, 'dsv3-noqlora-sharded'), dir, { recursive: true });
    const counts = new WordCounter();
    counts.add(brownText('train').slice(0, 200_000));
    const tok = new BpeTokenizer(trainBpe(counts.counts, { vocabSize: 320, minFrequency: 2 }));
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tok.toHuggingFaceJson()));
    let streamed = '';
    const r = await runGenerate({ model: dir, prompt: 'The jury said', maxNewTokens: 8, backend: 'cpu', write: (t) => (streamed += t) });
    expect(r.promptIds).toEqual(tok.encode('The jury said'));
    expect(r.tokens.length).toBeGreaterThan(0);
    expect(streamed.startsWith(`The jury said${tok.decode(r.tokens)}`)).toBe(true);
    expect(streamed).toMatch(/tokens\/s on cpu/);
    expect(readFileSync(join(dir, 'tokenizer.json'), 'utf8').length).toBeGreaterThan(100);
    // Greedy from the same prompt without the CLI gives the same tokens.
    const { model } = await loadPretrained(dir);
    expect(generate(model, r.promptIds, { maxNewTokens: 8, eosTokenId: tok.vocabSize - 1 }).tokens).toEqual(r.tokens);
    model.dispose();
  });

  it('refuses a checkpoint without tokenizer.json, naming the file', async () => {
    await expect(runGenerate({ model: join(FIX, 'dsv3-qlora-yarn'), prompt: 'x', backend: 'cpu', write: () => {} })).rejects.toThrow(/tokenizer\.json/);
  });
});
