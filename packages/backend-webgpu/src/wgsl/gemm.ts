import { CODECS, WG, elementwise, header, reader } from './common.js';
import { K_DIV } from './math.js';

/**
 * Batched f32 GEMM: 64x64 output tiles per workgroup of 16x16 invocations, each computing a
 * 4x4 register block (vec4 accumulators) from 16-deep A and B tiles staged in workgroup
 * memory. Operands are addressed by strides, so transposes and broadcast batches cost nothing.
 * meta: [n, M, N, K, aBatchStride, bBatchStride, sam, sak, sbk, sbn].
 */
export function gemmF32Shader(rm: 4 | 8 = 8): string {
  // 8x8 workgroup of invocations, each an rm x 8 register block (2*rm vec4 accumulators):
  // per k step rm/4 + 2 vec4 loads from workgroup memory feed 8*rm multiply-adds. Tiles are
  // (8*rm) x 64; rm = 4 serves skinny products (few rows: a handful of tokens).
  const tm = 8 * rm;
  const aq = tm / 4; // vec4 quads of m per k row of the A tile
  let fma = '';
  for (let r = 0; r < rm; r++) {
    const a = `a${r >> 2}.${'xyzw'[r & 3]}`;
    fma += `      acc[${2 * r}] = acc[${2 * r}] + ${a} * b0; acc[${2 * r + 1}] = acc[${2 * r + 1}] + ${a} * b1;\n`;
  }
  let aloads = '';
  for (let q = 0; q < rm / 4; q++) aloads += `      let a${q} = As[kk * ${aq}u + ty * ${rm / 4}u + ${q}u];\n`;
  return (
    header(['A', 'B']) +
    `
var<workgroup> As: array<vec4<f32>, ${16 * aq}>; // [16 k][${tm} m] as vec4 over m
var<workgroup> Bs: array<vec4<f32>, 256>; // [16 k][64 n] as 16 vec4 over n

fn ldA(i: u32) -> f32 { return bitcast<f32>(A[i]); }
fn ldB(i: u32) -> f32 { return bitcast<f32>(B[i]); }

@compute @workgroup_size(8, 8)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let M = prm[1]; let N = prm[2]; let K = prm[3];
  let aoff = wg.z * prm[4]; let boff = wg.z * prm[5];
  let sam = prm[6]; let sak = prm[7]; let sbk = prm[8]; let sbn = prm[9];
  let tx = lid.x; let ty = lid.y; let tid = ty * 8u + tx;
  let m0 = wg.y * ${tm}u; let n0 = wg.x * 64u;
  var acc: array<vec4<f32>, ${2 * rm}>;
  for (var i = 0u; i < ${2 * rm}u; i++) { acc[i] = vec4<f32>(0.0); }
  for (var k0 = 0u; k0 < K; k0 = k0 + 16u) {
    // 64 invocations load 16 x 64 of B (4 vec4 each) and 16 x ${tm} of A
    for (var l = 0u; l < 4u; l++) {
      let e = tid + l * 64u;      // 0..255
      let lk = e / 16u;           // 0..15
      let lq = (e % 16u) * 4u;    // 0..60
      let gk = k0 + lk;
      var vb = vec4<f32>(0.0);
      if (gk < K) {
        let bb = boff + gk * sbk;
        for (var q = 0u; q < 4u; q++) {
          let gn = n0 + lq + q;
          if (gn < N) { vb[q] = ldB(bb + gn * sbn); }
        }
      }
      Bs[e] = vb;
    }
    for (var l = 0u; l < ${(16 * aq) / 64}u; l++) {
      let e = tid + l * 64u;
      let lk = e / ${aq}u;
      let lq = (e % ${aq}u) * 4u;
      let gk = k0 + lk;
      var va = vec4<f32>(0.0);
      if (gk < K) {
        let ab = aoff + gk * sak;
        for (var q = 0u; q < 4u; q++) {
          let gm = m0 + lq + q;
          if (gm < M) { va[q] = ldA(ab + gm * sam); }
        }
      }
      As[e] = va;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < 16u; kk++) {
${aloads}      let b0 = Bs[kk * 16u + tx * 2u];
      let b1 = Bs[kk * 16u + tx * 2u + 1u];
${fma}    }
    workgroupBarrier();
  }
  let mBase = m0 + ty * ${rm}u;
  let nBase = n0 + tx * 8u;
  let obase = wg.z * M * N;
  for (var i = 0u; i < ${rm}u; i++) {
    let m = mBase + i;
    if (m >= M) { break; }
    for (var h = 0u; h < 2u; h++) {
      let r = acc[i * 2u + h];
      for (var j = 0u; j < 4u; j++) {
        let n = nBase + h * 4u + j;
        if (n < N) { out[obase + m * N + n] = bitcast<u32>(r[j]); }
      }
    }
  }
}
`
  );
}

