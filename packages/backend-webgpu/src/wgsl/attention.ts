/**
 * Fused scaled-dot-product attention (FusedKernels.attention): one pass over the keys with an
 * online softmax, so the [Tq, S] score matrix never reaches global memory.
 *
 * A workgroup owns one batch index and a block of BQ = TY * RQ query rows; its TY x TX
 * invocations are laid out as (ty, tx). Per tile of BK = TX * RK keys:
 *  1. scores: q kᵀ for the block, accumulated over dk in chunks of DC: the chunk of Q [BQ, DC]
 *     and of K [BK, DC] is staged in workgroup memory (transposed: d-major, so that an
 *     invocation's rows and keys are read without bank conflicts); invocation (ty, tx) keeps
 *     the RQ x RK scores of rows ty + TY*i and keys tx + TX*j in registers;
 *  2. masking (key beyond S, or beyond the causal limit offset + row) and the tile's row
 *     maxima, reduced over the TX invocations of a row through workgroup memory; the running
 *     max m grows, and the accumulators and running sum are rescaled by exp(m_old - m_new);
 *  3. p = exp(s - m) (core's accurate exp, k_exp) into workgroup memory [BK, BQ];
 *  4. out += p v: V staged VC keys at a time ([VC, dv] in workgroup memory, or read from global
 *     memory when even one row of it does not fit); invocation (ty, tx) accumulates rows
 *     ty + TY*i, columns tx + TX*c.
 * Each invocation sums its own keys' p; the row sums are reduced once at the end. Causal
 * blocks stop at the last tile holding a visible key (tiles past the diagonal are never
 * visited), and the tile loop's V stage stops at the block's last visible key; the diagonal
 * tile is masked element by element. Blocks are dispatched longest first (the last query
 * block of a batch index first), so the causal triangle's long blocks do not trail.
 *
 * Out: one buffer holding out [B, Tq, dv] then logSumExp [B, Tq] (a kernel binds one writable
 * buffer); logSumExp = m + log(l). A row without any visible key (only S = 0 without a mask:
 * a causal row always sees key 0) writes out 0 and logSumExp -inf instead of 0/0. Rows of
 * the last block beyond Tq are computed on zero queries and never written.
 *
 * meta: [Tq, S, B, qBlocks, scale bits, causal, offset, lse base, nd, dims[nd],
 * kStrides[nd], vStrides[nd]]: the batch index b of q (row-major over the leading dims
 * `dims`) starts k at Σ c_d kStrides[d] (0 along a broadcast axis), likewise v.
 * Dispatch: B * qBlocks workgroups, folded into y (and z) past 65535.
 *
 * Split keys (attentionShader(spec, true); decode-shaped calls, where B * qBlocks workgroups
 * would leave most of a GPU idle): meta gains [splits, chunk] after the batch words and
 * B * qBlocks * splits workgroups run; workgroup split sp walks keys [sp * chunk, (sp + 1) *
 * chunk) ∩ [0, kEnd) only, and writes per query row its partial (m, l, acc[dv]) (acc not
 * divided by l) to a scratch buffer laid out [B * Tq, splits, dv + 2]. A range holding no
 * visible key (past S or past the causal limit) writes the neutral partial m = -3e38 (the
 * kernel's finite -inf), l = 0, acc = 0. attentionCombineShader then merges the splits of a
 * row into the usual out / logSumExp layout.
 */
import { ArgumentError } from '@kiln/core';
import { MATH } from './math.js';

export interface AttentionConfig {
  /** Row groups and invocations per row group: TY * TX invocations. */
  readonly ty: number;
  readonly tx: number;
  /** Query rows and keys per invocation in the score tile: BQ = ty * rq, BK = tx * rk. */
  readonly rq: number;
  readonly rk: number;
  /** dk depth of one staged Q/K chunk. */
  readonly dc: number;
  /** Keys of V staged at a time (divides BK); 0: V is read from global memory. */
  readonly vc: number;
}

export interface AttentionSpec extends AttentionConfig {
  readonly dk: number;
  readonly dv: number;
}

/** Output columns per invocation and the padded row length of a staged V chunk. */
function columns(tx: number, dv: number): { rc: number; dvp: number } {
  const rc = Math.max(1, Math.ceil(dv / tx));
  return { rc, dvp: rc * tx };
}

