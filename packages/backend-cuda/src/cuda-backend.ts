import {
  BINARY_OPS,
  BackendError,
  OutOfMemoryError,
  REDUCE_OPS,
  UNARY_OPS,
  allocStorage,
  dtypeInfo,
  encodeFp8Value,
  f32ToBf16Bits,
  f32ToF16Bits,
  sizeOf,
  stridesOf,
  tensorFromDataId,
  type AdamwHyper,
  type Backend,
  type BackendMemory,
  type BinaryOp,
  type ComputeDType,
  type DType,
  type DataId,
  type DeviceOptimizerBackend,
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
  type Tensor,
  type TensorView,
  type UnaryOp,
} from '@kiln/core';
import { loadAddon, type CudaAddon, type Capabilities, type DeviceProps, type Ptr, type StridedView } from './addon.js';
import { broadcastStrides, collapseDims } from './strided.js';
import { CudaStorage } from './storage.js';
import { installProfiler } from './profile.js';

/** Which kernel runs `matmulFp8` for DeepSeek-V3's recipe shapes (E4M3, 1x128 x 128x128, promotion 128). */
export type Fp8GemmPath = 'tensorcore' | 'cublaslt' | 'exact';
const FP8_PATH_CODE: Record<Fp8GemmPath, number> = { exact: 0, tensorcore: 1, cublaslt: 2 };
const FP8_PATH_NAME = ['exact', 'tensorcore', 'cublaslt'] as const;

export interface CudaBackendOptions {
  /** Device ordinal (default: KILN_LOCAL_RANK, else 0). */
  readonly device?: number;
  /**
   * FP8 GEMM kernel for recipe shapes: kiln's Hopper WGMMA kernel (default on sm_90),
   * cuBLASLt's blockwise FP8 matmul, or the exact CUDA-core kernel (bit-exact with the CPU
   * reference). Other shapes and accumulator emulation always take the exact kernel.
   */
  readonly fp8Gemm?: Fp8GemmPath;
  /** f32 GEMM through cuBLASLt when it loads (default true); false uses kiln's own kernel. */
  readonly useCublasLt?: boolean;
}

const DTYPE_CODE: Record<DType, number> = { f32: 0, f16: 1, bf16: 2, e4m3: 3, e5m2: 4, i32: 5, u8: 6, bool: 7 };
const UNARY_CODE = new Map<UnaryOp, number>(UNARY_OPS.map((op, i) => [op, i]));
const BINARY_CODE = new Map<BinaryOp, number>(BINARY_OPS.map((op, i) => [op, i]));
const REDUCE_CODE = new Map<ReduceOp, number>(REDUCE_OPS.map((op, i) => [op, i]));

let nextBackendId = 1;

/** Frees device memory of storages that were never released (a safety net, not the mechanism). */
const leaks = new FinalizationRegistry<{ addon: CudaAddon; ptr: Ptr; bytes: number }>(({ addon, ptr, bytes }) => {
  try {
    addon.free(ptr, bytes);
  } catch {
    /* the process may be tearing down */
  }
});

/** Translates the addon's errors (plain Errors with a `code`) into kiln's typed errors. */
function rethrow(op: string, e: unknown): never {
  const err = e as Error & { code?: string; requestedBytes?: number; freeBytes?: number };
  if (err?.code === 'KILN_CUDA_OOM') throw new OutOfMemoryError(`cuda.${op}`, err.message);
  if (err?.code === 'KILN_CUDA_ERROR' || err?.code === 'KILN_CUDA_UNSUPPORTED') throw new BackendError(`cuda.${op}`, err.message);
  throw e;
}

/**
 * kiln's CUDA backend: device-resident tensors in a stream-ordered pool, every primitive as a
 * CUDA kernel (native/kernels), f32 GEMM through cuBLASLt, FP8 block GEMM through kiln's
 * Hopper kernel or cuBLASLt. All work is queued on one stream; only reads synchronise.
 */
