/**
 * Which GEMM kernel a product runs with: the kernel family for this device (large tiles on a
 * hardware GPU, small ones on a software rasteriser), the tile, the operands' load paths and,
 * for skinny f32 products, how many K slices to split the work into.
 */
import { ArgumentError } from '@kiln/core';
import { envVar } from './env.js';
import { tileCols, tileRows, tiledGemmWorkgroupBytes, type TileLoad, type TiledGemmConfig, type TiledGemmSpec } from './wgsl/gemm-tiled.js';
import { slicedGemmWorkgroupBytes, slicedGeometry, type SlicedGemmConfig, type SlicedGemmSpec } from './wgsl/gemm-sliced.js';

export interface GemmChoice {
  readonly family: 'tiled' | 'software';
  /** A tile pinned by $KILN_WEBGPU_GEMM=tiled:ra,rb,bk (tuning), else chosen per product. */
  readonly pinned?: TiledGemmConfig;
  /** Workgroup memory the device gives a kernel. */
  readonly workgroupBytes: number;
  /** Unrolled k steps (default); $KILN_WEBGPU_GEMM_UNROLL=0 keeps the loop (tuning). */
  readonly unroll: boolean;
  /**
   * Two workgroup-memory stages (one barrier per tile) where they fit. 'auto': on the
   * 128 x 128 x 8 tiles only (H200, per product, two alternations: 4096³ f32 37.4 / 38.6 vs
   * 37.2 / 33.6 TFLOP/s with one stage, FP8 28.2 / 25.3 vs 25.2 / 24.4; on 64 x 128 x 16 tiles
   * f32 equal and FP8 slower: 19.3 vs 24.0). $KILN_WEBGPU_GEMM_DOUBLE=1 / 0 forces it on / off;
   * a pinned 'tiled:ra,rb,bk,stages' says it for that tile.
   */
  readonly double: boolean | 'auto';
  /**
   * Row-major A, transposed B and fp8 operands ('vec-k' loads) staged a 4 x 4 block per
   * invocation, stored as whole vec4s (TiledGemmConfig.veck4). 'auto' is off: it was chosen for
   * f32 on 64 x 128 x 16 tiles (2048³ 28.3-29.3 vs 20.5-21.3 TFLOP/s, measured while op issue
   * still reached the GPU's timeline), but with ops streamed to the worker it is the slower one
   * (H200, per product, two alternations: 1024³ 17.6-18.8 vs 25.6-29.2 TFLOP/s without it,
   * 128 x 7168 x 2048 16.3 vs 23.7-26.3, 1536 x 2048 x 2048 20.9 vs 32.7-32.9; it never helped
   * the 128 x 128 x 8 and 64 x 64 tiles or FP8). $KILN_WEBGPU_GEMM_VECK4=1 / 0 forces it on / off.
   */
  readonly veck4: boolean | 'auto';
  /**
   * K is split (a second, reducing dispatch) only where an unsplit tile would walk at least this
   * many tile depths along K: below it the extra dispatch's host cost exceeds the GPU time it
   * saves. $KILN_WEBGPU_GEMM_SPLIT_MIN_STEPS overrides it (tuning).
   */
  readonly splitMinSteps: number;
  /**
   * Sliced-K kernels (gemm-sliced.ts) for latency-bound products: 'auto' (chosen per product,
   * see slicedTileFor), 'off', or a tile pinned by $KILN_WEBGPU_GEMM_SLICED=bm,bn,slices,bk
   * (tuning: every product whose loads allow it takes that tile).
   */
  readonly sliced: SlicedGemmConfig | 'auto' | 'off';
}


/**
 * 'auto', a family, or a family with a pinned tile: 'tiled:ra,rb,bk', 'tiled:ra,rb,bk,stages' or
 * 'tiled:ra,rb,bk,stages,wy' (TiledGemmConfig).
 */
export type GemmOption =
  | 'auto'
  | 'tiled'
  | 'software'
  | `tiled:${number},${number},${number}`
  | `tiled:${number},${number},${number},${number}`
  | `tiled:${number},${number},${number},${number},${number}`;

