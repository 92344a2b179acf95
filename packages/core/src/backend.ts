import type { DType, StorageArray } from './dtype.js';
import type { Shape } from './shape.js';

/**
 * The Backend interface: a small set of primitives from which @kiln/core composes
 * every other op (softmax, RMSNorm, rotary, top-k, cross-entropy, ...).
 *
 * Contract, so that a new backend stays small:
 * - Tensors are contiguous, row-major. A backend owns their storage and names it by an
 *   opaque `DataId`. Every primitive allocates and returns a new `DataId`; nothing is in place.
 * - Core validates every argument (shapes, dtypes, axes) before calling a primitive and
 *   computes output shapes and dtypes, so primitives may assume valid input.
 * - Compute primitives (unary, binary, where, reduce, matmul) only ever receive the compute
 *   dtypes `f32`, `i32`, `u8`, `bool`. The storage dtypes `f16`, `bf16`, `e4m3`, `e5m2` reach a
 *   backend only through `write`/`read`, `cast` and the layout copies (slice, concat, transpose,
 *   gather, indexSelect, scatterAdd's index operand aside), which move codes without arithmetic.
 *   Core inserts the casts, so low-precision arithmetic is "compute in f32, round on store".
 * - `fused` kernels are optional overrides of composed ops. Correctness never depends on them:
 *   the conformance suite checks each against the composed reference.
 */

/** Opaque handle to backend-owned storage. */
export type DataId = object;

/** What a backend sees of a tensor: its storage handle, shape and dtype. */
export interface TensorView {
  readonly dataId: DataId;
  readonly shape: Shape;
  readonly dtype: DType;
}

/** The compute dtypes primitives receive. */
export type ComputeDType = 'f32' | 'i32' | 'u8' | 'bool';

export const UNARY_OPS = [
  'neg', 'abs', 'sign', 'square', 'sqrt', 'rsqrt', 'reciprocal',
  'exp', 'log', 'sin', 'cos', 'tanh', 'sigmoid', 'relu', 'erf',
  'floor', 'ceil', 'round', 'not', 'isnan',
] as const;
export type UnaryOp = (typeof UNARY_OPS)[number];

export const BINARY_OPS = [
  'add', 'sub', 'mul', 'div', 'pow', 'maximum', 'minimum', 'mod',
  'eq', 'ne', 'lt', 'le', 'gt', 'ge', 'and', 'or',
] as const;
export type BinaryOp = (typeof BINARY_OPS)[number];

export const COMPARISON_OPS: ReadonlySet<BinaryOp> = new Set(['eq', 'ne', 'lt', 'le', 'gt', 'ge']);
export const LOGICAL_OPS: ReadonlySet<BinaryOp> = new Set(['and', 'or']);

export const REDUCE_OPS = ['sum', 'prod', 'max', 'min', 'argmax', 'argmin'] as const;
export type ReduceOp = (typeof REDUCE_OPS)[number];

export interface PrimitiveMatmulOptions {
  /** Use A^T: A is stored [..., K, M]. */
  readonly transposeA: boolean;
  /** Use B^T: B is stored [..., N, K]. */
  readonly transposeB: boolean;
}

export interface RandomSpec {
  readonly distribution: 'uniform' | 'normal';
  /** 32-bit unsigned seed. Element i of the output uses counters derived from (seed, i); see `random.ts`. */
  readonly seed: number;
  /** uniform: [a, b); normal: mean a, std b. */
  readonly a: number;
  readonly b: number;
}

export interface PrimitiveCastOptions {
  /** Clamp to the largest finite value instead of overflowing to inf/NaN (FP8, f16). */
  readonly saturate: boolean;
}

export interface PrimitiveQuantizeOptions {
  readonly format: 'e4m3' | 'e5m2';
  readonly scaleFormat: 'fp32' | 'ue8m0';
}

/** A block-quantised 2-D operand as a backend sees it. */
export interface QuantizedView {
  /** FP8 codes [rows, cols] (dtype e4m3 or e5m2). */
  readonly codes: TensorView;
  /** f32 [ceil(rows/br), ceil(cols/bc)]. */
  readonly scales: TensorView;
  readonly block: readonly [number, number];
}

export interface PrimitiveFp8GemmOptions {
  /** K elements per promotion to f32 (a positive integer or Infinity). */
  readonly promotionInterval: number;
  readonly accumulatorMantissaBits?: number;
  readonly accumulatorGroupSize?: number;
  readonly accumulatorRounding?: 'truncate' | 'nearest';
}

