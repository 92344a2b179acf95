#!/usr/bin/env node
// GPU GEMMs: kiln's CUDA addon (@kiln/backend-cuda's kiln_cuda.node) against cuBLASLt and PyTorch on
// the same GPU, in one run.
//
// * FP8 DeepSeek-V3 blockwise GEMM (E4M3, 1x128 activation scales x 128x128 weight scales, bf16 out)
//   over M in {64, 128, 256, 512, 4096} x (N, K) in {(7168, 2048), (2112, 7168), (24576, 1536),
//   (7168, 16384), (4096, 7168)}: kiln's sm90 kernel (fp8Gemm path 1), kiln via cuBLASLt blockwise
//   (path 2: kiln's scale layouts, converted by a small kernel each call), cuBLASLt alone (scales
//   converted beforehand) and the peer's torch._scaled_mm blockwise.
// * F32: cuBLASLt sgemm (FP32 compute, no TF32) against kiln's own CUDA-core kernel, and torch f32.
// * BF16: cuBLASLt against torch bf16 matmul.
// * Grouped FP8 (MoE experts): kiln's contiguous and masked grouped kernels against a loop of
//   per-expert cuBLASLt blockwise calls.
// * The addon's launch overhead from JS (µs per N-API call), separately.
// Times come from CUDA events around each call in C++ (addon.bench.*), on the addon's stream, with
// a 256 MiB buffer overwritten before each call so weights are read from HBM, not L2; median of
// ITERS after warm-up. Operands: random normal values quantised on the device by the addon's own
// `random` + `quantizeBlockwise`. Before timing, a correctness section checks cuBLASLt sgemm / bf16 /
// fp8 blockwise (and kiln's sm90 kernel) against kiln's exact kernels and float64 host math.
//
//   node bench/cuda-gemm.bench.mjs
// Environment: KILN_CUDA_ADDON (path of kiln_cuda.node; default packages/backend-cuda/build/Release),
// CUDA_GEMM_ITERS (30), CUDA_GEMM_QUICK=1 (fewer shapes), CUDA_GEMM_PEER=0 (skip PyTorch),
// CUDA_GEMM_PYTHON (python3), CUDA_GEMM_RESULTS (results directory, default bench/results),
// KILN_CUBLASLT_PATH (libcublasLt.so to load when it is not on the loader path).
// Writes <results>/cuda-gemm.json and .md. Exits 0 with a message when no CUDA device is usable.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { machineInfo } from './lib/fp8-common.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
const env = process.env;
const addonPath = resolve(env.KILN_CUDA_ADDON ?? join(root, 'packages/backend-cuda/build/Release/kiln_cuda.node'));
const resultsDir = resolve(env.CUDA_GEMM_RESULTS ?? join(here, 'results'));
const ITERS = Number(env.CUDA_GEMM_ITERS ?? 30);
const QUICK = env.CUDA_GEMM_QUICK === '1';
const PYTHON = env.CUDA_GEMM_PYTHON ?? 'python3';
const FLUSH = env.CUDA_GEMM_FLUSH !== '0';

function skip(why) {
  console.log(`cuda-gemm: skipped: ${why}`);
  process.exit(0);
}
if (!existsSync(addonPath)) skip(`no addon at ${addonPath} (build it: node packages/backend-cuda/scripts/build-native.mjs)`);
const cu = createRequire(import.meta.url)(addonPath);
const probe = cu.probe();
if (!probe.ok) skip(`no CUDA device: ${probe.reason}`);
const device = cu.init(0);
const caps = cu.capabilities();
const B = cu.bench;
if (!B) skip('this addon build has no bench bindings (native/bench_bindings.cpp)');

const F32 = 0;
const BF16 = 2;
const E4M3 = 3;
const isH200 = /H200/i.test(device.name);
const PEAK = { fp8: 1979, bf16: 989, f32: 67 }; // dense TFLOP/s, H100 SXM / H200 (same compute)
const HBM = isH200 ? 4800 : 3350; // GB/s
console.log(`cuda-gemm: ${device.name} (sm_${device.major}${device.minor}, ${device.multiProcessorCount} SMs), cuBLASLt ${caps.cublasLt ? caps.cublasLtVersion : `unavailable: ${caps.cublasLtReason}`}, kiln sm90 FP8 ${caps.fp8GemmSm90 ? 'available' : 'unavailable'}`);

