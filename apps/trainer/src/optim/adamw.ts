import { ArgumentError, FormatError, tensor, type DType, type Tensor } from '@kiln/core';

/**
 * AdamW with FP32 master weights and moments in BF16 (DeepSeek-V3's recipe) or FP32. The master
 * weights and moments live on the host as typed arrays; `step` returns the updated parameters as
 * tensors of each parameter's original dtype.
 */
export type MomentDtype = 'f32' | 'bf16';

export interface AdamWOptions {
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Which parameters get weight decay (default: those with 2 or more dimensions, not norms/biases). */
  decay?: (name: string, shape: readonly number[]) => boolean;
  momentDtype?: MomentDtype;
  /** Clip the global gradient norm to this before the update (default: no clipping). */
  maxGradNorm?: number;
}

/** Host copy of the optimizer state (for checkpoints; restores bit-exactly). */
export interface AdamWState {
  step: number;
  skipped: number;
  momentDtype: MomentDtype;
  params: Record<string, { shape: number[]; dtype: string; master: Float32Array; m: Float32Array | Uint16Array; v: Float32Array | Uint16Array }>;
}

export interface StepResult {
  /** False when the gradients had a NaN/Inf: nothing was changed (the step is counted in `skipped`). */
  applied: boolean;
  /** Global gradient norm before clipping (NaN/Inf on a skipped step). */
  gradNorm: number;
  params: Map<string, Tensor>;
}

interface Slot {
  shape: number[];
  dtype: string;
  master: Float32Array;
  m: Float32Array | Uint16Array;
  v: Float32Array | Uint16Array;
}

async function hostF32(t: Tensor): Promise<Float32Array> {
  const v = await t.values();
  return v instanceof Float32Array ? Float32Array.from(v) : Float32Array.from(v as ArrayLike<number>);
}

/** Global L2 norm of all gradients (f64 accumulation). */
export function globalNorm(grads: Iterable<ArrayLike<number>>): number {
  let sum = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) sum += g[i] * g[i];
  return Math.sqrt(sum);
}

/** True when every gradient value is finite. */
export function allFinite(grads: Iterable<ArrayLike<number>>): boolean {
  for (const g of grads) for (let i = 0; i < g.length; i++) if (!Number.isFinite(g[i])) return false;
  return true;
}

/**
 * Scales gradients in place so their global norm is at most maxNorm; returns the norm before clipping.
 * Non-finite norms are returned unchanged (the caller skips the step).
 */
export function clipGradNorm(grads: Iterable<Float32Array>, maxNorm: number): number {
  const list = [...grads];
  const norm = globalNorm(list);
  if (Number.isFinite(norm) && norm > maxNorm) {
    const scale = maxNorm / (norm + 1e-6);
    for (const g of list) for (let i = 0; i < g.length; i++) g[i] *= scale;
  }
  return norm;
}

/** Sums micro-batch gradients in FP32 (gradient accumulation), then hands back their mean. */
export class GradAccumulator {
  private sums = new Map<string, Float32Array>();
  private count = 0;
  async add(grads: Map<string, Tensor>): Promise<void> {
    for (const [name, g] of grads) {
      const v = await hostF32(g);
      const s = this.sums.get(name);
      if (!s) this.sums.set(name, v);
      else {
        if (s.length !== v.length) throw new ArgumentError('AdamW', `gradient ${name}: size ${v.length}, expected ${s.length}`);
        for (let i = 0; i < v.length; i++) s[i] += v[i];
      }
    }
    this.count++;
  }
  get microBatches(): number {
    return this.count;
  }
  /** Mean gradients over the micro-batches added since the last take(); resets. */
  take(): Map<string, Float32Array> {
    const out = this.sums;
    if (this.count > 1) for (const s of out.values()) for (let i = 0; i < s.length; i++) s[i] /= this.count;
    this.sums = new Map();
    this.count = 0;
    return out;
  }
}

const defaultDecay = (_name: string, shape: readonly number[]): boolean => shape.length >= 2;