/** Bytes of workgroup memory the kernel declares. */
export function attentionWorkgroupBytes(s: AttentionSpec): number {
  const bq = s.ty * s.rq;
  const bk = s.tx * s.rk;
  const { dvp } = columns(s.tx, s.dv);
  const stage = Math.max((bq + bk + 2) * s.dc, s.vc * dvp);
  return 4 * (stage + (bq + 1) * bk + bq * s.tx);
}

const BUSY_WORKGROUPS = 256;

/**
 * The kernel for one problem: a layout by the shape and device (decode: a few query rows,
 * 64 keys per tile; hardware GPUs: 16 x 16 invocations with the largest query block, 64, 32
 * or 16 rows, that still yields enough workgroups; software rasterisers: 8 x 8 invocations,
 * 32 x 32 tiles), or `pinned`; then depths that fit `workgroupBytes`. Fallback, in order,
 * while the workgroup memory is too small: halve the V stage and the dk chunk (the larger
 * first; down to 8 keys of V and 4-deep chunks), then read V from global memory, then 1-deep
 * chunks, then smaller register blocks (rq, rk down to 1: a 16 x 16 tile then needs ~2.2 KB,
 * within any device kiln accepts, whose minimum is 8 KiB).
 */
export function planAttention(dk: number, dv: number, Tq: number, batches: number, workgroupBytes: number, software: boolean, pinned?: AttentionConfig): AttentionSpec {
  let c: AttentionConfig;
  if (pinned) {
    c = pinned;
  } else if (Tq <= 4) {
    // decode: the rows of a batch index in one workgroup. On a GPU one key per invocation, 256
    // invocations in all, shallow dk chunks and V read straight from global memory: decode is
    // a stream over K and V, and small workgroup-memory stages let many workgroups stay
    // resident (H200, dk/dv 192/128, per call in a chain: 8x16 heads against 1024 keys 2.45 ->
    // 0.58 ms, against 4096 keys 8.9 -> 1.7 ms, 1x16 against 1024 0.41 -> 0.32 ms with
    // 1x256 invocations, dk chunks of 4; 8x16 heads of 4 rows 0.89 -> 0.70 ms with 4x64 and
    // chunks of 16; was 1x64 / 4x64 with 64-deep chunks and V staged 64 keys at a time). On
    // llvmpipe 16 invocations of 4 keys (a workgroup's invocations run in turn on one CPU thread).
    const ty = Tq <= 1 ? 1 : 4;
    c = software ? { ty, tx: 16, rq: 1, rk: 4, dc: 64, vc: 64 } : ty === 1 ? { ty, tx: 256, rq: 1, rk: 1, dc: 4, vc: 0 } : { ty, tx: 64, rq: 1, rk: 1, dc: 16, vc: 0 };
  } else if (software) {
    // llvmpipe: 8 x 8 invocations of 4 x 4 scores, 32 x 32 tiles, 64-deep chunks (measured
    // against 16 x 16 invocations and 64 x 64 tiles with bench/webgpu-attention.bench.mjs:
    // 1.5-3x faster there; fewer, fuller invocations and fewer barriers suit a CPU)
    c = { ty: 8, tx: 8, rq: 4, rk: 4, dc: 64, vc: 32 };
  } else if (batches * Math.ceil(Tq / 128) >= BUSY_WORKGROUPS / 2) {
    // long sequences: 128-row query blocks (8 rows per invocation) while there are still about
    // one per compute unit, 16-deep dk chunks: each K/V tile staged serves twice the rows (H200,
    // 16 heads of dk/dv 192/128, causal, per call in a chain: T 1024 1.68 -> 1.46 ms, T 2048
    // 4.67 -> 4.33 ms against 64-row blocks with 32-deep chunks)
    c = { ty: 16, tx: 16, rq: 8, rk: 4, dc: 16, vc: 64 };
  } else {
    // fewer blocks: 32-row blocks, 16-row ones while those still leave the GPU short of
    // workgroups (64-row blocks would be fewer than BUSY_WORKGROUPS here, by the test above)
    let rq = 2;
    while (rq > 1 && batches * Math.ceil(Tq / (16 * rq)) < BUSY_WORKGROUPS) rq /= 2;
    c = { ty: 16, tx: 16, rq, rk: 4, dc: 32, vc: 64 };
  }
  let s: AttentionSpec = { ...c, dc: Math.max(1, Math.min(c.dc, roundUp(dk, 4))), dk, dv };
  const fits = (x: AttentionSpec) => attentionWorkgroupBytes(x) <= workgroupBytes;
  while (!fits(s)) {
    const vBytes = s.vc * columns(s.tx, dv).dvp;
    const qkBytes = (s.ty * s.rq + s.tx * s.rk + 2) * s.dc;
    if (s.vc > 8 && (vBytes >= qkBytes || s.dc <= 4)) s = { ...s, vc: s.vc / 2 };
    else if (s.dc > 4) s = { ...s, dc: Math.ceil(s.dc / 2) };
    else if (s.vc > 0) s = { ...s, vc: 0 };
    else if (s.dc > 1) s = { ...s, dc: 1 };
    else if (s.rk > 1) s = { ...s, rk: s.rk / 2 };
    else if (s.rq > 1) s = { ...s, rq: s.rq / 2 };
    else if (s.tx > 16) s = { ...s, tx: s.tx / 2 };
    else break; // 16 x 16 x 1 with V in global memory: ~2.2 KB
  }
  return s;
}

