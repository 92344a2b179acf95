/**
 * Sliced-K GEMM for latency-bound products on hardware GPUs (a 512³ product, a few tokens
 * times a wide weight): a lone small product is one short wave of workgroups walking K
 * serially, so its time is that walk. Here the 256 invocations of a workgroup form S slices,
 * each computing the workgroup's whole (small) output tile over its own part of K; the slices'
 * partial tiles meet in workgroup memory, where slice 0 adds them to its accumulators. More,
 * smaller tiles fill the GPU and each invocation walks K / S, with no second dispatch (the K
 * split of gemm-tiled.ts costs one).
 *
 *  - f32: slice s takes K from s * kPer to (s + 1) * kPer (kPer = ceil(K / S) rounded up to the
 *    tile depth); the partial tiles are added once, in slice order, at the end.
 *  - fp8: core's fp8GemmReference bit for bit. The slices take whole promotion chunks: in round
 *    r, slice s accumulates chunk r * S + s in K order; at the end of the round each slice's
 *    partial times (sa * sb), rounded, is added by slice 0 to its f32 accumulators in chunk
 *    order: the reference's accumulation, step for step.
 *
 * Staging: one tile of depth S * bk (bk per slice) in workgroup memory, the next one prefetched
 * into registers during the multiply-adds. The partial tiles of slices 1.. reuse that memory.
 */
import { CODECS } from './common.js';
import type { TileLoad } from './gemm-tiled.js';

/** How one operand is read: 16-byte words along its own axis, or along K (never element-wise). */
export type SlicedLoad = Exclude<TileLoad, 'scalar'>;

export interface SlicedGemmConfig {
  /** Output tile rows and columns (multiples of 4). */
  readonly bm: number;
  readonly bn: number;
  /** Slices of K (1, 2, 4 or 8): 256 / slices invocations per slice. */
  readonly slices: number;
  /** K depth per slice of a staged tile (a multiple of 4). */
  readonly bk: number;
}

export interface SlicedGemmSpec extends SlicedGemmConfig {
  readonly kind: 'f32' | 'fp8';
  /** f32 only (fp8 codes are always u32 words of 4 codes along K). */
  readonly a: SlicedLoad;
  readonly b: SlicedLoad;
  /** Output rows written as 16-byte words (N % 4 == 0). */
  readonly vecOut: boolean;
}

/** A slice's invocation grid and register block, or a reason the tile does not exist. */
export interface SlicedGeometry {
  /** Register block: 4 ra rows x 4 rb columns per invocation. */
  readonly ra: number;
  readonly rb: number;
  /** Invocations of a slice along n (tx) and m (ty). */
  readonly tx: number;
  readonly ty: number;
}

export function slicedGeometry(c: SlicedGemmConfig): SlicedGeometry | string {
  const { bm, bn, slices, bk } = c;
  if (![1, 2, 4, 8].includes(slices)) return `slices must be 1, 2, 4 or 8 (got ${slices})`;
  if (bk % 4 !== 0 || bk < 4 || bk > 32) return `bk must be a multiple of 4 from 4 to 32 (got ${bk})`;
  if (bm % 8 !== 0 || bn % 8 !== 0) return `the tile must be a multiple of 8 rows and 8 columns (got ${bm} x ${bn})`;
  const per = (bm * bn) / (256 / slices); // outputs per invocation
  const [ra, rb] = per === 16 ? [1, 1] : per === 32 ? [1, 2] : per === 64 ? [2, 2] : [0, 0];
  if (!ra) return `a ${bm} x ${bn} tile over ${256 / slices} invocations is not 16, 32 or 64 outputs each`;
  const tx = bn / (4 * rb);
  const ty = bm / (4 * ra);
  if (!Number.isInteger(tx) || !Number.isInteger(ty) || tx * ty !== 256 / slices) return `a ${bm} x ${bn} tile has no ${256 / slices}-invocation grid of ${4 * ra} x ${4 * rb} blocks`;
  return { ra, rb, tx, ty };
}

