import {
  ArgumentError,
  BackendError,
  DTypeError,
  OutOfMemoryError,
  ShapeError,
  tensorFromDataId,
  type Tensor,
  encodeFp8Value,
  f32ToBf16Bits,
  f32ToF16Bits,
  sizeOf,
  stridesOf,
  type Backend,
  type BackendMemory,
  type BinaryOp,
  type ComputeDType,
  type DType,
  type DataId,
  type DeviceInfo,
  type AttentionKernelArgs,
  type FusedKernels,
  type PrimitiveCastOptions,
  type PrimitiveFp8GemmOptions,
  type PrimitiveMatmulOptions,
  type PrimitiveQuantizeOptions,
  type QuantizedView,
  type RandomSpec,
  type ReduceOp,
  type Shape,
  type StorageArray,
  type TensorView,
  type UnaryOp,
} from '@kiln/core';
import { createExecutor, type Executor, type ExecutorError } from './executor.js';
import { WANTED_LIMITS, acquireDevice, dawnAttempts, limitsShortfall, prepareNodeEnv, resolveDawn, softwareAdapterName, type AcquireOptions, type KernelLimits } from './gpu.js';
import { bufferBytesFor, packToWords, replicateCode, unpackWords, wordsFor } from './packing.js';
import { envVar } from './env.js';
import { RemoteGpu, probeAdapter } from './remote.js';
import { broadcastStrides, collapseDims, stridedMeta } from './strided.js';
import { WG } from './wgsl/common.js';
import { attentionBatchMeta, attentionCombineShader, attentionShaderMemo, parseAttentionConfig, parseAttentionSplits, planAttention, planAttentionSplits } from './wgsl/attention.js';
import { chooseGemmKernels, planF32Gemm, planFp8Gemm, planGroupedFp8, planSlicedF32, planSlicedFp8, type F32GemmPlan, type GemmChoice, type GemmOption } from './gemm-plan.js';
import {
  binaryShader,
  castShader,
  concatShader,
  copyShader,
  fillShader,
  fp8GemmEmulatedShader,
  fp8GemmShader,
  fp8GemmWordsShader,
  gatherShader,
  gemmF32Shader,
  gemmI32Shader,
  indexAddShader,
  indexSelectShader,
  quantCodesShader,
  quantScalesShader,
  randomShader,
  reduceShader,
  rotaryShader,
  rowShader,
  rowWideShader,
  scatterAddShader,
  splitKReduceShader,
  swigluShader,
  tiledGemmShader,
  slicedGemmShader,
  unaryShader,
  whereShader,
} from './wgsl/shaders.js';
import { tileCols, tileRows } from './wgsl/gemm-tiled.js';

/** Dispatches encoded into one command buffer before it is submitted without a read. */
const SUBMIT_EVERY = 64;
/** Rows at least this long get a workgroup each in the fused row kernels (where rowKernels allows). */
const WIDE_ROW = 128;
/** Inputs bound by one concat dispatch (more are concatenated in rounds). */
const CONCAT_FANIN = 8;

let nextBackendId = 1;

/** A WebGPU backend DataId: one pooled GPU buffer (by id) holding packed codes. */
export class WebGpuStorage {
  released = false;
  constructor(
    readonly id: number,
    /** Bytes the tensor uses (whole u32 words). */
    readonly bytes: number,
    readonly backendId: number,
  ) {}
}

export interface WebGpuBackendOptions extends AcquireOptions {
  /**
   * Node only: run Dawn in a worker thread (default true). It is what makes synchronous reads
   * (`readSync`, which kiln's MoE routing and the trainer use) possible; with false the device
   * lives on the calling thread and only async reads work.
   */
  readonly worker?: boolean;
  /**
   * Which GEMM kernels to use: 'tiled' (large register-blocked tiles with prefetch, for
   * hardware GPUs), 'software' (small tiles that suit llvmpipe/SwiftShader), or 'auto'
   * (default; $KILN_WEBGPU_GEMM, else 'software' on a software adapter and 'tiled' otherwise).
   * 'tiled:ra,rb,bk' (option or $KILN_WEBGPU_GEMM) pins the tile (see gemm-tiled.ts).
   */
  readonly gemm?: GemmOption;
  /**
   * Fused row kernels (softmax, logSoftmax, rmsNorm) for rows of 128+ elements: 'row' (one
   * invocation per row), 'wide' (a workgroup per row, combined in workgroup memory),
   * 'subgroups' (a workgroup per row combined by subgroup shuffles; needs the 'subgroups'
   * feature; measured no faster than 'wide' on an H200). Default ($KILN_WEBGPU_ROWS): 'row' on
   * software adapters (where one invocation per row is fastest), else 'wide'.
   */
  readonly rowKernels?: RowKernels;
}

export type RowKernels = 'row' | 'wide' | 'subgroups';

function chooseRowKernels(option: RowKernels | undefined, software: boolean, subgroups: boolean): RowKernels {
  const env = envVar('KILN_WEBGPU_ROWS');
  const want = option ?? (env && env !== 'auto' ? env : undefined);
  // 'wide', not 'subgroups', by default: on the H200 the subgroup combine measured no faster
  // (softmax 4096 x 4096 0.171 ms both; rmsNorm 0.146 vs 0.100 ms)
  if (want === undefined) return software ? 'row' : 'wide';
  if (want !== 'row' && want !== 'wide' && want !== 'subgroups') throw new ArgumentError('webgpu', `rowKernels / KILN_WEBGPU_ROWS must be auto, row, wide or subgroups (got '${want}')`);
  if (want === 'subgroups' && !subgroups) throw new ArgumentError('webgpu', "rowKernels 'subgroups' needs the device's 'subgroups' feature, which this adapter does not offer");
  return want;
}