export function chooseGemmKernels(
  option: GemmOption | undefined,
  software: boolean,
  limits: { maxComputeWorkgroupStorageSize: number },
): GemmChoice {
  const workgroupBytes = limits.maxComputeWorkgroupStorageSize;
  const spec = option && option !== 'auto' ? option : envVar('KILN_WEBGPU_GEMM') || 'auto';
  const m = /^(auto|tiled|software)(?::(\d),(\d),(\d+)(?:,(\d)(?:,(\d+))?)?)?$/.exec(spec);
  if (!m) throw new ArgumentError('webgpu', `KILN_WEBGPU_GEMM must be auto, software, tiled or tiled:ra,rb,bk[,stages[,wy]] (got '${spec}')`);
  const family = m[1] === 'auto' ? (software ? 'software' : 'tiled') : (m[1] as 'tiled' | 'software');
  const unroll = envVar('KILN_WEBGPU_GEMM_UNROLL') !== '0';
  const dv = envVar('KILN_WEBGPU_GEMM_DOUBLE');
  const double = dv === '1' ? true : dv === '0' ? false : 'auto';
  const v4 = envVar('KILN_WEBGPU_GEMM_VECK4');
  const veck4 = v4 === '1' ? true : v4 === '0' ? false : 'auto';
  const splitMinSteps = Number(envVar('KILN_WEBGPU_GEMM_SPLIT_MIN_STEPS') ?? SPLIT_MIN_STEPS);
  const sliced = parseSliced(envVar('KILN_WEBGPU_GEMM_SLICED') ?? 'auto');
  const base = { family, workgroupBytes, unroll, double, veck4, splitMinSteps, sliced } as const;
  if (!m[2]) return base;
  const pinned = { ra: Number(m[2]), rb: Number(m[3]), bk: Number(m[4]), ...(m[5] ? { double: m[5] === '2' } : {}), ...(m[6] ? { wy: Number(m[6]) } : {}) } as TiledGemmConfig;
  if (![1, 2, 4].includes(pinned.ra) || ![1, 2, 4].includes(pinned.rb) || ![8, 16, 32].includes(pinned.bk) || (m[5] && !['1', '2'].includes(m[5])) || (m[6] && !['8', '16'].includes(m[6]))) {
    throw new ArgumentError('webgpu', `KILN_WEBGPU_GEMM tile ra,rb,bk[,stages[,wy]] must be 1|2|4, 1|2|4, 8|16|32[, 1|2[, 8|16]] (got ${spec.slice(spec.indexOf(':') + 1)})`);
  }
  return { ...base, pinned };
}

function parseSliced(spec: string): SlicedGemmConfig | 'auto' | 'off' {
  if (spec === 'auto' || spec === 'off') return spec;
  const m = /^(\d+),(\d+),(\d+),(\d+)$/.exec(spec);
  if (!m) throw new ArgumentError('webgpu', `KILN_WEBGPU_GEMM_SLICED must be auto, off or bm,bn,slices,bk (got '${spec}')`);
  const c = { bm: Number(m[1]), bn: Number(m[2]), slices: Number(m[3]), bk: Number(m[4]) };
  const geo = slicedGeometry(c);
  if (typeof geo === 'string') throw new ArgumentError('webgpu', `KILN_WEBGPU_GEMM_SLICED=${spec}: ${geo}`);
  return c;
}

/**
 * 128 x 128 tiles from this many of them (about two per compute unit of a large GPU). H200, per
 * product, bind groups cached: 2048³ (256 tiles) f32 34.1 TFLOP/s with 128 x 128 x 8 two-stage
 * tiles vs 26.6 with 64 x 128 x 16; FP8 26.8 vs 25.6.
 */
const BIG_TILES = 256;

/** See GemmChoice.splitMinSteps. */
// H200, per product, bind groups cached, 16 / 48 / never: 512³ f32 0.06 / 0.04 / 0.05 ms,
// 64 x 2048 x 1024 0.07 / 0.05 / 0.08, 32 x 1536 x 2048 0.07 / 0.07 / 0.14
const SPLIT_MIN_STEPS = 48;

/** Workgroups a GPU needs to be busy (a few per compute unit on large GPUs). */
const BUSY_WORKGROUPS = 264;

/**
 * The tile for an M x N product: 128 x 128 x 8 (8 x 8 outputs per invocation) when there are
 * enough such tiles to fill a large GPU about twice (BIG_TILES), else 64 x 128 x 16 (4 x 8), 64 x 64
 * when a side is small, or for FP8 when there would be too few 64 x 128 tiles to fill a large GPU;
 * shrunk to fit the device's workgroup memory. Measured on an H200 (Dawn/Vulkan,
 * docs/benchmarks.md), per product in a chain: 4096³ f32 28.3 TFLOP/s with 64 x 128 x 16,
 * 32.3-35.4 with 128 x 128 x 8. Medium f32 products once took 64 x 64 tiles too (1024³: 21.5
 * TFLOP/s vs 17.8 with 64 x 128 and K split in 3), but that was measured while each op's host
 * cost still reached the GPU's timeline (ops left for the worker only at the end of a run of
 * them); with ops streamed to it: 1024³ 26.1 vs 21.2-22.5, 128 x 7168 x 2048 23.5 vs 17.5-17.8
 * (FP8 within noise: 17.9 vs 17.1-18.8, 18.2 vs 17.3-17.4).
 */