function roundUp(x: number, m: number): number {
  return Math.ceil(x / m) * m;
}

/** A layout pinned for tuning: 'ty,tx,rq,rk,dc,vc' ($KILN_WEBGPU_ATTENTION), or undefined. */
export function parseAttentionConfig(text: string | undefined): AttentionConfig | undefined {
  if (!text) return undefined;
  const n = text.split(',').map(Number);
  const pow2 = (x: number) => Number.isInteger(x) && x >= 1 && (x & (x - 1)) === 0;
  if (n.length !== 6 || !n.slice(0, 4).every(pow2) || n[0] * n[1] > 256 || !(n[4] >= 1) || !(n[5] === 0 || (pow2(n[5]) && n[5] <= n[1] * n[3]))) {
    throw new ArgumentError('webgpu.attention', `KILN_WEBGPU_ATTENTION must be 'ty,tx,rq,rk,dc,vc' (powers of two, ty*tx <= 256, vc 0 or dividing tx*rk), got '${text}'`);
  }
  return { ty: n[0], tx: n[1], rq: n[2], rk: n[3], dc: n[4], vc: n[5] };
}

/** Meta words after the fixed ones: the leading dims of q with k's and v's batch strides, broadcast axes merged. */
export function attentionBatchMeta(qLead: readonly number[], kLead: readonly number[], vLead: readonly number[], kRow: number, vRow: number): number[] {
  // strides of k and v over q's leading dims (0 where broadcast), axes of size 1 dropped and
  // neighbours with the same broadcast pattern merged
  const dims: number[] = [];
  const ks: number[] = [];
  const vs: number[] = [];
  let kStride = kRow;
  let vStride = vRow;
  const kAxis: number[] = new Array(qLead.length);
  const vAxis: number[] = new Array(qLead.length);
  for (let d = qLead.length - 1; d >= 0; d--) {
    kAxis[d] = kLead[d] === 1 ? 0 : kStride;
    vAxis[d] = vLead[d] === 1 ? 0 : vStride;
    kStride *= kLead[d];
    vStride *= vLead[d];
  }
  for (let d = 0; d < qLead.length; d++) {
    if (qLead[d] === 1) continue;
    const last = dims.length - 1;
    // merge with the previous axis when both stay contiguous (or both broadcast) across it
    if (last >= 0 && ks[last] === kAxis[d] * qLead[d] && vs[last] === vAxis[d] * qLead[d]) {
      dims[last] *= qLead[d];
      ks[last] = kAxis[d];
      vs[last] = vAxis[d];
      continue;
    }
    dims.push(qLead[d]);
    ks.push(kAxis[d]);
    vs.push(vAxis[d]);
  }
  return [dims.length, ...dims, ...ks, ...vs];
}

const unroll = (n: number, f: (i: number) => string): string => Array.from({ length: n }, (_, i) => f(i)).join('');

