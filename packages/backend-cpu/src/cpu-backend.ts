import type {
  AttentionKernelArgs,
  Backend,
  BackendMemory,
  BinaryOp,
  ComputeDType,
  DataId,
  DeviceInfo,
  DType,
  FusedKernels,
  PrimitiveCastOptions,
  PrimitiveMatmulOptions,
  PrimitiveQuantizeOptions,
  PrimitiveFp8GemmOptions,
  QuantizedView,
  RandomSpec,
  ReduceOp,
  Shape,
  StorageArray,
  TensorView,
  UnaryOp,
} from '@kiln/core';
import { BackendError, isStorageOf, sizeOf } from '@kiln/core';
import { hostInfo } from './device.js';
import { configureGemm, disposeGemmPool } from './gemm/index.js';
import { binaryKernel } from './kernels/binary.js';
import { castKernel } from './kernels/cast.js';
import { concatKernel } from './kernels/concat.js';
import {
  binaryF64,
  indexAddF64,
  joinWords,
  logSoftmaxF64,
  matmulF64,
  reduceF64,
  rmsNormF64,
  scatterAddF64,
  softmaxF64,
  splitWords,
  swigluF64,
  unaryF64,
  whereF64,
} from './kernels/f64.js';
import { fillKernel } from './kernels/fill.js';
import { disposeFp8Wasm } from './kernels/fp8-wasm.js';
import { matmulFp8Kernel, quantizeKernel, type Fp8Operand } from './kernels/fp8.js';
import { attentionKernel } from './kernels/attention.js';
import { logSoftmaxKernel, rmsNormKernel, softmaxKernel, swigluKernel } from './kernels/fused.js';
import { gatherKernel } from './kernels/gather.js';
import { indexAddKernel } from './kernels/index-add.js';
import { indexSelectKernel } from './kernels/index-select.js';
import { matmulKernel } from './kernels/matmul.js';
import { randomKernel } from './kernels/random.js';
import { reduceKernel } from './kernels/reduce.js';
import { scatterAddKernel, scatterTargets } from './kernels/scatter-add.js';
import { sliceKernel } from './kernels/slice.js';
import { transposeKernel } from './kernels/transpose.js';
import { unaryKernel } from './kernels/unary.js';
import { whereKernel } from './kernels/where.js';
import { clearPool, copyOf, newStorage, poolStats, recycle, setPoolLimit } from './pool.js';
import { CpuData, releasedError } from './storage.js';

export interface CpuBackendOptions {
  /**
   * Threads for large matmuls, the calling thread included (configures the shared GEMM
   * pool). Default: env KILN_CPU_THREADS, else the host's available parallelism.
   */
  readonly threads?: number;
  /**
   * Most bytes of released storage kept for reuse (default 256 MiB; 0 disables). The pool
   * is shared by all CPU backend instances in the realm; the last value set wins.
   */
  readonly poolBytes?: number;
  /**
   * Float64 reference mode (default false): tensors of dtype 'f32' are held in Float64Array
   * and every kernel computes and stores float64, never rounding to f32 (matmul is a plain
   * float64 loop, not the WASM GEMM). `read`/`readSync` (so `values()`/`dataSync()`) of an
   * f32 tensor return a Float64Array. f16/bf16/FP8/int dtypes behave as in the default
   * mode; a cast from f32 to f16/bf16/FP8 (and FP8 quantization) first rounds to f32.
   * Meant for float64 gradient checks (`f32Precision` is then 'f64'); collectives are not
   * supported in this mode.
   */
  readonly float64?: boolean;
}

/**
 * kiln's reference backend: every primitive for every dtype, on host typed arrays.
 * Float math is float64 rounded to f32 on store, which makes it the precision reference
 * the other backends are checked against.
 */
export class CpuBackend implements Backend {
  readonly name = 'cpu';
  readonly device: DeviceInfo;
  readonly fused: FusedKernels;
  /** How f32 tensors are held: 'f32' (default), or 'f64' in the float64 reference mode. */
  readonly f32Precision: 'f32' | 'f64';
  private readonly f64: boolean;
  private bytes = 0;
  private buffers = 0;