function tileFor(choice: GemmChoice, M: number, N: number, kind: 'f32' | 'fp8', products = 1): TiledGemmConfig | undefined {
  const t = tileSize(choice, M, N, kind, products);
  // the staging variant travels with the tile (specs spread it, the grouped FP8 one included)
  return t && choice.veck4 === true ? { ...t, veck4: true } : t;
}

// (products: how many M x N products one dispatch computes, a grouped GEMM's experts)
function tileSize(choice: GemmChoice, M: number, N: number, kind: 'f32' | 'fp8', products: number): TiledGemmConfig | undefined {
  const finite = Number.isFinite(M);
  const big = finite && Math.ceil(M / 128) * Math.ceil(N / 128) * products >= BIG_TILES;
  // medium FP8 products: 64 x 64 tiles while 64 x 128 ones would leave the GPU short of workgroups
  const medium = kind === 'fp8' && finite && Math.ceil(M / 64) * Math.ceil(N / 128) * products < BUSY_WORKGROUPS;
  // (medium FP8 products with more than 64 rows: 128 x 64 tiles; H200, two alternations: 1024³
  // 19.5-19.9 vs 17.8-18.2 TFLOP/s with 64 x 64, 128 x 7168 x 2048 18.0-18.1 vs 16.4)
  const tall = medium && M > 64;
  // (large FP8 products: 16-deep two-stage 128 x 128 tiles where they fit; H200, three
  // alternations: 2048³ 28.5-29.0 vs 27.4-27.9 TFLOP/s with 8-deep ones, 4096³ 25.1-28.4 vs
  // 26.1-27.9, 2048 x 7168 x 2048 29.5-29.8 vs 28.8-28.9; f32 lost: 4096³ 29.9 vs 36.1-37.4)
  const deepFp8 = big && kind === 'fp8' && !choice.pinned;
  let t: TiledGemmConfig = choice.pinned ?? (big ? { ra: 2, rb: 2, bk: deepFp8 ? 16 : 8 } : { ra: tall ? 2 : 1, rb: M > 64 && N > 64 && !medium ? 2 : 1, bk: 16 });
  const autoDouble = choice.double === 'auto' && !choice.pinned && big;
  if (t.double ?? (choice.double === true || autoDouble)) {
    const two = { ...t, double: true };
    if (tiledGemmWorkgroupBytes(two, kind) <= choice.workgroupBytes) return two;
    const shallow = { ...two, bk: 8 as const };
    if (deepFp8 && tiledGemmWorkgroupBytes(shallow, kind) <= choice.workgroupBytes) return shallow;
  }
  t = { ra: t.ra, rb: t.rb, bk: t.bk, ...(t.wy ? { wy: t.wy } : {}) };
  while (tiledGemmWorkgroupBytes(t, kind) > choice.workgroupBytes) {
    if (t.bk === 8) return undefined;
    t = { ...t, bk: t.bk === 32 ? 16 : 8 };
  }
  return t;
}

export interface F32GemmPlan {
  readonly spec: TiledGemmSpec;
  /** K slices (1: no split); kPer elements of K each, a multiple of the tile depth. */
  readonly slices: number;
  readonly kPer: number;
  readonly groups: [number, number, number];
}

/** Strides as the GEMM kernels take them: element offsets between rows / along K. */
export interface GemmStrides {
  readonly aBatch: number;
  readonly bBatch: number;
  readonly sam: number;
  readonly sak: number;
  readonly sbk: number;
  readonly sbn: number;
}

const aligned = (...xs: number[]): boolean => xs.every((x) => x % 4 === 0);

/**
 * How each operand's tiles are read: 16-byte words along m / n (A transposed, B row-major) or
 * along K (A row-major, B transposed) where the strides and sizes keep them aligned, else one
 * element at a time.
 */
function operandLoads(M: number, N: number, K: number, s: GemmStrides): { a: TileLoad; b: TileLoad } {
  const batchAligned = aligned(s.aBatch, s.bBatch);
  const a: TileLoad = batchAligned && s.sam === 1 && aligned(M, s.sak) ? 'vec-inner' : batchAligned && s.sak === 1 && aligned(K, s.sam) ? 'vec-k' : 'scalar';
  const b: TileLoad = batchAligned && s.sbn === 1 && aligned(N, s.sbk) ? 'vec-inner' : batchAligned && s.sbk === 1 && aligned(K, s.sbn) ? 'vec-k' : 'scalar';
  return { a, b };
}