/** Batched i32 GEMM (wrapping arithmetic), one output per invocation. Same meta as f32. */
export function gemmI32Shader(): string {
  const body = `fn elem(i: u32) -> u32 {
  let M = prm[1]; let N = prm[2]; let K = prm[3];
  let b = i / (M * N);
  let m = (i / N) % M;
  let n = i % N;
  let ab = b * prm[4] + m * prm[6];
  let bb = b * prm[5] + n * prm[9];
  var acc = 0;
  for (var k = 0u; k < K; k++) { acc = acc + bitcast<i32>(A[ab + k * prm[7]]) * bitcast<i32>(B[bb + k * prm[8]]); }
  return bitcast<u32>(acc);
}
`;
  return elementwise('i32', body, ['A', 'B']);
}

/**
 * quantizeBlockwise, pass 1: one f32 scale per block. meta [nBlocks, rows, cols, br, bc, nbc, invMax bits, ue8m0].
 */
export function quantScalesShader(): string {
  const body = `fn elem(i: u32) -> u32 {
  let rows = prm[1]; let cols = prm[2]; let br = prm[3]; let bc = prm[4]; let nbc = prm[5];
  let bi = i / nbc; let bj = i % nbc;
  let r0 = bi * br; let r1 = min(rows, r0 + br);
  let c0 = bj * bc; let c1 = min(cols, c0 + bc);
  var amax = 0.0;
  var nan = false;
  for (var r = r0; r < r1; r++) {
    for (var c = c0; c < c1; c++) {
      let v = x[r * cols + c];
      let a = bitcast<f32>(v & 0x7fffffffu);
      if (is_nan_bits(v)) { nan = true; } else if (a > amax) { amax = a; }
    }
  }
  var sb: u32;
  if (nan) {
    sb = 0x7fc00000u;
  } else {
    amax = max(amax, bitcast<f32>(${f32bits(1e-4)}u));
    let s = amax * bitcast<f32>(prm[6] ^ prm[8]);
    sb = bitcast<u32>(s);
    if (prm[7] != 0u && (sb & 0x7f800000u) != 0x7f800000u && (sb & 0x7fffffu) != 0u) {
      sb = ((sb >> 23u) + 1u) << 23u;
    }
  }
  return sb;
}
`;
  return elementwise('f32', CODECS + body, ['x']);
}

/** quantizeBlockwise, pass 2: codes. meta [n, cols, br, bc, nbc, format (0 e4m3, 1 e5m2)]. */
export function quantCodesShader(): string {
  const body = `fn elem(i: u32) -> u32 {
  let cols = prm[1]; let br = prm[2]; let bc = prm[3]; let nbc = prm[4];
  let r = i / cols; let c = i % cols;
  let s = bitcast<f32>(scales[(r / br) * nbc + c / bc]);
  let q = k_div(bitcast<f32>(x[i]), s);
  if (prm[5] == 0u) { return to_e4m3(bitcast<u32>(q), false); }
  return to_e5m2(bitcast<u32>(q), false);
}
`;
  return elementwise('e4m3', CODECS + K_DIV + body, ['x', 'scales']);
}


