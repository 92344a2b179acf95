/**
 * f32 GEMM entry point of the CPU backend.
 * PLACEHOLDER: a naive reference loop. To be replaced by the WebAssembly SIMD kernel
 * with a worker-thread pool (same signature).
 */
export interface GemmJob {
  /** Rows of op(A) and C. */
  readonly m: number;
  /** Columns of op(B) and C. */
  readonly n: number;
  /** Inner dimension. */
  readonly k: number;
  /** A stored [k, m] (row-major) when true, else [m, k]. */
  readonly transA: boolean;
  /** B stored [n, k] when true, else [k, n]. */
  readonly transB: boolean;
  readonly a: Float32Array;
  readonly b: Float32Array;
  /** Output, row-major [m, n] per batch entry; fully overwritten. */
  readonly c: Float32Array;
  /** One entry per batch element: element offsets of each matrix in a, b, c. */
  readonly aOffsets: ArrayLike<number>;
  readonly bOffsets: ArrayLike<number>;
  readonly cOffsets: ArrayLike<number>;
}

export function sgemm(job: GemmJob): void {
  const { m, n, k, transA, transB, a, b, c } = job;
  for (let e = 0; e < job.cOffsets.length; e++) {
    const ao = job.aOffsets[e];
    const bo = job.bOffsets[e];
    const co = job.cOffsets[e];
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) {
          const av = transA ? a[ao + p * m + i] : a[ao + i * k + p];
          const bv = transB ? b[bo + j * k + p] : b[bo + p * n + j];
          s += av * bv;
        }
        c[co + i * n + j] = s;
      }
    }
  }
}