export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  readonly momentDtype: MomentDtype;
  readonly maxGradNorm: number | undefined;
  private readonly decay: (name: string, shape: readonly number[]) => boolean;
  private slots = new Map<string, Slot>();
  /** Applied steps (bias correction uses it). */
  stepCount = 0;
  /** Steps skipped for non-finite gradients. */
  skipped = 0;

  private constructor(options: AdamWOptions) {
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.95;
    this.eps = options.eps ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0.1;
    this.momentDtype = options.momentDtype ?? 'bf16';
    this.maxGradNorm = options.maxGradNorm;
    this.decay = options.decay ?? defaultDecay;
  }

  /** An optimizer for `params` (their values become the FP32 master weights). */
  static async create(params: Map<string, Tensor>, options: AdamWOptions = {}): Promise<AdamW> {
    const opt = new AdamW(options);
    for (const [name, p] of params) {
      const master = await hostF32(p);
      const n = master.length;
      opt.slots.set(name, {
        shape: [...p.shape],
        dtype: p.dtype,
        master,
        m: opt.momentDtype === 'bf16' ? new Uint16Array(n) : new Float32Array(n),
        v: opt.momentDtype === 'bf16' ? new Uint16Array(n) : new Float32Array(n),
      });
    }
    return opt;
  }

  /** Current parameters as tensors of their original dtypes. */
  params(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const [name, s] of this.slots) out.set(name, tensor(s.master, s.shape, s.dtype as DType));
    return out;
  }

  /** The FP32 master copy of one parameter (read-only view). */
  master(name: string): Float32Array {
    const s = this.slots.get(name);
    if (!s) throw new ArgumentError('AdamW', `no parameter named ${name}`);
    return s.master;
  }

  /**
   * One update with learning rate `lr` from gradients (tensors or host FP32 arrays, by parameter name).
   * Host arrays may be scaled in place by clipping.
   */
  async step(grads: Map<string, Tensor | Float32Array>, lr: number): Promise<StepResult> {
    const host = new Map<string, Float32Array>();
    for (const [name, s] of this.slots) {
      const g = grads.get(name);
      if (g === undefined) throw new ArgumentError('AdamW', `no gradient for parameter ${name}`);
      const v = g instanceof Float32Array ? g : await hostF32(g);
      if (v.length !== s.master.length) throw new ArgumentError('AdamW', `gradient ${name}: size ${v.length}, expected ${s.master.length}`);
      host.set(name, v);
    }
    if (!allFinite(host.values())) {
      this.skipped++;
      return { applied: false, gradNorm: globalNorm(host.values()), params: this.params() };
    }
    const gradNorm = this.maxGradNorm !== undefined ? clipGradNorm(host.values(), this.maxGradNorm) : globalNorm(host.values());
    this.stepCount++;
    const { beta1: b1, beta2: b2, eps } = this;
    const bc1 = 1 - b1 ** this.stepCount;
    const bc2 = 1 - b2 ** this.stepCount;
    for (const [name, s] of this.slots) {
      const g = host.get(name)!;
      const decay = this.weightDecay > 0 && this.decay(name, s.shape) ? 1 - lr * this.weightDecay : 1;
      if (this.momentDtype === 'bf16') updateBf16(s.master, s.m as Uint16Array, s.v as Uint16Array, g, b1, b2, bc1, bc2, eps, lr, decay);
      else updateF32(s.master, s.m as Float32Array, s.v as Float32Array, g, b1, b2, bc1, bc2, eps, lr, decay);
    }
    return { applied: true, gradNorm, params: this.params() };
  }

  /** Host copy of the whole state (copies, safe to serialise). */
  toHost(): AdamWState {
    const params: AdamWState['params'] = {};
    for (const [name, s] of this.slots) params[name] = { shape: [...s.shape], dtype: s.dtype, master: s.master.slice(), m: s.m.slice(), v: s.v.slice() };
    return { step: this.stepCount, skipped: this.skipped, momentDtype: this.momentDtype, params };
  }

  /** An optimizer restored from `toHost()` output (bit-exact); options other than momentDtype apply as given. */
  static fromHost(state: AdamWState, options: AdamWOptions = {}): AdamW {
    if (options.momentDtype && options.momentDtype !== state.momentDtype) {
      throw new FormatError('AdamW', `optimizer state has ${state.momentDtype} moments, options ask for ${options.momentDtype}`);
    }
    const opt = new AdamW({ ...options, momentDtype: state.momentDtype });
    opt.stepCount = state.step;
    opt.skipped = state.skipped;
    for (const [name, s] of Object.entries(state.params)) {
      const Moment = state.momentDtype === 'bf16' ? Uint16Array : Float32Array;
      if (!(s.m instanceof Moment) || !(s.v instanceof Moment) || s.m.length !== s.master.length || s.v.length !== s.master.length) {
        throw new FormatError('AdamW', `optimizer state for ${name}: moments do not match (${state.momentDtype}, ${s.master.length} values)`);
      }
      opt.slots.set(name, { shape: [...s.shape], dtype: s.dtype, master: s.master.slice(), m: s.m.slice(), v: s.v.slice() });
    }
    return opt;
  }
}

function updateF32(p: Float32Array, m: Float32Array, v: Float32Array, g: Float32Array, b1: number, b2: number, bc1: number, bc2: number, eps: number, lr: number, decay: number): void {
  for (let i = 0; i < p.length; i++) {
    m[i] = b1 * m[i] + (1 - b1) * g[i];
    v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
    p[i] = p[i] * decay - lr * (m[i] / bc1 / (Math.sqrt(v[i] / bc2) + eps));
  }
}

// One f32 slot viewed as bits: BF16 <-> f32 without a function call per element.
const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** f32 value (already rounded) -> BF16 bits, round to nearest even, NaN -> 0x7fc0 (core's encodeBf16). */
function bf16Round(): number {
  const bits = scratchU32[0]!;
  if ((bits & 0x7fffffff) > 0x7f800000) return 0x7fc0;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/**
 * The moments live as BF16: decode, update in f32, round back to BF16, and step with the stored
 * (rounded) values — bit-for-bit what decodeBf16/encodeBf16 around the f32 update give, in one pass.
 */
function updateBf16(p: Float32Array, m: Uint16Array, v: Uint16Array, g: Float32Array, b1: number, b2: number, bc1: number, bc2: number, eps: number, lr: number, decay: number): void {
  for (let i = 0; i < p.length; i++) {
    const gi = g[i]!;
    scratchU32[0] = m[i]! << 16;
    scratchF32[0] = b1 * scratchF32[0]! + (1 - b1) * gi;
    const mc = bf16Round();
    m[i] = mc;
    scratchU32[0] = v[i]! << 16;
    scratchF32[0] = b2 * scratchF32[0]! + (1 - b2) * gi * gi;
    const vc = bf16Round();
    v[i] = vc;
    scratchU32[0] = mc << 16;
    const mq = scratchF32[0]!;
    scratchU32[0] = vc << 16;
    const vq = scratchF32[0]!;
    p[i] = p[i]! * decay - lr * (mq / bc1 / (Math.sqrt(vq / bc2) + eps));
  }
}