/** The WGSL source of one attention kernel (see the file comment). */
export function attentionShader(s: AttentionSpec, split = false): string {
  const { ty: TY, tx: TX, rq: RQ, rk: RK, dc: DC, vc: VC, dk: DK, dv: DV } = s;
  const BQ = TY * RQ;
  const BK = TX * RK;
  const NT = TY * TX;
  const { rc: RC, dvp: DVP } = columns(TX, DV);
  // rows of the staged Q/K chunks and of p padded by one word: the stores (consecutive
  // invocations write consecutive d of one row) then hit distinct banks
  const QS = BQ + 1;
  const KS = BK + 1;
  const PS = BQ + 1;
  const stage = Math.max((QS + KS) * DC, VC * DVP);
  const rows = (f: (i: number) => string) => unroll(RQ, f);
  const keys = (f: (j: number) => string) => unroll(RK, f);
  const cols = (f: (c: number) => string) => unroll(RC, f);
  const vis = (i: number, j: number) => `(k0 + ${j * TX}u + tx < kLim && (!causal || k0 + ${j * TX}u + tx <= offset + q0 + ty + ${i * TY}u))`;

  const pv = VC > 0
    ? `    for (var v0 = 0u; v0 < kn; v0 += ${VC}u) {
      for (var e = tid; e < ${VC * DVP}u; e += ${NT}u) {
        let kr = k0 + v0 + e / ${DVP}u; let c = e % ${DVP}u;
        var x = 0.0;
        if (c < ${DV}u && kr < kEnd) { x = V[vBase + kr * ${DV}u + c]; }
        stage[e] = x;
      }
      workgroupBarrier();
      for (var jv = 0u; jv < ${VC}u; jv++) {
        let pj = (v0 + jv) * ${PS}u + ty;
${rows((i) => `        let p${i} = Ps[pj + ${i * TY}u];\n`)}${cols((c) => `        let w${c} = stage[jv * ${DVP}u + tx + ${c * TX}u];\n`)}${rows((i) => cols((c) => `        acc[${i * RC + c}] += p${i} * w${c};\n`))}      }
      workgroupBarrier();
    }
`
    : `    for (var jv = 0u; jv < kn; jv++) {
      let pj = jv * ${PS}u + ty;
      let vr = vBase + (k0 + jv) * ${DV}u;
${rows((i) => `      let p${i} = Ps[pj + ${i * TY}u];\n`)}${cols((c) => `      var w${c} = 0.0;\n      if (tx + ${c * TX}u < ${DV}u) { w${c} = V[vr + tx + ${c * TX}u]; }\n`)}${rows((i) => cols((c) => `      acc[${i * RC + c}] += p${i} * w${c};\n`))}    }
    workgroupBarrier();
`;

  return `@group(0) @binding(0) var<storage, read> prm: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> Q: array<f32>;
@group(0) @binding(3) var<storage, read> K: array<f32>;
@group(0) @binding(4) var<storage, read> V: array<f32>;
${MATH}
// ${BQ} query rows x ${BK} keys per tile; dk ${DK} in chunks of ${DC}; dv ${DV} (${RC} columns per invocation); V ${VC > 0 ? `staged ${VC} keys at a time` : 'read from global memory'}
var<workgroup> stage: array<f32, ${stage}>;
var<workgroup> Ps: array<f32, ${PS * BK}>; // p [key][row], rows padded to ${PS}
var<workgroup> red: array<f32, ${BQ * TX}>; // per-row partials [row][tx]
const NEG: f32 = -3.0e38;

@compute @workgroup_size(${NT})
fn main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let Tq = prm[0]; let S = prm[1]; let qBlocks = prm[3];
  let scale = bitcast<f32>(prm[4]); let causal = prm[5] != 0u; let offset = prm[6];
  let wid = wg.x + (wg.y + wg.z * nwg.y) * nwg.x;
  let nd = prm[8];
${split ? `  // split keys: workgroup (batch index, query block, split sp) walks keys [kStart, kLim)
  let nSplit = prm[9u + 3u * nd]; let chunk = prm[10u + 3u * nd];
  let sp = wid % nSplit; let wq = wid / nSplit;` : '  let wq = wid;'}
  let b = wq / qBlocks;
  if (b >= prm[2]) { return; }
  // longest blocks first: the last query block of a batch index is dispatched first
  let q0 = (qBlocks - 1u - wq % qBlocks) * ${BQ}u;
${split ? '  let kStart = min(sp * chunk, S); let kLim = min(S, kStart + chunk);' : '  let kStart = 0u; let kLim = S;'}
  var rem = b; var kBase = 0u; var vBase = 0u;
  for (var d = nd; d > 0u; d--) {
    let dim = prm[8u + d]; let cd = rem % dim; rem = rem / dim;
    kBase += cd * prm[8u + nd + d]; vBase += cd * prm[8u + 2u * nd + d];
  }
  let qBase = b * Tq * ${DK}u;
  let ty = tid / ${TX}u; let tx = tid % ${TX}u;
  // keys past kEnd are visible to no row of this block
  var kEnd = kLim;
  if (causal) { kEnd = min(kLim, offset + min(q0 + ${BQ}u, Tq)); }
  var tiles = 0u;
  if (kEnd > kStart) { tiles = (kEnd - kStart + ${BK - 1}u) / ${BK}u; }
  var m: array<f32, ${RQ}>;
  var l: array<f32, ${RQ}>;
  var acc: array<f32, ${RQ * RC}>;
${rows((i) => `  m[${i}] = NEG; l[${i}] = 0.0;\n`)}${unroll(RQ * RC, (a) => `  acc[${a}] = 0.0;\n`)}
  for (var t = 0u; t < tiles; t++) {
    let k0 = kStart + t * ${BK}u;
    var sc: array<f32, ${RQ * RK}>;
${unroll(RQ * RK, (a) => `    sc[${a}] = 0.0;\n`)}    for (var c0 = 0u; c0 < ${DK}u; c0 += ${DC}u) {
      for (var e = tid; e < ${BQ * DC}u; e += ${NT}u) {
        let r = q0 + e / ${DC}u; let dd = e % ${DC}u;
        var x = 0.0;
        if (r < Tq && c0 + dd < ${DK}u) { x = Q[qBase + r * ${DK}u + c0 + dd]; }
        stage[dd * ${QS}u + e / ${DC}u] = x;
      }
      for (var e = tid; e < ${BK * DC}u; e += ${NT}u) {
        let kr = k0 + e / ${DC}u; let dd = e % ${DC}u;
        var x = 0.0;
        if (kr < kEnd && c0 + dd < ${DK}u) { x = K[kBase + kr * ${DK}u + c0 + dd]; }
        stage[${QS * DC}u + dd * ${KS}u + e / ${DC}u] = x;
      }
      workgroupBarrier();
      for (var dd = 0u; dd < ${DC}u; dd++) {
${rows((i) => `        let qv${i} = stage[dd * ${QS}u + ty + ${i * TY}u];\n`)}${keys((j) => `        let kv${j} = stage[${QS * DC}u + dd * ${KS}u + tx + ${j * TX}u];\n`)}${rows((i) => keys((j) => `        sc[${i * RK + j}] += qv${i} * kv${j};\n`))}      }
      workgroupBarrier();
    }
    // scale, mask, this invocation's row maxima
${rows((i) => `    {
      var mx = NEG;
${keys((j) => `      sc[${i * RK + j}] = select(NEG, sc[${i * RK + j}] * scale, ${vis(i, j)});\n      mx = max(mx, sc[${i * RK + j}]);\n`)}      red[(ty + ${i * TY}u) * ${TX}u + tx] = mx;
    }
`)}    workgroupBarrier();
${rows((i) => `    {
      let rr = (ty + ${i * TY}u) * ${TX}u;
      var mx = m[${i}];
      for (var x = 0u; x < ${TX}u; x++) { mx = max(mx, red[rr + x]); }
      let alpha = k_exp(m[${i}] - mx);
      m[${i}] = mx;
      var ls = l[${i}] * alpha;
${cols((c) => `      acc[${i * RC + c}] *= alpha;\n`)}${keys((j) => `      { let p = select(0.0, k_exp(sc[${i * RK + j}] - mx), ${vis(i, j)}); ls += p; Ps[(tx + ${j * TX}u) * ${PS}u + ty + ${i * TY}u] = p; }\n`)}      l[${i}] = ls;
    }
`)}    workgroupBarrier();
    let kn = min(${BK}u, kEnd - k0);
${pv}  }
  // the row sums: this invocation's partials, reduced over the row's TX invocations
${rows((i) => `  red[(ty + ${i * TY}u) * ${TX}u + tx] = l[${i}];\n`)}  workgroupBarrier();
${rows((i) => `  {
    let row = q0 + ty + ${i * TY}u;
    let rr = (ty + ${i * TY}u) * ${TX}u;
    var sum = 0.0;
    for (var x = 0u; x < ${TX}u; x++) { sum += red[rr + x]; }
    if (row < Tq) {
${split ? `      // the partial (m, l, acc) of this split
      let o = ((b * Tq + row) * nSplit + sp) * ${DV + 2}u;
${cols((c) => `      if (tx + ${c * TX}u < ${DV}u) { out[o + 2u + tx + ${c * TX}u] = acc[${i * RC + c}]; }\n`)}      if (tx == 0u) { out[o] = m[${i}]; out[o + 1u] = sum; }`
    : `      let o = (b * Tq + row) * ${DV}u;
${cols((c) => `      if (tx + ${c * TX}u < ${DV}u) { out[o + tx + ${c * TX}u] = select(0.0, acc[${i * RC + c}] / sum, sum > 0.0); }\n`)}      if (tx == 0u) { out[prm[7] + b * Tq + row] = m[${i}] + k_log(sum); }`}
    }
  }
`)}}
`;
}