/** The tiled plan of a batched f32 product, or undefined where the software kernels run. */
export function planF32Gemm(choice: GemmChoice, M: number, N: number, K: number, batch: number, s: GemmStrides): F32GemmPlan | undefined {
  if (choice.family !== 'tiled') return undefined;
  const t = tileFor(choice, M, N, 'f32');
  if (!t) return undefined;
  const { a, b } = operandLoads(M, N, K, s);
  const gx = Math.ceil(N / tileCols(t));
  const gy = Math.ceil(M / tileRows(t));
  const tiles = gx * gy * batch;
  // split K when the tiles alone leave the GPU idle, keeping each slice at least 8 tiles deep
  let slices = 1;
  if (tiles < BUSY_WORKGROUPS / 2 && K / t.bk >= choice.splitMinSteps) slices = Math.max(1, Math.min(Math.ceil(BUSY_WORKGROUPS / tiles), Math.floor(K / (8 * t.bk)), 32));
  const kPer = Math.ceil(K / slices / t.bk) * t.bk;
  slices = Math.ceil(K / kPer);
  if (batch * slices > 65535) return undefined;
  return { spec: { kind: 'f32', ...t, a, b, vecOut: N % 4 === 0, unroll: choice.unroll }, slices, kPer, groups: [gx, gy, batch * slices] };
}

/** Partial buffers of a chunked FP8 product larger than this are not worth their memory. */
const CHUNK_PARTIALS_MAX_BYTES = 256 * 1024 * 1024;

/**
 * The tiled plan of a block-scaled FP8 product, or undefined where the other kernels run.
 * `chunks` > 1: one workgroup layer per promotion chunk (TiledGemmSpec.chunked), the chunks'
 * products summed by splitKReduceShader; for skinny products whose tiles alone leave the GPU idle
 * (the same rule as the f32 K split).
 */
export function planFp8Gemm(choice: GemmChoice, M: number, N: number, K: number, promotionInterval: number): { spec: TiledGemmSpec; groups: [number, number, number]; chunks: number } | undefined {
  if (choice.family !== 'tiled' || K % 4 !== 0) return undefined;
  const t = tileFor(choice, M, N, 'fp8');
  if (!t || !(promotionInterval % t.bk === 0 || promotionInterval >= K)) return undefined;
  const gx = Math.ceil(N / tileCols(t));
  const gy = Math.ceil(M / tileRows(t));
  const chunks = Math.ceil(K / promotionInterval);
  const chunked =
    chunks > 1 && gx * gy < BUSY_WORKGROUPS / 2 && K / t.bk >= choice.splitMinSteps && chunks <= 65535 && M * N * chunks * 4 <= CHUNK_PARTIALS_MAX_BYTES;
  const spec: TiledGemmSpec = { kind: 'fp8', ...t, a: 'vec-k', b: 'vec-k', vecOut: N % 4 === 0, unroll: choice.unroll, ...(chunked ? { chunked: true } : {}) };
  return { spec, groups: [gx, gy, chunked ? chunks : 1], chunks: chunked ? chunks : 1 };
}

/** Rows per group from which a grouped FP8 product may take the large tiles. */
const GROUPED_BIG_ROWS = 256;

/**
 * The tile of a grouped FP8 product of `rows` rows in all over `groups` groups (any device: the
 * grouped kernel exists only in the tiled family). A group's row count stays on the GPU, so the
 * tile is sized for the mean: from GROUPED_BIG_ROWS rows per group, as a plain product of that
 * many rows (the 128 x 128 tiles once the groups hold enough of them), else as for many rows with
 * 64-row tiles (an expert's rows rarely fill 128).
 */
export function planGroupedFp8(choice: GemmChoice, N: number, rows = Infinity, groups = 1): TiledGemmConfig | undefined {
  const mean = rows / Math.max(groups, 1);
  return mean >= GROUPED_BIG_ROWS ? tileFor(choice, mean, N, 'fp8', groups) : tileFor(choice, Infinity, N, 'fp8');
}

/** Sliced-K kernels below this many 64 x 64 tiles (about one per compute unit of a large GPU). */
const SLICED_BELOW_TILES = 128;
/** ... and from this K on (shorter products have too little K to share out). */
const SLICED_MIN_K = 256;