  constructor(options: CpuBackendOptions = {}) {
    const host = hostInfo();
    if (options.threads !== undefined) configureGemm({ threads: options.threads });
    const threads = options.threads ?? envThreads() ?? host.threads;
    if (options.poolBytes !== undefined) setPoolLimit(options.poolBytes);
    this.f64 = options.float64 === true;
    this.f32Precision = this.f64 ? 'f64' : 'f32';
    this.device = {
      backend: 'cpu',
      name: `${host.cpuModel} (${threads} thread${threads === 1 ? '' : 's'})${this.f64 ? ', float64 reference mode' : ''}`,
      accelerated: false,
      details: this.f64 ? { simd: host.simd, threads, runtime: host.runtime, float64: true } : { simd: host.simd, threads, runtime: host.runtime },
    };
    if (this.f64) {
      this.fused = {
        softmax: (x) => this.make(softmaxF64(this.arr(x), lastDim(x.shape)), 'f32'),
        logSoftmax: (x) => this.make(logSoftmaxF64(this.arr(x), lastDim(x.shape)), 'f32'),
        rmsNorm: (x, weight, eps) => this.make(rmsNormF64(this.arr(x), this.arr(weight), lastDim(x.shape), eps), 'f32'),
        swiglu: (gate, up) => this.make(swigluF64(this.arr(gate), this.arr(up)), 'f32'),
        attention: (q, k, v, args) => this.attention(q, k, v, args),
      };
      return;
    }
    this.fused = {
      softmax: (x) => this.make(softmaxKernel(this.f32(x), lastDim(x.shape)), 'f32'),
      logSoftmax: (x) => this.make(logSoftmaxKernel(this.f32(x), lastDim(x.shape)), 'f32'),
      rmsNorm: (x, weight, eps) => this.make(rmsNormKernel(this.f32(x), this.f32(weight), lastDim(x.shape), eps), 'f32'),
      swiglu: (gate, up) => this.make(swigluKernel(this.f32(gate), this.f32(up)), 'f32'),
      attention: (q, k, v, args) => this.attention(q, k, v, args),
    };
  }

  /** fused.attention: GEMM tiles with a float64 softmax (a float64 loop in the reference mode); see kernels/attention.ts. */
  private attention(q: TensorView, k: TensorView, v: TensorView, args: AttentionKernelArgs): { out: DataId; logSumExp: DataId } {
    const arr = (x: TensorView) => this.arr(x, 'attention') as Float32Array | Float64Array;
    const r = attentionKernel(arr(q), q.shape, arr(k), k.shape, arr(v), v.shape, args.scale, args.causalOffset, this.f64);
    return { out: this.make(r.out, 'f32'), logSumExp: this.make(r.logSumExp, 'f32') };
  }

  // ---- storage -------------------------------------------------------------------------

  private make(values: StorageArray | Float64Array, dtype: DType): CpuData {
    // float64 mode: an f32 result of a shared (default-mode) kernel is widened, exactly
    if (this.f64 && dtype === 'f32' && values instanceof Float32Array) values = Float64Array.from(values);
    const d = new CpuData(values as StorageArray, dtype);
    this.bytes += d.bytes;
    this.buffers += 1;
    return d;
  }

  /** The host array behind a view (not a copy). */
  private arr(view: TensorView | DataId, op = 'cpu'): StorageArray {
    const id = (view as TensorView).dataId ?? view;
    if (!(id instanceof CpuData)) throw new BackendError(op, 'the tensor does not belong to the cpu backend');
    if (id.released) throw releasedError(op);
    return id.values;
  }

  private f32(view: TensorView): Float32Array {
    return this.arr(view) as Float32Array;
  }