const cache = new Map<string, string>();
/** attentionShader memoised by its spec (the source is built once per variant). */
export function attentionShaderMemo(s: AttentionSpec, split = false): string {
  const key = `${s.ty},${s.tx},${s.rq},${s.rk},${s.dc},${s.vc},${s.dk},${s.dv},${split}`;
  let code = cache.get(key);
  if (code === undefined) cache.set(key, (code = attentionShader(s, split)));
  return code;
}

/** Keys per split below which splitting does not pay (one 64-key tile). */
const MIN_SPLIT_KEYS = 64;

/**
 * How many key ranges a call is split into (1: the one-pass kernel) and the keys per range.
 * `pinned` ($KILN_WEBGPU_ATTENTION_SPLITS; 0 or 1: off) is taken as is, ranges of ceil(S /
 * splits) keys, also on software adapters. Otherwise hardware GPUs split only when the B *
 * qBlocks workgroups are fewer than BUSY_WORKGROUPS (256) and S >= 128: into enough ranges
 * for ~256 workgroups, each at least 64 keys (the last may be shorter) and a whole number of
 * `bk`-key tiles; llvmpipe (its workgroups run on a few CPU threads, so more of them buys
 * nothing) keeps the one-pass kernel.
 */
export function planAttentionSplits(S: number, workgroups: number, bk: number, software: boolean, pinned?: number): { splits: number; chunk: number } {
  const off = { splits: 1, chunk: S };
  if (S === 0 || workgroups === 0) return off;
  if (pinned !== undefined) return pinned <= 1 ? off : { splits: pinned, chunk: Math.ceil(S / pinned) };
  if (software || workgroups >= BUSY_WORKGROUPS) return off;
  if (S < 2 * MIN_SPLIT_KEYS) return off;
  const n = Math.min(Math.ceil(BUSY_WORKGROUPS / workgroups), Math.ceil(S / MIN_SPLIT_KEYS));
  const tile = Math.max(1, bk);
  const chunk = Math.max(roundUp(Math.ceil(S / n), tile), roundUp(MIN_SPLIT_KEYS, tile));
  const splits = Math.ceil(S / chunk);
  return splits < 2 ? off : { splits, chunk };
}

