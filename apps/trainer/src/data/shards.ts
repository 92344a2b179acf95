import { closeSync, openSync, readSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { ArgumentError, FormatError } from '@kiln/core';
import { dataFileKind, listDataFiles, type ShardDtype } from './readers.js';
import type { TokenSource } from './stream.js';

/**
 * Pre-tokenized training data: one or more shard files of raw little-endian token ids (`*.u32.bin`:
 * u32, any other `*.bin`: u16), concatenated in sorted path order. Windows are read with positioned
 * reads on open file descriptors, so a corpus of any size streams in memory of one window.
 */

interface Shard {
  path: string;
  dtype: ShardDtype;
  bytesPerId: number;
  /** Index of the shard's first id in the concatenation. */
  first: number;
  tokens: number;
  fd: number | undefined;
}

export interface ShardTokenSourceOptions {
  /** Refuse (FormatError naming the shard and position) any id >= vocabSize as it is read. */
  vocabSize?: number;
}

/** A TokenSource over shard files (positioned reads; nothing is loaded whole). */
export class ShardTokenSource implements TokenSource {
  readonly length: number;
  readonly files: readonly string[];
  private readonly shards: Shard[];
  private readonly vocabSize: number | undefined;
  private buf = Buffer.alloc(0);

  /** `files`: shard paths in the order to concatenate them (dtype from each name, see dataFileKind). */
  constructor(files: readonly string[], options: ShardTokenSourceOptions = {}) {
    if (files.length === 0) throw new ArgumentError('data', 'no token shards given');
    const { vocabSize } = options;
    if (vocabSize !== undefined && !(Number.isInteger(vocabSize) && vocabSize > 0)) throw new ArgumentError('data', `vocabSize must be a positive integer, got ${vocabSize}`);
    this.vocabSize = vocabSize;
    this.files = [...files];
    this.shards = [];
    let first = 0;
    for (const path of files) {
      const kind = dataFileKind(path);
      if (kind !== 'u16' && kind !== 'u32') throw new ArgumentError('data', `${path}: not a token shard (expected *.bin or *.u32.bin)`);
      const bytesPerId = kind === 'u16' ? 2 : 4;
      let size: number;
      try {
        size = statSync(path).size;
      } catch {
        throw new ArgumentError('data', `${path}: the shard does not exist`);
      }
      if (size === 0) throw new ArgumentError('data', `${path}: the shard is empty`);
      if (size % bytesPerId !== 0) throw new FormatError('data', `${path}: ${size} bytes is not a whole number of ${kind} token ids`);
      const tokens = size / bytesPerId;
      this.shards.push({ path, dtype: kind, bytesPerId, first, tokens, fd: undefined });
      first += tokens;
    }
    this.length = first;
  }

  /** Shards of a `--data` file or directory (all of it must be shards). */
  static fromPath(path: string, options: ShardTokenSourceOptions = {}): ShardTokenSource {
    const files = listDataFiles(path);
    const text = files.filter((f) => !isShardFile(f));
    if (text.length) throw new ArgumentError('data', `${path}: mixes token shards with text files (${text[0]}); put .bin shards and .txt/.jsonl text in separate directories`);
    return new ShardTokenSource(files, options);
  }

  /** Index of the shard holding id `pos` (binary search over the shards' first ids). */
  private shardAt(pos: number): number {
    let lo = 0;
    let hi = this.shards.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.shards[mid].first <= pos) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  read(start: number, count: number, out: Int32Array): void {
    if (!(Number.isInteger(start) && Number.isInteger(count) && start >= 0 && count >= 0 && start + count <= this.length)) {
      throw new ArgumentError('TokenSource', `read of ${count} ids at ${start} is outside 0..${this.length}`);
    }
    let pos = start;
    let done = 0;
    let s = count > 0 ? this.shardAt(pos) : 0;
    while (done < count) {
      const shard = this.shards[s];
      const local = pos - shard.first;
      const n = Math.min(count - done, shard.tokens - local);
      const bytes = n * shard.bytesPerId;
      if (this.buf.length < bytes) this.buf = Buffer.alloc(Math.max(bytes, 2 * this.buf.length));
      if (shard.fd === undefined) {
        try {
          shard.fd = openSync(shard.path, 'r');
        } catch (err) {
          throw new ArgumentError('data', `${shard.path}: cannot open the shard (${err instanceof Error ? err.message : String(err)})`);
        }
      }
      let got = 0;
      while (got < bytes) {
        const r = readSync(shard.fd, this.buf, got, bytes - got, local * shard.bytesPerId + got);
        if (r === 0) throw new FormatError('data', `${shard.path}: the shard ended early at byte ${local * shard.bytesPerId + got} (was it changed while training?)`);
        got += r;
      }
      for (let i = 0; i < n; i++) {
        const id = shard.bytesPerId === 2 ? this.buf.readUInt16LE(2 * i) : this.buf.readUInt32LE(4 * i);
        if (this.vocabSize !== undefined && id >= this.vocabSize) {
          const at = local + i;
          throw new FormatError('data', `${shard.path}: token id ${id} at position ${at} (byte ${at * shard.bytesPerId}) is not below the tokenizer's vocabulary size ${this.vocabSize}`);
        }
        out[done + i] = id;
      }
      done += n;
      pos += n;
      s++;
    }
  }

  /** Closes the open shard files (reads after this reopen them). */
  close(): void {
    for (const s of this.shards) {
      if (s.fd !== undefined) closeSync(s.fd);
      s.fd = undefined;
    }
  }
}

/** True for a token shard file name (`*.bin`). */
export function isShardFile(path: string): boolean {
  const k = dataFileKind(path);
  return k === 'u16' || k === 'u32';
}

/**
 * Writes token ids to a shard file as they come (little-endian u16 or u32): appended to `path`.tmp-PID
 * and renamed over `path` by `finish()`, so a reader never sees a half-written shard.
 */
export class ShardWriter {
  readonly path: string;
  readonly dtype: ShardDtype;
  /** Ids written so far. */
  tokens = 0;
  private readonly tmp: string;
  private fd: number | undefined;
  private readonly max: number;
  private readonly size: number;
  /** Pending bytes (flushed in blocks of up to 1 MiB). */
  private readonly pending = Buffer.alloc(1 << 20);
  private used = 0;

  constructor(path: string, dtype: ShardDtype) {
    this.size = dtype === 'u16' ? 2 : 4;
    this.path = path;
    this.dtype = dtype;
    this.max = dtype === 'u16' ? 0xffff : 0xffffffff;
    this.tmp = `${path}.tmp-${process.pid}`;
    this.fd = openSync(this.tmp, 'w');
  }

  write(ids: ArrayLike<number>): void {
    if (this.fd === undefined) throw new ArgumentError('data', `${this.path}: the shard writer is closed`);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!(Number.isInteger(id) && id >= 0 && id <= this.max)) throw new ArgumentError('data', `${this.path}: token id ${id} does not fit ${this.dtype}`);
      if (this.used + this.size > this.pending.length) this.flush();
      if (this.size === 2) this.pending.writeUInt16LE(id, this.used);
      else this.pending.writeUInt32LE(id, this.used);
      this.used += this.size;
    }
    this.tokens += ids.length;
  }

  private flush(): void {
    let off = 0;
    while (off < this.used) off += writeSync(this.fd as number, this.pending, off, this.used - off);
    this.used = 0;
  }

  /** Closes the file and moves it to its final path. */
  finish(): void {
    if (this.fd === undefined) return;
    this.flush();
    closeSync(this.fd);
    this.fd = undefined;
    renameSync(this.tmp, this.path);
  }

  /** Closes and deletes the temporary file (after an error). */
  abort(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    rmSync(this.tmp, { force: true });
  }
}