  write(values: StorageArray, dtype: DType, shape: Shape): DataId {
    const n = sizeOf(shape);
    if (this.f64 && dtype === 'f32') {
      if (values.length !== n) throw new BackendError('cpu.write', `${values.length} values for shape [${shape.join(', ')}] (${n} elements)`);
      return this.make(Float64Array.from(values as ArrayLike<number>), dtype);
    }
    let copy: StorageArray;
    if (isStorageOf(dtype, values) && values.length === n) {
      copy = copyOf(values);
    } else {
      if (values.length !== n) throw new BackendError('cpu.write', `${values.length} values for shape [${shape.join(', ')}] (${n} elements)`);
      copy = newStorage(dtype, n);
      copy.set(values);
    }
    return this.make(copy, dtype);
  }

  readSync(view: TensorView): StorageArray {
    return this.arr(view, 'read').slice();
  }

  async read(view: TensorView): Promise<StorageArray> {
    return this.readSync(view);
  }

  release(dataId: DataId): void {
    if (!(dataId instanceof CpuData) || dataId.released) return;
    dataId.released = true;
    this.bytes -= dataId.bytes;
    this.buffers -= 1;
    recycle(dataId.values);
    dataId.values = EMPTY;
  }

  memory(): BackendMemory {
    return { bytes: this.bytes, buffers: this.buffers };
  }

  /** Released buffers held for reuse (not counted by `memory()`). */
  pool(): { bytes: number; buffers: number; limit: number } {
    return poolStats();
  }

  // ---- creation ------------------------------------------------------------------------

  fill(shape: Shape, dtype: DType, value: number): DataId {
    if (this.f64 && dtype === 'f32') return this.make(new Float64Array(sizeOf(shape)).fill(value), dtype);
    return this.make(fillKernel(sizeOf(shape), dtype, value), dtype);
  }

  random(shape: Shape, spec: RandomSpec): DataId {
    return this.make(randomKernel(sizeOf(shape), spec), 'f32');
  }

  // ---- elementwise ---------------------------------------------------------------------

  unary(op: UnaryOp, x: TensorView, outDtype: ComputeDType): DataId {
    if (this.f64 && (x.dtype === 'f32' || outDtype === 'f32')) return this.make(unaryF64(op, this.arr(x, op)), outDtype);
    const out = unaryKernel(op, this.arr(x, op), x.dtype as ComputeDType, outDtype);
    return this.make(out, outDtype);
  }

  binary(op: BinaryOp, a: TensorView, b: TensorView, outShape: Shape, outDtype: ComputeDType): DataId {
    if (this.f64 && (a.dtype === 'f32' || outDtype === 'f32')) {
      const out = binaryF64(op, this.arr(a, op), a.shape, this.arr(b, op), b.shape, outShape, outDtype !== 'f32');
      return this.make(out, outDtype);
    }
    const out = binaryKernel(op, this.arr(a, op), a.shape, this.arr(b, op), b.shape, a.dtype as ComputeDType, outShape, outDtype);
    return this.make(out, outDtype);
  }

  where(cond: TensorView, a: TensorView, b: TensorView, outShape: Shape): DataId {
    if (this.f64 && a.dtype === 'f32') {
      const out = whereF64(this.arr(cond, 'where') as Uint8Array, cond.shape, this.arr(a, 'where'), a.shape, this.arr(b, 'where'), b.shape, outShape);
      return this.make(out, 'f32');
    }
    const out = whereKernel(this.arr(cond, 'where') as Uint8Array, cond.shape, this.arr(a, 'where'), a.shape, this.arr(b, 'where'), b.shape, a.dtype, outShape);
    return this.make(out, a.dtype);
  }

  // ---- reductions ----------------------------------------------------------------------

  reduce(op: ReduceOp, x: TensorView, axis: number): DataId {
    if (this.f64 && x.dtype === 'f32') {
      return this.make(reduceF64(op, this.arr(x, op), x.shape, axis), op === 'argmax' || op === 'argmin' ? 'i32' : 'f32');
    }
    const out = reduceKernel(op, this.arr(x, op), x.shape, axis, x.dtype as ComputeDType);
    return this.make(out, op === 'argmax' || op === 'argmin' ? 'i32' : x.dtype);
  }

