import { ArgumentError, FormatError, add, cast, div, fromStorage, keep, tensor, type Backend, type DType, type DeviceOptimizerBackend, type Tensor } from '@kiln/core';
import type { AdamWOptions, AdamWState, MomentDtype, StepResult } from './adamw.js';

/**
 * AdamW whose master weights and moments stay on the device, for GPU backends: the host
 * optimizer (adamw.ts) copies every gradient down and every weight up each step, which costs
 * more than the step's kernels on a GPU. Same options, same arithmetic (the backend's update
 * kernel reproduces the host loop bit for bit given the same gradients), same snapshot format
 * (`toHost` / `fromHost`), so checkpoints move freely between the two.
 */

/** Re-exported for callers that imported them from here. */
export { deviceOptimizerOf, type AdamwHyper as DeviceAdamwHyper, type DeviceOptimizerBackend } from '@kiln/core';

interface DeviceSlot {
  shape: number[];
  dtype: string;
  master: Tensor;
  m: Tensor;
  v: Tensor;
}

const defaultDecay = (_name: string, shape: readonly number[]): boolean => shape.length >= 2;

export class DeviceAdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  readonly momentDtype: MomentDtype;
  readonly maxGradNorm: number | undefined;
  stepCount = 0;
  skipped = 0;
  private readonly decay: (name: string, shape: readonly number[]) => boolean;
  private readonly slots = new Map<string, DeviceSlot>();

  private constructor(
    private readonly backend: Backend & DeviceOptimizerBackend,
    options: AdamWOptions,
  ) {
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.95;
    this.eps = options.eps ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0.1;
    this.momentDtype = options.momentDtype ?? 'bf16';
    this.maxGradNorm = options.maxGradNorm;
    this.decay = options.decay ?? defaultDecay;
  }

  private zeros(n: number, shape: number[]): Tensor {
    const md = this.momentDtype === 'bf16' ? 'bf16' : 'f32';
    return keep(md === 'bf16' ? fromStorage(new Uint16Array(n), shape, 'bf16', { backend: this.backend }) : tensor(new Float32Array(n), shape, 'f32', { backend: this.backend }));
  }

  /** An optimizer for `params` (f32 copies of them become the master weights). */
  static async create(params: Map<string, Tensor>, backend: Backend & DeviceOptimizerBackend, options: AdamWOptions = {}): Promise<DeviceAdamW> {
    const opt = new DeviceAdamW(backend, options);
    for (const [name, p] of params) {
      const shape = [...p.shape];
      opt.slots.set(name, { shape, dtype: p.dtype, master: keep(cast(p, 'f32')), m: opt.zeros(p.size, shape), v: opt.zeros(p.size, shape) });
    }
    return opt;
  }

  /** Current parameters as new tensors of their original dtypes (the model takes ownership). */
  params(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const [name, s] of this.slots) out.set(name, keep(cast(s.master, s.dtype as DType)));
    return out;
  }

  /** One update from gradients (device tensors, or host FP32 arrays which are uploaded). */
  async step(grads: Map<string, Tensor | Float32Array>, lr: number): Promise<StepResult> {
    const dev = new Map<string, Tensor>();
    const uploaded: Tensor[] = [];
    try {
      for (const [name, s] of this.slots) {
        const g = grads.get(name);
        if (g === undefined) throw new ArgumentError('AdamW', `no gradient for parameter ${name}`);
        const t = g instanceof Float32Array ? tensor(g, s.shape, 'f32', { backend: this.backend }) : g;
        if (g instanceof Float32Array) uploaded.push(t);
        if (t.size !== s.master.size) throw new ArgumentError('AdamW', `gradient ${name}: size ${t.size}, expected ${s.master.size}`);
        dev.set(name, t.dtype === 'f32' ? t : cast(t, 'f32'));
        if (t.dtype !== 'f32') uploaded.push(dev.get(name)!);
      }
      // One readback per step: the global norm (NaN/Inf if any gradient is non-finite).
      const gradNorm = Math.sqrt(this.backend.sumSquares([...dev.values()]));
      if (!Number.isFinite(gradNorm)) {
        this.skipped++;
        return { applied: false, gradNorm, params: this.params() };
      }
      const gradScale = this.maxGradNorm !== undefined && gradNorm > this.maxGradNorm ? this.maxGradNorm / (gradNorm + 1e-6) : 1;
      this.stepCount++;
      const { beta1, beta2, eps } = this;
      const bc1 = 1 - beta1 ** this.stepCount;
      const bc2 = 1 - beta2 ** this.stepCount;
      for (const [name, s] of this.slots) {
        const decay = this.weightDecay > 0 && this.decay(name, s.shape) ? 1 - lr * this.weightDecay : 1;
        this.backend.adamwStep(s.master, s.m, s.v, dev.get(name)!, { beta1, beta2, bc1, bc2, eps, lr, decay, gradScale });
      }
      return { applied: true, gradNorm, params: this.params() };
    } finally {
      for (const t of uploaded) t.dispose();
    }
  }

  /** Host copy of the whole state, in the host optimizer's format (a device sync). */
  toHost(): AdamWState {
    const params: AdamWState['params'] = {};
    for (const [name, s] of this.slots) {
      params[name] = {
        shape: [...s.shape],
        dtype: s.dtype,
        master: s.master.dataSync() as Float32Array,
        m: s.m.dataSync() as Float32Array | Uint16Array,
        v: s.v.dataSync() as Float32Array | Uint16Array,
      };
    }
    return { step: this.stepCount, skipped: this.skipped, momentDtype: this.momentDtype, params };
  }

  /** An optimizer restored from `toHost()` output of either optimizer (bit-exact). */
  static fromHost(state: AdamWState, backend: Backend & DeviceOptimizerBackend, options: AdamWOptions = {}): DeviceAdamW {
    if (options.momentDtype && options.momentDtype !== state.momentDtype) {
      throw new FormatError('AdamW', `optimizer state has ${state.momentDtype} moments, options ask for ${options.momentDtype}`);
    }
    const opt = new DeviceAdamW(backend, { ...options, momentDtype: state.momentDtype });
    opt.stepCount = state.step;
    opt.skipped = state.skipped;
    const md = state.momentDtype === 'bf16' ? 'bf16' : 'f32';
    for (const [name, s] of Object.entries(state.params)) {
      const Moment = md === 'bf16' ? Uint16Array : Float32Array;
      if (!(s.m instanceof Moment) || !(s.v instanceof Moment) || s.m.length !== s.master.length || s.v.length !== s.master.length) {
        throw new FormatError('AdamW', `optimizer state for ${name}: moments do not match (${state.momentDtype}, ${s.master.length} values)`);
      }
      const up = (a: Float32Array | Uint16Array, dtype: 'f32' | 'bf16') => keep(fromStorage(a.slice(), s.shape, dtype, { backend }));
      opt.slots.set(name, { shape: [...s.shape], dtype: s.dtype, master: up(s.master, 'f32'), m: up(s.m, md), v: up(s.v, md) });
    }
    return opt;
  }

  /** Frees the device state. */
  dispose(): void {
    for (const s of this.slots.values()) {
      s.master.dispose();
      s.m.dispose();
      s.v.dispose();
    }
    this.slots.clear();
  }
}

/** Gradient accumulation on the device: FP32 sums of the micro-batches, then their mean. */
export class DeviceGradAccumulator {
  private sums = new Map<string, Tensor>();
  private count = 0;

  /** Adds one micro-batch's gradients (the caller may dispose its tensors afterwards). */
  add(grads: Map<string, Tensor>): void {
    for (const [name, g] of grads) {
      const s = this.sums.get(name);
      const next = keep(s ? add(s, g) : cast(g, 'f32'));
      s?.dispose();
      this.sums.set(name, next);
    }
    this.count++;
  }

  get microBatches(): number {
    return this.count;
  }

  /** Mean gradients over the micro-batches added since the last take(); resets. The caller owns them. */
  take(): Map<string, Tensor> {
    const out = this.sums;
    if (this.count > 1) {
      for (const [name, s] of out) {
        const n = tensor([this.count], [1], 'f32', { backend: s.backend });
        out.set(name, keep(div(s, n)));
        n.dispose();
        s.dispose();
      }
    }
    this.sums = new Map();
    this.count = 0;
    return out;
  }
}