function f32bits(x: number): number {
  const f = new Float32Array([x]);
  return new Uint32Array(f.buffer)[0];
}

/**
 * FP8 block-scaled GEMM a [M, K] x b [N, K]^T -> f32 [M, N] exactly as core's
 * fp8GemmReference with exact accumulation: per output, products of decoded FP8 values
 * (exact in f32) accumulate in K order into a chunk partial; every promotionInterval the
 * partial times (sa * sb) is added to the f32 output. Tiles of 16x16 outputs; codes decoded
 * through a 256-entry table in workgroup memory. meta: [n, M, N, K, nc, abr, bbr, bk, kbA, kbB, zero, fmtA, fmtB].
 * The zero word (a runtime 0) makes the promotion product opaque, so no driver contracts
 * partial * scale + acc into one fma (the reference rounds both).
 */
export function fp8GemmShader(rm: 2 | 4 = 4, words = false): string {
  // (16*rm) x 64 output tiles, 16x16 invocations with rm x 4 register blocks; the K axis is
  // walked chunk by chunk (promotionInterval), each chunk in 16-deep tiles decoded into
  // workgroup memory (tiles never cross a chunk end: the last one is zero-padded, and adding
  // +0 leaves a partial unchanged), so every output accumulates its products in K order.
  // rm = 2 serves skinny products (a few tokens).
  const tm = 16 * rm;
  const R = Array.from({ length: rm }, (_, r) => r);
  const decl = (p: string) => R.map((r) => `var ${p}${r} = vec4<f32>(0.0);`).join(' ');
  const fma = R.map((r) => `        p${r} = p${r} + At[kk * ${tm}u + ty * ${rm}u + ${r}u] * bv;`).join('\n');
  const promote = R.map(
    (r) => `    {
      let m = min(m0 + ty * ${rm}u + ${r}u, M - 1u);
      let s = bitcast<vec4<f32>>(bitcast<vec4<u32>>(bitcast<f32>(sa[(m / abr) * kbA + kb]) * sbv) ^ z4);
      acc${r} = acc${r} + bitcast<vec4<f32>>(bitcast<vec4<u32>>(p${r} * s) ^ z4);
    }`,
  ).join('\n');
  const write = R.map(
    (r) => `  {
    let m = m0 + ty * ${rm}u + ${r}u;
    if (m < M) {
      for (var j = 0u; j < 4u; j++) {
        let n = n0 + tx * 4u + j;
        if (n < N) { out[m * N + n] = bitcast<u32>(acc${r}[j]); }
      }
    }
  }`,
  ).join('\n');
  return (
    header(['a', 'b', 'sa', 'sb']) +
    CODECS +
    reader('a', 'e4m3') +
    reader('b', 'e4m3') +
    `
var<workgroup> tabA: array<f32, 256>;
var<workgroup> tabB: array<f32, 256>;
var<workgroup> At: array<f32, ${16 * tm}>;    // [16 k][${tm} m]
var<workgroup> Bt: array<vec4<f32>, 256>; // [16 k][16 quads of n]

fn dec(c: u32, fmt: u32) -> f32 {
  if (fmt == 0u) { return bitcast<f32>(e4m3_bits(c)); }
  return bitcast<f32>(e5m2_bits(c));
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let M = prm[1]; let N = prm[2]; let K = prm[3]; let nc = prm[4];
  let abr = prm[5]; let bbr = prm[6]; let bk = prm[7]; let kbA = prm[8]; let kbB = prm[9];
  let zero = prm[10];
  let tx = lid.x; let ty = lid.y; let tid = ty * 16u + tx;
  tabA[tid] = dec(tid, prm[11]);
  tabB[tid] = dec(tid, prm[12]);
  let m0 = wg.y * ${tm}u; let n0 = wg.x * 64u;
  let lk = tid / 16u;
  let lq = (tid % 16u) * 4u;
  let z4 = vec4<u32>(zero);
  ${decl('acc')}
  workgroupBarrier();
  for (var c0 = 0u; c0 < K; c0 = c0 + nc) {
    let c1 = min(K, c0 + nc);
    ${decl('p')}
    for (var k0 = c0; k0 < c1; k0 = k0 + 16u) {
${
        words
          ? `      // whole u32 words: 4 codes along K per load (K and the chunk starts are multiples of 4)
      {
        let bn = tid / 4u;
        let bq = (tid % 4u) * 4u;
        let gn = n0 + bn;
        var w = 0u;
        if (gn < N && k0 + bq < c1) { w = b[(gn * K + k0 + bq) >> 2u]; }
        for (var j = 0u; j < 4u; j++) {
          var v = tabB[(w >> (j * 8u)) & 0xffu];
          if (k0 + bq + j >= c1) { v = 0.0; }
          Bt[(bq + j) * 16u + bn / 4u][bn % 4u] = v;
        }
      }
      if (tid < ${tm * 4}u) {
        let am = tid / 4u;
        let aq = (tid % 4u) * 4u;
        let gm = m0 + am;
        var w = 0u;
        if (gm < M && k0 + aq < c1) { w = a[(gm * K + k0 + aq) >> 2u]; }
        for (var j = 0u; j < 4u; j++) {
          var v = tabA[(w >> (j * 8u)) & 0xffu];
          if (k0 + aq + j >= c1) { v = 0.0; }
          At[(aq + j) * ${tm}u + am] = v;
        }
      }
`
          : `      let gk = k0 + lk;
      var vb = vec4<f32>(0.0);
      if (gk < c1) {
        for (var q = 0u; q < 4u; q++) {
          let gn = n0 + lq + q;
          if (gn < N) { vb[q] = tabB[rd_b(gn * K + gk)]; }
        }
      }
      Bt[tid] = vb;
      for (var l = 0u; l < ${tm / 16}u; l++) {
        let e = tid + l * 256u;
        let ak = e / ${tm}u;
        let am = m0 + e % ${tm}u;
        let kk = k0 + ak;
        var va = 0.0;
        if (kk < c1 && am < M) { va = tabA[rd_a(am * K + kk)]; }
        At[e] = va;
      }
`
      }      workgroupBarrier();
      let kend = min(16u, c1 - k0);
      for (var kk = 0u; kk < kend; kk++) {
        let bv = Bt[kk * 16u + tx];
${fma}
      }
      workgroupBarrier();
    }
    // promotion: acc += partial * (sa * sb), both products rounded (opaque to contraction)
    let kb = c0 / bk;
    var sbv = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + tx * 4u + j;
      if (n < N) { sbv[j] = bitcast<f32>(sb[(n / bbr) * kbB + kb]); }
    }
${promote}
  }
${write}
}
`
  );
}