export interface DeviceInfo {
  /** Backend kind, e.g. 'cpu', 'webgpu'. */
  readonly backend: string;
  /** Human-readable device, e.g. 'AMD EPYC 7B13 (2 threads)' or 'NVIDIA H100 80GB HBM3'. */
  readonly name: string;
  /** Whether the device is real hardware acceleration (false for CPU and software GPUs). */
  readonly accelerated: boolean;
  readonly details?: Readonly<Record<string, string | number | boolean>>;
}

export interface BackendMemory {
  /** Bytes of tensor storage the backend holds. */
  readonly bytes: number;
  /** Number of storage buffers the backend holds. */
  readonly buffers: number;
}

/**
 * Optional fused kernels that replace core's composition of primitives. Inputs are f32
 * (core casts first) and shapes are validated; each returns f32 storage of the input's shape
 * unless noted.
 */
export interface FusedKernels {
  /** softmax over the last axis. */
  softmax?(x: TensorView): DataId;
  /** log-softmax over the last axis. */
  logSoftmax?(x: TensorView): DataId;
  /** x * rsqrt(mean(x^2, last) + eps) * weight, weight shaped [last]. */
  rmsNorm?(x: TensorView, weight: TensorView, eps: number): DataId;
  /** silu(gate) * up, same shapes. */
  swiglu?(gate: TensorView, up: TensorView): DataId;
  /**
   * Rotary embedding of x [..., T, d] (f32) by cos/sin [T, d/2] (f32): pairs (x[2i], x[2i+1])
   * when `interleaved`, else (x[i], x[i + d/2]); (a, b) -> (a cos - b sin, a sin + b cos).
   */
  rotary?(x: TensorView, cos: TensorView, sin: TensorView, interleaved: boolean): DataId;
  /**
   * Scaled dot-product attention over the last two axes, f32 throughout (see AttentionKernelArgs):
   * q [..., Tq, dk], k [..., S, dk], v [..., S, dv] with k's and v's leading axes of q's rank and
   * each 1 (broadcast) or q's size. Returns out [..., Tq, dv] and the softmax's log normaliser
   * logSumExp [..., Tq] (the backward recomputes the probabilities from it).
   */
  attention?(q: TensorView, k: TensorView, v: TensorView, args: AttentionKernelArgs): { out: DataId; logSumExp: DataId };
}

/** Options of the fused attention kernel. */
export interface AttentionKernelArgs {
  /** Multiplies q k^T before the softmax. */
  readonly scale: number;
  /**
   * Causal masking: query i sees keys j <= causalOffset + i (an integer >= 0; S - Tq for new
   * queries after a cache of S - Tq positions). null: every query sees every key.
   */
  readonly causalOffset: number | null;
}

export interface Backend {
  /** Registry name, e.g. 'cpu'. */
  readonly name: string;
  readonly device: DeviceInfo;

  // ---- storage -------------------------------------------------------------------------
  /** Copies host codes into new storage. `values.length` equals the element count. */
  write(values: StorageArray, dtype: DType, shape: Shape): DataId;
  /** Reads storage codes back (f16/bf16/FP8 as their bit codes). */
  read(view: TensorView): Promise<StorageArray>;
  /** Synchronous read, for backends whose memory the host can see (CPU). */
  readSync?(view: TensorView): StorageArray;
  /** Frees storage. Called exactly once per DataId by core's reference counting. */
  release(dataId: DataId): void;
  memory(): BackendMemory;

  // ---- creation ------------------------------------------------------------------------
  fill(shape: Shape, dtype: DType, value: number): DataId;
  /** f32 random values; bit-identical across backends for 'uniform' (see random.ts). */
  random(shape: Shape, spec: RandomSpec): DataId;

  // ---- elementwise (compute dtypes only) ------------------------------------------------
  /** Elementwise op; output dtype is given by core (bool for `isnan`, same as input otherwise). */
  unary(op: UnaryOp, x: TensorView, outDtype: ComputeDType): DataId;
  /** Broadcasting binary op; `a` and `b` share a dtype; comparisons produce 'bool'. */
  binary(op: BinaryOp, a: TensorView, b: TensorView, outShape: Shape, outDtype: ComputeDType): DataId;
  /** Broadcasting select: cond ? a : b. cond is 'bool'; a and b share a dtype. */
  where(cond: TensorView, a: TensorView, b: TensorView, outShape: Shape): DataId;