/**
 * The device operations the backend needs: `createExecutor` on this thread, or `RemoteGpu` (a
 * worker), which adds synchronous reads and a promise of its end.
 */
interface Gpu extends Omit<Executor, 'pooled'> {
  readSync?(id: number, bytes: number): ArrayBuffer;
  /** Settles once a disposed device is gone (its worker ended); at once where there is none. */
  closed?(): Promise<void>;
}

interface Described {
  readonly via: string;
  readonly featureLevel: string;
  readonly info: { vendor?: string; architecture?: string; device?: string; description?: string; isFallbackAdapter?: boolean };
  readonly limits: KernelLimits;
  readonly features: readonly string[];
}

/** A Gpu whose worker starts at the first op. */
class LazyGpu implements Gpu {
  private remote: RemoteGpu | undefined;
  constructor(private readonly start: () => RemoteGpu) {}
  private get r(): RemoteGpu {
    return (this.remote ??= this.start());
  }
  alloc(id: number, bytes: number): void {
    this.r.alloc(id, bytes);
  }
  free(id: number): void {
    this.remote?.free(id);
  }
  write(id: number, data: Uint8Array): void {
    this.r.write(id, data);
  }
  dispatch(code: string, meta: Uint32Array, out: number, inputs: readonly number[], gx: number, gy: number, gz: number): void {
    this.r.dispatch(code, meta, out, inputs, gx, gy, gz);
  }
  flush(): void {
    this.remote?.flush();
  }
  read(id: number, bytes: number): Promise<ArrayBuffer> {
    return this.r.read(id, bytes);
  }
  readSync(id: number, bytes: number): ArrayBuffer {
    return this.r.readSync(id, bytes);
  }
  takeError(): ExecutorError | null {
    return this.remote?.takeError() ?? null;
  }
  trim(): void {
    this.remote?.trim();
  }
  closed(): Promise<void> {
    return this.remote?.whenExited() ?? Promise.resolve();
  }
  dispose(): void {
    this.remote?.dispose();
  }
}

/** Workgroups for an elementwise kernel writing `words` output words. */
function groups1d(words: number): [number, number, number] {
  const g = Math.ceil(words / WG);
  if (g <= 65535) return [g, 1, 1];
  const y = Math.ceil(g / 65535);
  return [Math.ceil(g / y), y, 1];
}

/**
 * kiln's WebGPU backend: tensors live in pooled GPU buffers (f16/bf16 two codes per u32 word,
 * byte dtypes four per word), every primitive is a WGSL compute shader, dispatches are
 * encoded into one command encoder and submitted every few dozen ops or when a read needs
 * them; only reads wait for the GPU. In Node the device runs in a worker thread (Dawn), which
 * also gives synchronous reads; in browsers it uses navigator.gpu on the calling thread.
 */
export class WebGpuBackend implements Backend {
  readonly name = 'webgpu';
  readonly device: DeviceInfo;
  readonly limits: Described['limits'];
  /** Set when the adapter is a software rasteriser: why bestAvailableBackend passes it over. */
  readonly notPreferred?: string;
  readonly fused: FusedKernels;
  /** Present when the device runs in a worker thread (Node): blocks until the data is back. */
  readonly readSync?: (view: TensorView) => StorageArray;
  private readonly gpu: Gpu;
  private readonly id = nextBackendId++;
  private nextBuffer = 1;
  private liveBytes = 0;
  private liveBuffers = 0;
  private error: Error | undefined;
  private disposed = false;
  /** The GEMM kernel family (and a pinned tile, for tuning) this device uses. */
  private readonly gemm: GemmChoice;
  /** Which fused row kernels long rows get (WebGpuBackendOptions.rowKernels). */
  readonly rowKernels: RowKernels;

  static async create(options: WebGpuBackendOptions = {}): Promise<WebGpuBackend> {
    const inNode = typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node === 'string';
    if (inNode && options.worker !== false) {
      await prepareNodeEnv();
      const dawnUrl = await resolveDawn();
      const attempts = dawnAttempts(options);
      // the adapter is looked up in a child process (Dawn's native warnings stay there); the
      // worker that owns the device starts at the first op, so a backend that
      // bestAvailableBackend() passes over never loads Dawn into this process
      const ready = await probeAdapter(dawnUrl, attempts, WANTED_LIMITS);
      const short = limitsShortfall(ready.limits);
      if (short) throw new BackendError('webgpu', short);
      const { Worker } = (await import(/* @vite-ignore */ 'node:worker_threads' as string)) as { Worker: unknown };
      const use = ready.attempt !== undefined && attempts[ready.attempt] ? [attempts[ready.attempt]] : attempts;
      return new WebGpuBackend(new LazyGpu(() => RemoteGpu.spawn(Worker, dawnUrl, use, WANTED_LIMITS, SUBMIT_EVERY, ready)), ready, options);
    }
    const acq = await acquireDevice(options);
    const info = (acq.adapter.info ?? {}) as Described['info'];
    const keep = acq.instance;
    const ex = createExecutor(acq.device, SUBMIT_EVERY);
    const dispose = ex.dispose;
    // Dawn's instance must stay referenced while the device is used
    const gpu: Gpu = { ...ex, dispose: () => { dispose(); void keep; } };
    const l = acq.device.limits;
    const short = limitsShortfall(l);
    if (short) {
      gpu.dispose();
      throw new BackendError('webgpu', short);
    }
    return new WebGpuBackend(gpu, {
      via: acq.via,
      featureLevel: acq.featureLevel,
      info: { vendor: info.vendor, architecture: info.architecture, device: info.device, description: info.description, isFallbackAdapter: info.isFallbackAdapter },
      limits: {
        maxBufferSize: l.maxBufferSize,
        maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
        maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
        maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
        maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
        maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
      },
      features: [...acq.device.features],
    }, options);
  }

