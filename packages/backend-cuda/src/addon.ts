/**
 * Loads kiln_cuda.node (built by scripts/build-native.mjs) and says why when it cannot:
 * no addon built (no nvcc at install time), no NVIDIA driver, no visible GPU. Importing this
 * module never throws; `loadAddon()` returns either the addon or the reason.
 */
import type { StridedView } from '@kiln/core';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Device addresses travel as numbers (user-space addresses fit in 48 bits). */
export type Ptr = number;
/** A strided view: [offset, ndim, ...shape, ...strides] in elements (core's StridedView). */
export type { StridedView };

export interface ProbeResult {
  readonly ok: boolean;
  readonly reason?: string;
  readonly deviceCount: number;
  readonly runtimeVersion: number;
  readonly driverVersion: number;
}

export interface DeviceProps {
  readonly name: string;
  readonly major: number;
  readonly minor: number;
  readonly multiProcessorCount: number;
  readonly totalGlobalMem: number;
  readonly l2CacheSize: number;
  readonly ordinal: number;
}

export interface Capabilities {
  readonly cublasLt: boolean;
  readonly cublasLtReason: string;
  readonly cublasLtVersion: string;
  readonly fp8GemmSm90: boolean;
}

/** The functions kiln_cuda.node exports (see native/runtime.cpp and native/bindings.cpp). */
export interface CudaAddon {
  probe(): ProbeResult;
  init(ordinal: number): DeviceProps;
  capabilities(): Capabilities;
  alloc(bytes: number): Ptr;
  free(ptr: Ptr, bytes: number): void;
  memInfo(): { freeBytes: number; totalBytes: number; liveBytes: number; liveBuffers: number };
  trimPool(): void;
  upload(ptr: Ptr, data: ArrayBufferView): void;
  download(ptr: Ptr, into: ArrayBufferView): void;
  downloadAsync<T extends ArrayBufferView>(ptr: Ptr, into: T): Promise<T>;
  copy(dst: Ptr, src: Ptr, bytes: number): void;
  synchronize(): void;

  unary(op: number, dtype: number, outDtype: number, x: Ptr, n: number): Ptr;
  binary(op: number, dtype: number, outDtype: number, a: Ptr, av: StridedView, b: Ptr, bv: StridedView, n: number, contiguous: boolean): Ptr;
  where(elemBytes: number, cond: Ptr, cv: StridedView, a: Ptr, av: StridedView, b: Ptr, bv: StridedView, n: number): Ptr;
  fill(elemBytes: number, code: number, n: number): Ptr;
  random(distribution: number, seed: number, a: number, b: number, n: number): Ptr;
  cast(from: number, to: number, saturate: boolean, x: Ptr, n: number): Ptr;
  reduce(op: number, dtype: number, outBytes: number, x: Ptr, outer: number, len: number, inner: number): Ptr;
  stridedCopy(elemBytes: number, src: Ptr, sv: StridedView, n: number): Ptr;
  stridedCopyTo(elemBytes: number, src: Ptr, sv: StridedView, dst: Ptr, dv: StridedView, n: number): void;
  gather(elemBytes: number, x: Ptr, xv: StridedView, axisStride: number, idx: Ptr, n: number): Ptr;
  indexSelect(elemBytes: number, x: Ptr, outer: number, len: number, inner: number, idx: Ptr, nIdx: number): Ptr;
  scatterAdd(dtype: number, base: Ptr, baseBytes: number, outView: StridedView, axisStride: number, idx: Ptr, src: Ptr, n: number): Ptr;
  indexAdd(dtype: number, base: Ptr, baseBytes: number, outer: number, len: number, inner: number, idx: Ptr, nIdx: number, src: Ptr): Ptr;
  matmul(dtype: number, a: Ptr, b: Ptr, batch: number, aBatchStride: number, bBatchStride: number, M: number, N: number, K: number, transA: boolean, transB: boolean, useLt: boolean): Ptr;
  quantizeBlockwise(x: Ptr, rows: number, cols: number, br: number, bc: number, format: number, ue8m0: number): [Ptr, Ptr];
  fp8Gemm(
    a: Ptr, sa: Ptr, aFormat: number, abr: number, abc: number,
    b: Ptr, sb: Ptr, bFormat: number, bbr: number, bbc: number,
    M: number, N: number, K: number, promotion: number, mantBits: number, group: number, nearest: number, path: number,
  ): [Ptr, number];
  fp8GroupedGemm(layout: number, a: Ptr, sa: Ptr, b: Ptr, sb: Ptr, groups: Ptr, G: number, rows: number, N: number, K: number, expectedM: number): Ptr;
  adamw(p: Ptr, m: Ptr, v: Ptr, g: Ptr, n: number, bf16Moments: number, b1: number, b2: number, bc1: number, bc2: number, eps: number, lr: number, decay: number, gradScale: number): void;
  sumSquares(ptrs: Ptr[], sizes: number[]): number;
  softmax(x: Ptr, rows: number, cols: number, log: boolean): Ptr;
  rmsNorm(x: Ptr, w: Ptr, rows: number, cols: number, eps: number): Ptr;
  swiglu(g: Ptr, u: Ptr, n: number): Ptr;

  /** Bindings added by other modules (NCCL, benchmarks) are looked up by name. */
  readonly [name: string]: unknown;
}

export type AddonLoad = { readonly ok: true; readonly addon: CudaAddon; readonly path: string } | { readonly ok: false; readonly reason: string };

let cached: AddonLoad | undefined;

function packageRoot(): string {
  // dist/index.js, dist/index.cjs and src/addon.ts all sit one level below the package root.
  const here = typeof __dirname === 'string' ? __dirname : dirname(fileURLToPath(import.meta.url));
  return join(here, '..');
}

/** Loads the addon once. KILN_CUDA_ADDON overrides its path. */
export function loadAddon(): AddonLoad {
  if (cached) return cached;
  const root = packageRoot();
  const path = process.env.KILN_CUDA_ADDON ?? join(root, 'build', 'Release', 'kiln_cuda.node');
  if (!existsSync(path)) {
    let why = 'the native addon is not built';
    const marker = join(root, 'build', 'unavailable.json');
    if (existsSync(marker)) {
      try {
        why += `: ${(JSON.parse(readFileSync(marker, 'utf8')) as { reason: string }).reason}`;
      } catch {
        /* keep the generic reason */
      }
    } else {
      why += ' (run `pnpm --filter @kiln/backend-cuda build:native`)';
    }
    return (cached = { ok: false, reason: why });
  }
  try {
    const require = createRequire(join(root, 'package.json'));
    return (cached = { ok: true, addon: require(path) as CudaAddon, path });
  } catch (e) {
    return (cached = { ok: false, reason: `the native addon failed to load: ${(e as Error).message}` });
  }
}

/** Why CUDA cannot be used here, or undefined when a device is usable. */
export function cudaUnavailableReason(): string | undefined {
  const load = loadAddon();
  if (!load.ok) return load.reason;
  const p = load.addon.probe();
  if (p.ok) return undefined;
  if (p.driverVersion === 0) return `no NVIDIA driver found (libcuda.so.1 missing or no GPU): ${p.reason ?? ''}`.trim();
  return p.reason ?? 'no CUDA device';
}