/**
 * The sliced-K tile for an M x N x K product (see gemm-sliced.ts), or undefined where the tiled
 * kernels run: where 64 x 64 tiles would not give every compute unit of a large GPU one, and K is
 * long enough to share out. Few rows (M <= 32): 16 x 32 tiles in 8 slices; up to 64 rows 16 x 64
 * tiles in 8 slices of 8-deep stages (H200, ops streamed, three alternations: 64 x 2048 x 1024 f32
 * 5.0-8.2 -> 10.3-14.0 TFLOP/s, 48 x 2048 x 2048 5.5-6.9 -> 6.7-7.8, FP8 level), else 16 x 64
 * tiles in 4. Measured on an H200 (Dawn/Vulkan, per product in a chain, kiln GFLOP/s over two runs,
 * tiled kernels -> sliced): 512³ f32 5,206-5,633 -> 5,819-6,063; 64 x 2048 x 1024 f32
 * 3,454-4,497 -> 6,191-6,804; FP8 128 x 512 x 512 1,254-1,421 -> 1,917-2,017; FP8 256 x 1024 x 1024
 * 7,429-7,577 -> 8,019-8,041; 32 x 1536 x 2048 (16 x 32 tiles) f32 2,869-3,556 -> 4,209, FP8
 * 3,098-3,557 -> 3,904. On 1024³ and 128 x 7168 x 2048 (224-256 tiles) every sliced tile was
 * slower than the tiled kernels (13-15 vs 17-18 TFLOP/s).
 */
function slicedTileFor(choice: GemmChoice, M: number, N: number, K: number, batch: number, kind: 'f32' | 'fp8'): SlicedGemmConfig | undefined {
  if (choice.family !== 'tiled' || choice.sliced === 'off') return undefined;
  let t: SlicedGemmConfig | undefined;
  if (choice.sliced !== 'auto') t = choice.sliced;
  else if (Math.ceil(M / 64) * Math.ceil(N / 64) * batch < SLICED_BELOW_TILES && K >= SLICED_MIN_K) {
    t = M <= 32 ? { bm: 16, bn: 32, slices: 8, bk: 16 } : M <= 64 ? { bm: 16, bn: 64, slices: 8, bk: 8 } : { bm: 16, bn: 64, slices: 4, bk: 16 };
  }
  return t && slicedGemmWorkgroupBytes(t, kind) <= choice.workgroupBytes ? t : undefined;
}

/**
 * A sliced kernel's dispatch [N tiles, M tiles, batch], or undefined where a dimension would
 * exceed 65535 workgroups (a pinned tile on a huge product: the tiled kernels take it).
 */
function slicedGroups(t: SlicedGemmConfig, M: number, N: number, batch: number): [number, number, number] | undefined {
  const groups: [number, number, number] = [Math.ceil(N / t.bn), Math.ceil(M / t.bm), batch];
  return groups.every((g) => g <= 65535) ? groups : undefined;
}

/** The sliced-K plan of a batched f32 product, or undefined (then planF32Gemm's). */
export function planSlicedF32(choice: GemmChoice, M: number, N: number, K: number, batch: number, s: GemmStrides): { spec: SlicedGemmSpec; groups: [number, number, number] } | undefined {
  const t = slicedTileFor(choice, M, N, K, batch, 'f32');
  const groups = t && slicedGroups(t, M, N, batch);
  // (the sliced kernels read whole 16-byte words only)
  const { a, b } = operandLoads(M, N, K, s);
  if (!t || !groups || a === 'scalar' || b === 'scalar') return undefined;
  return { spec: { kind: 'f32', ...t, a, b, vecOut: N % 4 === 0 }, groups };
}

/** The sliced-K plan of a block-scaled FP8 product (whole promotion chunks per slice), or undefined. */
export function planSlicedFp8(choice: GemmChoice, M: number, N: number, K: number, promotionInterval: number): { spec: SlicedGemmSpec; groups: [number, number, number] } | undefined {
  if (K % 4 !== 0 || !Number.isFinite(promotionInterval)) return undefined;
  let t = slicedTileFor(choice, M, N, K, 1, 'fp8');
  // (automatic tiles: a slice per promotion chunk at least, else fewer slices or none)
  const chunks = Math.ceil(K / promotionInterval);
  if (t && choice.sliced === 'auto' && chunks < t.slices) t = chunks >= 4 ? { bm: 16, bn: 64, slices: 4, bk: 16 } : undefined;
  const groups = t && slicedGroups(t, M, N, 1);
  if (!t || !groups || promotionInterval % t.bk !== 0) return undefined;
  return { spec: { kind: 'fp8', ...t, a: 'vec-k', b: 'vec-k', vecOut: N % 4 === 0 }, groups };
}