  private constructor(gpu: Gpu, d: Described, options: WebGpuBackendOptions) {
    this.gpu = gpu;
    this.limits = d.limits;
    const info = d.info;
    const software = softwareAdapterName(info);
    const name = info.device && info.description ? `${info.device} (${info.description})` : info.device || info.description || info.vendor || 'WebGPU adapter';
    if (software) this.notPreferred = `software adapter (${software}): the CPU backend is faster`;
    this.gemm = chooseGemmKernels(options.gemm, software !== undefined, d.limits);
    this.rowKernels = chooseRowKernels(options.rowKernels, software !== undefined, d.features.includes('subgroups'));
    this.device = {
      backend: 'webgpu',
      name,
      accelerated: software === undefined,
      details: {
        via: d.via,
        featureLevel: d.featureLevel,
        vendor: info.vendor ?? '',
        architecture: info.architecture ?? '',
        adapterDevice: info.device ?? '',
        description: info.description ?? '',
        software: software ?? false,
        shaderF16: d.features.includes('shader-f16'),
        subgroups: d.features.includes('subgroups'),
        gemmKernels: this.gemm.family,
        rowKernels: this.rowKernels,
        maxBufferSize: d.limits.maxBufferSize,
        maxStorageBufferBindingSize: d.limits.maxStorageBufferBindingSize,
        maxComputeInvocationsPerWorkgroup: d.limits.maxComputeInvocationsPerWorkgroup,
      },
    };
    this.fused = {
      softmax: (x) => this.rows('softmax', x),
      logSoftmax: (x) => this.rows('logSoftmax', x),
      rmsNorm: (x, w, eps) => this.rows('rmsNorm', x, w, eps),
      swiglu: (g, u) => this.ew('swiglu', swigluShader(), 'f32', sizeOf(g.shape), [0], [this.buf(g), this.buf(u)]),
      rotary: (x, cos, sin, interleaved) => {
        const d = x.shape[x.shape.length - 1];
        const T = x.shape[x.shape.length - 2];
        return this.ew('rotary', rotaryShader(), 'f32', sizeOf(x.shape), [0, d, T, interleaved ? 1 : 0, 0], [this.buf(x), this.buf(cos), this.buf(sin)]);
      },
      attention: (q, k, v, args) => this.attention(q, k, v, args),
    };
    if (gpu.readSync) {
      const rs = gpu.readSync.bind(gpu);
      this.readSync = (view: TensorView): StorageArray => {
        this.check('readSync');
        const s = this.storageOf(view);
        const n = sizeOf(view.shape);
        const words = rs(s.id, bufferBytesFor(view.dtype, n));
        this.check('readSync');
        return unpackWords(words, view.dtype, n);
      };
    }
  }

  // ---- plumbing -------------------------------------------------------------------------

  private check(op: string): void {
    if (this.disposed) throw new BackendError(`webgpu.${op}`, 'the WebGPU backend was disposed');
    const e = this.gpu.takeError();
    if (e) this.error ??= e.oom ? new OutOfMemoryError(`webgpu.${op}`, e.message) : new BackendError(`webgpu.${op}`, e.message);
    if (this.error) {
      const err = this.error;
      if (!/device lost/.test(err.message)) this.error = undefined;
      throw err;
    }
  }

  /** The storage behind a tensor of this backend. */
  storageOf(t: TensorView): WebGpuStorage {
    const s = t.dataId as WebGpuStorage;
    if (!(s instanceof WebGpuStorage) || s.backendId !== this.id) {
      throw new BackendError('webgpu', 'tensor does not live on this WebGPU backend: move it with `toBackend(tensor, backend)` first');
    }
    if (s.released) throw new BackendError('webgpu', 'tensor storage was released');
    return s;
  }

  private buf(t: TensorView): number {
    return this.storageOf(t).id;
  }

  private alloc(dtype: DType, n: number, op: string): WebGpuStorage {
    this.check(op);
    const bytes = bufferBytesFor(dtype, n);
    if (bytes > this.limits.maxBufferSize || bytes > this.limits.maxStorageBufferBindingSize) {
      throw new OutOfMemoryError(`webgpu.${op}`, `a ${bytes}-byte tensor exceeds this device's largest storage buffer binding (${this.limits.maxStorageBufferBindingSize} bytes)`);
    }
    const id = this.nextBuffer++;
    this.gpu.alloc(id, bytes);
    this.liveBytes += bytes;
    this.liveBuffers += 1;
    return new WebGpuStorage(id, bytes, this.id);
  }

  /** Encodes one dispatch: binding 0 meta, 1 out, 2.. inputs. */
  private dispatch(code: string, meta: ArrayLike<number>, out: number, inputs: readonly number[], groups: [number, number, number]): void {
    const words = new Uint32Array(Math.max(4, meta.length));
    for (let i = 0; i < meta.length; i++) words[i] = meta[i] >>> 0;
    this.gpu.dispatch(code, words, out, inputs, groups[0], groups[1], groups[2]);
  }

  /** Runs an elementwise kernel producing n elements of dtype. */
  private ew(op: string, code: string, dtype: DType, n: number, meta: number[], inputs: readonly number[]): WebGpuStorage {
    const out = this.alloc(dtype, n, op);
    meta[0] = n;
    if (n > 0) this.dispatch(code, meta, out.id, inputs, groups1d(wordsFor(dtype, n)));
    return out;
  }