  // ---- reductions ----------------------------------------------------------------------
  /**
   * Reduces one axis (removed from the output shape). sum/prod/max/min keep the input dtype
   * (core casts bool/u8 to i32 for sum/prod); argmax/argmin return 'i32' with the first index
   * on ties. NaN propagates through max/min; argmax/argmin treat NaN as the maximum.
   */
  reduce(op: ReduceOp, x: TensorView, axis: number): DataId;

  // ---- linear algebra ------------------------------------------------------------------
  /** Batched matmul over broadcast leading dims: [..., M, K] x [..., K, N] -> outShape [..., M, N]. f32 or i32. */
  matmul(a: TensorView, b: TensorView, options: PrimitiveMatmulOptions, outShape: Shape): DataId;

  // ---- indexing (any dtype for the data operand; indices are 'i32') ----------------------
  /** torch.gather: out[i..] = x[.. indices[i..] at axis ..]; out shape = indices shape. */
  gather(x: TensorView, axis: number, indices: TensorView): DataId;
  /** x.index_select(axis, indices1D): the axis dimension becomes indices.length. */
  indexSelect(x: TensorView, axis: number, indices: TensorView): DataId;
  /** torch.scatter_add (out of place): base + src scattered along axis by indices (same shape as src). f32/i32. */
  scatterAdd(base: TensorView, axis: number, indices: TensorView, src: TensorView): DataId;
  /** torch.index_add (out of place): base with src's slices added at indices1D along axis. f32/i32. */
  indexAdd(base: TensorView, axis: number, indices: TensorView, src: TensorView): DataId;

  // ---- layout copies (any dtype) -------------------------------------------------------
  concat(xs: readonly TensorView[], axis: number, outShape: Shape): DataId;
  slice(x: TensorView, begin: readonly number[], size: readonly number[]): DataId;
  transpose(x: TensorView, perm: readonly number[]): DataId;

  // ---- casts (all dtype pairs) ---------------------------------------------------------
  /**
   * Converts between any two dtypes. Floats round half to even into f16/bf16/FP8 (FP8
   * bit-for-bit as PyTorch); float -> int truncates toward zero, NaN -> 0, and saturates to
   * the int range; anything -> bool is `x != 0` (NaN -> true).
   */
  cast(x: TensorView, dtype: DType, options: PrimitiveCastOptions): DataId;

  // ---- FP8 (DeepSeek-V3 fine-grained quantisation) ------------------------------------
  /**
   * Quantises an f32 [rows, cols] tensor in [blockRows, blockCols] blocks exactly as core's
   * `quantizeBlockwise` (bit-exact): codes in `format`, f32 scales [ceil(rows/br), ceil(cols/bc)].
   */
  quantizeBlockwise(x: TensorView, block: readonly [number, number], options: PrimitiveQuantizeOptions): { codes: DataId; scales: DataId };
  /**
   * FP8 block-scaled GEMM a [M, K] x b [N, K]^T -> f32 [M, N]: per chunk of `promotionInterval`
   * along K, FP8 products accumulate (exactly in f32, or in the limited accumulator model of
   * core's `fp8GemmReference` when `accumulatorMantissaBits` is set), then the partial is
   * multiplied by the two block scales and added in f32.
   */
  matmulFp8(a: QuantizedView, b: QuantizedView, options: PrimitiveFp8GemmOptions): DataId;

  /** Optional fused kernels; see FusedKernels. */
  readonly fused?: FusedKernels;

  /**
   * Set by a backend that works here but should not be chosen automatically, with the reason
   * (e.g. WebGPU on a software adapter: 'software adapter (llvmpipe): the CPU backend is
   * faster'). `bestAvailableBackend()` passes over it while a lower-priority backend
   * initialises and falls back to it otherwise; `setBackend(name)` uses it as usual.
   */
  readonly notPreferred?: string;

  /** Releases everything the backend holds (pools, workers, devices). */
  dispose?(): void;
  /**
   * Disposes, then settles once the release has finished (a worker that destroys its device:
   * WebGPU in Node). Await it before `process.exit()`.
   */
  close?(): Promise<void>;
}

/** How a backend is created; registered with `registerBackend`. */
export interface BackendFactory {
  readonly name: string;
  /** Higher wins in `bestAvailableBackend()` (cuda 400, webgpu 300, gpujs 200, cpu 100). */
  readonly priority: number;
  /**
   * Creates the backend, or throws a BackendError whose message says why it is unavailable
   * on this machine (no driver, no adapter, software-only adapter ...).
   */
  create(): Promise<Backend>;
}