export class CudaBackend implements Backend, DeviceOptimizerBackend {
  readonly name = 'cuda';
  readonly device: DeviceInfo;
  readonly props: DeviceProps;
  readonly capabilities: Capabilities;
  readonly addon: CudaAddon;
  readonly fused: FusedKernels;
  /** FP8 GEMM path per recipe-shaped call; `lastFp8Path` says which one the last call took. */
  fp8Gemm: Fp8GemmPath;
  lastFp8Path: Fp8GemmPath = 'exact';
  private readonly id = nextBackendId++;
  private readonly useLt: boolean;
  private liveBytes = 0;
  private liveBuffers = 0;
  private disposed = false;

  constructor(options: CudaBackendOptions = {}) {
    const load = loadAddon();
    if (!load.ok) throw new BackendError('cuda', load.reason);
    this.addon = load.addon;
    const probe = this.addon.probe();
    if (!probe.ok) throw new BackendError('cuda', probe.reason ?? 'no CUDA device');
    const ordinal = options.device ?? Number(process.env.KILN_LOCAL_RANK ?? 0);
    try {
      this.props = this.addon.init(ordinal);
    } catch (e) {
      rethrow('init', e);
    }
    this.capabilities = this.addon.capabilities();
    this.useLt = options.useCublasLt ?? true;
    this.fp8Gemm = options.fp8Gemm ?? (this.capabilities.fp8GemmSm90 ? 'tensorcore' : this.capabilities.cublasLt ? 'cublaslt' : 'exact');
    this.device = {
      backend: 'cuda',
      name: this.props.name,
      accelerated: true,
      details: {
        computeCapability: `${this.props.major}.${this.props.minor}`,
        multiprocessors: this.props.multiProcessorCount,
        memoryBytes: this.props.totalGlobalMem,
        driverVersion: probe.driverVersion,
        runtimeVersion: probe.runtimeVersion,
        cublasLt: this.capabilities.cublasLt ? this.capabilities.cublasLtVersion || true : this.capabilities.cublasLtReason,
        fp8GemmSm90: this.capabilities.fp8GemmSm90,
        fp8Gemm: this.fp8Gemm,
        // The tensor-core FP8 paths accumulate each 128-wide K block in Hopper's limited
        // accumulator (~14 bits kept, DeepSeek-V3 §3.3.2). Model: an MMA step aligns its 32
        // products to the largest and keeps 2^-13 of it (<= 32·2^-13 = 2^-8 of the step's
        // Σ|a·b| when one product dominates), and each of the chunk's 4 steps rounds the partial
        // (2^-13 each): |error| <= (2^-8 + 2^-11)·Σ|a·b|. Measured on H100: 7.5e-5 on
        // gpu.test.ts's data, 7.4e-4 (2^-10.4) on the conformance recipe case (outlier products).
        ...(this.fp8Gemm === 'exact' ? {} : { fp8GemmRelativeError: 2 ** -8 + 2 ** -11 }),
      },
    };
    const a = this.addon;
    this.fused = {
      softmax: (x) => this.wrap(() => a.softmax(this.ptr(x), sizeOf(x.shape) / lastDim(x.shape), lastDim(x.shape), false), sizeOf(x.shape) * 4, 'softmax'),
      logSoftmax: (x) => this.wrap(() => a.softmax(this.ptr(x), sizeOf(x.shape) / lastDim(x.shape), lastDim(x.shape), true), sizeOf(x.shape) * 4, 'logSoftmax'),
      rmsNorm: (x, w, eps) => this.wrap(() => a.rmsNorm(this.ptr(x), this.ptr(w), sizeOf(x.shape) / lastDim(x.shape), lastDim(x.shape), eps), sizeOf(x.shape) * 4, 'rmsNorm'),
      swiglu: (g, u) => this.wrap(() => a.swiglu(this.ptr(g), this.ptr(u), sizeOf(g.shape)), sizeOf(g.shape) * 4, 'swiglu'),
    };
    if (process.env.KILN_CUDA_PROFILE === '1') installProfiler(this);
  }

  // ---- storage ------------------------------------------------------------------------------

