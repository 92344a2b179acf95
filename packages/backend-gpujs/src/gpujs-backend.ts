import { CpuBackend } from '@kiln/backend-cpu';
import {
  AMAX_FLOOR,
  BackendError,
  E4M3_MAX,
  E5M2_MAX,
  allocStorage,
  sizeOf,
  stridesOf,
  type Backend,
  type BackendMemory,
  type BinaryOp,
  type ComputeDType,
  type DType,
  type DataId,
  type DeviceInfo,
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
import type { EnginePage } from './browser.js';
import type { EngineCommand } from './engine.js';
import { openEngine, type EngineOptions, type GpujsEngineKind as NodeEngineKind } from './node-engine.js';
import { macrotask, openPageEngine, type PageEngine, type PageEngineOptions } from './page-engine.js';
import {
  CONCAT2,
  COPY,
  COPY_STRIDED,
  FILL,
  GATHER,
  INDEX_ADD,
  INDEX_SELECT,
  MATMUL,
  SCATTER_ADD,
  WHERE,
  binaryKernel,
  castKernel,
  encodeCastKernel,
  finalize,
  gpuCastEnabled,
  gpuEncodeEnabled,
  QUANT_SCALES,
  quantCodesKernel,
  reduceKernel,
  rowKernel,
  fp8GemmKernel,
  SWIGLU,
  unaryKernel,
} from './kernels.js';
import { GEMM_KERNELS_WEBGL1, GEMM_KERNELS_WEBGL2, GEMM_SUBS, GEMM_VARIANTS, gemmPlan, type GemmKernels, type GemmPlan, type GemmVariant } from './gemm.js';

/** Commands batched before they are sent to the page without a read. */
const BATCH = 256;
/** Elements a flat thread index addresses exactly (float arithmetic in the kernels). */
export const MAX_ELEMENTS = 2 ** 24;

let nextBackendId = 1;

/** A gpu.js backend DataId: one texture in the page, by id. */
export class GpujsStorage {
  released = false;
  constructor(
    readonly id: number,
    readonly size: number,
    readonly backendId: number,
  ) {}
}

/**
 * Which engine runs the kernels: in Node 'headless-gl' or 'chromium' ('auto' picks, see
 * `openEngine`); in a browser page or worker 'page' (gpu.js's browser build in that page, on
 * WebGL2 or WebGL 1.0), which 'auto' picks there.
 */
export type GpujsEngineKind = NodeEngineKind | 'page';

/**
 * Engine choice (`engine`, KILN_GPUJS_ENGINE in Node), Chromium's and headless-gl's settings
 * (Node), the page engine's canvas / context / WebGL version / gpu.js (browser).
 */
export interface GpujsBackendOptions extends Omit<EngineOptions, 'engine'>, PageEngineOptions {
  readonly engine?: GpujsEngineKind;
}

/** Primitives that run on the host (the CPU backend) instead of as gpu.js kernels; see docs/backend-gpujs.md. */
export const HOST_FALLBACKS = ['random', 'cast to f16/bf16/e4m3/e5m2 (on the GPU with KILN_GPUJS_GPU_CAST=1)', 'matmulFp8 with accumulatorMantissaBits (the accumulator-model study)'] as const;

const SOFTWARE = /swiftshader|llvmpipe|softpipe|lavapipe|software/i;

/**
 * kiln's gpu.js backend. Every tensor is a texture in a WebGL2 page; every primitive (but
 * the host fallbacks listed in HOST_FALLBACKS) is a gpu.js kernel whose output stays on the
 * GPU. In Node the page is a headless Chromium driven by playwright-core: primitives return
 * their DataId at once and queue a command; commands go to the page in batches, in order, and
 * only `read` waits for the GPU.
 */
export class GpujsBackend implements Backend {
  readonly name = 'gpujs';
  readonly device: DeviceInfo;
  readonly notPreferred?: string;
  readonly fused: FusedKernels;
  private readonly id = nextBackendId++;
  private nextStorage = 1;
  private liveBytes = 0;
  private liveBuffers = 0;
  private pending: EngineCommand[] = [];
  private tail: Promise<void> = Promise.resolve();
  private error: Error | undefined;
  private disposed = false;
  private cpu: CpuBackend | undefined;
  /** The in-process engine's synchronous calls (headless-gl); undefined for Chromium. */
  private readonly syncPage: EnginePage['sync'];
  /**
   * Synchronous reads, where the engine runs in this process (headless-gl): kiln's MoE routing
   * reads the router's choices mid-forward, so MoE models train only where this exists.
   */
  readonly readSync?: (view: TensorView) => StorageArray;

  static async create(options: GpujsBackendOptions = {}): Promise<GpujsBackend> {
    const proc = (globalThis as { process?: { versions?: { node?: string }; env?: Record<string, string | undefined> } }).process;
    const inNode = typeof proc?.versions?.node === 'string';
    const kind = options.engine ?? ((inNode && proc?.env?.KILN_GPUJS_ENGINE) || 'auto');
    if (!inNode) {
      // a browser page or worker: gpu.js's browser build in this realm (no Node engine exists here)
      if (kind !== 'auto' && kind !== 'page') throw new BackendError('gpujs', `engine ${JSON.stringify(kind)} runs only in Node; in a browser the engine is 'page' (or 'auto')`);
      return new GpujsBackend(await openPageEngine(options));
    }
    if (kind === 'page') throw new BackendError('gpujs', "the page engine runs in a browser page or worker; in Node use 'headless-gl' or 'chromium' (or 'auto')");
    const page = await openEngine(options as EngineOptions);
    return new GpujsBackend(page);
  }

  private constructor(private readonly page: EnginePage | PageEngine) {
    this.syncPage = page.sync;
    if (this.syncPage) {
      const sp = this.syncPage;
      this.readSync = (view: TensorView): StorageArray => {
        this.check('readSync');
        const s = this.storageOf(view);
        this.flush();
        this.check('readSync');
        let codes: StorageArray;
        try {
          codes = sp.readF32 ? f32Codes(sp.readF32(s.id), view.dtype, s.size) : decodeCodes(sp.read(s.id), view.dtype, s.size);
        } catch (e) {
          this.fail('readSync', e);
          this.check('readSync');
          throw e;
        }
        return codes;
      };
    }
    const info = page.info;
    const software = SOFTWARE.test(info.renderer);
    if (software) this.notPreferred = `software WebGL (${info.renderer}): the CPU backend is faster`;
    else if (envNumber('KILN_GPUJS_SMALL_GEMM', -1) < 0) {
      this.smallGemmWork = 64 ** 3;
      this.smallFp8GemmWork = 64 ** 3;
    }
    this.device = {
      backend: 'gpujs',
      name: info.renderer,
      accelerated: !software,
      details: {
        via: page.via,
        engine: page.engine,
        vendor: info.vendor,
        glVersion: info.version,
        maxTextureSize: info.maxTextureSize,
        precision: 'single',
        software,
      },
    };
    const row = (kind: 'softmax' | 'logSoftmax' | 'rmsNorm', x: TensorView, w?: TensorView, eps = 0): DataId => {
      const n = sizeOf(x.shape);
      const len = x.shape.length ? x.shape[x.shape.length - 1] : 1;
      return this.k(kind, rowKernel(kind), n, [this.storageOf(x), ...(w ? [this.storageOf(w)] : [])], [0, len, eps]);
    };
    this.fused = {
      softmax: (x) => row('softmax', x),
      logSoftmax: (x) => row('logSoftmax', x),
      rmsNorm: (x, w, eps) => row('rmsNorm', x, w, eps),
      swiglu: (g, u) => this.k('swiglu', SWIGLU, sizeOf(g.shape), [this.storageOf(g), this.storageOf(u)], [0]),
    };
  }

  // ---- plumbing ----------------------------------------------------------------------

  private check(op: string): void {
    if (this.disposed) throw new BackendError(`gpujs.${op}`, 'the gpu.js backend was disposed');
    if (this.error) {
      const e = this.error;
      this.error = undefined;
      throw e;
    }
  }

  storageOf(t: TensorView): GpujsStorage {
    const s = t.dataId as GpujsStorage;
    if (!(s instanceof GpujsStorage) || s.backendId !== this.id) {
      throw new BackendError('gpujs', 'tensor does not live on this gpu.js backend: move it with `toBackend(tensor, backend)` first');
    }
    if (s.released) throw new BackendError('gpujs', 'tensor storage was released');
    return s;
  }

  private alloc(n: number, op: string): GpujsStorage {
    this.check(op);
    if (n > MAX_ELEMENTS) throw new BackendError(`gpujs.${op}`, `a tensor of ${n} elements exceeds this backend's limit of 2^24 elements (flat indices are f32 in the kernels)`);
    this.liveBytes += n * 4;
    this.liveBuffers += 1;
    return new GpujsStorage(this.nextStorage++, n, this.id);
  }

  private send(cmd: EngineCommand): void {
    this.pending.push(cmd);
    if (this.pending.length >= BATCH) this.flush();
  }

  /** Sends the queued commands to the page (no wait). */
  flush(): void {
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    if (this.syncPage) {
      // in-process engine: run now (nothing is ever queued on `tail`, so readSync is consistent)
      try {
        this.syncPage.exec(batch);
      } catch (e) {
        this.fail('exec', e);
      }
      return;
    }
    this.tail = this.tail.then(() => this.page.exec(batch)).catch((e: unknown) => this.fail('exec', e));
  }

  private fail(op: string, e: unknown): void {
    this.error ??= e instanceof BackendError ? e : new BackendError(`gpujs.${op}`, ((e as Error)?.message ?? String(e)).split('\n').slice(0, 3).join(' '));
  }

  /** Runs a kernel over `n` output elements. */
  private k(op: string, src: string, n: number, ins: readonly GpujsStorage[], meta: number[]): GpujsStorage {
    const out = this.alloc(n, op);
    meta[0] = n;
    this.send({ t: 'k', id: out.id, n, src: finalize(src), ins: ins.map((s) => s.id), meta });
    return out;
  }

  private upload(values: ArrayLike<number>, dtype: DType, n: number, out: GpujsStorage): EngineCommand {
    const f = new Float32Array(n);
    if (dtype === 'bool') for (let i = 0; i < n; i++) f[i] = values[i] !== 0 ? 1 : 0;
    else for (let i = 0; i < n; i++) f[i] = values[i];
    // the in-process engine takes the array itself (it uploads it before the next command)
    if (this.syncPage?.readF32) return { t: 'up', id: out.id, n, f32: f };
    return { t: 'up', id: out.id, n, b64: bytesToB64(new Uint8Array(f.buffer)) };
  }

  private async readCodes(s: GpujsStorage, dtype: DType): Promise<StorageArray> {
    if (this.readSync) {
      // one event-loop turn per async read, so a long synchronous run still lets I/O through
      // (setImmediate: after the I/O poll; a setTimeout(0) cost ~1.4 ms per read, see docs/backend-gpujs.md;
      // in a browser, where there is no setImmediate, a MessageChannel message)
      await new Promise<void>((resolve) => macrotask(resolve));
      return this.readSync({ dataId: s, shape: [s.size], dtype });
    }
    this.flush();
    const p = this.tail.then(() => this.page.read(s.id));
    this.tail = p.then(
      () => undefined,
      () => undefined,
    );
    return decodeCodes(await p, dtype, s.size);
  }

  /**
   * A host fallback: reads the inputs back, runs the CPU backend's primitive, uploads its
   * outputs into `outs` (in order, after everything queued before).
   */
  private host(inputs: readonly TensorView[], outs: { dtype: DType; shape: Shape }[], op: string, run: (cpu: CpuBackend, ins: TensorView[]) => DataId[]): GpujsStorage[] {
    const stores = inputs.map((t) => this.storageOf(t));
    const outStores = outs.map((o) => this.alloc(sizeOf(o.shape), op));
    this.flush();
    if (this.syncPage) {
      const sp = this.syncPage;
      const cpu = (this.cpu ??= new CpuBackend());
      const views: TensorView[] = [];
      try {
        for (let i = 0; i < inputs.length; i++) {
          const codes = sp.readF32 ? f32Codes(sp.readF32(stores[i].id), inputs[i].dtype, stores[i].size) : decodeCodes(sp.read(stores[i].id), inputs[i].dtype, stores[i].size);
          views.push({ dataId: cpu.write(codes, inputs[i].dtype, inputs[i].shape), shape: inputs[i].shape, dtype: inputs[i].dtype });
        }
        const ids = run(cpu, views);
        const cmds: EngineCommand[] = [];
        for (let i = 0; i < outs.length; i++) {
          const codes = cpu.readSync({ dataId: ids[i], shape: outs[i].shape, dtype: outs[i].dtype });
          cpu.release(ids[i]);
          cmds.push(this.upload(codes, outs[i].dtype, outStores[i].size, outStores[i]));
        }
        sp.exec(cmds);
      } catch (e) {
        this.fail(op, e);
      } finally {
        for (const v of views) cpu.release(v.dataId);
      }
      return outStores;
    }
    this.tail = this.tail
      .then(async () => {
        const cpu = (this.cpu ??= new CpuBackend());
        const views: TensorView[] = [];
        try {
          for (let i = 0; i < inputs.length; i++) {
            // (inside the queue: read the page directly, not through the queue)
            const codes = decodeCodes(await this.page.read(stores[i].id), inputs[i].dtype, stores[i].size);
            views.push({ dataId: cpu.write(codes, inputs[i].dtype, inputs[i].shape), shape: inputs[i].shape, dtype: inputs[i].dtype });
          }
          const ids = run(cpu, views);
          const cmds: EngineCommand[] = [];
          for (let i = 0; i < outs.length; i++) {
            const codes = await cpu.read({ dataId: ids[i], shape: outs[i].shape, dtype: outs[i].dtype });
            cpu.release(ids[i]);
            cmds.push(this.upload(codes, outs[i].dtype, outStores[i].size, outStores[i]));
          }
          await this.page.exec(cmds);
        } finally {
          for (const v of views) cpu.release(v.dataId);
        }
      })
      .catch((e: unknown) => this.fail(op, e));
    return outStores;
  }

  // ---- storage -----------------------------------------------------------------------

  write(values: StorageArray, dtype: DType, shape: Shape): DataId {
    const n = sizeOf(shape);
    const s = this.alloc(n, 'write');
    this.send(this.upload(values, dtype, n, s));
    return s;
  }

  async read(view: TensorView): Promise<StorageArray> {
    this.check('read');
    const s = this.storageOf(view);
    let out: StorageArray;
    try {
      out = await this.readCodes(s, view.dtype);
    } catch (e) {
      this.fail('read', e);
    }
    this.check('read');
    return out!;
  }

  release(dataId: DataId): void {
    const s = dataId as GpujsStorage;
    if (!(s instanceof GpujsStorage) || s.released || s.backendId !== this.id) return;
    s.released = true;
    this.liveBytes -= s.size * 4;
    this.liveBuffers -= 1;
    if (!this.disposed) this.send({ t: 'free', id: s.id });
    const packs = this.packCache.get(s);
    if (packs) {
      this.packCache.delete(s);
      for (const p of packs.values()) this.release(p);
    }
  }

  memory(): BackendMemory {
    return { bytes: this.liveBytes, buffers: this.liveBuffers };
  }

  // ---- creation ----------------------------------------------------------------------

  fill(shape: Shape, dtype: DType, value: number): DataId {
    return this.k('fill', FILL, sizeOf(shape), [], [0, fillCode(dtype, value)]);
  }

  random(shape: Shape, spec: RandomSpec): DataId {
    return this.host([], [{ dtype: 'f32', shape }], 'random', (cpu) => [cpu.random(shape, spec)])[0];
  }

  // ---- elementwise -------------------------------------------------------------------

  unary(op: UnaryOp, x: TensorView, outDtype: ComputeDType): DataId {
    const src = unaryKernel(op, x.dtype as ComputeDType);
    if (!src) throw new BackendError('gpujs.unary', `op ${op} is not defined for dtype ${x.dtype}`);
    return this.k('unary', src, sizeOf(x.shape), [this.storageOf(x)], [0]);
  }

  binary(op: BinaryOp, a: TensorView, b: TensorView, outShape: Shape, outDtype: ComputeDType): DataId {
    const src = binaryKernel(op, a.dtype as ComputeDType);
    if (!src) throw new BackendError('gpujs.binary', `op ${op} is not defined for dtype ${a.dtype}`);
    void outDtype;
    return this.k('binary', src, sizeOf(outShape), [this.storageOf(a), this.storageOf(b)], stridedMeta(outShape, [broadcastStrides(a.shape, outShape), broadcastStrides(b.shape, outShape)]));
  }

  where(cond: TensorView, a: TensorView, b: TensorView, outShape: Shape): DataId {
    const strides = [cond, a, b].map((t) => broadcastStrides(t.shape, outShape));
    return this.k('where', WHERE, sizeOf(outShape), [this.storageOf(cond), this.storageOf(a), this.storageOf(b)], stridedMeta(outShape, strides));
  }

  // ---- reductions --------------------------------------------------------------------

  reduce(op: ReduceOp, x: TensorView, axis: number): DataId {
    const outer = prodOf(x.shape, 0, axis);
    const len = x.shape[axis];
    const inner = prodOf(x.shape, axis + 1, x.shape.length);
    const n = outer * inner;
    if (len === 0 && n > 0) {
      if (op === 'sum' || op === 'prod') return this.k('reduce', FILL, n, [], [0, op === 'sum' ? 0 : 1]);
      throw new BackendError('gpujs.reduce', `${op} over an empty axis`);
    }
    return this.k('reduce', reduceKernel(op, x.dtype), n, [this.storageOf(x)], [0, len, inner]);
  }

  // ---- linear algebra ----------------------------------------------------------------

  matmul(a: TensorView, b: TensorView, options: PrimitiveMatmulOptions, outShape: Shape): DataId {
    const r = outShape.length;
    const M = outShape[r - 2];
    const N = outShape[r - 1];
    const K = options.transposeA ? a.shape[a.shape.length - 2] : a.shape[a.shape.length - 1];
    const batchShape = outShape.slice(0, r - 2);
    const batch = sizeOf(batchShape);
    const n = batch * M * N;
    if (K === 0 || n === 0) return this.k('matmul', FILL, n, [], [0, 0]);
    const temps: GpujsStorage[] = [];
    const operand = (t: TensorView): [GpujsStorage, number] => {
      const rows = t.shape[t.shape.length - 2];
      const cols = t.shape[t.shape.length - 1];
      const own = sizeOf(t.shape.slice(0, -2));
      if (own === batch) return [this.storageOf(t), rows * cols];
      if (own === 1) return [this.storageOf(t), 0];
      const full = [...batchShape, rows, cols];
      const tmp = this.k('matmul', COPY_STRIDED, sizeOf(full), [this.storageOf(t)], stridedMeta(full, [broadcastStrides(t.shape, full)]));
      temps.push(tmp);
      return [tmp, rows * cols];
    };
    try {
      const [sa, na] = operand(a);
      const [sb, nb] = operand(b);
      const [sam, sak] = options.transposeA ? [1, M] : [K, 1];
      const [sbk, sbn] = options.transposeB ? [1, K] : [N, 1];
      const lim = this.packedGemms && n * K > this.smallGemmWork ? this.gemmLimits() : undefined;
      const plan = lim && gemmPlan(batch, M, N, K, na ? batch : 1, nb ? batch : 1, lim);
      if (!lim || !plan) return this.k('matmul', MATMUL, n, [sa, sb], [0, M, N, K, na, nb, sam, sak, sbk, sbn]);
      const gk = lim.kernels;
      // A as [batchA * MB rows, Kp texels], B as [batchB * NB rows, Kp texels] (gemm.ts, packKernel)
      const pa = this.packOperand(gk.pack('a'), sa, plan.Kp, (na ? batch : 1) * plan.MB, [M, plan.MB, plan.Kq, K, na, sam, sak], temps);
      const pb = this.packOperand(gk.pack('b'), sb, plan.Kp, (nb ? batch : 1) * plan.NB, [K, plan.MB, plan.NB, N, nb, sbk, sbn], temps);
      if (gk.gemm14 && N % 4 === 0 && n <= this.flatGemmMax) {
        // 1x4 blocks whose output is the flat result, four values per texel (gemm.ts GEMM14_GL1):
        // no unpack pass, and a read takes the texture as is
        const out = this.alloc(n, 'matmul');
        this.send({ t: 'k', id: out.id, n: n / 4, src: finalize(gk.gemm14), ins: [pa.id, pb.id], meta: [n / 4, M, plan.NB, plan.Kq, na ? plan.MB : 0, nb ? plan.NB : 0], flat4: n });
        return out;
      }
      return this.gemm44(gk.variants[this.gemmVariant], gk.unpack, plan, [pa, pb], [plan.Kq, na ? plan.MB : 0, nb ? plan.NB : 0], temps);
    } finally {
      for (const t of temps) this.release(t);
    }
  }

  /**
   * Use the packed GEMMs (gemm.ts) where they fit; false: always the one-output-per-thread
   * kernels (MATMUL, fp8GemmKernel). For tests and benchmarks that compare the two.
   */
  packedGemms = true;

  /**
   * GEMMs of at most this much work (batch * M * N * K) take the one-pass one-output-per-thread
   * kernel even where the packed path fits: the packed path is four passes (pack A, pack B,
   * GEMM, unpack), and for a tiny product their fixed cost is all there is (bit-identical: the
   * same per-output K order). Default: $KILN_GPUJS_SMALL_GEMM, else 32768 (32^3) on a software
   * rasteriser (llvmpipe, SwiftShader: measured there) and 262144 (64^3) on a GPU (an H200
   * through headless-gl with the texture pool: f32 64^3 one-pass 0.4 ms vs packed 0.7; 128^3 0.7
   * vs 0.5; 256^3 2.1 vs 0.7 — before the pool the one-pass kernel won up to 256^3); 0: always packed.
   */
  smallGemmWork = envNumber('KILN_GPUJS_SMALL_GEMM', 32768);

  /**
   * The same for the FP8 block GEMM, which takes the one-pass kernel up to the smaller of the two.
   * Default: $KILN_GPUJS_SMALL_GEMM, else 32768 on a software rasteriser and 262144 (64^3) on a
   * GPU (H200 with the texture pool: FP8 128^3 one-pass 1.1 ms vs packed 0.5).
   */
  smallFp8GemmWork = envNumber('KILN_GPUJS_SMALL_GEMM', 32768);

  /**
   * The packed f32 GEMM's kernel variant (gemm.ts, `GEMM_VARIANTS`): $KILN_GPUJS_GEMM or
   * 'packed'. All variants give the same bits.
   */
  gemmVariant: GemmVariant = gemmVariantFromEnv();

  /**
   * The packed path's limits and kernels: GLSL ES 3.00 on WebGL2 (Chromium), GLSL ES 1.00 on
   * headless-gl's WebGL 1.0 where WEBGL_draw_buffers gives at least 4 render targets; undefined
   * elsewhere (the one-output-per-thread kernels).
   */
  private gemmLimits(): { maxTextureSize: number; maxElements: number; kernels: GemmKernels } | undefined {
    const info = this.page.info;
    const base = { maxTextureSize: info.maxTextureSize, maxElements: MAX_ELEMENTS };
    if (info.mode === 'webgl2') return { ...base, kernels: GEMM_KERNELS_WEBGL2 };
    if (info.mode === 'headlessgl' && (info.maxDrawBuffers ?? 0) >= 4) return { ...base, kernels: GEMM_KERNELS_WEBGL1 };
    return undefined;
  }

  /**
   * f32 GEMMs with at most this many outputs (batch * M * N, N % 4 == 0) take the 1x4-block
   * kernel whose output is the flat result (WebGL 1.0 / headless-gl only: GEMM14_GL1): one pass
   * fewer than the 4x4 blocks + unpack, and a read with no gather pass, at a quarter of the 4x4
   * kernel's reuse per fetch. Default: $KILN_GPUJS_FLAT_GEMM, else 65536 (256 x 256; H200: 256³
   * GEMM pass 0.25 ms vs 0.26 + 0.15 unpack, 128³ 0.5 vs 1.0 ms with the read; at 512³ the flat
   * pass took 1.5 ms vs 0.7); 0: never.
   */
  flatGemmMax = envNumber('KILN_GPUJS_FLAT_GEMM', 256 * 256);

  /**
   * The same for the FP8 block GEMM (GEMM14_FP8_GL1; its fragments find their scale rows once and
   * fetch one B scale per chunk where their four columns share a scale block). Default:
   * $KILN_GPUJS_FLAT_FP8_GEMM, else 65536 (256 x 256; H200, FP8 256^3 + read vs tfjs-webgl f32:
   * 1.11-1.21x with it, 0.87-1.06x with the 4x4 blocks; it was 128 x 128 while the kernel fetched
   * every scale in every chunk: 0.59-0.65x at 256^3).
   */
  flatFp8GemmMax = envNumber('KILN_GPUJS_FLAT_FP8_GEMM', 256 * 256);

  /**
   * Compile the WebGL 1.0 FP8 GEMMs (flat and 4x4-block) for each K loop trip count up to this
   * many 4-value steps (K <= 4 x this), as tfjs-webgl compiles a program per shape: constant trip
   * counts drop the per-step tests and let the GL compiler unroll; the same operations in the
   * same order, and the FP8 partial products are exact in f32, so a compiler that fuses the
   * unrolled multiply-adds cannot change a bit (tested on llvmpipe and the H200). The f32 GEMMs
   * keep one program for every K: unrolled, NVIDIA's compiler fused their multiply-adds, whose
   * products round, and their bits no longer matched the other f32 kernels'. One compiled
   * program per distinct K (a model has a handful). Default: $KILN_GPUJS_SHAPE_KERNELS, else
   * 1024 (K <= 4096); 0: one program for every K.
   */
  shapeKernelsMaxKq = envNumber('KILN_GPUJS_SHAPE_KERNELS', 1024);

  private shapeKernelsFor(Kq: number): boolean {
    return Kq <= this.shapeKernelsMaxKq;
  }

  /**
   * Packed forms of GEMM operands, by source tensor, then by pack kernel and geometry: tensors
   * are immutable, so a weight multiplied again (the next layer call, the backward pass) reuses
   * its packed texture instead of a pack pass; released with the source (tfjs-webgl likewise
   * keeps a tensor packed once it was packed). Counted in `memory()`. $KILN_GPUJS_PACK_CACHE=0: off.
   */
  private readonly packCache = new Map<GpujsStorage, Map<string, GpujsStorage>>();
  packCacheEnabled = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.KILN_GPUJS_PACK_CACHE !== '0';

  /**
   * The packed form of GEMM operand x (a pack pass, or the cached one). A new, uncached pack
   * (caching off, or x is one of this call's temporaries) joins `temps`, released by the caller.
   */
  private packOperand(src: string, x: GpujsStorage, w: number, h: number, meta: number[], temps: GpujsStorage[]): GpujsStorage {
    if (!this.packCacheEnabled || temps.includes(x)) {
      const p = this.pack(src, x, w, h, meta);
      temps.push(p);
      return p;
    }
    let forX = this.packCache.get(x);
    if (!forX) this.packCache.set(x, (forX = new Map()));
    // (the whole kernel text in the key: a few KB hashed per GEMM, nothing next to a GL pass)
    const key = `${w},${h},${meta.join(',')}|${src}`;
    let p = forX.get(key);
    if (!p || p.released) forX.set(key, (p = this.pack(src, x, w, h, meta)));
    return p;
  }

  /** A pack kernel (gemm.ts) into a 2D [w, h]-texel RGBA texture; m = [n, ...meta]. */
  private pack(src: string, x: GpujsStorage, w: number, h: number, meta: number[]): GpujsStorage {
    // gpu.js gives a [w, h] output exactly a w x h texture only for h > 1 (else a near-square one); row 1 is then never read
    h = Math.max(h, 2);
    const out = this.allocPacked(w * h * 4, 'matmul');
    this.send({ t: 'k', id: out.id, n: w * h, src: finalize(src), ins: [x.id], meta: [w * h, ...meta], dims: [w, h] });
    return out;
  }

  /** Packed storage: counted in bytes like any tensor; its size is limited by gemmPlan, not by MAX_ELEMENTS. */
  private allocPacked(floats: number, op: string): GpujsStorage {
    this.check(op);
    this.liveBytes += floats * 4;
    this.liveBuffers += 1;
    return new GpujsStorage(this.nextStorage++, floats, this.id);
  }

  /**
   * The 4x4-block GEMM kernel map (four vec4 outputs) and the unpack into [batch, M, N].
   * `mid` = the kernel's meta after [n, MB, NB]. Block textures are released after the unpack.
   */
  private gemm44(src: string, unpack: string, plan: GemmPlan, ins: GpujsStorage[], mid: number[], temps: GpujsStorage[]): GpujsStorage {
    const blocks = plan.batch * plan.MB * plan.NB;
    const outs = [0, 1, 2, 3].map(() => this.allocPacked(blocks * 4, 'matmul'));
    temps.push(...outs);
    this.send({
      t: 'k',
      id: outs[0].id,
      n: blocks,
      src: finalize(src),
      ins: ins.map((s) => s.id),
      meta: [blocks, plan.MB, plan.NB, ...mid],
      subs: [...GEMM_SUBS],
      outs: outs.slice(1).map((s) => s.id),
    });
    return this.k('matmul', unpack, plan.batch * plan.M * plan.N, outs, [0, plan.M, plan.N, plan.MB, plan.NB]);
  }

  // ---- indexing ----------------------------------------------------------------------

  gather(x: TensorView, axis: number, indices: TensorView): DataId {
    const xs = stridesOf(x.shape);
    const strides = xs.map((s, d) => (d === axis ? 0 : s));
    const meta = stridedMeta(indices.shape, [strides]);
    meta.push(xs[axis]);
    return this.k('gather', GATHER, sizeOf(indices.shape), [this.storageOf(x), this.storageOf(indices)], meta);
  }

  indexSelect(x: TensorView, axis: number, indices: TensorView): DataId {
    const outer = prodOf(x.shape, 0, axis);
    const inner = prodOf(x.shape, axis + 1, x.shape.length);
    const nIdx = sizeOf(indices.shape);
    return this.k('indexSelect', INDEX_SELECT, outer * nIdx * inner, [this.storageOf(x), this.storageOf(indices)], [0, x.shape[axis], nIdx, inner]);
  }

  scatterAdd(base: TensorView, axis: number, indices: TensorView, src: TensorView): DataId {
    const nd = base.shape.length;
    const meta = [0, nd, ...base.shape, ...indices.shape, ...stridesOf(indices.shape), ...stridesOf(src.shape), axis];
    return this.k('scatterAdd', SCATTER_ADD, sizeOf(base.shape), [this.storageOf(base), this.storageOf(indices), this.storageOf(src)], meta);
  }

  indexAdd(base: TensorView, axis: number, indices: TensorView, src: TensorView): DataId {
    const inner = prodOf(base.shape, axis + 1, base.shape.length);
    const meta = [0, base.shape[axis], sizeOf(indices.shape), inner];
    return this.k('indexAdd', INDEX_ADD, sizeOf(base.shape), [this.storageOf(base), this.storageOf(indices), this.storageOf(src)], meta);
  }

  // ---- layout ------------------------------------------------------------------------

  concat(xs: readonly TensorView[], axis: number, outShape: Shape): DataId {
    const inner = prodOf(outShape, axis + 1, outShape.length);
    const outer = prodOf(outShape, 0, axis);
    const parts = xs.map((x) => ({ s: this.storageOf(x), w: x.shape[axis] * inner })).filter((p) => p.w > 0);
    if (parts.length === 0 || outer === 0) return this.k('concat', FILL, sizeOf(outShape), [], [0, 0]);
    if (parts.length === 1) return this.k('concat', COPY, outer * parts[0].w, [parts[0].s], [0, 0]);
    let acc = parts[0];
    const temps: GpujsStorage[] = [];
    try {
      for (let i = 1; i < parts.length; i++) {
        const w = acc.w + parts[i].w;
        const out = this.k('concat', CONCAT2, outer * w, [acc.s, parts[i].s], [0, acc.w, parts[i].w]);
        if (i < parts.length - 1) temps.push(out);
        acc = { s: out, w };
      }
      return acc.s;
    } finally {
      for (const t of temps) this.release(t);
    }
  }

  slice(x: TensorView, begin: readonly number[], size: readonly number[]): DataId {
    const xs = stridesOf(x.shape);
    const meta = stridedMeta(size, [xs]);
    meta[meta.length - 1] = begin.reduce((acc, b, d) => acc + b * xs[d], 0);
    return this.k('slice', COPY_STRIDED, sizeOf(size), [this.storageOf(x)], meta);
  }

  transpose(x: TensorView, perm: readonly number[]): DataId {
    const xs = stridesOf(x.shape);
    const shape = perm.map((p) => x.shape[p]);
    return this.k('transpose', COPY_STRIDED, sizeOf(shape), [this.storageOf(x)], stridedMeta(shape, [perm.map((p) => xs[p])]));
  }

  // ---- casts -------------------------------------------------------------------------

  cast(x: TensorView, dtype: DType, options: PrimitiveCastOptions): DataId {
    const n = sizeOf(x.shape);
    if (x.dtype === dtype) return this.k('cast', COPY, n, [this.storageOf(x)], [0, 0]);
    const src = castKernel(x.dtype, dtype);
    if (src) return this.k('cast', src, n, [this.storageOf(x)], [0]);
    // to f16/bf16/FP8: the GPU encoder where asked (gpuCastEnabled: core's bits but for the sign of
    // an f32 NaN and f32 subnormals, which a shader cannot see), else the exact host path
    const enc = gpuCastEnabled() ? encodeCastKernel(x.dtype, dtype, options.saturate) : undefined;
    if (enc) return this.k('cast', enc, n, [this.storageOf(x)], [0]);
    return this.host([x], [{ dtype, shape: x.shape }], 'cast', (cpu, [v]) => [cpu.cast(v, dtype, options)])[0];
  }

  // ---- FP8 ---------------------------------------------------------------------------

  quantizeBlockwise(x: TensorView, block: readonly [number, number], options: PrimitiveQuantizeOptions): { codes: DataId; scales: DataId } {
    const [rows, cols] = x.shape;
    const scalesShape = [Math.ceil(rows / block[0]), Math.ceil(cols / block[1])];
    const [br, bc] = block;
    const { format, scaleFormat } = options;
    // on the GPU: one thread per block for the scales, then one per element for the codes
    // (bad arguments go to the host path, where the CPU backend reports them)
    if (gpuEncodeEnabled() && x.dtype === 'f32' && (format === 'e4m3' || format === 'e5m2') && (scaleFormat === 'fp32' || scaleFormat === 'ue8m0') && x.shape.length === 2 && Number.isInteger(br) && Number.isInteger(bc) && br > 0 && bc > 0) {
      const nb = scalesShape[0] * scalesShape[1];
      const invMax = Math.fround(1 / (format === 'e4m3' ? E4M3_MAX : E5M2_MAX));
      const scales = this.k('quantizeBlockwise', QUANT_SCALES, nb, [this.storageOf(x)], [0, rows, cols, br, bc, scalesShape[1], invMax, scaleFormat === 'ue8m0' ? 1 : 0, AMAX_FLOOR]);
      const codes = this.k('quantizeBlockwise', quantCodesKernel(format), rows * cols, [this.storageOf(x), scales], [0, cols, br, bc, scalesShape[1]]);
      return { codes, scales };
    }
    const [codes, scales] = this.host([x], [{ dtype: options.format, shape: x.shape }, { dtype: 'f32', shape: scalesShape }], 'quantizeBlockwise', (cpu, [v]) => {
      const r = cpu.quantizeBlockwise(v, block, options);
      return [r.codes, r.scales];
    });
    return { codes, scales };
  }

  matmulFp8(a: QuantizedView, b: QuantizedView, options: PrimitiveFp8GemmOptions): DataId {
    const [M, K] = a.codes.shape;
    const N = b.codes.shape[0];
    if (options.accumulatorMantissaBits === undefined) {
      const n = M * N;
      if (K === 0 || n === 0) return this.k('matmulFp8', FILL, n, [], [0, 0]);
      const nc = options.promotionInterval === Infinity ? Math.max(K, 1) : options.promotionInterval;
      const fa = a.codes.dtype as 'e4m3' | 'e5m2';
      const fb = b.codes.dtype as 'e4m3' | 'e5m2';
      const [as, bs] = [this.storageOf(a.scales), this.storageOf(b.scales)];
      // the packed kernel promotes at texel boundaries: chunks of a multiple of 4 along K (or one chunk)
      const lim = this.packedGemms && n * K > Math.min(this.smallGemmWork, this.smallFp8GemmWork) && (nc >= K || nc % 4 === 0) ? this.gemmLimits() : undefined;
      const plan = lim && gemmPlan(1, M, N, K, 1, 1, lim);
      if (lim && plan) {
        const gk = lim.kernels;
        const temps: GpujsStorage[] = [];
        try {
          const pa = this.packOperand(gk.pack('a', fa), this.storageOf(a.codes), plan.Kp, plan.MB, [M, plan.MB, plan.Kq, K, 0, K, 1], temps);
          const pb = this.packOperand(gk.pack('b', fb), this.storageOf(b.codes), plan.Kp, plan.NB, [K, plan.MB, plan.NB, N, 0, 1, K], temps);
          const ncq = nc >= K ? plan.Kq : nc / 4;
          const shaped = this.shapeKernelsFor(plan.Kq) ? { Kq: plan.Kq, ncq } : undefined;
          const meta = [plan.Kq, ncq, M, N, a.block[0], b.block[0], a.block[1], b.block[1], Math.ceil(K / a.block[1]), Math.ceil(K / b.block[1])];
          if (gk.gemm14Fp8 && N % 4 === 0 && n <= this.flatFp8GemmMax) {
            // the flat result, four values per texel (GEMM14_FP8_GL1; see the f32 matmul)
            const out = this.alloc(n, 'matmulFp8');
            this.send({ t: 'k', id: out.id, n: n / 4, src: finalize(gk.gemm14Fp8(shaped)), ins: [pa.id, pb.id, as.id, bs.id], meta: [n / 4, plan.MB, plan.NB, ...meta], flat4: n });
            return out;
          }
          return this.gemm44(shaped && gk.gemmFp8For ? gk.gemmFp8For(shaped) : gk.gemmFp8, gk.unpack, plan, [pa, pb, as, bs], meta, temps);
        } finally {
          for (const t of temps) this.release(t);
        }
      }
      const meta = [0, M, N, K, nc, a.block[0], b.block[0], a.block[1], b.block[1], Math.ceil(K / a.block[1]), Math.ceil(K / b.block[1])];
      return this.k('matmulFp8', fp8GemmKernel(fa, fb), n, [this.storageOf(a.codes), this.storageOf(b.codes), as, bs], meta);
    }
    // the limited-precision accumulator model (a numerics study tool) runs on the host
    return this.host([a.codes, a.scales, b.codes, b.scales], [{ dtype: 'f32', shape: [M, N] }], 'matmulFp8', (cpu, [ac, as, bc, bs]) => [
      cpu.matmulFp8({ codes: ac, scales: as, block: a.block }, { codes: bc, scales: bs, block: b.block }, options),
    ])[0];
  }

  /** Waits for everything queued so far. */
  async sync(): Promise<void> {
    this.flush();
    await this.tail;
    this.check('sync');
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.pending = [];
    this.cpu?.dispose?.();
    const page = this.page;
    void this.tail.finally(() => page.close());
  }
}

function envNumber(name: string, dflt: number): number {
  const v = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.[name];
  if (v === undefined || v === '') return dflt;
  const x = Number(v);
  if (!Number.isFinite(x) || x < 0) throw new BackendError('gpujs', `${name}=${JSON.stringify(v)} is not a non-negative number`);
  return x;
}

function gemmVariantFromEnv(): GemmVariant {
  const v = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.KILN_GPUJS_GEMM || 'packed';
  if (!(GEMM_VARIANTS as readonly string[]).includes(v)) throw new BackendError('gpujs', `KILN_GPUJS_GEMM=${JSON.stringify(v)}: one of ${GEMM_VARIANTS.join(', ')}`);
  return v as GemmVariant;
}

function prodOf(shape: Shape, from: number, to: number): number {
  let p = 1;
  for (let i = from; i < to; i++) p *= shape[i];
  return p;
}

/** Strides of `shape` broadcast to `out` (0 along broadcast dims). */
export function broadcastStrides(shape: Shape, out: Shape): number[] {
  const s = stridesOf(shape);
  const off = out.length - shape.length;
  return out.map((_, d) => (d < off || shape[d - off] === 1 ? 0 : s[d - off]));
}

/** [n, nd, dims, strides of each operand, base offset of each operand]. */
export function stridedMeta(shape: Shape, strides: readonly (readonly number[])[]): number[] {
  return [0, shape.length, ...shape, ...strides.flat(), ...strides.map(() => 0)];
}

/** The code `fill` stores: integer dtypes truncate, low-precision floats store their code. */
function fillCode(dtype: DType, value: number): number {
  switch (dtype) {
    case 'f32':
      return value;
    case 'i32':
      return Number.isFinite(value) ? Math.trunc(value) | 0 : 0;
    case 'u8':
      return (Number.isFinite(value) ? Math.trunc(value) : 0) & 0xff;
    case 'bool':
      return value !== 0 ? 1 : 0;
    default: {
      const codes = allocStorage(dtype, 1);
      codes[0] = 0;
      return encodeCode(dtype, value);
    }
  }
}

import { encodeFp8Value, f32ToBf16Bits, f32ToF16Bits } from '@kiln/core';
function encodeCode(dtype: DType, value: number): number {
  if (dtype === 'f16') return f32ToF16Bits(Math.fround(value));
  if (dtype === 'bf16') return f32ToBf16Bits(Math.fround(value));
  return encodeFp8Value(Math.fround(value), dtype as 'e4m3' | 'e5m2', false);
}

function decodeCodes(b64: string, dtype: DType, n: number): StorageArray {
  return f32Codes(b64 ? new Float32Array(b64ToBytes(b64).buffer) : new Float32Array(0), dtype, n);
}

function f32Codes(f: Float32Array, dtype: DType, n: number): StorageArray {
  if (dtype === 'f32') return f;
  const out = allocStorage(dtype, n);
  // i32 saturates: 2^31 - 1 is stored as the float 2^31
  if (dtype === 'i32') for (let i = 0; i < n; i++) out[i] = f[i] >= 2147483647 ? 2147483647 : f[i];
  else for (let i = 0; i < n; i++) out[i] = f[i];
  return out;
}

function bytesToB64(u8: Uint8Array): string {
  const B = (globalThis as { Buffer?: { from(a: Uint8Array): { toString(e: string): string } } }).Buffer;
  if (B) return B.from(u8).toString('base64');
  let s = '';
  for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode(...u8.subarray(i, i + 0x8000));
  return btoa(s);
}

function b64ToBytes(s: string): Uint8Array {
  const B = (globalThis as { Buffer?: { from(a: string, e: string): Uint8Array } }).Buffer;
  if (B) {
    const b = B.from(s, 'base64');
    return new Uint8Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  }
  const bin = atob(s);
  const u8 = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) u8[i] = bin.charCodeAt(i);
  return u8;
}