  /**
   * A fused row kernel over the last axis: one invocation per row, or for rows of at least
   * WIDE_ROW elements one workgroup per row (wgsl/rows-wide.ts; `rowKernels`).
   */
  private rows(kind: 'softmax' | 'logSoftmax' | 'rmsNorm', x: TensorView, w?: TensorView, eps = 0): WebGpuStorage {
    const n = sizeOf(x.shape);
    const len = x.shape.length ? x.shape[x.shape.length - 1] : 1;
    const rows = len === 0 ? 0 : n / len;
    const out = this.alloc('f32', n, kind);
    const inputs = [this.buf(x), ...(w ? [this.buf(w)] : [])];
    if (rows > 0 && this.rowKernels !== 'row' && len >= WIDE_ROW) {
      const groups: [number, number, number] = rows <= 65535 ? [rows, 1, 1] : [Math.ceil(rows / Math.ceil(rows / 65535)), Math.ceil(rows / 65535), 1];
      this.dispatch(rowWideShader(kind, this.rowKernels === 'subgroups'), [rows, len, f32Bits(eps)], out.id, inputs, groups);
    } else if (rows > 0) {
      const g = Math.ceil(rows / 64);
      const groups: [number, number, number] = g <= 65535 ? [g, 1, 1] : [Math.ceil(g / Math.ceil(g / 65535)), Math.ceil(g / 65535), 1];
      this.dispatch(rowShader(kind), [rows, len, f32Bits(eps)], out.id, inputs, groups);
    }
    return out;
  }

  /**
   * Fused attention (wgsl/attention.ts): one dispatch writes out [..., Tq, dv] and logSumExp
   * [..., Tq] into one buffer (a kernel binds one writable buffer); out is that buffer (its
   * first B*Tq*dv words) and logSumExp a copy of the tail. Decode-shaped calls (few
   * workgroups, many keys) split the keys over more workgroups (planAttentionSplits;
   * $KILN_WEBGPU_ATTENTION_SPLITS pins the count): partials into a pooled scratch buffer, then
   * attentionCombineShader writes the same layout.
   */
  private attention(q: TensorView, k: TensorView, v: TensorView, args: AttentionKernelArgs): { out: DataId; logSumExp: DataId } {
    const r = q.shape.length;
    const [Tq, dk] = q.shape.slice(r - 2);
    const S = k.shape[r - 2];
    const dv = v.shape[r - 1];
    const lead = q.shape.slice(0, r - 2);
    const B = sizeOf(lead);
    const nOut = B * Tq * dv;
    const nL = B * Tq;
    const both = this.alloc('f32', nOut + nL, 'attention');
    if (nL > 0) {
      const software = !this.device.accelerated;
      const spec = planAttention(dk, dv, Tq, B, this.limits.maxComputeWorkgroupStorageSize, software, parseAttentionConfig(envVar('KILN_WEBGPU_ATTENTION')));
      const qBlocks = Math.ceil(Tq / (spec.ty * spec.rq));
      const { splits, chunk } = planAttentionSplits(S, B * qBlocks, spec.tx * spec.rk, software, parseAttentionSplits(envVar('KILN_WEBGPU_ATTENTION_SPLITS')));
      const g = B * qBlocks * splits;
      const y = Math.ceil(g / 65535);
      const groups: [number, number, number] = y <= 65535 ? [Math.ceil(g / y), y, 1] : [65535, 65535, Math.ceil(g / (65535 * 65535))];
      const causal = args.causalOffset !== null;
      const meta = [Tq, S, B, qBlocks, f32Bits(args.scale), causal ? 1 : 0, causal ? args.causalOffset! : 0, nOut, ...attentionBatchMeta(lead, k.shape.slice(0, r - 2), v.shape.slice(0, r - 2), S * dk, S * dv)];
      const inputs = [this.buf(q), this.buf(k), this.buf(v)];
      if (splits === 1) this.dispatch(attentionShaderMemo(spec), meta, both.id, inputs, groups);
      else {
        // split keys: partials (m, l, acc[dv]) per row and split, then merged per row
        let partials: WebGpuStorage | undefined;
        try {
          partials = this.alloc('f32', nL * splits * (dv + 2), 'attention');
          this.dispatch(attentionShaderMemo(spec, true), [...meta, splits, chunk], partials.id, inputs, groups);
          this.dispatch(attentionCombineShader(), [nL, dv, splits], both.id, [partials.id], groups1d(nOut + nL));
        } catch (e) {
          this.release(both);
          throw e;
        } finally {
          if (partials) this.release(partials);
        }
      }
    }
    try {
      const logSumExp = this.ew('attention', copyShader('f32'), 'f32', nL, [0, 1, nL, 1, nOut], [both.id]);
      return { out: both, logSumExp };
    } catch (e) {
      this.release(both);
      throw e;
    }
  }

  /** Submits the encoded work (no wait). */
  flush(): void {
    this.gpu.flush();
  }

  // ---- storage ------------------------------------------------------------------------------

  write(values: StorageArray, dtype: DType, shape: Shape): DataId {
    const n = sizeOf(shape);
    const s = this.alloc(dtype, n, 'write');
    this.gpu.write(s.id, packToWords(values, dtype));
    return s;
  }

  async read(view: TensorView): Promise<StorageArray> {
    this.check('read');
    const s = this.storageOf(view);
    const n = sizeOf(view.shape);
    let words: ArrayBuffer;
    try {
      words = await this.gpu.read(s.id, bufferBytesFor(view.dtype, n));
    } catch (e) {
      this.check('read');
      if (e instanceof BackendError) throw e;
      throw new BackendError('webgpu.read', (e as Error).message);
    }
    this.check('read');
    return unpackWords(words, view.dtype, n);
  }

  release(dataId: DataId): void {
    const s = dataId as WebGpuStorage;
    if (!(s instanceof WebGpuStorage) || s.released || s.backendId !== this.id) return;
    s.released = true;
    this.liveBytes -= s.bytes;
    this.liveBuffers -= 1;
    if (!this.disposed) this.gpu.free(s.id);
  }

