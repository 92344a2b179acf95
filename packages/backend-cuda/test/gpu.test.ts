import { BackendError, OutOfMemoryError, QuantizedTensor, abs, concat, dequantize, matmulFp8, mul, quantize, randomNormal, reshape, tensor, tidy, useBackend } from '@kiln/core';
import { CudaBackend, cudaUnavailableReason } from '@kiln/backend-cuda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// GPU-only behaviour beyond the shared conformance suite: the tensor-core FP8 GEMM paths
// against the exact path, typed errors for OOM and foreign tensors. Skips without a GPU.
const why = cudaUnavailableReason();

describe.skipIf(why !== undefined)(`@kiln/backend-cuda on the GPU${why ? ` [skipped: ${why}]` : ''}`, () => {
  let cuda: CudaBackend;
  beforeAll(() => {
    cuda = new CudaBackend();
    useBackend(cuda);
  });
  afterAll(() => cuda?.dispose());

  async function fp8Case(M: number, N: number, K: number, seed: number) {
    const x = randomNormal([M, K], seed, 0, 1 + (seed % 3));
    const w = randomNormal([N, K], seed + 1, 0, 0.05);
    const qa = quantize(x, { block: [1, 128] });
    const qb = quantize(w, { block: [128, 128] });
    return { qa, qb };
  }

  // Hopper FP8 WGMMA keeps a limited accumulator inside each 128-wide K block (DeepSeek-V3
  // measured ~14 bits); promotion every 128 bounds the error by ~2^-13 of Σ|a·b| per block.
  for (const path of ['tensorcore', 'cublaslt'] as const) {
    it(`${path} FP8 block GEMM agrees with the exact CUDA-core path within the hardware accumulator's bound`, async () => {
      for (const [M, N, K] of [[64, 256, 512], [1, 128, 128], [129, 2112, 7168], [300, 7168, 2048]] as const) {
        const { qa, qb } = await fp8Case(M, N, K, M + N + K);
        cuda.fp8Gemm = 'exact';
        const exact = (await matmulFp8(qa, qb).data()) as Float32Array;
        expect(cuda.lastFp8Path).toBe('exact');
        cuda.fp8Gemm = path;
        const fast = (await matmulFp8(qa, qb).data()) as Float32Array;
        const taken = cuda.lastFp8Path;
        // |a·b| bound per output from dequantised operands (absolute products on the GPU).
        const absA = (await abs(dequantize(qa)).data()) as Float32Array;
        const absB = (await abs(dequantize(qb)).data()) as Float32Array;
        let worst = 0;
        for (let m = 0; m < M; m += Math.max(1, Math.floor(M / 16))) {
          for (let n = 0; n < N; n += Math.max(1, Math.floor(N / 64))) {
            let s = 0;
            for (let k = 0; k < K; k++) s += absA[m * K + k] * absB[n * K + k];
            const err = Math.abs(fast[m * N + n] - exact[m * N + n]) / (s || 1);
            expect(Number.isFinite(fast[m * N + n])).toBe(true);
            worst = Math.max(worst, err);
          }
        }
        console.log(`${path} [${M}x${K}]x[${N}x${K}]ᵀ took '${taken}': worst |fast-exact|/Σ|ab| = ${worst.toExponential(2)}`);
        expect(worst).toBeLessThan(2 ** -11);
      }
      cuda.fp8Gemm = 'tensorcore';
    });
  }

  it('grouped FP8 GEMM (one launch for all experts) equals per-expert matmulFp8, contiguous and masked, with an empty group', async () => {
    if (!cuda.capabilities.fp8GemmSm90) return;
    const N = 256;
    const K = 512;
    const counts = [70, 0, 129, 33];
    const G = counts.length;
    const M = counts.reduce((a, b) => a + b, 0);
    const x = randomNormal([M, K], 11);
    const qa = quantize(x, { block: [1, 128] });
    const ws = counts.map((_, g) => quantize(randomNormal([N, K], 20 + g, 0, 0.05), { block: [128, 128] }));
    const bCodes = concat(ws.map((w) => reshape(w.codes, [1, N, K])), 0);
    const bScales = concat(ws.map((w) => reshape(w.scales, [1, N / 128, K / 128])), 0);
    const offsets = [0];
    for (const c of counts) offsets.push(offsets[offsets.length - 1] + c);
    const y = (await cuda.groupedMatmulFp8(qa.codes, qa.scales, bCodes, bScales, tensor(offsets, [G + 1], 'i32')).data()) as Float32Array;
    // Error bound as for the dense kernel: 2^-11 of Σ|a·b| per output (hardware accumulator).
    const absA = (await abs(dequantize(qa)).data()) as Float32Array;
    const absW = await Promise.all(ws.map(async (w) => (await abs(dequantize(w)).data()) as Float32Array));
    const sumAbs = (a: Float32Array, ar: number, w: Float32Array, n: number) => {
      let s2 = 0;
      for (let k = 0; k < K; k++) s2 += a[ar * K + k] * w[n * K + k];
      return s2;
    };
    cuda.fp8Gemm = 'exact';
    let worst = 0;
    for (let g = 0; g < G; g++) {
      if (counts[g] === 0) continue;
      const ref = (await matmulFp8(qa.sliceRows(offsets[g], counts[g]), ws[g]).data()) as Float32Array;
      for (let r = 0; r < counts[g]; r += 3) {
        for (let n = 0; n < N; n += 7) {
          const err = Math.abs(y[(offsets[g] + r) * N + n] - ref[r * N + n]) / sumAbs(absA, offsets[g] + r, absW[g], n);
          worst = Math.max(worst, err);
        }
      }
    }
    console.log(`grouped contiguous vs per-expert exact: worst |diff|/Σ|ab| ${worst.toExponential(2)}`);
    expect(worst).toBeLessThan(2 ** -11);
    // Masked layout: [G, Mmax, K] with valid counts; rows past a group's count stay 0.
    const Mmax = 160;
    const qm = quantize(randomNormal([G * Mmax, K], 12), { block: [1, 128] });
    cuda.fp8Gemm = 'tensorcore';
    const ym = (await cuda.groupedMatmulFp8(reshape(qm.codes, [G, Mmax, K]), reshape(qm.scales, [G, Mmax, K / 128]), bCodes, bScales, tensor(counts, [G], 'i32'), { masked: true }).data()) as Float32Array;
    const absM = (await abs(dequantize(qm)).data()) as Float32Array;
    cuda.fp8Gemm = 'exact';
    let worstM = 0;
    for (let g = 0; g < G; g++) {
      const ref = (await matmulFp8(qm.sliceRows(g * Mmax, Mmax), ws[g]).data()) as Float32Array;
      for (let r = 0; r < Mmax; r += 3) {
        for (let n = 0; n < N; n += 37) {
          const got = ym[(g * Mmax + r) * N + n];
          if (r >= counts[g]) expect(got).toBe(0);
          else worstM = Math.max(worstM, Math.abs(got - ref[r * N + n]) / sumAbs(absM, g * Mmax + r, absW[g], n));
        }
      }
    }
    console.log(`grouped masked vs per-expert exact: worst |diff|/Σ|ab| ${worstM.toExponential(2)}`);
    expect(worstM).toBeLessThan(2 ** -11);
    cuda.fp8Gemm = 'tensorcore';
  });

  it('out-of-memory is a typed OutOfMemoryError naming the requested bytes, and the backend keeps working', () => {
    const free = cuda.deviceMemory().freeBytes;
    let err: unknown;
    try {
      cuda.allocStorage(free * 4);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(OutOfMemoryError);
    expect((err as Error).message).toMatch(/requested \d+ bytes, \d+ of \d+ bytes free/);
    const y = tidy(() => mul(tensor([1, 2, 3], [3]), tensor([2], [1])));
    expect(Array.from(y.valuesSync())).toEqual([2, 4, 6]);
  });

  it('a tensor of another backend instance is refused with a clear BackendError', () => {
    const other = new CudaBackend();
    const t = tensor([1, 2], [2], 'f32', { backend: other });
    expect(() => cuda.storageOf(t)).toThrow(BackendError);
    expect(() => cuda.storageOf(t)).toThrow(/does not live on this CUDA backend/);
    t.dispose();
  });

  it('returns device memory on dispose', () => {
    const before = cuda.memory();
    const t = randomNormal([1024, 1024], 3);
    expect(cuda.memory().bytes).toBe(before.bytes + 4 * 1024 * 1024);
    t.dispose();
    expect(cuda.memory()).toEqual(before);
  });

  it('QuantizedTensor round trip lives on the device', async () => {
    const x = randomNormal([4, 256], 9);
    const q = quantize(x, { block: [1, 128] });
    expect(q).toBeInstanceOf(QuantizedTensor);
    const back = (await dequantize(q).data()) as Float32Array;
    const orig = (await x.data()) as Float32Array;
    for (let i = 0; i < orig.length; i++) expect(Math.abs(back[i] - orig[i])).toBeLessThanOrEqual(Math.abs(orig[i]) * 0.0625 + 1e-6);
  });
});