// ---------------------------------------------------------------------------------------
// helpers
let seed = 1;
const randn = (n) => cu.random(1, seed++, 0, 1, n);
const freeAll = (...ps) => ps.forEach((p) => p && cu.free(p, 0));
function quant(rows, cols, br, bc) {
  const x = randn(rows * cols);
  const [codes, scales] = cu.quantizeBlockwise(x, rows, cols, br, bc, E4M3, 0);
  cu.free(x, 0);
  return { codes, scales };
}
const fp8Gemm = (a, b, M, N, K, path) =>
  cu.fp8Gemm(a.codes, a.scales, E4M3, 1, 128, b.codes, b.scales, E4M3, 128, 128, M, N, K, 128, -1, 1, 1, path);
function down(ptr, Ctor, n) {
  const out = new Ctor(n);
  cu.download(ptr, out);
  return out;
}
const bf16ToF32 = (u16) => {
  const u32 = new Uint32Array(u16.length);
  for (let i = 0; i < u16.length; i++) u32[i] = u16[i] << 16;
  return new Float32Array(u32.buffer);
};
const tflops = (M, N, K, ms) => (2 * M * N * K) / (ms * 1e-3) / 1e12;
const r3 = (x) => (x == null || !Number.isFinite(x) ? null : Math.round(x * 1000) / 1000);
const errMsg = (e) => String(e?.message ?? e).split('\n')[0].slice(0, 300);
function attempt(fn) {
  try {
    return fn();
  } catch (e) {
    return { error: errMsg(e) };
  }
}

// ---------------------------------------------------------------------------------------
// correctness
const checks = { sgemm: [], bf16: [], fp8: [] };

// f64 reference of row-major batched op(A) op(B) with strides, plus Σ|a||b| per element.
function refMatmul(a, b, batch, as, bs, M, N, K, tA, tB) {
  const ref = new Float64Array(batch * M * N);
  const mag = new Float64Array(batch * M * N);
  for (let z = 0; z < batch; z++) {
    const ao = z * as;
    const bo = z * bs;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        let t = 0;
        for (let k = 0; k < K; k++) {
          const x = a[ao + (tA ? k * M + m : m * K + k)];
          const y = b[bo + (tB ? n * K + k : k * N + n)];
          s += x * y;
          t += Math.abs(x * y);
        }
        ref[(z * M + m) * N + n] = s;
        mag[(z * M + m) * N + n] = t;
      }
    }
  }
  return { ref, mag };
}
const maxErr = (got, ref, mag) => {
  let e = 0;
  for (let i = 0; i < ref.length; i++) e = Math.max(e, Math.abs(got[i] - ref[i]) / (mag[i] || 1e-30));
  return e;
};