  /** The device storage behind a tensor of this backend (for collectives and interop). */
  storageOf(t: TensorView): CudaStorage {
    const s = t.dataId as CudaStorage;
    if (!(s instanceof CudaStorage) || s.backendId !== this.id) {
      throw new BackendError('cuda', 'tensor does not live on this CUDA backend: move it with `toBackend(tensor, backend)` (a copy through the host) first');
    }
    if (s.released) throw new BackendError('cuda', 'tensor storage was released');
    return s;
  }

  /** Wraps storage this backend allocated (e.g. a collective's output) in a new Tensor. */
  wrapStorage(storage: CudaStorage, shape: Shape, dtype: DType): Tensor {
    return tensorFromDataId(this, storage, shape, dtype);
  }

  /** Allocates uninitialised device storage of `bytes` (collectives write into it). */
  allocStorage(bytes: number): CudaStorage {
    return this.adopt(this.call('alloc', () => this.addon.alloc(bytes)), bytes);
  }

  private ptr(t: TensorView): Ptr {
    return this.storageOf(t).ptr;
  }

  private adopt(ptr: Ptr, bytes: number): CudaStorage {
    const s = new CudaStorage(ptr, bytes, this.id);
    this.liveBytes += bytes;
    this.liveBuffers += 1;
    leaks.register(s, { addon: this.addon, ptr, bytes }, s);
    return s;
  }

  private call<T>(op: string, fn: () => T): T {
    if (this.disposed) throw new BackendError(`cuda.${op}`, 'the CUDA backend was disposed');
    try {
      return fn();
    } catch (e) {
      rethrow(op, e);
    }
  }

  private wrap(fn: () => Ptr, bytes: number, op: string): CudaStorage {
    return this.adopt(this.call(op, fn), bytes);
  }

  write(values: StorageArray, dtype: DType, shape: Shape): DataId {
    const bytes = sizeOf(shape) * dtypeInfo(dtype).bytes;
    const s = this.wrap(() => this.addon.alloc(bytes), bytes, 'write');
    this.call('write', () => this.addon.upload(s.ptr, values));
    return s;
  }

  async read(view: TensorView): Promise<StorageArray> {
    const out = allocStorage(view.dtype, sizeOf(view.shape));
    const ptr = this.ptr(view);
    try {
      await this.addon.downloadAsync(ptr, out);
    } catch (e) {
      rethrow('read', e);
    }
    return out;
  }

  readSync(view: TensorView): StorageArray {
    const out = allocStorage(view.dtype, sizeOf(view.shape));
    this.call('readSync', () => this.addon.download(this.ptr(view), out));
    return out;
  }

  release(dataId: DataId): void {
    const s = dataId as CudaStorage;
    if (!(s instanceof CudaStorage) || s.released) return;
    s.released = true;
    leaks.unregister(s);
    this.liveBytes -= s.bytes;
    this.liveBuffers -= 1;
    if (!this.disposed) this.addon.free(s.ptr, s.bytes);
  }

  memory(): BackendMemory {
    return { bytes: this.liveBytes, buffers: this.liveBuffers };
  }

  /** Device memory as the driver sees it (pool included). */
  deviceMemory(): { freeBytes: number; totalBytes: number; liveBytes: number; liveBuffers: number } {
    return this.call('memInfo', () => this.addon.memInfo());
  }

  /** Waits until all queued GPU work is done. */
  synchronize(): void {
    this.call('synchronize', () => this.addon.synchronize());
  }

  // ---- creation -----------------------------------------------------------------------------

  fill(shape: Shape, dtype: DType, value: number): DataId {
    const n = sizeOf(shape);
    const info = dtypeInfo(dtype);
    return this.wrap(() => this.addon.fill(info.bytes, fillCode(dtype, value), n), n * info.bytes, 'fill');
  }

  random(shape: Shape, spec: RandomSpec): DataId {
    const n = sizeOf(shape);
    return this.wrap(() => this.addon.random(spec.distribution === 'uniform' ? 0 : 1, spec.seed >>> 0, spec.a, spec.b, n), n * 4, 'random');
  }

  // ---- elementwise --------------------------------------------------------------------------