/**
 * FP8 GEMM with core's limited-precision accumulator model (accumulatorMantissaBits, group
 * size, truncate/nearest), bit for bit: one output per invocation, and the accumulator kept
 * as an exact 64-bit fixed-point integer in units of 2^-18 (the quantum of e4m3 x e4m3
 * products), so the group sums and the rounding to `bits` mantissa bits are exact integer
 * operations, as the float64 reference's are. e4m3 operands only.
 * meta: [n, M, N, K, nc, abr, bbr, bk, kbA, kbB, zero, bits, group, nearest].
 */
export function fp8GemmEmulatedShader(): string {
  const body = `
fn add64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
  let lo = a.x + b.x;
  return vec2<u32>(lo, a.y + b.y + select(0u, 1u, lo < a.x));
}
fn neg64(a: vec2<u32>) -> vec2<u32> { return add64(vec2<u32>(~a.x, ~a.y), vec2<u32>(1u, 0u)); }
fn shl64(a: vec2<u32>, s: u32) -> vec2<u32> {
  if (s == 0u) { return a; }
  if (s >= 32u) { return vec2<u32>(0u, a.x << (s - 32u)); }
  return vec2<u32>(a.x << s, (a.y << s) | (a.x >> (32u - s)));
}
fn shr64(a: vec2<u32>, s: u32) -> vec2<u32> {
  if (s == 0u) { return a; }
  if (s >= 32u) { return vec2<u32>(a.y >> (s - 32u), 0u); }
  return vec2<u32>((a.x >> s) | (a.y << (32u - s)), a.y >> s);
}
fn msb64(a: vec2<u32>) -> i32 {
  if (a.y != 0u) { return 63 - i32(countLeadingZeros(a.y)); }
  if (a.x != 0u) { return 31 - i32(countLeadingZeros(a.x)); }
  return -1;
}
// unsigned compare: -1, 0, 1
fn cmp64(a: vec2<u32>, b: vec2<u32>) -> i32 {
  if (a.y != b.y) { return select(-1, 1, a.y > b.y); }
  if (a.x != b.x) { return select(-1, 1, a.x > b.x); }
  return 0;
}
fn round_bits(s: vec2<u32>, bits: u32, nearest: bool) -> vec2<u32> {
  let neg = (s.y >> 31u) != 0u;
  var m = select(s, neg64(s), neg);
  let p = msb64(m);
  if (p <= i32(bits)) { return s; }
  let sh = u32(p) - bits;
  var q = shr64(m, sh);
  if (nearest) {
    let rem = add64(m, neg64(shl64(q, sh)));
    let half = shl64(vec2<u32>(1u, 0u), sh - 1u);
    let c = cmp64(rem, half);
    if (c > 0 || (c == 0 && (q.x & 1u) == 1u)) { q = add64(q, vec2<u32>(1u, 0u)); }
  }
  m = shl64(q, sh);
  return select(m, neg64(m), neg);
}
// exact value of a fixed-point integer in units of 2^-18 as f32 (it has <= 24 significant bits)
fn fx_f32(s: vec2<u32>) -> f32 {
  let neg = (s.y >> 31u) != 0u;
  let m = select(s, neg64(s), neg);
  let p = msb64(m);
  if (p < 0) { return 0.0; }
  var mant: u32;
  if (p >= 23) { mant = shr64(m, u32(p - 23)).x; } else { mant = shl64(m, u32(23 - p)).x; }
  let bitsv = select(0u, 0x80000000u, neg) | (u32(p - 18 + 127) << 23u) | (mant & 0x7fffffu);
  return bitcast<f32>(bitsv);
}
// e4m3 code -> (significand, effective exponent); value = sig * 2^(eff - 10)
fn sig_e4m3(c: u32) -> vec2<u32> {
  let e = (c >> 3u) & 0xfu;
  let m = c & 7u;
  if (e == 0u) { return vec2<u32>(m, 1u); }
  return vec2<u32>(m + 8u, e);
}
fn elem(i: u32) -> u32 {
  let M = prm[1]; let N = prm[2]; let K = prm[3]; let nc = prm[4];
  let abr = prm[5]; let bbr = prm[6]; let bk = prm[7]; let kbA = prm[8]; let kbB = prm[9];
  let zero = prm[10]; let bits = prm[11]; let group = prm[12]; let nearest = prm[13] != 0u;
  let m = i / N;
  let n = i % N;
  var acc = 0.0;
  var nan = false;
  for (var k0 = 0u; k0 < K; k0 = k0 + nc) {
    let k1 = min(K, k0 + nc);
    var partial = vec2<u32>(0u, 0u);
    var gsum = vec2<u32>(0u, 0u);
    var inGroup = 0u;
    for (var k = k0; k < k1; k++) {
      let ca = rd_a(m * K + k);
      let cb = rd_b(n * K + k);
      if ((ca & 0x7fu) == 0x7fu || (cb & 0x7fu) == 0x7fu) { nan = true; }
      let sa = sig_e4m3(ca);
      let sb = sig_e4m3(cb);
      var p = shl64(vec2<u32>(sa.x * sb.x, 0u), sa.y + sb.y - 2u);
      if (((ca ^ cb) & 0x80u) != 0u) { p = neg64(p); }
      gsum = add64(gsum, p);
      inGroup = inGroup + 1u;
      if (inGroup == group) {
        partial = round_bits(add64(partial, gsum), bits, nearest);
        gsum = vec2<u32>(0u, 0u);
        inGroup = 0u;
      }
    }
    if (inGroup > 0u) { partial = round_bits(add64(partial, gsum), bits, nearest); }
    let s = bitcast<f32>(sa_[(m / abr) * kbA + k0 / bk]) * bitcast<f32>(sb_[(n / bbr) * kbB + k0 / bk]);
    let pr = bitcast<f32>(bitcast<u32>(fx_f32(partial) * bitcast<f32>(bitcast<u32>(s) ^ zero)) ^ zero);
    acc = acc + pr;
  }
  if (nan) { return 0x7fc00000u; }
  return bitcast<u32>(acc);
}
`;
  return elementwise('f32', reader('a', 'e4m3') + reader('b', 'e4m3') + body, ['a', 'b', 'sa_', 'sb_']);
}

