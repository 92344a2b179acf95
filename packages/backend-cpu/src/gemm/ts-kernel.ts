/**
 * Pure TypeScript f32 GEMM: the fallback when WebAssembly SIMD (or shared wasm memory) is
 * unavailable, and the path for tiny problems where copying into wasm memory is not worth it.
 *
 * Loop order i-p-j over a contiguous row of op(B) (B is transposed into a scratch buffer when
 * transB, so the inner loop is always unit stride). C rows accumulate in a Float32Array, so
 * every partial sum is rounded to f32 exactly as the wasm kernel does.
 */
import type { GemmJob } from './index.js';

let scratch = new Float32Array(0);

function scratchOf(size: number): Float32Array {
  if (scratch.length < size) scratch = new Float32Array(size);
  return scratch;
}

/** Runs batch entries [e0, e1) of `job`. Requires k >= 1 (k = 0 is handled by the caller). */
export function sgemmTs(job: GemmJob, e0 = 0, e1 = job.cOffsets.length): void {
  const { m, n, k, transA, transB, a, b, c } = job;
  let lastB = -1;
  let bt = b;
  let btOff = 0;
  for (let e = e0; e < e1; e++) {
    const ao = job.aOffsets[e];
    const co = job.cOffsets[e];
    if (transB) {
      // op(B) [k x n] from storage [n x k]
      const bo = job.bOffsets[e];
      if (bo !== lastB) {
        bt = scratchOf(k * n);
        for (let j = 0; j < n; j++) {
          const src = bo + j * k;
          for (let p = 0; p < k; p++) bt[p * n + j] = b[src + p];
        }
        lastB = bo;
      }
      btOff = 0;
    } else {
      bt = b;
      btOff = job.bOffsets[e];
    }
    for (let i = 0; i < m; i++) {
      const ci = co + i * n;
      // start from +0 like the wasm kernel (so a sum of -0 products is +0 on both paths)
      c.fill(0, ci, ci + n);
      for (let p = 0; p < k; p++) {
        const av = transA ? a[ao + p * m + i] : a[ao + i * k + p];
        const bp = btOff + p * n;
        for (let j = 0; j < n; j++) c[ci + j] += av * bt[bp + j];
      }
    }
  }
}