/** A pinned split count ($KILN_WEBGPU_ATTENTION_SPLITS: a whole number, 0 or 1 = off), or undefined. */
export function parseAttentionSplits(text: string | undefined): number | undefined {
  if (text === undefined || text === '') return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    throw new ArgumentError('webgpu.attention', `KILN_WEBGPU_ATTENTION_SPLITS must be a whole number in [0, 65535] (0 or 1: off), got '${text}'`);
  }
  return n;
}

/**
 * The second pass of split-keys attention: per query row, merges the splits' partials
 * (scratch [rows, splits, dv + 2] of m, l, acc[dv]): m = max m_s, l = Σ l_s exp(m_s - m),
 * out = Σ acc_s exp(m_s - m) / l (0 where l = 0), logSumExp = m + log l (-inf where l = 0),
 * with core's accurate exp and log. One invocation per output word: out [rows, dv] then
 * logSumExp [rows]. meta: [rows, dv, splits].
 */
let combineCode: string | undefined;
export function attentionCombineShader(): string {
  return (combineCode ??= `@group(0) @binding(0) var<storage, read> prm: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> P: array<f32>;
${MATH}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = gid.x + gid.y * nw.x * 256u;
  let rows = prm[0]; let dv = prm[1]; let ns = prm[2];
  let nOut = rows * dv;
  if (i >= nOut + rows) { return; }
  let lse = i >= nOut;
  var row = i - nOut; var c = 0u;
  if (!lse) { row = i / dv; c = i % dv; }
  let w = dv + 2u;
  let base = row * ns * w;
  var mx = -3.0e38;
  for (var s = 0u; s < ns; s++) { mx = max(mx, P[base + s * w]); }
  var l = 0.0; var a = 0.0;
  for (var s = 0u; s < ns; s++) {
    let o = base + s * w;
    let e = k_exp(P[o] - mx);
    l += P[o + 1u] * e;
    if (!lse) { a += P[o + 2u + c] * e; }
  }
  if (lse) { out[i] = mx + k_log(l); } else { out[i] = select(0.0, a / l, l > 0.0); }
}
`);
}