  unary(op: UnaryOp, x: TensorView, outDtype: ComputeDType): DataId {
    const n = sizeOf(x.shape);
    return this.wrap(
      () => this.addon.unary(UNARY_CODE.get(op)!, DTYPE_CODE[x.dtype], DTYPE_CODE[outDtype], this.ptr(x), n),
      n * dtypeInfo(outDtype).bytes,
      'unary',
    );
  }

  binary(op: BinaryOp, a: TensorView, b: TensorView, outShape: Shape, outDtype: ComputeDType): DataId {
    const n = sizeOf(outShape);
    const contiguous = sizeOf(a.shape) === n && sizeOf(b.shape) === n && a.shape.length === outShape.length && b.shape.length === outShape.length;
    const [av, bv] = contiguous ? [EMPTY_VIEW, EMPTY_VIEW] : collapseDims(outShape, [broadcastStrides(a.shape, outShape), broadcastStrides(b.shape, outShape)]);
    return this.wrap(
      () => this.addon.binary(BINARY_CODE.get(op)!, DTYPE_CODE[a.dtype], DTYPE_CODE[outDtype], this.ptr(a), av, this.ptr(b), bv, n, contiguous),
      n * dtypeInfo(outDtype).bytes,
      'binary',
    );
  }

  where(cond: TensorView, a: TensorView, b: TensorView, outShape: Shape): DataId {
    const n = sizeOf(outShape);
    const eb = dtypeInfo(a.dtype).bytes;
    const [cv, av, bv] = collapseDims(outShape, [broadcastStrides(cond.shape, outShape), broadcastStrides(a.shape, outShape), broadcastStrides(b.shape, outShape)]);
    return this.wrap(() => this.addon.where(eb, this.ptr(cond), cv, this.ptr(a), av, this.ptr(b), bv, n), n * eb, 'where');
  }

  // ---- reductions ---------------------------------------------------------------------------

  reduce(op: ReduceOp, x: TensorView, axis: number): DataId {
    const outer = prodOf(x.shape, 0, axis);
    const len = x.shape[axis];
    const inner = prodOf(x.shape, axis + 1, x.shape.length);
    const outBytes = op === 'argmax' || op === 'argmin' ? 4 : dtypeInfo(x.dtype).bytes;
    return this.wrap(
      () => this.addon.reduce(REDUCE_CODE.get(op)!, DTYPE_CODE[x.dtype], outBytes, this.ptr(x), outer, len, inner),
      outer * inner * outBytes,
      'reduce',
    );
  }

  // ---- linear algebra -----------------------------------------------------------------------

  matmul(a: TensorView, b: TensorView, options: PrimitiveMatmulOptions, outShape: Shape): DataId {
    const r = outShape.length;
    const M = outShape[r - 2];
    const N = outShape[r - 1];
    const K = options.transposeA ? a.shape[a.shape.length - 2] : a.shape[a.shape.length - 1];
    const batchShape = outShape.slice(0, r - 2);
    const batch = sizeOf(batchShape);
    const temps: CudaStorage[] = [];
    const operand = (t: TensorView): [Ptr, number] => {
      const rows = t.shape[t.shape.length - 2];
      const cols = t.shape[t.shape.length - 1];
      const own = sizeOf(t.shape.slice(0, -2));
      if (own === batch) return [this.ptr(t), rows * cols];
      if (own === 1) return [this.ptr(t), 0];
      // Partial broadcast of batch dims: materialise the operand at the output's batch shape.
      const full = [...batchShape, rows, cols];
      const [view] = collapseDims(full, [broadcastStrides(t.shape, full)]);
      const eb = dtypeInfo(t.dtype).bytes;
      const tmp = this.wrap(() => this.addon.stridedCopy(eb, this.ptr(t), view, sizeOf(full)), sizeOf(full) * eb, 'matmul');
      temps.push(tmp);
      return [tmp.ptr, rows * cols];
    };
    try {
      const [pa, sa] = operand(a);
      const [pb, sb] = operand(b);
      // x [..., M, K] times a shared weight: one GEMM of (batch·M) rows, not a batched one
      // with a zero stride (which GEMM libraries run far slower).
      const fold = batch > 1 && sb === 0 && sa === M * K && !options.transposeA;
      return this.wrap(
        () =>
          fold
            ? this.addon.matmul(DTYPE_CODE[a.dtype], pa, pb, 1, 0, 0, batch * M, N, K, false, options.transposeB, this.useLt)
            : this.addon.matmul(DTYPE_CODE[a.dtype], pa, pb, batch, sa, sb, M, N, K, options.transposeA, options.transposeB, this.useLt),
        batch * M * N * 4,
        'matmul',
      );
    } finally {
      for (const t of temps) this.release(t);
    }
  }