  // ---- linear algebra ------------------------------------------------------------------

  matmul(a: TensorView, b: TensorView, options: PrimitiveMatmulOptions, outShape: Shape): DataId {
    if (this.f64 && a.dtype === 'f32') return this.make(matmulF64(this.arr(a, 'matmul'), a.shape, this.arr(b, 'matmul'), b.shape, options, outShape), 'f32');
    const out = matmulKernel(
      this.arr(a, 'matmul') as Float32Array | Int32Array,
      a.shape,
      this.arr(b, 'matmul') as Float32Array | Int32Array,
      b.shape,
      options,
      outShape,
    );
    return this.make(out, a.dtype);
  }

  // ---- indexing ------------------------------------------------------------------------

  gather(x: TensorView, axis: number, indices: TensorView): DataId {
    if (this.isF64(x)) return this.moveWords(x, (w) => gatherKernel(w, x.shape, 'i32', axis, this.arr(indices, 'gather') as Int32Array, indices.shape));
    const out = gatherKernel(this.arr(x, 'gather'), x.shape, x.dtype, axis, this.arr(indices, 'gather') as Int32Array, indices.shape);
    return this.make(out, x.dtype);
  }

  indexSelect(x: TensorView, axis: number, indices: TensorView): DataId {
    if (this.isF64(x)) return this.moveWords(x, (w) => indexSelectKernel(w, x.shape, 'i32', axis, this.arr(indices, 'indexSelect') as Int32Array));
    const out = indexSelectKernel(this.arr(x, 'indexSelect'), x.shape, x.dtype, axis, this.arr(indices, 'indexSelect') as Int32Array);
    return this.make(out, x.dtype);
  }

  scatterAdd(base: TensorView, axis: number, indices: TensorView, src: TensorView): DataId {
    if (this.isF64(base)) {
      const targets = scatterTargets(base.shape, axis, this.arr(indices, 'scatterAdd') as Int32Array, src.shape);
      return this.make(scatterAddF64(this.arr(base, 'scatterAdd'), targets, this.arr(src, 'scatterAdd')), 'f32');
    }
    const out = scatterAddKernel(
      this.arr(base, 'scatterAdd') as Float32Array | Int32Array,
      base.shape,
      axis,
      this.arr(indices, 'scatterAdd') as Int32Array,
      this.arr(src, 'scatterAdd') as Float32Array | Int32Array,
      src.shape,
    );
    return this.make(out, base.dtype);
  }

  indexAdd(base: TensorView, axis: number, indices: TensorView, src: TensorView): DataId {
    if (this.isF64(base)) {
      const out = indexAddF64(this.arr(base, 'indexAdd'), base.shape, axis, this.arr(indices, 'indexAdd') as Int32Array, this.arr(src, 'indexAdd'));
      return this.make(out, 'f32');
    }
    const out = indexAddKernel(
      this.arr(base, 'indexAdd') as Float32Array | Int32Array,
      base.shape,
      axis,
      this.arr(indices, 'indexAdd') as Int32Array,
      this.arr(src, 'indexAdd') as Float32Array | Int32Array,
    );
    return this.make(out, base.dtype);
  }

  // ---- layout --------------------------------------------------------------------------

  concat(xs: readonly TensorView[], axis: number, outShape: Shape): DataId {
    const dtype = xs[0].dtype;
    if (this.isF64(xs[0])) {
      const words = xs.map((x) => splitWords(this.arr(x, 'concat') as unknown as Float64Array));
      const move = (w: 0 | 1) => concatKernel(xs.map((x, i) => ({ values: words[i][w], shape: x.shape })), axis, outShape, 'i32');
      return this.make(joinWords(move(0), move(1)), 'f32');
    }
    const out = concatKernel(xs.map((x) => ({ values: this.arr(x, 'concat'), shape: x.shape })), axis, outShape, dtype);
    return this.make(out, dtype);
  }

