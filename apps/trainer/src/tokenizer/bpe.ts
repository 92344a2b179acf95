import { ArgumentError, FormatError } from '@kiln/core';

/**
 * Byte-level BPE (GPT-2 style): text is split by the pre-tokenizer regex, each piece is taken as its
 * UTF-8 bytes, each byte is shown as one printable unicode character, and merges learnt by pair
 * frequency join adjacent symbols. Saved as a Hugging Face `tokenizer.json` (model BPE, ByteLevel
 * pre-tokenizer and decoder), which `@huggingface/tokenizers` loads.
 */

/** The pre-tokenizer regex of HF's ByteLevel pre-tokenizer (use_regex: true). */
export const PRETOKENIZE_REGEX = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

export const END_OF_TEXT = '<|endoftext|>';

/** GPT-2's byte -> printable unicode character table (bytes that print as themselves keep their code point). */
export function byteToUnicode(): string[] {
  const keep: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) keep.push(b);
  for (let b = 0xa1; b <= 0xac; b++) keep.push(b);
  for (let b = 0xae; b <= 0xff; b++) keep.push(b);
  const table = new Array<string>(256);
  const kept = new Set(keep);
  let extra = 0;
  for (let b = 0; b < 256; b++) table[b] = String.fromCodePoint(kept.has(b) ? b : 256 + extra++);
  return table;
}

const BYTE_CHARS = byteToUnicode();
const CHAR_TO_BYTE = new Map(BYTE_CHARS.map((c, b) => [c, b]));
const encoder = new TextEncoder();

/** Splits text into pre-tokens (the pieces BPE never merges across). */
export function preTokenize(text: string): string[] {
  return text.match(PRETOKENIZE_REGEX) ?? [];
}

export interface BpeTrainOptions {
  /** Total vocabulary size, including the 256 byte tokens and the special tokens. */
  vocabSize: number;
  /** Special tokens, appended after the merges (default [`<|endoftext|>`]). */
  specialTokens?: string[];
  /** Pairs seen fewer times than this are never merged (default 2). */
  minFrequency?: number;
}

export interface BpeModel {
  /** Token strings by id (byte-level unicode form); specials last. */
  tokens: string[];
  /** Merges in rank order, as pairs of token ids. */
  merges: Array<[number, number]>;
  specialTokens: string[];
}

const PAIR = 1 << 20; // token ids < 2^20: pair key = a * PAIR + b stays an exact double.