  // ---- indexing -----------------------------------------------------------------------------

  gather(x: TensorView, axis: number, indices: TensorView): DataId {
    const n = sizeOf(indices.shape);
    const eb = dtypeInfo(x.dtype).bytes;
    const xs = stridesOf(x.shape);
    const strides = xs.map((s, d) => (d === axis ? 0 : s));
    const view: StridedView = [0, indices.shape.length, ...indices.shape, ...strides];
    return this.wrap(() => this.addon.gather(eb, this.ptr(x), view, xs[axis], this.ptr(indices), n), n * eb, 'gather');
  }

  indexSelect(x: TensorView, axis: number, indices: TensorView): DataId {
    const eb = dtypeInfo(x.dtype).bytes;
    const outer = prodOf(x.shape, 0, axis);
    const inner = prodOf(x.shape, axis + 1, x.shape.length);
    const nIdx = sizeOf(indices.shape);
    return this.wrap(
      () => this.addon.indexSelect(eb, this.ptr(x), outer, x.shape[axis], inner, this.ptr(indices), nIdx),
      outer * nIdx * inner * eb,
      'indexSelect',
    );
  }

  scatterAdd(base: TensorView, axis: number, indices: TensorView, src: TensorView): DataId {
    const bytes = sizeOf(base.shape) * dtypeInfo(base.dtype).bytes;
    const bs = stridesOf(base.shape);
    const view: StridedView = [0, indices.shape.length, ...indices.shape, ...bs.map((s, d) => (d === axis ? 0 : s))];
    return this.wrap(
      () => this.addon.scatterAdd(DTYPE_CODE[base.dtype], this.ptr(base), bytes, view, bs[axis], this.ptr(indices), this.ptr(src), sizeOf(indices.shape)),
      bytes,
      'scatterAdd',
    );
  }

  indexAdd(base: TensorView, axis: number, indices: TensorView, src: TensorView): DataId {
    const bytes = sizeOf(base.shape) * dtypeInfo(base.dtype).bytes;
    const outer = prodOf(base.shape, 0, axis);
    const inner = prodOf(base.shape, axis + 1, base.shape.length);
    return this.wrap(
      () => this.addon.indexAdd(DTYPE_CODE[base.dtype], this.ptr(base), bytes, outer, base.shape[axis], inner, this.ptr(indices), sizeOf(indices.shape), this.ptr(src)),
      bytes,
      'indexAdd',
    );
  }

  // ---- layout -------------------------------------------------------------------------------

  concat(xs: readonly TensorView[], axis: number, outShape: Shape): DataId {
    const eb = dtypeInfo(xs[0].dtype).bytes;
    const total = sizeOf(outShape);
    const out = this.wrap(() => this.addon.alloc(total * eb), total * eb, 'concat');
    const os = stridesOf(outShape);
    let at = 0;
    for (const x of xs) {
      const n = sizeOf(x.shape);
      if (n > 0) {
        const [dst, src] = collapseDims(x.shape, [os, stridesOf(x.shape)]);
        dst[0] = at * os[axis];
        this.call('concat', () => this.addon.stridedCopyTo(eb, this.ptr(x), src, out.ptr, dst, n));
      }
      at += x.shape[axis];
    }
    return out;
  }

  slice(x: TensorView, begin: readonly number[], size: readonly number[]): DataId {
    const eb = dtypeInfo(x.dtype).bytes;
    const xs = stridesOf(x.shape);
    const n = sizeOf(size);
    const [view] = collapseDims(size, [xs]);
    view[0] = begin.reduce((acc, b, d) => acc + b * xs[d], 0);
    return this.wrap(() => this.addon.stridedCopy(eb, this.ptr(x), view, n), n * eb, 'slice');
  }