/**
 * The FP8 block GEMM for 4-aligned K (the usual case): the f32 GEMM's layout (8x8
 * invocations, rm x 8 register blocks of vec4, (8*rm) x 64 tiles) with codes loaded as whole
 * u32 words and decoded through the table while staging the 16-deep tiles, K walked chunk by
 * chunk as in fp8GemmShader (same K order per output, same promotion), so the result is the
 * same bit for bit. meta as fp8GemmShader.
 */
export function fp8GemmWordsShader(rm: 4 | 8): string {
  const tm = 8 * rm;
  const aq = tm / 4;
  let fma = '';
  for (let r = 0; r < rm; r++) {
    const a = `a${r >> 2}.${'xyzw'[r & 3]}`;
    fma += `        p[${2 * r}] = p[${2 * r}] + ${a} * b0; p[${2 * r + 1}] = p[${2 * r + 1}] + ${a} * b1;\n`;
  }
  let aloads = '';
  for (let q = 0; q < rm / 4; q++) aloads += `        let a${q} = At[kk * ${aq}u + ty * ${rm / 4}u + ${q}u];\n`;
  return (
    header(['a', 'b', 'sa', 'sb']) +
    CODECS +
    `
var<workgroup> tabA: array<f32, 256>;
var<workgroup> tabB: array<f32, 256>;
var<workgroup> At: array<vec4<f32>, ${16 * aq}>; // [16 k][${tm} m] as vec4 over m
var<workgroup> Bt: array<vec4<f32>, 256>;        // [16 k][64 n] as vec4 over n

fn dec(c: u32, fmt: u32) -> f32 {
  if (fmt == 0u) { return bitcast<f32>(e4m3_bits(c)); }
  return bitcast<f32>(e5m2_bits(c));
}

@compute @workgroup_size(8, 8)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let M = prm[1]; let N = prm[2]; let K = prm[3]; let nc = prm[4];
  let abr = prm[5]; let bbr = prm[6]; let bk = prm[7]; let kbA = prm[8]; let kbB = prm[9];
  let zero = prm[10];
  let tx = lid.x; let ty = lid.y; let tid = ty * 8u + tx;
  for (var t = tid; t < 256u; t = t + 64u) {
    tabA[t] = dec(t, prm[11]);
    tabB[t] = dec(t, prm[12]);
  }
  let m0 = wg.y * ${tm}u; let n0 = wg.x * 64u;
  let z4 = vec4<u32>(zero);
  var acc: array<vec4<f32>, ${2 * rm}>;
  for (var i = 0u; i < ${2 * rm}u; i++) { acc[i] = vec4<f32>(0.0); }
  workgroupBarrier();
  for (var c0 = 0u; c0 < K; c0 = c0 + nc) {
    let c1 = min(K, c0 + nc);
    var p: array<vec4<f32>, ${2 * rm}>;
    for (var i = 0u; i < ${2 * rm}u; i++) { p[i] = vec4<f32>(0.0); }
    for (var k0 = c0; k0 < c1; k0 = k0 + 16u) {
      // B: 64 rows x 16 codes = 256 words, 4 per invocation
      for (var l = 0u; l < 4u; l++) {
        let e = tid + l * 64u;
        let bn = e / 4u;
        let bq = (e % 4u) * 4u;
        let gn = n0 + bn;
        var w = 0u;
        if (gn < N && k0 + bq < c1) { w = b[(gn * K + k0 + bq) >> 2u]; }
        for (var j = 0u; j < 4u; j++) {
          var v = tabB[(w >> (j * 8u)) & 0xffu];
          if (k0 + bq + j >= c1) { v = 0.0; }
          Bt[(bq + j) * 16u + bn / 4u][bn % 4u] = v;
        }
      }
      // A: ${tm} rows x 16 codes = ${tm * 4} words
      for (var l = 0u; l < ${(tm * 4) / 64}u; l++) {
        let e = tid + l * 64u;
        let am = e / 4u;
        let aqk = (e % 4u) * 4u;
        let gm = m0 + am;
        var w = 0u;
        if (gm < M && k0 + aqk < c1) { w = a[(gm * K + k0 + aqk) >> 2u]; }
        for (var j = 0u; j < 4u; j++) {
          var v = tabA[(w >> (j * 8u)) & 0xffu];
          if (k0 + aqk + j >= c1) { v = 0.0; }
          At[(aqk + j) * ${aq}u + am / 4u][am % 4u] = v;
        }
      }
      workgroupBarrier();
      let kend = min(16u, c1 - k0);
      for (var kk = 0u; kk < kend; kk++) {
${aloads}        let b0 = Bt[kk * 16u + tx * 2u];
        let b1 = Bt[kk * 16u + tx * 2u + 1u];
${fma}      }
      workgroupBarrier();
    }
    // promotion: acc += partial * (sa * sb), both products rounded (opaque to contraction)
    let kb = c0 / bk;
    var sb0 = vec4<f32>(0.0);
    var sb1 = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + tx * 8u + j;
      if (n < N) { sb0[j] = bitcast<f32>(sb[(n / bbr) * kbB + kb]); }
      if (n + 4u < N) { sb1[j] = bitcast<f32>(sb[((n + 4u) / bbr) * kbB + kb]); }
    }
    for (var i = 0u; i < ${rm}u; i++) {
      let m = min(m0 + ty * ${rm}u + i, M - 1u);
      let sav = bitcast<f32>(sa[(m / abr) * kbA + kb]);
      let s0 = bitcast<vec4<f32>>(bitcast<vec4<u32>>(sav * sb0) ^ z4);
      let s1 = bitcast<vec4<f32>>(bitcast<vec4<u32>>(sav * sb1) ^ z4);
      acc[i * 2u] = acc[i * 2u] + bitcast<vec4<f32>>(bitcast<vec4<u32>>(p[i * 2u] * s0) ^ z4);
      acc[i * 2u + 1u] = acc[i * 2u + 1u] + bitcast<vec4<f32>>(bitcast<vec4<u32>>(p[i * 2u + 1u] * s1) ^ z4);
    }
  }
  let mBase = m0 + ty * ${rm}u;
  let nBase = n0 + tx * 8u;
  for (var i = 0u; i < ${rm}u; i++) {
    let m = mBase + i;
    if (m >= M) { break; }
    for (var h = 0u; h < 2u; h++) {
      let r = acc[i * 2u + h];
      for (var j = 0u; j < 4u; j++) {
        let n = nBase + h * 4u + j;
        if (n < N) { out[m * N + n] = bitcast<u32>(r[j]); }
      }
    }
  }
}
`
  );
}
