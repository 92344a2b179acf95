/**
 * GEMM kernels sized for hardware GPUs: 16 x wy invocations per workgroup (wy 16, or 8), each
 * accumulating a (4*ra) x (4*rb) register block, so a workgroup owns a (4*wy*ra) x (64*rb)
 * output tile; A and B tiles `bk` deep are staged in workgroup memory and the next tile's
 * global loads are issued (into registers) before the current tile's multiply-adds (with two
 * stages: before the previous tile's barrier), so their latency is hidden.
 * Operands are read as whole 16-byte words where the layout allows it.
 *
 * One generator serves both products:
 *  - f32: out = A x B, operands addressed by strides (transposes and broadcast batches cost
 *    nothing); optionally split along K into `S` slices whose partial products a second
 *    kernel (splitKReduceShader) sums in slice order: skinny products (a few tokens times a
 *    wide weight) get enough workgroups to fill the GPU.
 *  - fp8: core's fp8GemmReference bit for bit: per output, the decoded products accumulate in
 *    K order into a chunk partial, and every promotionInterval the partial times (sa * sb) is
 *    added to the f32 accumulator, both products rounded (a runtime zero XORed into the bits
 *    keeps drivers from contracting them into one fma; the K-order partial sums are immune:
 *    a product of two FP8 values is exact in f32, so a fused multiply-add rounds the same).
 *
 * The software-rasteriser kernels in gemm.ts stay the choice on llvmpipe/SwiftShader, where
 * these large tiles spill.
 */
import { CODECS } from './common.js';

/** How one operand's tile is read from global memory. */
export type TileLoad =
  /** 16-byte loads along the tile's own axis (m for A, n for B): contiguous, aligned. */
  | 'vec-inner'
  /** 16-byte loads along K (row-major A, transposed B), transposed into workgroup memory. */
  | 'vec-k'
  /** One element at a time: any strides. */
  | 'scalar';

export interface TiledGemmConfig {
  /** 4 * wy * ra output rows per workgroup (ra 1, 2 or 4). */
  readonly ra: 1 | 2 | 4;
  /** 64 * rb output columns per workgroup (rb 1, 2 or 4). */
  readonly rb: 1 | 2 | 4;
  /**
   * Invocation rows of the 16 x wy workgroup (default 16): 8 halves the invocations, so each
   * owns twice the outputs of a same-sized tile (fewer workgroup-memory reads per multiply-add).
   */
  readonly wy?: 16 | 8;
  /** K depth of a staged tile: 8, 16 or 32. */
  readonly bk: 8 | 16 | 32;
  /**
   * Two workgroup-memory stages: the next tile is stored into the other stage while this one
   * is read, so each tile costs one barrier instead of two (twice the workgroup memory).
   */
  readonly double?: boolean;
  /**
   * 'vec-k' operands (row-major A, transposed B, every fp8 operand) staged a 4 x 4 block per
   * invocation: the 16-byte words of 4 consecutive rows at one k quad, transposed in registers
   * and stored as 4 whole vec4s (instead of 4 scalar stores per word). Off by default.
   */
  readonly veck4?: boolean;
}

export interface TiledGemmSpec extends TiledGemmConfig {
  readonly kind: 'f32' | 'fp8';
  /** f32 only; fp8 codes are always read as u32 words of 4 codes along K. */
  readonly a: TileLoad;
  readonly b: TileLoad;
  /** Output rows written as 16-byte words (N % 4 == 0). */
  readonly vecOut: boolean;
  /** Unroll the k steps of a staged tile (default true). */
  readonly unroll?: boolean;
  /**
   * fp8 only: one product per expert (workgroup z = group g, B = b[g]). 'contiguous': A's rows
   * of group g are offsets[g] .. offsets[g+1] (i32 [G+1]); 'masked': A is [G, Mmax, K] and
   * group g has counts[g] valid rows (i32 [G]). The offsets/counts bind at 6; meta[13] = Mmax.
   */
  readonly grouped?: 'contiguous' | 'masked';
  /**
   * fp8 only, not grouped: workgroup z takes promotion chunk z alone (K from z * nc to
   * (z + 1) * nc) and writes its promoted product (0 + partial * (sa * sb)) to out[z][M][N];
   * splitKReduceShader then adds the chunks in K order from +0, which is the reference's
   * accumulation step for step (bit-exact). Skinny products get workgroups to fill the GPU.
   */
  readonly chunked?: boolean;
}