  transpose(x: TensorView, perm: readonly number[]): DataId {
    const eb = dtypeInfo(x.dtype).bytes;
    const xs = stridesOf(x.shape);
    const shape = perm.map((p) => x.shape[p]);
    const n = sizeOf(shape);
    const [view] = collapseDims(shape, [perm.map((p) => xs[p])]);
    return this.wrap(() => this.addon.stridedCopy(eb, this.ptr(x), view, n), n * eb, 'transpose');
  }

  // ---- casts --------------------------------------------------------------------------------

  cast(x: TensorView, dtype: DType, options: PrimitiveCastOptions): DataId {
    const n = sizeOf(x.shape);
    return this.wrap(() => this.addon.cast(DTYPE_CODE[x.dtype], DTYPE_CODE[dtype], options.saturate, this.ptr(x), n), n * dtypeInfo(dtype).bytes, 'cast');
  }

  // ---- FP8 ----------------------------------------------------------------------------------

  quantizeBlockwise(x: TensorView, block: readonly [number, number], options: PrimitiveQuantizeOptions): { codes: DataId; scales: DataId } {
    const [rows, cols] = x.shape;
    const nScales = Math.ceil(rows / block[0]) * Math.ceil(cols / block[1]);
    const [codes, scales] = this.call('quantizeBlockwise', () =>
      this.addon.quantizeBlockwise(this.ptr(x), rows, cols, block[0], block[1], DTYPE_CODE[options.format], options.scaleFormat === 'ue8m0' ? 1 : 0),
    );
    return { codes: this.adopt(codes, rows * cols), scales: this.adopt(scales, nScales * 4) };
  }

  matmulFp8(a: QuantizedView, b: QuantizedView, options: PrimitiveFp8GemmOptions): DataId {
    const [M, K] = a.codes.shape;
    const N = b.codes.shape[0];
    const nc = options.promotionInterval;
    const emulate = options.accumulatorMantissaBits !== undefined;
    const [out, taken] = this.call('matmulFp8', () =>
      this.addon.fp8Gemm(
        this.ptr(a.codes), this.ptr(a.scales), DTYPE_CODE[a.codes.dtype], a.block[0], a.block[1],
        this.ptr(b.codes), this.ptr(b.scales), DTYPE_CODE[b.codes.dtype], b.block[0], b.block[1],
        M, N, K,
        nc === Infinity ? 0 : nc,
        emulate ? options.accumulatorMantissaBits! : -1,
        options.accumulatorGroupSize ?? 1,
        options.accumulatorRounding === 'nearest' ? 1 : 0,
        FP8_PATH_CODE[this.fp8Gemm],
      ),
    );
    this.lastFp8Path = FP8_PATH_NAME[taken];
    return this.adopt(out, M * N * 4);
  }