if (caps.cublasLt) {
  const cases = [];
  for (const tA of [false, true]) for (const tB of [false, true]) cases.push({ M: 37, N: 53, K: 71, tA, tB, batch: 3, bcast: 'a' });
  for (const tA of [false, true]) for (const tB of [false, true]) cases.push({ M: 65, N: 129, K: 33, tA, tB, batch: 2, bcast: 'b' });
  cases.push({ M: 256, N: 384, K: 512, tA: false, tB: false, batch: 1, bcast: '' });
  cases.push({ M: 1, N: 1000, K: 257, tA: false, tB: true, batch: 1, bcast: '' });
  for (const c of cases) {
    const { M, N, K, tA, tB, batch, bcast } = c;
    const as = bcast === 'a' ? 0 : M * K;
    const bs = bcast === 'b' ? 0 : K * N;
    const na = (bcast === 'a' ? 1 : batch) * M * K;
    const nb = (bcast === 'b' ? 1 : batch) * K * N;
    const a = randn(na);
    const b = randn(nb);
    const row = { ...c };
    const kilnOut = cu.matmul(F32, a, b, batch, as, bs, M, N, K, tA, tB, false);
    const { ref, mag } = refMatmul(down(a, Float32Array, na), down(b, Float32Array, nb), batch, as, bs, M, N, K, tA, tB);
    const kiln = down(kilnOut, Float32Array, batch * M * N);
    row.kilnErr = maxErr(kiln, ref, mag);
    try {
      const ltOut = B.ltSgemm(a, b, batch, as, bs, M, N, K, tA, tB);
      const lt = down(ltOut, Float32Array, batch * M * N);
      row.ltErr = maxErr(lt, ref, mag);
      row.ltVsKiln = maxErr(lt, kiln, mag);
      cu.free(ltOut, 0);
    } catch (e) {
      row.error = errMsg(e);
    }
    row.ok = row.error == null && row.ltErr < 1e-5;
    checks.sgemm.push(row);
    freeAll(a, b, kilnOut);
  }
  // bf16: cuBLASLt vs f64 host math on the bf16 operands.
  for (const [M, N, K] of [[128, 256, 512], [33, 200, 136]]) {
    const row = { M, N, K };
    const xa = randn(M * K);
    const xb = randn(N * K);
    const a = cu.cast(F32, BF16, false, xa, M * K);
    const b = cu.cast(F32, BF16, false, xb, N * K);
    const af = bf16ToF32(down(a, Uint16Array, M * K));
    const bf = bf16ToF32(down(b, Uint16Array, N * K));
    const { ref, mag } = refMatmul(af, bf, 1, 0, 0, M, N, K, false, true);
    for (const outF32 of [true, false]) {
      try {
        const o = B.ltBf16Gemm(a, b, M, N, K, outF32);
        const got = outF32 ? down(o, Float32Array, M * N) : bf16ToF32(down(o, Uint16Array, M * N));
        row[outF32 ? 'errF32Out' : 'errBf16Out'] = maxErr(got, ref, mag);
        cu.free(o, 0);
      } catch (e) {
        row.error = errMsg(e);
      }
    }
    row.ok = row.error == null && row.errF32Out < 1e-5 && row.errBf16Out < 8e-3;
    checks.bf16.push(row);
    freeAll(xa, xb, a, b);
  }
}
// fp8: paths 1 (kiln sm90) and 2 (cuBLASLt) against path 0 (exact), error over Σ|a·b| (path 0 on the
// absolute values of the codes: E4M3 sign is the top bit).
for (const [M, N, K] of [[128, 256, 512], [130, 384, 1024], [64, 7168, 2048], [96, 200, 384], [1, 256, 256], [257, 2112, 7168], [1027, 2048, 512]]) {
  const row = { M, N, K };
  const a = quant(M, K, 1, 128);
  const b = quant(N, K, 128, 128);
  const absCodes = (p, n) => {
    const h = down(p, Uint8Array, n);
    for (let i = 0; i < n; i++) h[i] &= 0x7f;
    const d = cu.alloc(n);
    cu.upload(d, h);
    return d;
  };
  const aAbs = { codes: absCodes(a.codes, M * K), scales: a.scales };
  const bAbs = { codes: absCodes(b.codes, N * K), scales: b.scales };
  const [refP] = fp8Gemm(a, b, M, N, K, 0);
  const [magP] = fp8Gemm(aAbs, bAbs, M, N, K, 0);
  const ref = down(refP, Float32Array, M * N);
  const mag = down(magP, Float32Array, M * N);
  for (const path of [1, 2]) {
    if (path === 2 && !caps.cublasLt) continue;
    try {
      const [o, taken] = fp8Gemm(a, b, M, N, K, path);
      row[`path${path}Taken`] = taken;
      row[`path${path}Err`] = maxErr(down(o, Float32Array, M * N), ref, mag);
      cu.free(o, 0);
    } catch (e) {
      row[`path${path}Error`] = errMsg(e);
    }
  }
  if (caps.cublasLt) row.lt = B.ltFp8Info(M, N, K);
  row.ok = row.path2Taken === 2 && row.path2Err < 2e-3;
  checks.fp8.push(row);
  freeAll(a.codes, a.scales, b.codes, b.scales, aAbs.codes, bAbs.codes, refP, magP);
}
// Which M cuBLASLt's blockwise FP8 takes directly (fp8BlockwiseGemm pads the others).
const mRule = {};
if (caps.cublasLt) {
  for (const [N, K] of [[7168, 2048], [4096, 7168]]) {
    const padded = {};
    for (const M of [...Array.from({ length: 40 }, (_, i) => i + 1), 48, 64, 96, 100, 120, 128, 130, 132, 136, 144, 200, 257, 1000, 1024, 4095]) {
      const p = B.ltFp8Info(M, N, K).paddedM;
      if (p !== M) padded[M] = p;
    }
    mRule[`${N}x${K}`] = padded;
  }
  console.log(`cuBLASLt blockwise FP8: M values it has no algorithm for (-> padded M): ${JSON.stringify(mRule)}`);
}
cu.synchronize();
for (const [k, rows] of Object.entries(checks)) {
  for (const r of rows) console.log(`check ${k}: ${JSON.stringify(r)}`);
}