  memory(): BackendMemory {
    return { bytes: this.liveBytes, buffers: this.liveBuffers };
  }

  /** Frees the pool's idle buffers. */
  trimPool(): void {
    this.gpu.trim();
  }

  // ---- creation -----------------------------------------------------------------------------

  fill(shape: Shape, dtype: DType, value: number): DataId {
    const n = sizeOf(shape);
    const out = this.alloc(dtype, n, 'fill');
    const words = wordsFor(dtype, n);
    if (words > 0) this.dispatch(fillShader(), [words, replicateCode(fillCode(dtype, value), dtype)], out.id, [], groups1d(words));
    return out;
  }

  random(shape: Shape, spec: RandomSpec): DataId {
    const n = sizeOf(shape);
    const uniform = spec.distribution === 'uniform';
    const lo = Math.fround(spec.a);
    const second = uniform ? Math.fround(Math.fround(spec.b) - lo) : Math.fround(spec.b);
    return this.ew('random', randomShader(!uniform), 'f32', n, [0, spec.seed >>> 0, f32Bits(lo), f32Bits(second), 0], []);
  }

  // ---- elementwise --------------------------------------------------------------------------

  unary(op: UnaryOp, x: TensorView, outDtype: ComputeDType): DataId {
    return this.ew('unary', unaryShader(op, x.dtype, outDtype), outDtype, sizeOf(x.shape), [0], [this.buf(x)]);
  }

  binary(op: BinaryOp, a: TensorView, b: TensorView, outShape: Shape, outDtype: ComputeDType): DataId {
    const meta = stridedMeta(outShape, [broadcastStrides(a.shape, outShape), broadcastStrides(b.shape, outShape)]);
    return this.ew('binary', binaryShader(op, a.dtype, outDtype), outDtype, sizeOf(outShape), meta, [this.buf(a), this.buf(b)]);
  }

  where(cond: TensorView, a: TensorView, b: TensorView, outShape: Shape): DataId {
    const meta = stridedMeta(outShape, [broadcastStrides(cond.shape, outShape), broadcastStrides(a.shape, outShape), broadcastStrides(b.shape, outShape)]);
    return this.ew('where', whereShader(a.dtype), a.dtype, sizeOf(outShape), meta, [this.buf(cond), this.buf(a), this.buf(b)]);
  }

  // ---- reductions ---------------------------------------------------------------------------

  reduce(op: ReduceOp, x: TensorView, axis: number): DataId {
    const outer = prodOf(x.shape, 0, axis);
    const len = x.shape[axis];
    const inner = prodOf(x.shape, axis + 1, x.shape.length);
    const outDtype: DType = op === 'argmax' || op === 'argmin' ? 'i32' : x.dtype;
    return this.ew('reduce', reduceShader(op, x.dtype), outDtype, outer * inner, [0, len, inner], [this.buf(x)]);
  }

  // ---- linear algebra -----------------------------------------------------------------------

  matmul(a: TensorView, b: TensorView, options: PrimitiveMatmulOptions, outShape: Shape): DataId {
    const r = outShape.length;
    const M = outShape[r - 2];
    const N = outShape[r - 1];
    const K = options.transposeA ? a.shape[a.shape.length - 2] : a.shape[a.shape.length - 1];
    const batchShape = outShape.slice(0, r - 2);
    const batch = sizeOf(batchShape);
    const temps: WebGpuStorage[] = [];
    const operand = (t: TensorView): [number, number] => {
      const rows = t.shape[t.shape.length - 2];
      const cols = t.shape[t.shape.length - 1];
      const own = sizeOf(t.shape.slice(0, -2));
      if (own === batch) return [this.buf(t), rows * cols];
      if (own === 1) return [this.buf(t), 0];
      // partial broadcast of batch dims: materialise the operand at the output's batch shape
      const full = [...batchShape, rows, cols];
      const tmp = this.ew('matmul', copyShader(t.dtype), t.dtype, sizeOf(full), stridedMeta(full, [broadcastStrides(t.shape, full)]), [this.buf(t)]);
      temps.push(tmp);
      return [tmp.id, rows * cols];
    };
    try {
      const [ba, sa] = operand(a);
      const [bb, sb] = operand(b);
      const [sam, sak] = options.transposeA ? [1, M] : [K, 1];
      const [sbk, sbn] = options.transposeB ? [1, K] : [N, 1];
      const meta = [batch * M * N, M, N, K, sa, sb, sam, sak, sbk, sbn];
      const n = batch * M * N;
      if (a.dtype === 'i32') return this.ew('matmul', gemmI32Shader(), 'i32', n, meta, [ba, bb]);
      const out = this.alloc('f32', n, 'matmul');
      if (n > 0) {
        if (K === 0) {
          this.dispatch(fillShader(), [n, 0], out.id, [], groups1d(n));
        } else {
          if (batch > 65535) throw new BackendError('webgpu.matmul', `batch ${batch} exceeds 65535 workgroups`);
          const strides = { aBatch: sa, bBatch: sb, sam, sak, sbk, sbn };
          const sliced = planSlicedF32(this.gemm, M, N, K, batch, strides);
          const plan = sliced ? undefined : planF32Gemm(this.gemm, M, N, K, batch, strides);
          if (sliced) this.dispatch(slicedGemmShader(sliced.spec), meta, out.id, [ba, bb], sliced.groups);
          else if (plan) this.tiledMatmul(plan, [...meta, plan.kPer, plan.slices, batch], out, [ba, bb]);
          else {
            // skinny products (a few tokens) take 32-row tiles: less padding, twice the workgroups
            const rm = M <= 32 ? 4 : 8;
            this.dispatch(gemmF32Shader(rm), meta, out.id, [ba, bb], [Math.ceil(N / 64), Math.ceil(M / (8 * rm)), batch]);
          }
        }
      }
      return out;
    } finally {
      for (const t of temps) this.release(t);
    }
  }

