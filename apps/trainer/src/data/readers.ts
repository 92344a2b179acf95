import { createReadStream, statSync, readdirSync } from 'node:fs';
import { extname, join } from 'node:path';
import { ArgumentError, FormatError } from '@kiln/core';

/**
 * Streaming readers for the user's data (`--data FILE|DIR`). Nothing here loads a whole file:
 * text is decoded chunk by chunk (strict UTF-8) and split into lines; shards are read in blocks.
 *
 * - `*.txt`: each line is yielded (without its newline); a blank line ends a document.
 * - `*.jsonl`: one JSON object per line; its `text` field (a string) is yielded.
 * - `*.u16.bin` / `*.bin` (u16) and `*.u32.bin` (u32): raw little-endian token ids.
 */

export type ShardDtype = 'u16' | 'u32';

/** Data files under `path` (the file itself, or a directory walked recursively), sorted by path. */
export function listDataFiles(path: string): string[] {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new ArgumentError('data', `data path ${path} does not exist`);
  }
  if (st.isFile()) return [path];
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(txt|jsonl|bin)$/.test(e.name)) out.push(p);
    }
  };
  walk(path);
  if (out.length === 0) throw new ArgumentError('data', `data directory ${path} has no .txt, .jsonl or .bin files`);
  return out;
}

/** The kind of a data file by extension. */
export function dataFileKind(path: string): 'txt' | 'jsonl' | ShardDtype {
  if (path.endsWith('.u32.bin')) return 'u32';
  if (path.endsWith('.bin')) return 'u16';
  if (extname(path) === '.jsonl') return 'jsonl';
  return 'txt';
}

/** Lines of a UTF-8 text file, streamed; FormatError on NUL bytes or invalid UTF-8, ArgumentError if empty. */
export async function* readLines(path: string, chunkBytes = 1 << 16): AsyncGenerator<string> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let pending = '';
  let bytes = 0;
  let lineNo = 1;
  const decode = (chunk?: Uint8Array): string => {
    try {
      return chunk ? decoder.decode(chunk, { stream: true }) : decoder.decode();
    } catch {
      throw new FormatError('data', `${path}: not a text file (invalid UTF-8 near line ${lineNo})`);
    }
  };
  for await (const chunk of createReadStream(path, { highWaterMark: chunkBytes }) as AsyncIterable<Buffer>) {
    if (chunk.includes(0)) throw new FormatError('data', `${path}: not a text file (NUL byte near line ${lineNo})`);
    bytes += chunk.length;
    pending += decode(chunk);
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      lineNo++;
      yield line.endsWith('\r') ? line.slice(0, -1) : line;
    }
  }
  pending += decode();
  if (bytes === 0) throw new ArgumentError('data', `${path}: the data file is empty`);
  if (pending !== '') yield pending;
}

/**
 * Documents of a text file: `.txt` documents are separated by blank lines; each `.jsonl` line's `text`
 * field is one document.
 */
export async function* readDocuments(path: string): AsyncGenerator<string> {
  const kind = dataFileKind(path);
  if (kind === 'u16' || kind === 'u32') throw new ArgumentError('data', `${path}: a token shard, not text`);
  let lineNo = 0;
  if (kind === 'jsonl') {
    for await (const line of readLines(path)) {
      lineNo++;
      if (line.trim() === '') continue;
      let obj: unknown;
      try {
        obj = JSON.parse(line);
      } catch {
        throw new FormatError('data', `${path}:${lineNo}: not valid JSON`);
      }
      const text = (obj as { text?: unknown } | null)?.text;
      if (typeof text !== 'string') throw new FormatError('data', `${path}:${lineNo}: expected an object with a string "text" field`);
      yield text;
    }
    return;
  }
  let doc: string[] = [];
  for await (const line of readLines(path)) {
    if (line.trim() === '') {
      if (doc.length) yield doc.join('\n');
      doc = [];
    } else doc.push(line);
  }
  if (doc.length) yield doc.join('\n');
}

/** Token ids of a binary shard, in blocks of at most `blockTokens` (never the whole file at once). */
export async function* readTokenShard(path: string, dtype: ShardDtype = dataFileKind(path) === 'u32' ? 'u32' : 'u16', blockTokens = 1 << 16): AsyncGenerator<Uint32Array> {
  const size = dtype === 'u16' ? 2 : 4;
  const { size: fileBytes } = statSync(path);
  if (fileBytes === 0) throw new ArgumentError('data', `${path}: the shard is empty`);
  if (fileBytes % size !== 0) throw new FormatError('data', `${path}: ${fileBytes} bytes is not a whole number of ${dtype} token ids`);
  let carry = Buffer.alloc(0);
  for await (const chunk of createReadStream(path, { highWaterMark: blockTokens * size }) as AsyncIterable<Buffer>) {
    const buf = carry.length ? Buffer.concat([carry, chunk]) : chunk;
    const n = Math.floor(buf.length / size);
    const out = new Uint32Array(n);
    for (let i = 0; i < n; i++) out[i] = size === 2 ? buf.readUInt16LE(2 * i) : buf.readUInt32LE(4 * i);
    carry = Buffer.from(buf.subarray(n * size));
    if (n > 0) yield out;
  }
}

/** Writes token ids as a shard (little-endian u16 or u32). */
export function encodeTokenShard(ids: ArrayLike<number>, dtype: ShardDtype): Buffer {
  const size = dtype === 'u16' ? 2 : 4;
  const buf = Buffer.alloc(ids.length * size);
  const max = dtype === 'u16' ? 0xffff : 0xffffffff;
  for (let i = 0; i < ids.length; i++) {
    if (!(ids[i] >= 0 && ids[i] <= max)) throw new ArgumentError('data', `token id ${ids[i]} does not fit ${dtype}`);
    if (size === 2) buf.writeUInt16LE(ids[i], 2 * i);
    else buf.writeUInt32LE(ids[i], 4 * i);
  }
  return buf;
}

/** Text documents from a file or directory (`--data`), streamed; shards are skipped. */
export async function* readTextData(path: string): AsyncGenerator<string> {
  let any = false;
  for (const f of listDataFiles(path)) {
    const kind = dataFileKind(f);
    if (kind === 'u16' || kind === 'u32') continue;
    any = true;
    yield* readDocuments(f);
  }
  if (!any) throw new ArgumentError('data', `${path}: no .txt or .jsonl files to read text from`);
}
