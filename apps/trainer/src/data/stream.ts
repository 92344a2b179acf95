import { ArgumentError, tensor, type Tensor } from '@kiln/core';

/** Resumable position of a TokenStream: save it with a checkpoint, pass it back to resume exactly. */
export interface TokenStreamState {
  epoch: number;
  /** Windows already served in this epoch. */
  offset: number;
  /** RNG state at the start of this epoch (the epoch's window order is derived from it). */
  rngState: number;
}

export interface TokenStreamOptions {
  batchSize: number;
  seqLen: number;
  seed?: number;
  /** Shuffle window order each epoch (default true). */
  shuffle?: boolean;
}

/**
 * Where training windows come from: `length` token ids, of which `read` copies `count` starting at
 * `start` into `out` (out.length >= count). TokenStream only ever reads whole windows through it, so a
 * source need not hold its ids in memory.
 */
export interface TokenSource {
  readonly length: number;
  read(start: number, count: number, out: Int32Array): void;
}

/** A TokenSource over ids held in memory (the Brown training split: a few MB of ids). */
export class ArrayTokenSource implements TokenSource {
  constructor(private readonly ids: ArrayLike<number>) {}

  get length(): number {
    return this.ids.length;
  }

  read(start: number, count: number, out: Int32Array): void {
    if (!(Number.isInteger(start) && Number.isInteger(count) && start >= 0 && count >= 0 && start + count <= this.ids.length)) {
      throw new ArgumentError('TokenSource', `read of ${count} ids at ${start} is outside 0..${this.ids.length}`);
    }
    const ids = this.ids;
    for (let i = 0; i < count; i++) out[i] = ids[start + i];
  }
}

function isTokenSource(x: TokenSource | ArrayLike<number>): x is TokenSource {
  return typeof (x as Partial<TokenSource>).read === 'function';
}

/** splitmix32-style step: returns [value, nextState]; uint32 in, uint32 out. */
function nextRandom(state: number): [number, number] {
  const s = (state + 0x9e3779b9) >>> 0;
  let z = s;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return [(z ^ (z >>> 16)) >>> 0, s];
}

/**
 * Cuts token ids into non-overlapping windows of seqLen+1 tokens (inputs plus the shifted targets; each
 * window starts seqLen after the previous one) and serves them as [batch, seqLen+1] i32 batches, in a
 * seeded order that is reshuffled each epoch. The position is a small state object, so a run resumes
 * exactly where it stopped.
 */
export class TokenStream {
  readonly batchSize: number;
  readonly seqLen: number;
  readonly windows: number;
  private readonly shuffle: boolean;
  private state: TokenStreamState;
  private order: Uint32Array;
  private readonly source: TokenSource;

  /** `ids`: a TokenSource (in memory or shard files), or the ids themselves (read in memory). */
  constructor(ids: TokenSource | ArrayLike<number>, options: TokenStreamOptions, state?: TokenStreamState) {
    this.source = isTokenSource(ids) ? ids : new ArrayTokenSource(ids);
    const { batchSize, seqLen } = options;
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new ArgumentError('TokenStream', `batchSize must be a positive integer, got ${batchSize}`);
    if (!Number.isInteger(seqLen) || seqLen < 1) throw new ArgumentError('TokenStream', `seqLen must be a positive integer, got ${seqLen}`);
    this.batchSize = batchSize;
    this.seqLen = seqLen;
    this.windows = Math.max(0, Math.floor((this.source.length - 1) / seqLen));
    if (this.windows < 1) throw new ArgumentError('TokenStream', `${this.source.length} tokens are too few for one window of ${seqLen + 1}`);
    this.shuffle = options.shuffle ?? true;
    this.state = state ? { ...state } : { epoch: 0, offset: 0, rngState: (options.seed ?? 0) >>> 0 };
    this.order = this.epochOrder();
  }

  private epochOrder(): Uint32Array {
    const order = new Uint32Array(this.windows);
    for (let i = 0; i < order.length; i++) order[i] = i;
    if (this.shuffle) {
      let s = this.state.rngState;
      for (let i = order.length - 1; i > 0; i--) {
        const [r, next] = nextRandom(s);
        s = next;
        const j = r % (i + 1);
        const t = order[i];
        order[i] = order[j];
        order[j] = t;
      }
    }
    return order;
  }

  /** A copy of the current position. */
  getState(): TokenStreamState {
    return { ...this.state };
  }

  /** The next batch as host ids, row-major [batchSize, seqLen+1]. */
  nextHost(): Int32Array {
    const w = this.seqLen + 1;
    const out = new Int32Array(this.batchSize * w);
    for (let b = 0; b < this.batchSize; b++) {
      if (this.state.offset >= this.windows) {
        const [, next] = nextRandom(this.state.rngState ^ 0x5bd1e995);
        this.state = { epoch: this.state.epoch + 1, offset: 0, rngState: next };
        this.order = this.epochOrder();
      }
      const start = this.order[this.state.offset++] * this.seqLen;
      this.source.read(start, w, out.subarray(b * w, (b + 1) * w));
    }
    return out;
  }

  /** The next batch as an i32 tensor [batchSize, seqLen+1]. */
  next(): Tensor {
    return tensor(this.nextHost(), [this.batchSize, this.seqLen + 1], 'i32');
  }
}