  /**
   * MoE expert GEMM in one launch (kiln's sm90 grouped kernel, DeepSeek-V3's FP8 recipe):
   * rows of `a` sorted by expert, group g owning rows [offsets[g], offsets[g+1]).
   * a: codes e4m3 [M, K] + scales f32 [M, K/128]; b: codes e4m3 [G, N, K] + scales f32
   * [G, N/128, K/128]; groupOffsets: i32 [G+1]. Returns f32 [M, N]; rows in no group are 0.
   * With `masked`, a is [G, Mmax, K] (+ scales [G, Mmax, K/128]) and groupOffsets is replaced by
   * i32 valid-row counts [G]; the result is [G, Mmax, N].
   */
  groupedMatmulFp8(aCodes: Tensor, aScales: Tensor, bCodes: Tensor, bScales: Tensor, groups: Tensor, options: { masked?: boolean; expectedM?: number } = {}): Tensor {
    const masked = options.masked ?? false;
    const [G, N, K] = bCodes.shape;
    if (aCodes.dtype !== 'e4m3' || bCodes.dtype !== 'e4m3') throw new BackendError('cuda.groupedMatmulFp8', `codes must be e4m3, got a ${aCodes.dtype}, b ${bCodes.dtype}`);
    if (bCodes.shape.length !== 3) throw new BackendError('cuda.groupedMatmulFp8', `b codes must be [G, N, K], got [${bCodes.shape.join(', ')}]`);
    if (aCodes.shape[aCodes.shape.length - 1] !== K) throw new BackendError('cuda.groupedMatmulFp8', `a has K = ${aCodes.shape[aCodes.shape.length - 1]}, b has K = ${K}`);
    if (groups.dtype !== 'i32' || sizeOf(groups.shape) !== (masked ? G : G + 1)) {
      throw new BackendError('cuda.groupedMatmulFp8', `groups must be i32 [${masked ? G : G + 1}], got ${groups.dtype} [${groups.shape.join(', ')}]`);
    }
    const rows = masked ? aCodes.shape[1] : aCodes.shape[0];
    const outShape = masked ? [G, rows, N] : [rows, N];
    const out = this.wrap(
      () => this.addon.fp8GroupedGemm(masked ? 1 : 0, this.ptr(aCodes), this.ptr(aScales), this.ptr(bCodes), this.ptr(bScales), this.ptr(groups), G, rows, N, K, options.expectedM ?? rows),
      sizeOf(outShape) * 4,
      'groupedMatmulFp8',
    );
    return this.wrapStorage(out, outShape, 'f32');
  }

  /**
   * The optimizer's update on the device, in place on `master` (f32) and the moments `m`, `v`
   * (f32 or bf16), with the host optimizer's arithmetic (bit-identical given the same gradient).
   * The tensors are the optimizer's own state: nothing else may share their storage.
   */
  adamwStep(master: Tensor, m: Tensor, v: Tensor, grad: Tensor, h: AdamwHyper): void {
    if (master.dtype !== 'f32' || grad.dtype !== 'f32') throw new BackendError('cuda.adamwStep', `master and grad must be f32, got ${master.dtype}, ${grad.dtype}`);
    if (m.dtype !== v.dtype || (m.dtype !== 'f32' && m.dtype !== 'bf16')) throw new BackendError('cuda.adamwStep', `moments must both be f32 or bf16, got ${m.dtype}, ${v.dtype}`);
    const n = sizeOf(master.shape);
    for (const t of [m, v, grad]) if (sizeOf(t.shape) !== n) throw new BackendError('cuda.adamwStep', `sizes differ: master ${n}, got [${t.shape.join(', ')}]`);
    this.call('adamwStep', () =>
      this.addon.adamw(this.ptr(master), this.ptr(m), this.ptr(v), this.ptr(grad), n, m.dtype === 'bf16' ? 1 : 0, h.beta1, h.beta2, h.bc1, h.bc2, h.eps, h.lr, h.decay, h.gradScale ?? 1),
    );
  }

  /** Σ x² over f32 tensors, accumulated in double on the device, with one readback. */
  sumSquares(ts: readonly Tensor[]): number {
    for (const t of ts) if (t.dtype !== 'f32') throw new BackendError('cuda.sumSquares', `tensors must be f32, got ${t.dtype}`);
    return this.call('sumSquares', () => this.addon.sumSquares(ts.map((t) => this.ptr(t)), ts.map((t) => sizeOf(t.shape))));
  }

  dispose(): void {
    if (this.disposed) return;
    try {
      this.addon.synchronize();
    } catch {
      /* report nothing at teardown */
    }
    this.disposed = true;
  }
}

const EMPTY_VIEW: StridedView = [0, 0];

function lastDim(shape: Shape): number {
  return shape[shape.length - 1];
}

function prodOf(shape: Shape, from: number, to: number): number {
  let p = 1;
  for (let i = from; i < to; i++) p *= shape[i];
  return p;
}

/** The storage code `fill` writes: the value encoded in the dtype's bit format. */
function fillCode(dtype: DType, value: number): number {
  switch (dtype) {
    case 'f32': {
      const f = new Float32Array([value]);
      return new Uint32Array(f.buffer)[0];
    }
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