// ---------------------------------------------------------------------------------------
// launch overhead (JS side): µs per N-API call of an empty binding and of the smallest op
function overhead() {
  const n = 20000;
  for (let i = 0; i < 1000; i++) B.noop();
  let t = performance.now();
  for (let i = 0; i < n; i++) B.noop();
  const noopUs = ((performance.now() - t) * 1e3) / n;
  const m = 5000;
  const x = cu.fill(4, 0, 1);
  cu.synchronize();
  t = performance.now();
  for (let i = 0; i < m; i++) {
    const y = cu.unary(0, F32, F32, x, 1);
    cu.free(y, 4);
  }
  const launchUs = ((performance.now() - t) * 1e3) / m;
  cu.synchronize();
  const syncUs = ((performance.now() - t) * 1e3) / m;
  cu.free(x, 4);
  return { emptyCallUs: r3(noopUs), tinyOpUs: r3(launchUs), tinyOpIncludingGpuUs: r3(syncUs), note: 'tiny op: unary (op 0) on one f32 element, output from the pool, then freed; GPU time included in the last figure (the stream drained once at the end)' };
}
const launch = overhead();
console.log(`launch overhead: ${JSON.stringify(launch)}`);

// ---------------------------------------------------------------------------------------
// FP8 dense
const MS = QUICK ? [64, 4096] : [64, 128, 256, 512, 4096];
const NKS = QUICK ? [[7168, 2048], [4096, 7168]] : [[7168, 2048], [2112, 7168], [24576, 1536], [7168, 16384], [4096, 7168]];
const fp8Rows = [];
for (const [N, K] of NKS) {
  const b = quant(N, K, 128, 128);
  for (const M of MS) {
    const a = quant(M, K, 1, 128);
    const row = { M, N, K };
    const KB = Math.ceil(K / 128);
    row.bytes = M * K + N * K + M * KB * 4 + Math.ceil(N / 128) * KB * 4 + M * N * 2;
    row.kiln = caps.fp8GemmSm90 ? attempt(() => B.timeFp8Gemm(1, a.codes, a.scales, b.codes, b.scales, M, N, K, true, ITERS, FLUSH)) : { error: 'kiln sm90 kernel unavailable' };
    if (caps.cublasLt) {
      row.kilnLt = attempt(() => B.timeFp8Gemm(2, a.codes, a.scales, b.codes, b.scales, M, N, K, true, ITERS, FLUSH));
      row.lt = attempt(() => B.timeFp8Gemm(3, a.codes, a.scales, b.codes, b.scales, M, N, K, true, ITERS, FLUSH));
    }
    fp8Rows.push(row);
    const f = (x) => (x?.medianMs ? `${x.medianMs.toFixed(4)} ms ${tflops(M, N, K, x.medianMs).toFixed(0)} TF` : x?.error ?? '-');
    console.log(`fp8 ${M}x${N}x${K}: kiln ${f(row.kiln)} | kiln-lt ${f(row.kilnLt)} | lt ${f(row.lt)}`);
    freeAll(a.codes, a.scales);
  }
  freeAll(b.codes, b.scales);
}

// M that cuBLASLt's blockwise FP8 declines (M % 4 != 0): kiln's path 2 pads (small M: copies of A and
// D through scratch) or splits off the last 1-3 rows (large M: a second 4-row GEMM), next to M rounded.
const oddRows = [];
if (caps.cublasLt) {
  const [N, K] = [4096, 7168];
  const b = quant(N, K, 128, 128);
  for (const M of QUICK ? [4095] : [127, 128, 4095, 4096]) {
    const a = quant(M, K, 1, 128);
    const row = { M, N, K, kilnLt: attempt(() => B.timeFp8Gemm(2, a.codes, a.scales, b.codes, b.scales, M, N, K, true, ITERS, FLUSH)) };
    if (caps.fp8GemmSm90) row.kiln = attempt(() => B.timeFp8Gemm(1, a.codes, a.scales, b.codes, b.scales, M, N, K, true, ITERS, FLUSH));
    oddRows.push(row);
    console.log(`fp8 odd M ${M}x${N}x${K}: kiln-lt ${row.kilnLt.medianMs?.toFixed(4) ?? row.kilnLt.error} ms | kiln ${row.kiln?.medianMs?.toFixed(4) ?? row.kiln?.error} ms`);
    freeAll(a.codes, a.scales);
  }
  freeAll(b.codes, b.scales);
}