  /** A tiled f32 product; split along K, its slices' partials are summed in slice order. */
  private tiledMatmul(plan: F32GemmPlan, meta: number[], out: WebGpuStorage, inputs: readonly number[]): void {
    const code = tiledGemmShader(plan.spec);
    if (plan.slices === 1) {
      this.dispatch(code, meta, out.id, inputs, plan.groups);
      return;
    }
    const n = meta[0];
    const partials = this.alloc('f32', n * plan.slices, 'matmul');
    try {
      this.dispatch(code, meta, partials.id, inputs, plan.groups);
      this.dispatch(splitKReduceShader(), [n, plan.slices, 0], out.id, [partials.id], groups1d(n));
    } finally {
      this.release(partials);
    }
  }

  // ---- indexing -----------------------------------------------------------------------------

  gather(x: TensorView, axis: number, indices: TensorView): DataId {
    const xs = stridesOf(x.shape);
    const strides = xs.map((s, d) => (d === axis ? 0 : s));
    const nd = indices.shape.length;
    // no dim collapsing: the extra words sit at a fixed place after the strided block
    const meta = [0, nd, ...indices.shape, ...strides, 0, xs[axis], x.shape[axis]];
    return this.ew('gather', gatherShader(x.dtype, nd), x.dtype, sizeOf(indices.shape), meta, [this.buf(x), this.buf(indices)]);
  }

  indexSelect(x: TensorView, axis: number, indices: TensorView): DataId {
    const outer = prodOf(x.shape, 0, axis);
    const inner = prodOf(x.shape, axis + 1, x.shape.length);
    const nIdx = sizeOf(indices.shape);
    return this.ew('indexSelect', indexSelectShader(x.dtype), x.dtype, outer * nIdx * inner, [0, x.shape[axis], nIdx, inner], [this.buf(x), this.buf(indices)]);
  }

  scatterAdd(base: TensorView, axis: number, indices: TensorView, src: TensorView): DataId {
    const nd = base.shape.length;
    const meta = [0, nd, ...base.shape, ...indices.shape, ...stridesOf(indices.shape), ...stridesOf(src.shape), axis];
    return this.ew('scatterAdd', scatterAddShader(base.dtype as 'f32' | 'i32'), base.dtype, sizeOf(base.shape), meta, [this.buf(base), this.buf(indices), this.buf(src)]);
  }

  indexAdd(base: TensorView, axis: number, indices: TensorView, src: TensorView): DataId {
    const inner = prodOf(base.shape, axis + 1, base.shape.length);
    const meta = [0, base.shape[axis], sizeOf(indices.shape), inner];
    return this.ew('indexAdd', indexAddShader(base.dtype as 'f32' | 'i32'), base.dtype, sizeOf(base.shape), meta, [this.buf(base), this.buf(indices), this.buf(src)]);
  }

  // ---- layout -------------------------------------------------------------------------------

  concat(xs: readonly TensorView[], axis: number, outShape: Shape): DataId {
    const dtype = xs[0].dtype;
    const inner = prodOf(outShape, axis + 1, outShape.length);
    const outer = prodOf(outShape, 0, axis);
    const parts = xs.map((x) => ({ id: this.buf(x), width: x.shape[axis] * inner }));
    const temps: WebGpuStorage[] = [];
    try {
      // rounds of up to CONCAT_FANIN inputs each
      let cur = parts;
      for (;;) {
        const next: { id: number; width: number }[] = [];
        for (let g = 0; g < cur.length; g += CONCAT_FANIN) {
          const group = cur.slice(g, g + CONCAT_FANIN);
          const rowLen = group.reduce((s, p) => s + p.width, 0);
          const meta = [0, rowLen];
          let at = 0;
          for (const p of group) {
            meta.push(at, p.width);
            at += p.width;
          }
          const last = cur.length <= CONCAT_FANIN;
          const out = this.ew('concat', concatShader(dtype, group.length), dtype, outer * rowLen, meta, group.map((p) => p.id));
          if (last) return out;
          temps.push(out);
          next.push({ id: out.id, width: rowLen });
        }
        cur = next;
      }
    } finally {
      for (const t of temps) this.release(t);
    }
  }

  slice(x: TensorView, begin: readonly number[], size: readonly number[]): DataId {
    const xs = stridesOf(x.shape);
    const [view] = collapseDims(size, [xs]);
    const meta = stridedMetaFromView(view, begin.reduce((acc, b, d) => acc + b * xs[d], 0));
    return this.ew('slice', copyShader(x.dtype), x.dtype, sizeOf(size), meta, [this.buf(x)]);
  }

  transpose(x: TensorView, perm: readonly number[]): DataId {
    const xs = stridesOf(x.shape);
    const shape = perm.map((p) => x.shape[p]);
    const meta = stridedMeta(shape, [perm.map((p) => xs[p])]);
    return this.ew('transpose', copyShader(x.dtype), x.dtype, sizeOf(shape), meta, [this.buf(x)]);
  }

  // ---- casts --------------------------------------------------------------------------------

  cast(x: TensorView, dtype: DType, options: PrimitiveCastOptions): DataId {
    return this.ew('cast', castShader(x.dtype, dtype), dtype, sizeOf(x.shape), [0, options.saturate ? 1 : 0], [this.buf(x)]);
  }

  // ---- FP8 ----------------------------------------------------------------------------------