  slice(x: TensorView, begin: readonly number[], size: readonly number[]): DataId {
    if (this.isF64(x)) return this.moveWords(x, (w) => sliceKernel(w, x.shape, 'i32', begin, size));
    return this.make(sliceKernel(this.arr(x, 'slice'), x.shape, x.dtype, begin, size), x.dtype);
  }

  transpose(x: TensorView, perm: readonly number[]): DataId {
    if (this.isF64(x)) return this.moveWords(x, (w) => transposeKernel(w, x.shape, 'i32', perm));
    return this.make(transposeKernel(this.arr(x, 'transpose'), x.shape, x.dtype, perm), x.dtype);
  }

  // ---- FP8 -----------------------------------------------------------------------------

  quantizeBlockwise(x: TensorView, block: readonly [number, number], options: PrimitiveQuantizeOptions): { codes: DataId; scales: DataId } {
    const { codes, scales } = quantizeKernel(this.f32Input(x, 'quantizeBlockwise'), x.shape[0], x.shape[1], block, options.format, options.scaleFormat);
    return { codes: this.make(codes, options.format), scales: this.make(scales, 'f32') };
  }

  matmulFp8(a: QuantizedView, b: QuantizedView, options: PrimitiveFp8GemmOptions): DataId {
    const operand = (q: QuantizedView): Fp8Operand => ({
      codes: this.arr(q.codes, 'matmulFp8') as Uint8Array,
      scales: this.f32Input(q.scales, 'matmulFp8'),
      rows: q.codes.shape[0],
      k: q.codes.shape[1],
      block: q.block,
      format: q.codes.dtype as 'e4m3' | 'e5m2',
    });
    return this.make(matmulFp8Kernel(operand(a), operand(b), options), 'f32');
  }

  // ---- casts ---------------------------------------------------------------------------

  cast(x: TensorView, dtype: DType, options: PrimitiveCastOptions): DataId {
    if (this.f64 && x.dtype === 'f32') {
      const v = this.arr(x, 'cast') as unknown as Float64Array;
      if (dtype === 'f32') return this.make(Float64Array.from(v), 'f32');
      // to int/bool: from the float64 value; to f16/bf16/FP8: through its f32 rounding
      const src = dtype === 'i32' || dtype === 'u8' || dtype === 'bool' ? (v as unknown as Float32Array) : Float32Array.from(v);
      return this.make(castKernel(src, 'f32', dtype, options.saturate), dtype);
    }
    // (in float64 mode a cast *to* f32 from another dtype is exact; make() widens it)
    return this.make(castKernel(this.arr(x, 'cast'), x.dtype, dtype, options.saturate), dtype);
  }

  // ---- float64 reference mode helpers ----------------------------------------------------

  private isF64(x: TensorView): boolean {
    return this.f64 && x.dtype === 'f32';
  }

  /** An f32 input of an f32-only kernel (FP8): in float64 mode, rounded to f32. */
  private f32Input(view: TensorView, op: string): Float32Array {
    const v = this.arr(view, op);
    return v instanceof Float32Array ? v : Float32Array.from(v as ArrayLike<number>);
  }

  /** Runs a dtype-agnostic layout kernel on the two 32-bit words of float64 storage. */
  private moveWords(x: TensorView, kernel: (words: Int32Array) => StorageArray): DataId {
    const [lo, hi] = splitWords(this.arr(x) as unknown as Float64Array);
    return this.make(joinWords(kernel(lo) as Int32Array, kernel(hi) as Int32Array), 'f32');
  }

  dispose(): void {
    // Storage is garbage-collected memory: drop the recycled buffers and stop the GEMM workers.
    clearPool();
    disposeGemmPool();
    disposeFp8Wasm();
  }
}

const EMPTY = new Float32Array(0);

function envThreads(): number | undefined {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.KILN_CPU_THREADS;
  const v = env !== undefined ? Number.parseInt(env, 10) : Number.NaN;
  return Number.isFinite(v) && v >= 1 ? v : undefined;
}

function lastDim(shape: Shape): number {
  return shape.length === 0 ? 1 : shape[shape.length - 1];
}