// ---------------------------------------------------------------------------------------
// F32 and BF16
const F32_SHAPES = QUICK ? [[1024, 1024, 1024]] : [[1024, 1024, 1024], [4096, 4096, 4096], [512, 7168, 2048], [4096, 7168, 2048]];
const BF16_SHAPES = QUICK ? [[4096, 4096, 4096]] : [[128, 7168, 2048], [4096, 7168, 2048], [4096, 4096, 4096], [8192, 8192, 8192]];
const f32Rows = [];
for (const [M, N, K] of F32_SHAPES) {
  const a = randn(M * K);
  const b = randn(N * K);
  const row = { M, N, K };
  // row-major a [M,K] x b [N,K]^T (transB), the layout of a Linear layer's weight
  row.kiln = attempt(() => B.timeMatmul(0, a, b, 1, 0, 0, M, N, K, false, true, Math.min(ITERS, 10), FLUSH));
  if (caps.cublasLt) row.lt = attempt(() => B.timeMatmul(1, a, b, 1, 0, 0, M, N, K, false, true, ITERS, FLUSH));
  f32Rows.push(row);
  console.log(`f32 ${M}x${N}x${K}: kiln ${row.kiln.medianMs?.toFixed(3) ?? row.kiln.error} ms | lt ${row.lt?.medianMs?.toFixed(3) ?? row.lt?.error} ms`);
  freeAll(a, b);
}
const bf16Rows = [];
for (const [M, N, K] of BF16_SHAPES) {
  const xa = randn(M * K);
  const xb = randn(N * K);
  const a = cu.cast(F32, BF16, false, xa, M * K);
  const b = cu.cast(F32, BF16, false, xb, N * K);
  freeAll(xa, xb);
  const row = { M, N, K };
  if (caps.cublasLt) row.lt = attempt(() => B.timeMatmul(2, a, b, 1, 0, 0, M, N, K, false, true, ITERS, FLUSH));
  bf16Rows.push(row);
  console.log(`bf16 ${M}x${N}x${K}: lt ${row.lt?.medianMs?.toFixed(4) ?? row.lt?.error} ms`);
  freeAll(a, b);
}

// ---------------------------------------------------------------------------------------
// grouped FP8 (MoE): per-expert token counts uniform in [m/2, 3m/2] (a fixed LCG), N x K per expert
let lcg = 12345;
const rnd = () => ((lcg = (lcg * 1664525 + 1013904223) >>> 0) / 2 ** 32);
const GROUPED = QUICK
  ? [[8, 256, 4096, 7168]]
  : [[8, 1024, 4096, 7168], [16, 256, 4096, 7168], [32, 64, 4096, 7168], [32, 128, 7168, 2048], [16, 512, 7168, 2048], [8, 1024, 7168, 2048]];
const groupedRows = [];
for (const [G, m, N, K] of GROUPED) {
  const counts = Array.from({ length: G }, () => Math.max(1, Math.round(m * (0.5 + rnd()))));
  const offsets = [0];
  for (const c of counts) offsets.push(offsets[offsets.length - 1] + c);
  const total = offsets[G];
  const Mmax = Math.max(...counts);
  const row = { G, tokensPerExpert: m, N, K, totalM: total, Mmax, counts };
  const b = quant(G * N, K, 128, 128); // [G, N, K]: blocks never straddle experts (N % 128 == 0)
  const a = quant(total, K, 1, 128); // contiguous [totalM, K]
  const offDev = cu.alloc(4 * (G + 1));
  cu.upload(offDev, Int32Array.from(offsets));
  const flops = 2 * total * N * K;
  row.flops = flops;
  if (caps.fp8GemmSm90) row.contiguous = attempt(() => B.timeGroupedFp8Gemm(0, a.codes, a.scales, b.codes, b.scales, offDev, G, total, N, K, m, true, ITERS, FLUSH));
  if (caps.cublasLt) {
    row.kilnLtLoop = attempt(() => B.timeLtFp8Loop(a.codes, a.scales, b.codes, b.scales, offsets, N, K, true, false, ITERS, FLUSH));
    // cuBLASLt alone: each expert's rows padded to the M cuBLASLt takes (as a caller of cuBLASLt would lay them out)
    const padded = counts.map((c) => B.ltFp8Info(c, N, K).paddedM);
    if (padded.every((p) => p > 0)) {
      const poff = [0];
      for (const c of padded) poff.push(poff[poff.length - 1] + c);
      row.ltLoopPaddedRows = poff[G];
      const ap = quant(poff[G], K, 1, 128);
      row.ltLoop = attempt(() => B.timeLtFp8Loop(ap.codes, ap.scales, b.codes, b.scales, poff, N, K, true, true, ITERS, FLUSH));
      freeAll(ap.codes, ap.scales);
    } else row.ltLoop = { error: 'cuBLASLt takes no padding of some expert size' };
  }
  freeAll(a.codes, a.scales);
  // masked: [G, Mmax, K] with masked_m = counts
  const am = quant(G * Mmax, K, 1, 128);
  const mDev = cu.alloc(4 * G);
  cu.upload(mDev, Int32Array.from(counts));
  if (caps.fp8GemmSm90) row.masked = attempt(() => B.timeGroupedFp8Gemm(1, am.codes, am.scales, b.codes, b.scales, mDev, G, Mmax, N, K, m, true, ITERS, FLUSH));
  freeAll(am.codes, am.scales, b.codes, b.scales, offDev, mDev);
  groupedRows.push(row);
  const f = (x) => (x?.medianMs ? `${x.medianMs.toFixed(4)} ms ${(flops / (x.medianMs * 1e-3) / 1e12).toFixed(0)} TF` : x?.error ?? '-');
  console.log(`grouped G=${G} m~${m} ${N}x${K} (total ${total}): contiguous ${f(row.contiguous)} | masked ${f(row.masked)} | lt loop ${f(row.ltLoop)} | kiln-lt loop ${f(row.kilnLtLoop)}`);
}
cu.synchronize();