/** Workgroup memory (bytes) a sliced kernel needs: the staged tile or the partial tiles, whichever is larger. */
export function slicedGemmWorkgroupBytes(c: SlicedGemmConfig, kind: 'f32' | 'fp8'): number {
  return slicedQuads(c) * 16 + (kind === 'fp8' ? 2 * 256 * 4 : 0);
}

function slicedQuads(c: SlicedGemmConfig): number {
  const depth = c.slices * c.bk;
  return Math.max((depth * (c.bm + c.bn)) / 4, ((c.slices - 1) * c.bm * c.bn) / 4);
}

/**
 * meta (f32): [n, M, N, K, aBatchStride, bBatchStride, sam, sak, sbk, sbn]; dispatch
 * [ceil(N / bn), ceil(M / bm), batch]. Needs 16-byte aligned words on the load paths.
 * meta (fp8): as the other FP8 kernels' [n, M, N, K, nc, abr, bbr, bkq, kbA, kbB, zero, fmtA, fmtB];
 * needs K % 4 == 0 and nc % bk == 0; dispatch [ceil(N / bn), ceil(M / bm), 1].
 */
export function slicedGemmShader(s: SlicedGemmSpec): string {
  const geo = slicedGeometry(s);
  if (typeof geo === 'string') throw new Error(`sliced GEMM: ${geo}`);
  const { ra, rb, tx: TX, ty: TY } = geo;
  const { bm: BM, bn: BN, slices: S, bk } = s;
  const fp8 = s.kind === 'fp8';
  const D = S * bk; // staged depth
  const aLoad: SlicedLoad = fp8 ? 'vec-k' : s.a;
  const bLoad: SlicedLoad = fp8 ? 'vec-k' : s.b;
  const bOff = (D * BM) / 4; // B's stage after A's (quads)
  const Q = (BM * BN) / 4; // output quads of the tile
  const regTy = fp8 ? 'u32' : 'vec4<f32>';
  const zeroReg = fp8 ? '0u' : 'vec4<f32>(0.0)';

  let src = `@group(0) @binding(0) var<storage, read> prm: array<u32>;\n`;
  src += `@group(0) @binding(1) var<storage, read_write> out: array<${s.vecOut ? 'vec4<u32>' : 'u32'}>;\n`;
  src += `@group(0) @binding(2) var<storage, read> A: array<${fp8 ? 'u32' : 'vec4<u32>'}>;\n`;
  src += `@group(0) @binding(3) var<storage, read> B: array<${fp8 ? 'u32' : 'vec4<u32>'}>;\n`;
  if (fp8) {
    src += `@group(0) @binding(4) var<storage, read> SA: array<u32>;\n@group(0) @binding(5) var<storage, read> SB: array<u32>;\n`;
    src += CODECS + `var<workgroup> tabA: array<f32, 256>;\nvar<workgroup> tabB: array<f32, 256>;\n`;
  }
  src += `// staging: A [${D} k][${BM / 4} m quads] then B [${D} k][${BN / 4} n quads]; reduction: slices 1.. [${S - 1}][${BM} m][${BN / 4} n quads]\n`;
  src += `var<workgroup> W: array<vec4<f32>, ${slicedQuads(s)}>;\n`;
  src += `var<private> tid: u32;\nvar<private> M: u32;\nvar<private> N: u32;\nvar<private> K: u32;\nvar<private> kSub: u32;\n`;
  if (!fp8) src += `var<private> aoff: u32;\nvar<private> boff: u32;\nvar<private> sam: u32;\nvar<private> sak: u32;\nvar<private> sbk: u32;\nvar<private> sbn: u32;\n`;

  // ---- staging. Depth d of a tile based at k0 is K index k0 + (d / bk) * kSub + d % bk: each
  // slice's bk-deep part comes from its own K range (kSub apart)
  function stage(X: 'A' | 'B', rows: number, load: SlicedLoad): string {
    const quads = (rows * D) / 4;
    const P = Math.ceil(quads / 256);
    const dim = X === 'A' ? 'M' : 'N';
    const base = X === 'A' ? '' : `${bOff}u + `;
    const tab = X === 'A' ? 'tabA' : 'tabB';
    let regs = '';
    let ld = `fn ld_${X}(k0: u32, r0: u32) {\n`;
    let st = `fn st_${X}() {\n`;
    for (let l = 0; l < P; l++) {
      regs += `var<private> r${X}${l}: ${regTy};\n`;
      const guard = (l + 1) * 256 > quads ? `e < ${quads}u && ` : '';
      if (load === 'vec-k') {
        // quad e: 8 consecutive rows, then the K quads, then the next 8 rows: a warp reads
        // 64-byte runs of 4 rows x ... and its stores spread over 8 banks
        const DQ = D / 4;
        const where = `    let e = tid + ${l * 256}u;\n    let row = (e % 8u) + (e / ${8 * DQ}u) * 8u; let d = ((e / 8u) % ${DQ}u) * 4u;\n`;
        ld += `  {\n${where}    let k = k0 + (d / ${bk}u) * kSub + d % ${bk}u; let g = r0 + row;\n    var v = ${zeroReg};\n`;
        const addr = fp8 ? `(g * K + k) >> 2u` : `(${X === 'A' ? 'aoff + g * sam' : 'boff + g * sbn'} + k) >> 2u`;
        const val = fp8 ? `${X}[${addr}]` : `bitcast<vec4<f32>>(${X}[${addr}])`;
        ld += `    if (${guard}g < ${dim} && k < K) { v = ${val}; }\n    r${X}${l} = v;\n  }\n`;
        st += `  {\n${where}    if (${guard ? `e < ${quads}u` : 'true'}) {\n`;
        for (let c = 0; c < 4; c++) {
          const x = fp8 ? `${tab}[(r${X}${l} >> ${8 * c}u) & 0xffu]` : `r${X}${l}.${'xyzw'[c]}`;
          st += `      W[${base}(d + ${c}u) * ${rows / 4}u + row / 4u][row % 4u] = ${x};\n`;
        }
        st += `    }\n  }\n`;
      } else {
        // quad e: depth e / (rows / 4), quad e % (rows / 4) of the tile axis
        const where = `    let e = tid + ${l * 256}u;\n    let d = e / ${rows / 4}u; let q = e % ${rows / 4}u;\n`;
        ld += `  {\n${where}    let k = k0 + (d / ${bk}u) * kSub + d % ${bk}u; let g = r0 + q * 4u;\n    var v = ${zeroReg};\n`;
        const addr = X === 'A' ? `(aoff + k * sak + g) >> 2u` : `(boff + k * sbk + g) >> 2u`;
        ld += `    if (${guard}g < ${dim} && k < K) { v = bitcast<vec4<f32>>(${X}[${addr}]); }\n    r${X}${l} = v;\n  }\n`;
        st += `  {\n${where}    if (${guard ? `e < ${quads}u` : 'true'}) { W[${base}d * ${rows / 4}u + q] = r${X}${l}; }\n  }\n`;
      }
    }
    return regs + ld + '}\n' + st + '}\n';
  }
  src += stage('A', BM, aLoad) + stage('B', BN, bLoad);

  // ---- a slice's register block: rows g * 4 TY + ty * 4 + i, columns h * 4 TX + tx * 4 + j
  const cells: [number, number, number][] = [];
  for (let g = 0; g < ra; g++) for (let i = 0; i < 4; i++) for (let h = 0; h < rb; h++) cells.push([g, i, h]);
  const name = ([g, i, h]: [number, number, number]) => `${g}${i}${h}`;
  let mac = '';
  for (let kk = 0; kk < bk; kk++) {
    mac += `    {\n`;
    for (let g = 0; g < ra; g++) mac += `      let a${g} = W[sa0 + ${kk * (BM / 4) + g * TY}u];\n`;
    for (let h = 0; h < rb; h++) mac += `      let b${h} = W[sb0 + ${kk * (BN / 4) + h * TX}u];\n`;
    for (const c of cells) mac += `      p${name(c)} = p${name(c)} + a${c[0]}.${'xyzw'[c[1]]} * b${c[2]};\n`;
    mac += `    }\n`;
  }

  // the round's partial tiles: slice 0 adds its own (fp8: promoted, times sa * sb, rounded)
  // to its accumulators; the other slices leave theirs in workgroup memory for slice 0 to add
  // in slice order (the chunks' K order)
  let spill = '';
  if (fp8) {
    spill += `      let kb = min((chunk * nc) / bkq, kbA - 1u);\n      let kbb = min((chunk * nc) / bkq, kbB - 1u);\n      let z4 = vec4<u32>(zero);\n`;
    for (let h = 0; h < rb; h++) {
      spill += `      var sb${h} = vec4<f32>(0.0);\n`;
      spill += `      for (var j = 0u; j < 4u; j++) { let n = n0 + ${h * 4 * TX}u + tx * 4u + j; if (n < N) { sb${h}[j] = bitcast<f32>(SB[(n / bbr) * kbB + kbb]); } }\n`;
    }
  }
  const at = ([g, i, h]: [number, number, number], sl: string) => `${sl}${Q}u + (${g * 4 * TY + i}u + ty * 4u) * ${BN / 4}u + ${h * TX}u + tx`;
  for (const c of cells) {
    const [g, i, h] = c;
    let v = `p${name(c)}`;
    if (fp8) {
      spill += `      {\n        let sa = bitcast<f32>(SA[(min(m0 + ${g * 4 * TY + i}u + ty * 4u, M - 1u) / abr) * kbA + kb]);\n`;
      spill += `        let sc = bitcast<vec4<f32>>(bitcast<vec4<u32>>(sa * sb${h}) ^ z4);\n`;
      spill += `        let v = bitcast<vec4<f32>>(bitcast<vec4<u32>>(p${name(c)} * sc) ^ z4);\n`;
      v = 'v';
    } else spill += `      {\n        let v = p${name(c)};\n`;
    if (S > 1) spill += `        if (slice == 0u) { c${name(c)} = c${name(c)} + v; } else { W[${at(c, '(slice - 1u) * ')}] = v; }\n`;
    else spill += `        c${name(c)} = c${name(c)} + v;\n`;
    spill += `        p${name(c)} = vec4<f32>(0.0);\n      }\n`;
  }
  let gather = '';
  if (S > 1) {
    gather += `      if (slice == 0u) {\n`;
    for (let sl = 1; sl < S; sl++) {
      let adds = '';
      for (const c of cells) adds += ` c${name(c)} = c${name(c)} + W[${at(c, sl > 1 ? `${sl - 1} * ` : '0u * ')}];`;
      gather += fp8 ? `        if (rnd * ${S}u + ${sl}u < chunks) {${adds} }\n` : `        {${adds} }\n`;
    }
    gather += `      }\n`;
  }

  let write = `  if (slice == 0u) {\n`;
  for (let g = 0; g < ra; g++)
    for (let i = 0; i < 4; i++) {
      write += `    {\n      let m = m0 + ${g * 4 * TY + i}u + ty * 4u;\n      if (m < M) {\n`;
      for (let h = 0; h < rb; h++) {
        write += `        let col${h} = n0 + ${h * 4 * TX}u + tx * 4u;\n        let v${h} = bitcast<vec4<u32>>(c${g}${i}${h});\n`;
        if (s.vecOut) write += `        if (col${h} < N) { out[(obase + m * N + col${h}) >> 2u] = v${h}; }\n`;
        else write += `        for (var j = 0u; j < 4u; j++) { if (col${h} + j < N) { out[obase + m * N + col${h} + j] = v${h}[j]; } }\n`;
      }
      write += `      }\n    }\n`;
    }
  write += `  }\n`;

  src += `
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  M = prm[1]; N = prm[2]; K = prm[3];
  tid = lid.x;
  let slice = tid / ${256 / S}u;
  let t = tid % ${256 / S}u;
  let tx = t % ${TX}u; let ty = t / ${TX}u;
  let n0 = wg.x * ${BN}u;
  let m0 = wg.y * ${BM}u;
  // this slice's rows of the staged tile (constant offsets added per k step)
  let sa0 = slice * ${bk * (BM / 4)}u + ty;
  let sb0 = ${bOff}u + slice * ${bk * (BN / 4)}u + tx;
`;
  if (fp8) {
    src += `  let nc = prm[4]; let abr = prm[5]; let bbr = prm[6]; let bkq = prm[7]; let kbA = prm[8]; let kbB = prm[9]; let zero = prm[10];
  tabA[tid] = select(bitcast<f32>(e5m2_bits(tid)), bitcast<f32>(e4m3_bits(tid)), prm[11] == 0u);
  tabB[tid] = select(bitcast<f32>(e5m2_bits(tid)), bitcast<f32>(e4m3_bits(tid)), prm[12] == 0u);
  let obase = 0u;
  // rounds of ${S} promotion chunks, nc / bk tiles each (locals from prm: the loop's barriers
  // need workgroup-uniform bounds, and module-scope private values do not count as uniform)
  kSub = nc;
  let ksub = nc;
  let chunks = (prm[3] + nc - 1u) / nc;
  let steps = nc / ${bk}u;
  let rounds = (chunks + ${S - 1}u) / ${S}u;
  // (accumulators from a run-time zero: the reference's first step, 0 + chunk 0, is not folded away)
  let zf = vec4<f32>(bitcast<f32>(zero));
  ${cells.map((c) => `var c${name(c)} = zf;`).join(' ')}
  workgroupBarrier();
`;
  } else {
    src += `  aoff = wg.z * prm[4]; boff = wg.z * prm[5];
  sam = prm[6]; sak = prm[7]; sbk = prm[8]; sbn = prm[9];
  let obase = wg.z * M * N;
  // one round: slice s takes K from s * ksub, ksub = ceil(K / ${S}) rounded up to ${bk}
  let ksub = ((prm[3] + ${S * bk - 1}u) / ${S * bk}u) * ${bk}u;
  kSub = ksub;
  let steps = ksub / ${bk}u;
  let rounds = 1u;
`;
    src += `  ${cells.map((c) => `var c${name(c)} = vec4<f32>(0.0);`).join(' ')}\n`;
  }
  src += `  ${cells.map((c) => `var p${name(c)} = vec4<f32>(0.0);`).join(' ')}
  let total = rounds * steps;
  ld_A(0u, m0); ld_B(0u, n0);
  st_A(); st_B();
  workgroupBarrier();
  for (var it = 0u; it < total; it++) {
    let rnd = it / steps;
    let more = it + 1u < total;
    if (more) {
      let nx = it + 1u;
      let k0 = (nx / steps) * ${S}u * ksub + (nx % steps) * ${bk}u;
      ld_A(k0, m0); ld_B(k0, n0);
    }
${mac}    workgroupBarrier();
    if (it % steps == steps - 1u) {
      // the round's partial tiles meet in the (read) staging memory
${fp8 ? `      let chunk = rnd * ${S}u + slice;\n` : ''}${spill}      workgroupBarrier();
${gather}      workgroupBarrier();
    }
    if (more) { st_A(); st_B(); workgroupBarrier(); }
  }
${write}}
`;
  return src;
}