/** Output rows of a tiled kernel's workgroup. */
export const tileRows = (c: TiledGemmConfig): number => 4 * (c.wy ?? 16) * c.ra;
/** Output columns of a tiled kernel's workgroup. */
export const tileCols = (c: TiledGemmConfig): number => 64 * c.rb;

/** Bytes of workgroup memory a tiled kernel needs. */
export function tiledGemmWorkgroupBytes(c: TiledGemmConfig, kind: 'f32' | 'fp8'): number {
  return c.bk * (tileRows(c) + tileCols(c)) * 4 * (c.double ? 2 : 1) + (kind === 'fp8' ? 2 * 256 * 4 : 0);
}

/**
 * meta (f32): [n, M, N, K, aBatchStride, bBatchStride, sam, sak, sbk, sbn, kPer, S, batch].
 * Dispatch [ceil(N / tileCols), ceil(M / tileRows), batch * S]; with S > 1 the output is the
 * partial buffer [S][batch][M][N].
 * meta (fp8): as fp8GemmShader's [n, M, N, K, nc, abr, bbr, bk, kbA, kbB, zero, fmtA, fmtB];
 * needs K % 4 == 0 and (nc % bk == 0 or nc >= K). Dispatch [ceil(N / tileCols), ceil(M / tileRows), 1].
 */