// ---------------------------------------------------------------------------------------
// the peer
function runPeer() {
  if (env.CUDA_GEMM_PEER === '0') return { available: false, reason: 'skipped (CUDA_GEMM_PEER=0)' };
  const tmp = mkdtempSync(join(os.tmpdir(), 'kiln-cuda-gemm-'));
  const specPath = join(tmp, 'spec.json');
  const fp8 = [];
  for (const [N, K] of NKS) for (const M of MS) fp8.push([M, N, K]);
  writeFileSync(specPath, JSON.stringify({ fp8, bf16: BF16_SHAPES, f32: F32_SHAPES, iters: ITERS, flush: FLUSH }));
  const t0 = Date.now();
  const r = spawnSync(PYTHON, [join(here, 'peers', 'torch_gemm.py'), '--spec', specPath], { encoding: 'utf8', timeout: 600_000, env: { ...env, PYTHONUNBUFFERED: '1' } });
  rmSync(tmp, { recursive: true, force: true });
  if (r.stderr) process.stderr.write(r.stderr.split('\n').filter((l) => l.trim()).slice(-15).map((l) => `peer: ${l}\n`).join(''));
  const last = (r.stdout || '').trim().split('\n').pop();
  try {
    const out = JSON.parse(last);
    return { available: !out.error, ...(out.error ? { reason: `peer failed: ${out.error}` } : {}), seconds: (Date.now() - t0) / 1000, ...out };
  } catch {
    return { available: false, reason: `peer exited ${r.status ?? r.signal}${r.error ? ` (${r.error.message})` : ''}: ${(r.stderr || '').trim().split('\n').pop()}` };
  }
}
// The addon holds its memory pool; the peer runs while this process is alive, so trim first.
cu.trimPool();
const peer = runPeer();
console.log(`peer: ${peer.available ? `torch ${peer.torch}, ${peer.fp8Api ?? 'no blockwise scaled_mm'}` : peer.reason}`);
const peerFind = (key, M, N, K) => (peer[key] ?? []).find((p) => p.M === M && p.N === N && p.K === K);

// ---------------------------------------------------------------------------------------
// results
const date = new Date().toISOString();
const ms = (x) => x?.medianMs;
const tf = (M, N, K, x) => (ms(x) ? tflops(M, N, K, ms(x)) : null);
const ratio = (a, b) => (a && b ? b / a : null); // time(other) / time(kiln): > 1 means kiln is faster
for (const r of fp8Rows) {
  const p = peerFind('fp8', r.M, r.N, r.K);
  r.torch = p?.scaledMm ?? (p?.error ? { error: p.error } : undefined);
  for (const k of ['kiln', 'kilnLt', 'lt', 'torch']) {
    if (ms(r[k])) {
      r[k].tflops = r3(tf(r.M, r.N, r.K, r[k]));
      r[k].pctPeak = r3((100 * r[k].tflops) / PEAK.fp8);
      r[k].gbps = r3(r.bytes / (ms(r[k]) * 1e-3) / 1e9);
      r[k].pctHbm = r3((100 * r[k].gbps) / HBM);
    }
  }
  r.kilnOverLt = r3(ratio(ms(r.kiln), ms(r.lt)));
  r.kilnOverTorch = r3(ratio(ms(r.kiln), ms(r.torch)));
}
for (const r of f32Rows) {
  const p = peerFind('f32', r.M, r.N, r.K);
  r.torch = p?.matmul ?? (p?.error ? { error: p.error } : undefined);
  for (const k of ['kiln', 'lt', 'torch']) if (ms(r[k])) r[k].tflops = r3(tf(r.M, r.N, r.K, r[k]));
}
for (const r of bf16Rows) {
  const p = peerFind('bf16', r.M, r.N, r.K);
  r.torch = p?.matmul ?? (p?.error ? { error: p.error } : undefined);
  for (const k of ['lt', 'torch']) if (ms(r[k])) r[k].tflops = r3(tf(r.M, r.N, r.K, r[k]));
}
for (const r of groupedRows) {
  for (const k of ['contiguous', 'masked', 'ltLoop', 'kilnLtLoop']) if (ms(r[k])) r[k].tflops = r3(r.flops / (ms(r[k]) * 1e-3) / 1e12);
}