/** Max-heap of (count, pair key) with lazy deletion; ties go to the smaller pair key (deterministic). */
class PairHeap {
  private counts: number[] = [];
  private keys: number[] = [];
  get size(): number {
    return this.counts.length;
  }
  private above(i: number, j: number): boolean {
    const c = this.counts, k = this.keys;
    return c[i] > c[j] || (c[i] === c[j] && k[i] < k[j]);
  }
  private swap(i: number, j: number): void {
    const c = this.counts, k = this.keys;
    [c[i], c[j]] = [c[j], c[i]];
    [k[i], k[j]] = [k[j], k[i]];
  }
  push(count: number, key: number): void {
    this.counts.push(count);
    this.keys.push(key);
    let i = this.counts.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.above(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }
  pop(): [number, number] {
    const top: [number, number] = [this.counts[0], this.keys[0]];
    const lastC = this.counts.pop()!, lastK = this.keys.pop()!;
    if (this.counts.length > 0) {
      this.counts[0] = lastC;
      this.keys[0] = lastK;
      let i = 0;
      const n = this.counts.length;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < n && this.above(l, m)) m = l;
        if (r < n && this.above(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }
}

/** Counts pre-tokens over a stream of texts (the first pass of training). */
export class WordCounter {
  readonly counts = new Map<string, number>();
  add(text: string): void {
    for (const w of preTokenize(text)) this.counts.set(w, (this.counts.get(w) ?? 0) + 1);
  }
}

/**
 * Learns merges from pre-token counts: incremental pair counts, a lazy max-heap of pairs and, per pair,
 * the words it occurs in, so each merge touches only the words that contain it.
 */
export function trainBpe(wordCounts: Map<string, number>, options: BpeTrainOptions): BpeModel {
  const specialTokens = options.specialTokens ?? [END_OF_TEXT];
  const minFrequency = options.minFrequency ?? 2;
  const { vocabSize } = options;
  if (!Number.isInteger(vocabSize) || vocabSize < 256 + specialTokens.length || vocabSize >= PAIR) {
    throw new ArgumentError('tokenizer', `vocabSize must be an integer from ${256 + specialTokens.length} to ${PAIR - 1}, got ${vocabSize}`);
  }
  const tokens = BYTE_CHARS.slice();
  const merges: Array<[number, number]> = [];
  const words: number[][] = [];
  const freqs: number[] = [];
  for (const [w, f] of [...wordCounts.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) {
    words.push(Array.from(encoder.encode(w)));
    freqs.push(f);
  }
  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, Set<number>>();
  const addPairs = (wi: number, sign: number): void => {
    const w = words[wi], f = freqs[wi] * sign;
    for (let i = 0; i + 1 < w.length; i++) {
      const key = w[i] * PAIR + w[i + 1];
      pairCount.set(key, (pairCount.get(key) ?? 0) + f);
      if (sign > 0) {
        let s = pairWords.get(key);
        if (!s) pairWords.set(key, (s = new Set()));
        s.add(wi);
      }
    }
  };
  for (let wi = 0; wi < words.length; wi++) addPairs(wi, 1);
  const heap = new PairHeap();
  for (const [key, c] of pairCount) heap.push(c, key);
  const target = vocabSize - specialTokens.length;
  while (tokens.length < target && heap.size > 0) {
    const [count, key] = heap.pop();
    const current = pairCount.get(key) ?? 0;
    if (count !== current) {
      if (current > 0) heap.push(current, key); // stale entry: re-queue with its real count
      continue;
    }
    if (count < minFrequency) break;
    const a = Math.floor(key / PAIR), b = key - a * PAIR;
    const id = tokens.length;
    tokens.push(tokens[a] + tokens[b]);
    merges.push([a, b]);
    const touched = new Set<number>();
    for (const wi of pairWords.get(key) ?? []) {
      const w = words[wi];
      addPairs(wi, -1);
      const out: number[] = [];
      for (let i = 0; i < w.length; i++) {
        if (i + 1 < w.length && w[i] === a && w[i + 1] === b) {
          out.push(id);
          i++;
        } else out.push(w[i]);
      }
      words[wi] = out;
      addPairs(wi, 1);
      for (let i = 0; i + 1 < out.length; i++) if (out[i] === id || out[i + 1] === id) touched.add(out[i] * PAIR + out[i + 1]);
    }
    pairWords.delete(key);
    pairCount.delete(key);
    for (const k of touched) heap.push(pairCount.get(k) ?? 0, k);
  }
  for (const s of specialTokens) tokens.push(s);
  return { tokens, merges, specialTokens };
}

/** Encodes and decodes with a trained (or loaded) byte-level BPE; the reference the HF runtime is checked against. */
export class BpeTokenizer {
  readonly tokens: string[];
  readonly merges: Array<[number, number]>;
  readonly specialTokens: string[];
  private readonly ids = new Map<string, number>();
  private readonly ranks = new Map<number, number>();
  private readonly mergedId = new Map<number, number>();
  private readonly cache = new Map<string, number[]>();
  private readonly specialRegex: RegExp | null;

  constructor(model: BpeModel) {
    this.tokens = model.tokens;
    this.merges = model.merges;
    this.specialTokens = model.specialTokens;
    model.tokens.forEach((t, i) => this.ids.set(t, i));
    model.merges.forEach(([a, b], rank) => {
      const key = a * PAIR + b;
      this.ranks.set(key, rank);
      this.mergedId.set(key, this.ids.get(model.tokens[a] + model.tokens[b])!);
    });
    this.specialRegex =
      model.specialTokens.length > 0 ? new RegExp(`(${model.specialTokens.map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')})`) : null;
  }

  get vocabSize(): number {
    return this.tokens.length;
  }

  tokenId(token: string): number | undefined {
    return this.ids.get(token);
  }

  private encodeWord(word: string): number[] {
    const hit = this.cache.get(word);
    if (hit) return hit;
    let syms = Array.from(encoder.encode(word));
    for (;;) {
      let best = -1, bestRank = Infinity;
      for (let i = 0; i + 1 < syms.length; i++) {
        const r = this.ranks.get(syms[i] * PAIR + syms[i + 1]);
        if (r !== undefined && r < bestRank) (bestRank = r), (best = i);
      }
      if (best < 0) break;
      const a = syms[best], b = syms[best + 1];
      const id = this.mergedId.get(a * PAIR + b)!;
      const out: number[] = [];
      for (let i = 0; i < syms.length; i++) {
        if (i + 1 < syms.length && syms[i] === a && syms[i + 1] === b) out.push(id), i++;
        else out.push(syms[i]);
      }
      syms = out;
    }
    if (this.cache.size < 200_000) this.cache.set(word, syms);
    return syms;
  }

  /** Token ids of `text`; special tokens written in the text become their ids. */
  encode(text: string): number[] {
    const out: number[] = [];
    const parts = this.specialRegex ? text.split(this.specialRegex) : [text];
    for (let p = 0; p < parts.length; p++) {
      if (p % 2 === 1) out.push(this.ids.get(parts[p])!);
      else for (const w of preTokenize(parts[p])) for (const id of this.encodeWord(w)) out.push(id);
    }
    return out;
  }

  /** Text of token ids (byte-level decode; invalid UTF-8 becomes U+FFFD). */
  decode(ids: ArrayLike<number>): string {
    const bytes: number[] = [];
    let text = '';
    const flush = (): void => {
      if (bytes.length) text += new TextDecoder().decode(new Uint8Array(bytes));
      bytes.length = 0;
    };
    for (let i = 0; i < ids.length; i++) {
      const tok = this.tokens[ids[i]];
      if (tok === undefined) throw new ArgumentError('tokenizer', `token id ${ids[i]} is outside the vocabulary (size ${this.tokens.length})`);
      if (this.specialTokens.includes(tok)) {
        flush();
        text += tok;
        continue;
      }
      for (const ch of tok) bytes.push(CHAR_TO_BYTE.get(ch)!);
    }
    flush();
    return text;
  }

  /** The Hugging Face `tokenizer.json` object (BPE model, ByteLevel pre-tokenizer and decoder). */
  toHuggingFaceJson(): Record<string, unknown> {
    const vocab: Record<string, number> = {};
    this.tokens.forEach((t, i) => (vocab[t] = i));
    const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
    return {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: this.specialTokens.map((content) => ({
        id: this.ids.get(content)!,
        content,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: true,
      })),
      normalizer: null,
      pre_tokenizer: byteLevel,
      post_processor: { ...byteLevel, trim_offsets: false },
      decoder: byteLevel,
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: false,
        vocab,
        merges: this.merges.map(([a, b]) => [this.tokens[a], this.tokens[b]]),
      },
    };
  }

  /** Reads a byte-level BPE `tokenizer.json` (ours, or a checkpoint's of the same kind). */
  static fromHuggingFaceJson(json: unknown): BpeTokenizer {
    const j = json as { model?: { type?: string; vocab?: Record<string, number>; merges?: Array<string | [string, string]> }; added_tokens?: Array<{ id: number; content: string; special?: boolean }> };
    if (!j?.model || j.model.type !== 'BPE' || !j.model.vocab || !Array.isArray(j.model.merges)) {
      throw new FormatError('tokenizer.json', 'expected a BPE model with vocab and merges');
    }
    const tokens: string[] = [];
    for (const [t, id] of Object.entries(j.model.vocab)) tokens[id] = t;
    const specialTokens: string[] = [];
    for (const a of j.added_tokens ?? []) {
      tokens[a.id] = a.content;
      if (a.special !== false) specialTokens.push(a.content);
    }
    for (let i = 0; i < tokens.length; i++) if (tokens[i] === undefined) throw new FormatError('tokenizer.json', `vocabulary has no token with id ${i}`);
    const ids = new Map(tokens.map((t, i) => [t, i]));
    const merges = j.model.merges.map((m): [number, number] => {
      const [a, b] = typeof m === 'string' ? (m.split(' ') as [string, string]) : m;
      const ia = ids.get(a), ib = ids.get(b);
      if (ia === undefined || ib === undefined) throw new FormatError('tokenizer.json', `merge ${JSON.stringify(m)} names a token not in the vocabulary`);
      return [ia, ib];
    });
    return new BpeTokenizer({ tokens, merges, specialTokens });
  }
}