  quantizeBlockwise(x: TensorView, block: readonly [number, number], options: PrimitiveQuantizeOptions): { codes: DataId; scales: DataId } {
    const [rows, cols] = x.shape;
    const [br, bc] = block;
    const nbr = Math.ceil(rows / br);
    const nbc = Math.ceil(cols / bc);
    const invMax = Math.fround(1 / (options.format === 'e4m3' ? 448 : 57344));
    const scales = this.ew('quantizeBlockwise', quantScalesShader(), 'f32', nbr * nbc, [0, rows, cols, br, bc, nbc, f32Bits(invMax), options.scaleFormat === 'ue8m0' ? 1 : 0, 0], [this.buf(x)]);
    const codes = this.ew('quantizeBlockwise', quantCodesShader(), options.format, rows * cols, [0, cols, br, bc, nbc, options.format === 'e4m3' ? 0 : 1], [this.buf(x), scales.id]);
    return { codes, scales };
  }

  matmulFp8(a: QuantizedView, b: QuantizedView, options: PrimitiveFp8GemmOptions): DataId {
    const [M, K] = a.codes.shape;
    const N = b.codes.shape[0];
    const bk = a.block[1];
    const nc = options.promotionInterval === Infinity ? Math.max(K, 1) : options.promotionInterval;
    if (options.accumulatorMantissaBits !== undefined) {
      if (a.codes.dtype !== 'e4m3' || b.codes.dtype !== 'e4m3') {
        throw new BackendError('webgpu.matmulFp8', 'the limited-precision accumulator model runs on WebGPU for e4m3 x e4m3 only (its exact 64-bit fixed-point accumulator cannot hold e5m2 products); use the CPU backend');
      }
      if (nc * 2 ** 17.6 >= 2 ** 44) throw new BackendError('webgpu.matmulFp8', `promotionInterval ${nc} is too long for the exact 64-bit accumulator of the emulation`);
      const meta = [M * N, M, N, K, nc, a.block[0], b.block[0], bk, Math.ceil(K / bk), Math.ceil(K / b.block[1]), 0, options.accumulatorMantissaBits, options.accumulatorGroupSize ?? 1, options.accumulatorRounding === 'nearest' ? 1 : 0];
      return this.ew('matmulFp8', fp8GemmEmulatedShader(), 'f32', M * N, meta, [this.buf(a.codes), this.buf(b.codes), this.buf(a.scales), this.buf(b.scales)]);
    }
    const out = this.alloc('f32', M * N, 'matmulFp8');
    if (M * N > 0) {
      if (K === 0) this.dispatch(fillShader(), [M * N, 0], out.id, [], groups1d(M * N));
      else {
        const meta = [M * N, M, N, K, nc, a.block[0], b.block[0], bk, Math.ceil(K / bk), Math.ceil(K / b.block[1]), 0, a.codes.dtype === 'e5m2' ? 1 : 0, b.codes.dtype === 'e5m2' ? 1 : 0];
        const inputs = [this.buf(a.codes), this.buf(b.codes), this.buf(a.scales), this.buf(b.scales)];
        const sliced = planSlicedFp8(this.gemm, M, N, K, nc);
        const plan = sliced ? undefined : planFp8Gemm(this.gemm, M, N, K, nc);
        if (sliced) this.dispatch(slicedGemmShader(sliced.spec), meta, out.id, inputs, sliced.groups);
        else if (plan && plan.chunks > 1) {
          const partials = this.alloc('f32', M * N * plan.chunks, 'matmulFp8');
          try {
            this.dispatch(tiledGemmShader(plan.spec), meta, partials.id, inputs, plan.groups);
            this.dispatch(splitKReduceShader(), [M * N, plan.chunks, 0], out.id, [partials.id], groups1d(M * N));
          } finally {
            this.release(partials);
          }
        } else if (plan) this.dispatch(tiledGemmShader(plan.spec), meta, out.id, inputs, plan.groups);
        else if (K % 4 === 0 && (nc % 4 === 0 || nc >= K)) {
          // codes loaded as whole u32 words: rows and chunk starts are 4-code aligned
          const rm = M <= 32 ? 4 : 8;
          this.dispatch(fp8GemmWordsShader(rm), meta, out.id, inputs, [Math.ceil(N / 64), Math.ceil(M / (8 * rm)), 1]);
        } else {
          const rm = M <= 32 ? 2 : 4;
          this.dispatch(fp8GemmShader(rm), meta, out.id, inputs, [Math.ceil(N / 64), Math.ceil(M / (16 * rm)), 1]);
        }
      }
    }
    return out;
  }