const result = {
  benchmark: 'cuda-gemm',
  date,
  machine: { ...machineInfo(), gpu: device, hbmGBs: HBM, peakTflops: PEAK },
  addon: { path: addonPath, capabilities: caps, probe },
  method: { iters: ITERS, l2Flush: FLUSH, timing: 'CUDA events around each call on the addon stream (C++), median', outputFp8: 'bf16' },
  checks,
  launchOverhead: launch,
  ltFp8PaddedM: mRule,
  fp8: fp8Rows,
  fp8OddM: oddRows,
  f32: f32Rows,
  bf16: bf16Rows,
  grouped: groupedRows,
  peer,
};
mkdirSync(resultsDir, { recursive: true });
writeFileSync(join(resultsDir, 'cuda-gemm.json'), `${JSON.stringify(result, null, 2)}\n`);

const cell = (x, M, N, K) => (ms(x) ? `${tf(M, N, K, x).toFixed(0)} (${ms(x) < 0.1 ? ms(x).toFixed(4) : ms(x).toFixed(3)} ms)` : x?.error ? 'error' : '—');
const pct = (x, p) => (x?.tflops ? `${((100 * x.tflops) / p).toFixed(0)}%` : '—');
const rx = (x) => (x == null ? '—' : `${x.toFixed(2)}×`);
const md = [];
md.push('## GPU GEMM (`bench/cuda-gemm.bench.mjs`)', '');
md.push(`${date.slice(0, 10)} · ${device.name} (${device.multiProcessorCount} SMs) · cuBLASLt ${caps.cublasLtVersion || 'unavailable'} · ${peer.available ? `PyTorch ${peer.torch} (CUDA ${peer.cuda})` : `PyTorch peer unavailable: ${peer.reason}`} · Node ${process.version}`, '');
md.push(`Median of ${ITERS} calls, each timed with CUDA events in C++ on the addon stream${FLUSH ? ', with a 256 MiB buffer overwritten before each call (operands come from HBM, not L2)' : ''}; the peer times the same way with torch.cuda.Event. TFLOP/s counts 2·M·N·K. Peaks: FP8 ${PEAK.fp8}, BF16 ${PEAK.bf16} TFLOP/s dense; HBM ${HBM} GB/s.`, '');
md.push('### FP8 blockwise (E4M3, 1×128 activation × 128×128 weight scales, bf16 out): TFLOP/s (time)', '');
md.push('kiln = kiln\'s sm90 kernel (fp8Gemm path 1); kiln→Lt = kiln via cuBLASLt (path 2: kiln\'s scale layouts, the activation scales transposed by a small kernel each call); cuBLASLt = the same GEMM with scales already in cuBLASLt\'s layouts; torch = `' + (peer.fp8Api ?? 'torch._scaled_mm') + '` blockwise. GB/s counts operands, scales and output once. Ratios are time(other) / time(kiln): above 1 means kiln is faster.', '');
md.push('| M | N×K | kiln | % peak | kiln GB/s (% HBM) | kiln→Lt | cuBLASLt | torch | kiln / cuBLASLt | kiln / torch |');
md.push('| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const r of fp8Rows) {
  const { M, N, K } = r;
  const gb = r.kiln?.gbps ? `${r.kiln.gbps.toFixed(0)} (${r.kiln.pctHbm.toFixed(0)}%)` : '—';
  md.push(`| ${M} | ${N}×${K} | ${cell(r.kiln, M, N, K)} | ${pct(r.kiln, PEAK.fp8)} | ${gb} | ${cell(r.kilnLt, M, N, K)} | ${cell(r.lt, M, N, K)} | ${cell(r.torch, M, N, K)} | ${rx(r.kilnOverLt)} | ${rx(r.kilnOverTorch)} |`);
}
md.push('');
if (oddRows.length) {
  const t = (x) => (ms(x) ? `${ms(x).toFixed(4)} ms` : x?.error ? 'error' : '—');
  md.push(`cuBLASLt's blockwise FP8 has no algorithm when M % 4 != 0; kiln's path 2 then pads M (small M) or runs the last 1-3 rows as a second 4-row GEMM (large M): ${oddRows.map((r) => `M=${r.M}: kiln→Lt ${t(r.kilnLt)}, kiln ${t(r.kiln)}`).join('; ')} (N×K = ${oddRows[0].N}×${oddRows[0].K}).`, '');
}
md.push('### Grouped FP8 (MoE experts, bf16 out): TFLOP/s (time)', '');
md.push('Tokens per expert uniform in [m/2, 3m/2]; TFLOP/s counts the real tokens. contiguous / masked = kiln\'s grouped sm90 kernels (one launch); Lt loop = one cuBLASLt blockwise call per expert, scales pre-converted and each expert\'s rows padded to an M cuBLASLt takes; kiln→Lt loop = the same through kiln\'s path 2 (fp8BlockwiseGemm per expert: scale conversion, and the padding copies where cuBLASLt needs them).', '');
md.push('| experts × m | N×K | total M | contiguous | masked | Lt loop | kiln→Lt loop | contiguous / Lt loop |');
md.push('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const r of groupedRows) {
  const c = (x) => (ms(x) ? `${x.tflops.toFixed(0)} (${ms(x).toFixed(3)} ms)` : x?.error ? 'error' : '—');
  md.push(`| ${r.G} × ${r.tokensPerExpert} | ${r.N}×${r.K} | ${r.totalM} | ${c(r.contiguous)} | ${c(r.masked)} | ${c(r.ltLoop)} | ${c(r.kilnLtLoop)} | ${rx(ratio(ms(r.contiguous), ms(r.ltLoop)))} |`);
}
md.push('');
md.push('### F32 (row-major A·Bᵀ) and BF16: TFLOP/s (time)', '');
md.push('| dtype | M×N×K | kiln CUDA cores | cuBLASLt | torch | cuBLASLt / kiln |');
md.push('| --- | --- | ---: | ---: | ---: | ---: |');
for (const r of f32Rows) md.push(`| f32 (no TF32) | ${r.M}×${r.N}×${r.K} | ${cell(r.kiln, r.M, r.N, r.K)} | ${cell(r.lt, r.M, r.N, r.K)} | ${cell(r.torch, r.M, r.N, r.K)} | ${rx(ratio(ms(r.lt), ms(r.kiln)))} |`);
for (const r of bf16Rows) md.push(`| bf16 (${pct(r.lt, PEAK.bf16)} of peak) | ${r.M}×${r.N}×${r.K} | — | ${cell(r.lt, r.M, r.N, r.K)} | ${cell(r.torch, r.M, r.N, r.K)} | — |`);
md.push('');
const okAll = (rows) => rows.length > 0 && rows.every((r) => r.ok);
const worst = (rows, k) => Math.max(...rows.map((r) => r[k] ?? 0));
md.push('### Correctness (this run)', '');
if (caps.cublasLt) {
  md.push(`- cuBLASLt sgemm vs float64 (4 transpose combinations, batch with stride-0 broadcast of A and of B, odd sizes, M = 1): ${okAll(checks.sgemm) ? 'pass' : 'FAIL'}, worst max |err| / Σ|a·b| ${worst(checks.sgemm, 'ltErr').toExponential(2)} (kiln's kernel: ${worst(checks.sgemm, 'kilnErr').toExponential(2)}).`);
  md.push(`- cuBLASLt bf16 vs float64: ${okAll(checks.bf16) ? 'pass' : 'FAIL'}, f32 out ${worst(checks.bf16, 'errF32Out').toExponential(2)}, bf16 out ${worst(checks.bf16, 'errBf16Out').toExponential(2)}.`);
}
md.push(`- FP8 blockwise vs kiln's exact kernel (path 0), max |err| / Σ|a·b|: cuBLASLt (path 2) ${caps.cublasLt ? `${okAll(checks.fp8) ? 'pass' : 'FAIL'}, worst ${worst(checks.fp8, 'path2Err').toExponential(2)}` : 'unavailable'}; kiln sm90 (path 1) worst ${worst(checks.fp8, 'path1Err').toExponential(2)}${checks.fp8.some((r) => r.path1Taken !== 1) ? ' (some shapes fell back to path 0)' : ''}.`);
if (peer.fp8Check) md.push(`- torch blockwise scaled_mm vs float64 at ${peer.fp8Check.M}×${peer.fp8Check.N}×${peer.fp8Check.K}: max |err| / Σ|a·b| ${peer.fp8Check.maxErrOverSumAbs.toExponential(2)} (bf16 output).`);
md.push('');
md.push(`Launch overhead from JS: ${launch.emptyCallUs} µs per empty N-API call, ${launch.tinyOpUs} µs per tiny op (alloc + launch + free, not waiting for the GPU).`, '');
writeFileSync(join(resultsDir, 'cuda-gemm.md'), `${md.join('\n')}\n`);
console.log(`\n${md.join('\n')}`);
console.log(`cuda-gemm: wrote ${join(resultsDir, 'cuda-gemm.json')} and .md`);