export function tiledGemmShader(s: TiledGemmSpec): string {
  const { ra, rb, bk } = s;
  const dbl = s.double === true;
  const fp8 = s.kind === 'fp8';
  const WY = s.wy ?? 16;
  const NT = 16 * WY; // invocations
  const BM = tileRows(s);
  const BN = tileCols(s);
  const aLoad: TileLoad = fp8 ? 'vec-k' : s.a;
  const bLoad: TileLoad = fp8 ? 'vec-k' : s.b;
  const quads = (rows: number) => (rows * bk) / 4; // 16-byte quads in one staged tile
  const per = (rows: number) => Math.ceil(quads(rows) / NT);
  const elemTy = fp8 ? 'u32' : 'vec4<u32>';
  const binding = (i: number, name: string, load: TileLoad) =>
    `@group(0) @binding(${i}) var<storage, read> ${name}: array<${load === 'scalar' ? 'u32' : elemTy}>;\n`;
  let src = `@group(0) @binding(0) var<storage, read> prm: array<u32>;\n`;
  src += `@group(0) @binding(1) var<storage, read_write> out: array<${s.vecOut ? 'vec4<u32>' : 'u32'}>;\n`;
  src += binding(2, 'A', aLoad) + binding(3, 'B', bLoad);
  if (fp8) {
    src += `@group(0) @binding(4) var<storage, read> SA: array<u32>;\n@group(0) @binding(5) var<storage, read> SB: array<u32>;\n`;
    if (s.grouped) src += `@group(0) @binding(6) var<storage, read> GR: array<u32>;\n`;
    src += CODECS + `var<workgroup> tabA: array<f32, 256>;\nvar<workgroup> tabB: array<f32, 256>;\n`;
  }
  src += `var<workgroup> As: array<vec4<f32>, ${quads(BM) * (dbl ? 2 : 1)}>; // ${dbl ? '2 stages of ' : ''}[${bk} k][${BM} m] as quads over m\n`;
  src += `var<workgroup> Bs: array<vec4<f32>, ${quads(BN) * (dbl ? 2 : 1)}>; // ${dbl ? '2 stages of ' : ''}[${bk} k][${BN} n] as quads over n\n`;

  // ---- staging: global -> registers (ld_X), registers -> workgroup memory (st_X)
  const regTy = fp8 ? 'u32' : 'vec4<f32>';
  const zeroReg = fp8 ? '0u' : 'vec4<f32>(0.0)';
  const k4 = s.veck4 === true;
  // 4 x 4 blocks (4 rows x one k quad) in one staged tile, and the passes of the invocations over them
  const blocks = (rows: number) => quads(rows) / 4;
  const per4 = (rows: number) => Math.ceil(blocks(rows) / NT);
  function stage(X: 'A' | 'B', rows: number, load: TileLoad, axis: 'm' | 'n'): string {
    const total = quads(rows);
    const P = per(rows);
    const tileVar = `${X.toLowerCase()}0`;
    const dim = axis === 'm' ? 'M' : 'N';
    const sInner = X === 'A' ? 'sam' : 'sbn';
    const sK = X === 'A' ? 'sak' : 'sbk';
    const off = X === 'A' ? 'aoff' : 'boff';
    const shared = X === 'A' ? 'As' : 'Bs';
    const tab = X === 'A' ? 'tabA' : 'tabB';
    let ld = `fn ld_${X}(k0: u32, ${tileVar}: u32) {\n`;
    let st = `fn st_${X}(base: u32) {\n`;
    if (load === 'vec-k' && k4) {
      // block e: row quad mb (rows 4 mb .. 4 mb + 3), k quad kq. Eight consecutive invocations
      // take eight consecutive row quads (their vec4 stores hit distinct banks), then the k
      // quads, then the next eight row quads (a warp's loads still read whole 32-byte runs).
      const R = rows / 4;
      const KQ = bk / 4;
      const nb = blocks(rows);
      for (let l = 0; l < per4(rows); l++) {
        const partial = (l + 1) * NT > nb;
        const where = `    let e = tid + ${l * NT}u;\n    let mb = (e % 8u) + (e / ${8 * KQ}u) * 8u; let kq = (e / 8u) % ${KQ}u;\n`;
        ld += `  {\n${where}    let k = k0 + kq * 4u; let g = ${tileVar} + mb * 4u;\n`;
        for (let j = 0; j < 4; j++) {
          const gj = `g + ${j}u`;
          const addr = fp8 ? `(${X === 'B' ? 'bword + ' : ''}(${gj}) * K + k) >> 2u` : `(${off} + (${gj}) * ${sInner} + k) >> 2u`;
          const val = fp8 ? `${X}[${addr}]` : `bitcast<vec4<f32>>(${X}[${addr}])`;
          ld += `    { var v = ${zeroReg}; if (${partial ? `e < ${nb}u && ` : ''}${gj} < ${dim} && k < K) { v = ${val}; } r${X}${l}_${j} = v; }\n`;
        }
        ld += `  }\n`;
        st += `  {\n${where}`;
        st += `    if (${partial ? `e < ${nb}u` : 'true'}) {\n`;
        for (let c = 0; c < 4; c++) {
          const x = (j: number) => (fp8 ? `${tab}[(r${X}${l}_${j} >> ${8 * c}u) & 0xffu]` : `r${X}${l}_${j}.${'xyzw'[c]}`);
          st += `      ${shared}[base + (kq * 4u + ${c}u) * ${R}u + mb] = vec4<f32>(${x(0)}, ${x(1)}, ${x(2)}, ${x(3)});\n`;
        }
        st += `    }\n  }\n`;
      }
      return ld + '}\n' + st + '}\n';
    }
    for (let l = 0; l < P; l++) {
      // the last pass of a tile smaller than the workgroup covers only part of it
      const partial = (l + 1) * NT > total;
      const inTile = partial ? `e < ${total}u && ` : '';
      ld += `  {\n    let e = tid + ${l * NT}u;\n    var v = ${zeroReg};\n`;
      st += `  {\n    let e = tid + ${l * NT}u;\n    let v = r${X}${l};\n`;
      if (load === 'vec-k') {
        // quad e: row e / (bk/4), k quad e % (bk/4)
        ld += `    let row = e / ${bk / 4}u; let k = k0 + (e % ${bk / 4}u) * 4u; let g = ${tileVar} + row;\n`;
        const addr = fp8 ? `(${X === 'B' ? 'bword + ' : ''}g * K + k) >> 2u` : `(${off} + g * ${sInner} + k) >> 2u`;
        const val = fp8 ? `${X}[${addr}]` : `bitcast<vec4<f32>>(${X}[${addr}])`;
        ld += `    if (${inTile}g < ${dim} && k < K) { v = ${val}; }\n`;
        st += `    if (${partial ? `e < ${total}u` : 'true'}) {\n      let row = e / ${bk / 4}u; let kq = (e % ${bk / 4}u) * 4u;\n`;
        for (let c = 0; c < 4; c++) {
          const x = fp8 ? `${tab}[(v >> ${8 * c}u) & 0xffu]` : `v.${'xyzw'[c]}`;
          st += `      ${shared}[base + (kq + ${c}u) * ${rows / 4}u + row / 4u][row % 4u] = ${x};\n`;
        }
        st += `    }\n`;
      } else {
        // quad e: k row e / (rows/4), quad of the tile axis e % (rows/4)
        ld += `    let kk = k0 + e / ${rows / 4}u; let g = ${tileVar} + (e % ${rows / 4}u) * 4u;\n`;
        if (load === 'vec-inner') {
          ld += `    if (${inTile}g < ${dim} && kk < K) { v = bitcast<vec4<f32>>(${X}[(${off} + kk * ${sK} + g) >> 2u]); }\n`;
        } else {
          ld += `    if (${inTile}kk < K) {\n`;
          for (let c = 0; c < 4; c++) ld += `      if (g + ${c}u < ${dim}) { v.${'xyzw'[c]} = bitcast<f32>(${X}[${off} + (g + ${c}u) * ${sInner} + kk * ${sK}]); }\n`;
          ld += `    }\n`;
        }
        st += `    if (${partial ? `e < ${total}u` : 'true'}) { ${shared}[base + e] = v; }\n`;
      }
      ld += `    r${X}${l} = v;\n  }\n`;
      st += `  }\n`;
    }
    return ld + '}\n' + st + '}\n';
  }

  const regs = (X: string, rows: number, load: TileLoad) =>
    load === 'vec-k' && k4
      ? Array.from({ length: per4(rows) * 4 }, (_, i) => `var<private> r${X}${i >> 2}_${i & 3}: ${regTy};\n`).join('')
      : Array.from({ length: per(rows) }, (_, l) => `var<private> r${X}${l}: ${regTy};\n`).join('');
  src += `var<private> tid: u32;\nvar<private> M: u32;\nvar<private> N: u32;\nvar<private> K: u32;\n`;
  if (fp8) src += `var<private> bword: u32;\n`;
  if (!fp8) src += `var<private> aoff: u32;\nvar<private> boff: u32;\nvar<private> sam: u32;\nvar<private> sak: u32;\nvar<private> sbk: u32;\nvar<private> sbn: u32;\n`;
  src += regs('A', BM, aLoad) + regs('B', BN, bLoad);
  src += stage('A', BM, aLoad, 'm') + stage('B', BN, bLoad, 'n');

  // ---- the register block: rows g*4*WY + ty*4 + i, columns h*64 + tx*4 + j
  const G = Array.from({ length: ra }, (_, g) => g);
  const H = Array.from({ length: rb }, (_, h) => h);
  const I = [0, 1, 2, 3];
  const cells: string[] = [];
  for (const g of G) for (const i of I) for (const h of H) cells.push(`${g}${i}${h}`);
  const accDecl = (p: string) => cells.map((c) => `var ${p}${c} = vec4<f32>(0.0);`).join(' ');
  const sum = fp8 ? 'p' : 'c';
  // one k step of the register block; unrolled (constant indices) unless s.unroll is false
  // (stage: which workgroup-memory stage is read; its offset is a constant)
  const step = (kk: string, stage: number): string => {
    let b = '';
    const oa = stage ? `${stage * quads(BM)}u + ` : '';
    const ob = stage ? `${stage * quads(BN)}u + ` : '';
    for (const g of G) b += `      let a${g} = As[${oa}${kk} * ${BM / 4}u + ${g * WY}u + ty];\n`;
    for (const h of H) b += `      let b${h} = Bs[${ob}${kk} * ${BN / 4}u + ${h * 16}u + tx];\n`;
    for (const g of G) for (const i of I) for (const h of H) b += `      ${sum}${g}${i}${h} = ${sum}${g}${i}${h} + a${g}.${'xyzw'[i]} * b${h};\n`;
    return b;
  };
  const macOf = (stage: number): string => {
    let m = '';
    if (s.unroll === false) m = `    for (var kk = 0u; kk < ${bk}u; kk++) {\n${step('kk', stage)}    }\n`;
    else for (let kk = 0; kk < bk; kk++) m += `    {\n${step(`${kk}u`, stage)}    }\n`;
    return m;
  };

  let promote = '';
  if (fp8) {
    promote += `      let kb = c0 / bkq;\n      let z4 = vec4<u32>(zero);\n`;
    for (const h of H) {
      promote += `      var sb${h} = vec4<f32>(0.0);\n`;
      promote += `      for (var j = 0u; j < 4u; j++) { let n = n0 + ${h * 64}u + tx * 4u + j; if (n < N) { sb${h}[j] = bitcast<f32>(SB[sbase + (n / bbr) * kbB + kb]); } }\n`;
    }
    for (const g of G)
      for (const i of I) {
        promote += `      {\n        let sa = bitcast<f32>(SA[(min(m0 + ${g * 4 * WY + i}u + ty * 4u, M - 1u) / abr) * kbA + kb]);\n`;
        for (const h of H) {
          promote += `        let s${h} = bitcast<vec4<f32>>(bitcast<vec4<u32>>(sa * sb${h}) ^ z4);\n`;
          promote += `        c${g}${i}${h} = c${g}${i}${h} + bitcast<vec4<f32>>(bitcast<vec4<u32>>(p${g}${i}${h} * s${h}) ^ z4);\n`;
          promote += `        p${g}${i}${h} = vec4<f32>(0.0);\n`;
        }
        promote += `      }\n`;
      }
  }

  let write = '';
  for (const g of G)
    for (const i of I) {
      write += `  {\n    let m = m0 + ${g * 4 * WY + i}u + ty * 4u;\n    if (m < M) {\n`;
      for (const h of H) {
        write += `      {\n        let n = n0 + ${h * 64}u + tx * 4u;\n        let v = bitcast<vec4<u32>>(c${g}${i}${h});\n`;
        if (s.vecOut) write += `        if (n < N) { out[(obase + m * N + n) >> 2u] = v; }\n`;
        else write += `        for (var j = 0u; j < 4u; j++) { if (n + j < N) { out[obase + m * N + n + j] = v[j]; } }\n`;
        write += `      }\n`;
      }
      write += `    }\n  }\n`;
    }

  src += `
@compute @workgroup_size(16, ${WY})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  M = prm[1]; N = prm[2]; K = prm[3];
  let tx = lid.x; let ty = lid.y;
  tid = ty * 16u + tx;
  let n0 = wg.x * ${BN}u;
`;
  if (fp8) {
    src += `  let nc = prm[4]; let abr = prm[5]; let bbr = prm[6]; let bkq = prm[7]; let kbA = prm[8]; let kbB = prm[9]; let zero = prm[10];
  for (var t = tid; t < 256u; t = t + ${NT}u) {
    tabA[t] = select(bitcast<f32>(e5m2_bits(t)), bitcast<f32>(e4m3_bits(t)), prm[11] == 0u);
    tabB[t] = select(bitcast<f32>(e5m2_bits(t)), bitcast<f32>(e4m3_bits(t)), prm[12] == 0u);
  }
${
  s.chunked
    ? `  let kStart = wg.z * nc; let kEnd = min(prm[3], kStart + nc);
  let obase = wg.z * M * N;`
    : `  let kStart = 0u; let kEnd = prm[3];
  let obase = 0u;`
}
${
  s.grouped
    ? `  // group wg.z: its rows [rowStart, rowEnd) of A and of the output; B and its scales are b[wg.z]
  let grp = wg.z;
  ${s.grouped === 'contiguous' ? 'let rowStart = GR[grp]; let rowEnd = GR[grp + 1u];' : 'let rowStart = grp * prm[13]; let rowEnd = rowStart + GR[grp];'}
  let m0 = rowStart + wg.y * ${BM}u;
  if (m0 >= rowEnd) { return; }
  M = rowEnd;
  bword = grp * N * K;
  let sbase = grp * ((N + bbr - 1u) / bbr) * kbB;`
    : `  let m0 = wg.y * ${BM}u;
  let sbase = 0u;`
}
  var c0 = kStart;
  ${accDecl('p')}
  workgroupBarrier();
`;
  } else {
    src += `  let S = prm[11]; let batch = wg.z / S; let slice = wg.z % S;
  let m0 = wg.y * ${BM}u;
  aoff = batch * prm[4]; boff = batch * prm[5];
  sam = prm[6]; sak = prm[7]; sbk = prm[8]; sbn = prm[9];
  let kStart = slice * prm[10]; let kEnd = min(prm[3], kStart + prm[10]);
  let obase = (slice * prm[12] + batch) * M * N;
`;
  }
  // both operands' tiles at k into registers / from registers into workgroup memory at `at`
  const load = (k: string) => `ld_A(${k}, m0); ld_B(${k}, n0);`;
  const store = (at: string) => `st_A(${at}); st_B(${at});`;
  src += `  ${accDecl('c')}
  ${load('kStart')}
  ${store('0u')}
${dbl ? `  if (kStart + ${bk}u < kEnd) { ${load(`kStart + ${bk}u`)} }\n` : ''}  workgroupBarrier();
  for (var k0 = kStart; k0 < kEnd; k0 = k0 + ${dbl ? 2 * bk : bk}u) {
`;
  // one tile. One stage: prefetch the next into registers, multiply-add this one, wait until
  // every invocation has read it, then store the next over it. Two stages (two tiles per trip,
  // constant offsets): the next tile, already in registers, goes into the other stage, last
  // read one tile ago (the last barrier ended those reads), so one barrier per tile; and the
  // registers, free once stored, take the tile after next before that barrier, so its
  // loads are in flight while invocations wait there (H200, three alternations: FP8 4096³
  // 29.0-30.5 TFLOP/s vs 27.1-28.7 loading after it, f32 4096³ 38.7-38.9 vs 36.3-39.2, 2048³
  // 35.1-35.5 vs 35.7-36.8).
  const tile = (first: string, stage: number): string => {
    let t = `    {
    let nk = ${first} + ${bk}u;
    let more = nk < kEnd;
${dbl ? '' : `    if (more) { ${load('nk')} }\n`}${macOf(stage)}`;
    if (fp8) t += `    if (!more || nk - c0 >= nc) {
${promote}      c0 = nk;
    }
`;
    if (dbl) t += `    if (more) { st_A(${(1 - stage) * quads(BM)}u); st_B(${(1 - stage) * quads(BN)}u); }
    if (nk + ${bk}u < kEnd) { ${load(`nk + ${bk}u`)} }
    workgroupBarrier();
    }
`;
    else t += `    workgroupBarrier();
    if (more) { ${store('0u')} workgroupBarrier(); }
    }
`;
    return t;
  };
  src += tile('k0', 0);
  // (the break is taken by every invocation alike: workgroup-uniform control flow)
  if (dbl) src += `    if (k0 + ${bk}u >= kEnd) { break; }\n` + tile(`(k0 + ${bk}u)`, 1);
  src += `  }\n`;
  src += `${write}}
`;
  return src;
}

/**
 * Sums split-K partials [S][n] in slice order, from +0 (a run-time zero, prm[2], so that the
 * first add is not folded away: it is the FP8 reference's first accumulation step). meta [n, S, 0];
 * one output per invocation.
 */
export function splitKReduceShader(): string {
  return `@group(0) @binding(0) var<storage, read> prm: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<storage, read> P: array<u32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let i = gid.x + gid.y * nw.x * 256u;
  let n = prm[0];
  if (i >= n) { return; }
  var s = bitcast<f32>(prm[2]);
  for (var k = 0u; k < prm[1]; k++) { s = s + bitcast<f32>(P[k * n + i]); }
  out[i] = bitcast<u32>(s);
}
`;
}