  /**
   * Grouped FP8 block GEMM: one product per expert in one dispatch (the CUDA backend's API).
   * Contiguous: a codes [rows, K] with 1x128 scales [rows, ceil(K/128)], b codes [G, N, K] with
   * 128x128 scales [G, ceil(N/128), ceil(K/128)], groups = i32 row offsets [G+1] (ascending,
   * groups[G] <= rows): rows offsets[g] .. offsets[g+1] of the f32 [rows, N] result are
   * a[those rows] x b[g]^T; rows outside every group are 0. Masked: a [G, Mmax, K] (+ scales
   * [G, Mmax, ceil(K/128)]), groups = i32 valid-row counts [G]; the result is [G, Mmax, N], rows
   * beyond a count 0. Every product is bit-exact with fp8GemmReference (promotion every
   * `promotionInterval`, default 128; a multiple of 16). K must be a multiple of 4. Offsets and
   * counts are trusted to be in range (they stay on the GPU; the kernel bounds its reads).
   */
  groupedMatmulFp8(aCodes: Tensor, aScales: Tensor, bCodes: Tensor, bScales: Tensor, groups: Tensor, options: { masked?: boolean; promotionInterval?: number } = {}): Tensor {
    const op = 'webgpu.groupedMatmulFp8';
    const masked = options.masked ?? false;
    const fp8 = (d: DType): boolean => d === 'e4m3' || d === 'e5m2';
    if (!fp8(aCodes.dtype) || !fp8(bCodes.dtype)) throw new DTypeError(op, `codes must be e4m3 or e5m2, got a ${aCodes.dtype}, b ${bCodes.dtype}`);
    if (aScales.dtype !== 'f32' || bScales.dtype !== 'f32') throw new DTypeError(op, `scales must be f32, got a ${aScales.dtype}, b ${bScales.dtype}`);
    if (bCodes.shape.length !== 3) throw new ShapeError(op, `b codes must be [G, N, K], got [${bCodes.shape.join(', ')}]`);
    const [G, N, K] = bCodes.shape;
    const aRank = masked ? 3 : 2;
    if (aCodes.shape.length !== aRank || aCodes.shape[aRank - 1] !== K || (masked && aCodes.shape[0] !== G)) {
      throw new ShapeError(op, `a codes must be ${masked ? '[G, Mmax, K]' : '[rows, K]'} with G = ${G}, K = ${K}; got [${aCodes.shape.join(', ')}]`);
    }
    if (groups.dtype !== 'i32' || sizeOf(groups.shape) !== (masked ? G : G + 1)) {
      throw new DTypeError(op, `groups must be i32 [${masked ? G : G + 1}] (${masked ? 'valid-row counts' : 'row offsets'}), got ${groups.dtype} [${groups.shape.join(', ')}]`);
    }
    const rows = masked ? aCodes.shape[1] : aCodes.shape[0];
    const kb = Math.ceil(K / 128);
    const wantA = [...aCodes.shape.slice(0, -1), kb];
    const wantB = [G, Math.ceil(N / 128), kb];
    if (aScales.shape.join() !== wantA.join()) throw new ShapeError(op, `a scales must be [${wantA.join(', ')}] (1x128 blocks), got [${aScales.shape.join(', ')}]`);
    if (bScales.shape.join() !== wantB.join()) throw new ShapeError(op, `b scales must be [${wantB.join(', ')}] (128x128 blocks), got [${bScales.shape.join(', ')}]`);
    if (K % 4 !== 0) throw new BackendError(op, `K = ${K} must be a multiple of 4 (codes are read as u32 words)`);
    const nc = options.promotionInterval ?? 128;
    if (!(nc % 16 === 0 || nc >= K)) throw new ArgumentError(op, `promotionInterval ${nc} must be a multiple of 16 (or >= K)`);
    const tile = planGroupedFp8(this.gemm, N, rows * (masked ? G : 1), G);
    if (!tile) throw new BackendError(op, `the device's ${this.gemm.workgroupBytes} bytes of workgroup memory are too few for the grouped kernel`);
    const outShape = masked ? [G, rows, N] : [rows, N];
    const n = sizeOf(outShape);
    const out = this.alloc('f32', n, 'groupedMatmulFp8');
    if (n > 0) {
      this.dispatch(fillShader(), [n, 0], out.id, [], groups1d(n));
      if (G > 0 && rows > 0 && K > 0) {
        if (G > 65535) throw new BackendError(op, `${G} groups exceed 65535 workgroups`);
        const spec = { kind: 'fp8', ...tile, a: 'vec-k', b: 'vec-k', vecOut: N % 4 === 0, unroll: this.gemm.unroll, grouped: masked ? 'masked' : 'contiguous' } as const;
        const meta = [n, rows, N, K, nc, 1, 128, 128, kb, kb, 0, aCodes.dtype === 'e5m2' ? 1 : 0, bCodes.dtype === 'e5m2' ? 1 : 0, rows];
        // every group may hold all rows: workgroups past a group's end return at once
        this.dispatch(tiledGemmShader(spec), meta, out.id, [this.buf(aCodes), this.buf(bCodes), this.buf(aScales), this.buf(bScales), this.buf(groups)], [Math.ceil(N / tileCols(tile)), Math.ceil(rows / tileRows(tile)), G]);
      }
    }
    return tensorFromDataId(this, out, outShape, 'f32');
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.gpu.dispose();
  }

  /**
   * Disposes the backend and settles once its device is destroyed and (Node) its worker has
   * ended. Call it before process.exit(): exiting while the worker still destroys the device
   * can abort the process from inside Dawn.
   */
  async close(): Promise<void> {
    this.dispose();
    await this.gpu.closed?.();
  }
}

function prodOf(shape: Shape, from: number, to: number): number {
  let p = 1;
  for (let i = from; i < to; i++) p *= shape[i];
  return p;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function f32Bits(x: number): number {
  f32[0] = x;
  return u32[0];
}

function stridedMetaFromView(view: number[], offset: number): number[] {
  // view = [0, nd, dims..., strides...] of one operand
  const nd = view[1];
  return [0, nd, ...view.slice(2, 2 + 2 * nd), offset];
}

/** The storage code `fill` writes: the value encoded in the dtype's bit format. */
function fillCode(dtype: DType, value: number): number {
  switch (dtype) {
    case 'f32':
      return f32Bits(value);
    case 'f16':
      return f32ToF16Bits(Math.fround(value));
    case 'bf16':
      return f32ToBf16Bits(Math.fround(value));
    case 'e4m3':
    case 'e5m2':
      return encodeFp8Value(Math.fround(value), dtype, false);
    case 'i32':
      return (Number.isFinite(value) ? Math.trunc(value) : 0) >>> 0;
    case 'u8':
      return (Number.isFinite(value) ? Math.trunc(value) : 0) & 0xff;
    default:
      return value !== 0 ? 1 : 0;
  }
}

