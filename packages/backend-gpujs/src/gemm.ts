/**
 * The packed GEMMs of the gpu.js backend (f32 matmul and the FP8 block GEMM).
 *
 * gpu.js reads an operand element with generated index arithmetic (flat index -> texel
 * coordinates, integer division and modulo per read) and one float per texel fetch; the
 * one-output-per-thread K loop in kernels.ts (MATMUL) pays that twice per multiply-add. Here:
 *
 * 1. Pack: each operand is rewritten into a 2D RGBA32F texture with four values per texel (see
 *    `packKernel`): A's texel holds 4 consecutive k of one row, and the 4 rows of a 4x4 output
 *    block sit side by side in one texture row; B's texel holds 4 consecutive columns at one k,
 *    one texture row per 4-column block, k along the row. Padding (M, N and K to multiples of
 *    4) is zero. Strides, transposes and batch broadcast are resolved here, so the GEMM only
 *    sees dense packed operands. The FP8 pack decodes the e4m3/e5m2 codes (exactly) on the way.
 * 2. GEMM: one fragment computes a 4x4 output block and writes it to four render targets (a
 *    gpu.js kernel map: the result and three sub-kernel outputs, one vec4 = one row of 4
 *    columns each). Per 4 values of K it fetches 4 adjacent texels of A and 4 adjacent
 *    texels of B (64 contiguous bytes each) with `texelFetch` at (column, row) coordinates (no
 *    index arithmetic) and does 16 vec4 multiply-adds: one
 *    fetch per 8 multiply-adds, where the old kernel did 2 fetches (with index math) per one.
 *    Each output still accumulates sequentially along K (c = c + a_k * b_k, k ascending),
 *    the order of the old kernel and of core's fp8GemmReference.
 * 3. Unpack: the four block textures back into the backend's storage layout (one float per
 *    texel, flat row-major).
 *
 * The inner loops are GLSL (gpu.js `nativeFunctions`, shipped inside the kernel source; see
 * engine.ts) that read the kernel's texture uniforms (`user_<arg>`) directly, in two dialects:
 * GLSL ES 3.00 for WebGL2 (the Chromium engine; `GEMM_KERNELS_WEBGL2`) and GLSL ES 1.00 for
 * headless-gl's WebGL 1.0 with WEBGL_draw_buffers (`GEMM_KERNELS_WEBGL1`, at the end of this
 * file): same layouts, same meta, same per-output K order.
 */

/** Packed-path limits checked by `gemmPlan` (texture sizes from the page, float counts). */
export interface GemmLimits {
  readonly maxTextureSize: number;
  readonly maxElements: number;
}

/** What the GEMM kernels need to know about a packed problem. */
export interface GemmPlan {
  readonly batch: number;
  readonly M: number;
  readonly N: number;
  readonly K: number;
  /** rows of A padded to 4 */
  readonly Mp: number;
  /** K padded to 4 */
  readonly Kp: number;
  /** K / 4 (4-value steps along K) */
  readonly Kq: number;
  /** output blocks along M and N */
  readonly MB: number;
  readonly NB: number;
}

const up4 = (x: number): number => Math.ceil(x / 4) * 4;

/**
 * The packed plan, or undefined where a packed texture would exceed the page's texture size
 * (K and the packed row counts up to MAX_TEXTURE_SIZE: K <= 8192 on SwiftShader) or the element limit (the caller then uses the plain kernel). `batchA`/`batchB`: how many
 * distinct A/B matrices are packed (1 for a broadcast operand, else `batch`).
 */
export function gemmPlan(batch: number, M: number, N: number, K: number, batchA: number, batchB: number, lim: GemmLimits): GemmPlan | undefined {
  const Mp = up4(M);
  const Kp = up4(K);
  const Kq = Kp / 4;
  const MB = Mp / 4;
  const NB = Math.ceil(N / 4);
  const T = lim.maxTextureSize;
  if (Kp > T || batchA * MB > T || batchB * NB > T) return undefined;
  if (batchA * Mp * Kp > lim.maxElements || batchB * Kp * NB * 4 > lim.maxElements || batch * MB * NB * 4 > lim.maxElements) return undefined;
  return { batch, M, N, K, Mp, Kp, Kq, MB, NB };
}

/** A GLSL function shipped with a kernel source (see engine.ts, `parseNatives`). */
function glsl(name: string, returnType: 'Number' | 'Array(4)', source: string): string {
  return `/*@glsl ${name} ${returnType}*/${source}/*@end*/\n`;
}

/** FP8 code (an integer-valued float) -> its value, exactly; NaN/inf made at run time. */
const DECODE_FP8: Record<'e4m3' | 'e5m2', string> = {
  // e4m3fn: bias 7, no infinities, S.1111.111 is NaN; subnormals m * 2^-9
  e4m3: `float kilnDecodeFp8(float x) {
  int c = int(x);
  float s = c >= 128 ? -1.0 : 1.0;
  int u = c - (c >= 128 ? 128 : 0);
  int e = u / 8;
  int mm = u - e * 8;
  if (e == 15 && mm == 7) { float z = x - x; return z / z; }
  if (e == 0) { return s * float(mm) * intBitsToFloat(${(1 - 7 - 3 + 127) << 23}); }
  return s * (1.0 + float(mm) * 0.125) * intBitsToFloat((e - 7 + 127) * 8388608);
}
`,
  // e5m2: bias 15, IEEE-like specials; subnormals m * 2^-16
  e5m2: `float kilnDecodeFp8(float x) {
  int c = int(x);
  float s = c >= 128 ? -1.0 : 1.0;
  int u = c - (c >= 128 ? 128 : 0);
  int e = u / 4;
  int mm = u - e * 4;
  if (e == 31) { float z = x - x; return mm == 0 ? s / z : z / z; }
  if (e == 0) { return s * float(mm) * intBitsToFloat(${(1 - 15 - 2 + 127) << 23}); }
  return s * (1.0 + float(mm) * 0.25) * intBitsToFloat((e - 15 + 127) * 8388608);
}
`,
};

/**
 * Pack kernels, 2D outputs whose every texel holds X[b * bs + r * sr + (4q + c) * sc] for
 * c = 0..3 (zero where r >= R or 4q + c >= C), laid out so that the 4 texels one GEMM step reads
 * of an operand are adjacent in one texture row (one cache line):
 * - 'a' (A, r = output row, 4q + c = k): [4 * Cq texels, batch * Rb rows]; texel (x, y) has
 *   q = x / 4, r = 4 * (y % Rb) + x % 4, b = y / Rb (the 4 rows of a 4x4 block interleaved).
 * - 'b' (B, r = k, 4q + c = output column): [Rp texels, batch * Cq rows]; texel (x, y) has
 *   r = x, q = y % Cq, b = y / Cq.
 * With `decode`, X holds FP8 codes and the texel their values. m = [n, R, Rb, Cq, C, bs, sr, sc]
 * (Rb: row blocks per batch for 'a'; Cq: column texels per batch for 'b').
 */
export function packKernel(layout: 'a' | 'b', decode?: 'e4m3' | 'e5m2'): string {
  const name = `kilnPack${layout.toUpperCase()}${decode ? `_${decode}` : ''}`;
  const read = decode ? 'kilnDecodeFp8(texelFetch(user_x, ivec2(p % s.x, p / s.x), 0).r)' : 'texelFetch(user_x, ivec2(p % s.x, p / s.x), 0).r';
  const coords =
    layout === 'a'
      ? `int rb = int(Rb);
  int b = iy / rb;
  int q = ix / 4;
  int r = 4 * (iy - b * rb) + (ix - q * 4);`
      : `int cq = int(Cq);
  int b = iy / cq;
  int q = iy - b * cq;
  int r = ix;`;
  // (one native block: gpu.js orders natives by the kernel's calls, not by calls between natives)
  return `${glsl(
    name,
    'Array(4)',
    `${decode ? DECODE_FP8[decode] : ''}vec4 ${name}(float x, float y, float R, float Rb, float Cq, float C, float bs, float sr, float sc) {
  int ix = int(x);
  int iy = int(y);
  ${coords}
  vec4 v = vec4(0.0);
  if (r < int(R)) {
    ivec2 s = user_xSize;
    int base = b * int(bs) + r * int(sr);
    int c0 = q * 4;
    int cn = int(C);
    int isc = int(sc);
    for (int c = 0; c < 4; c++) {
      if (c0 + c < cn) {
        int p = base + (c0 + c) * isc;
        v[c] = ${read};
      }
    }
  }
  return v;
}
`,
  )}function (x, m) { return ${name}(this.thread.x, this.thread.y, m[1], m[2], m[3], m[4], m[5], m[6], m[7]); }`;
}

/** The sub-kernels of the GEMM kernel map: outputs 1..3 (rows 1..3 of each 4x4 block). */
export const GEMM_SUBS: readonly string[] = [1, 2, 3].map((r) => `function kilnOut${r}(z) { return kilnRow${r}(z); }`);
const ROW_NATIVES = [1, 2, 3].map((r) => glsl(`kilnRow${r}`, 'Array(4)', `vec4 kilnRow${r}(float z) { return subKernelResult_kilnOut${r}; }\n`)).join('');

const ROWS = [0, 1, 2, 3];
/** One step of 4 along K: 4 adjacent texels of A (rows a0..a0+3), 4 of B (k = 4q..4q+3), 16 vec4 FMAs into `acc0..3`. */
function step(acc: string): string {
  return `int kx = 4 * q;
    vec4 x0 = texelFetch(user_a, ivec2(kx, ya), 0);
    vec4 x1 = texelFetch(user_a, ivec2(kx + 1, ya), 0);
    vec4 x2 = texelFetch(user_a, ivec2(kx + 2, ya), 0);
    vec4 x3 = texelFetch(user_a, ivec2(kx + 3, ya), 0);
    vec4 y0 = texelFetch(user_b, ivec2(kx, yb), 0);
    vec4 y1 = texelFetch(user_b, ivec2(kx + 1, yb), 0);
    vec4 y2 = texelFetch(user_b, ivec2(kx + 2, yb), 0);
    vec4 y3 = texelFetch(user_b, ivec2(kx + 3, yb), 0);
    ${ROWS.map((r) => `${acc}${r} = ${acc}${r} + x${r}.x * y0; ${acc}${r} = ${acc}${r} + x${r}.y * y1; ${acc}${r} = ${acc}${r} + x${r}.z * y2; ${acc}${r} = ${acc}${r} + x${r}.w * y3;`).join('\n    ')}`;
}

const BLOCK_INDEX = `int it = int(t);
  int nb = int(NB);
  int mb = int(MB);
  int kq = int(Kq);
  int rr = it / nb;
  int bj = it - rr * nb;
  int bt = rr / mb;
  int bi = rr - bt * mb;
  int ya = bt * int(aStep) + bi;
  int yb = bt * int(bStep) + bj;
  int a0 = 4 * bi;`;

/**
 * f32 GEMM over packed operands (kernel map: result + kilnOut1..3). One thread per 4x4 output
 * block, t = (batch, block row, block column). aStep / bStep: packed rows per batch of A / B
 * (0 for a broadcast operand). m = [n, MB, NB, Kq, aStep, bStep].
 */
export const GEMM44 = `${ROW_NATIVES}${glsl(
  'kilnGemm44',
  'Array(4)',
  `vec4 kilnGemm44(float t, float MB, float NB, float Kq, float aStep, float bStep) {
  ${BLOCK_INDEX}
  vec4 c0 = vec4(0.0); vec4 c1 = vec4(0.0); vec4 c2 = vec4(0.0); vec4 c3 = vec4(0.0);
  for (int q = 0; q < kq; q++) {
    ${step('c')}
  }
  subKernelResult_kilnOut1 = c1; subKernelResult_kilnOut2 = c2; subKernelResult_kilnOut3 = c3;
  return c0;
}
`,
)}function (a, b, m) { const r = kilnGemm44(this.thread.x, m[1], m[2], m[3], m[4], m[5]); kilnOut1(0.0); kilnOut2(0.0); kilnOut3(0.0); return r; }`;

/**
 * `GEMM44` with the K loop unrolled by two steps (8 values of K per iteration: 16 texel fetches
 * issued before 32 vec4 multiply-adds), for more independent fetches in flight per fragment;
 * the same operations per output in the same order (bit-identical). Variant 'unroll2'.
 */
export const GEMM44_U2 = `${ROW_NATIVES}${glsl(
  'kilnGemm44U2',
  'Array(4)',
  `vec4 kilnGemm44U2(float t, float MB, float NB, float Kq, float aStep, float bStep) {
  ${BLOCK_INDEX}
  vec4 c0 = vec4(0.0); vec4 c1 = vec4(0.0); vec4 c2 = vec4(0.0); vec4 c3 = vec4(0.0);
  int q = 0;
  for (; q + 1 < kq; q += 2) {
    {
    ${step('c')}
    }
    {
    int q1 = q + 1;
    ${step('c').replace('int kx = 4 * q;', 'int kx = 4 * q1;')}
    }
  }
  if (q < kq) {
    ${step('c')}
  }
  subKernelResult_kilnOut1 = c1; subKernelResult_kilnOut2 = c2; subKernelResult_kilnOut3 = c3;
  return c0;
}
`,
)}function (a, b, m) { const r = kilnGemm44U2(this.thread.x, m[1], m[2], m[3], m[4], m[5]); kilnOut1(0.0); kilnOut2(0.0); kilnOut3(0.0); return r; }`;

/**
 * FP8 block GEMM over packed decoded operands, as core's fp8GemmReference: per chunk of `ncq`
 * texels (4 ncq values) along K the exact products accumulate in f32 (k ascending), then
 * acc = acc + partial * (scaleA * scaleB) of the chunk's first K block. Scales are read from
 * the unpacked scale tensors (as: [ceil(M/brA), kbA], bs: [ceil(N/brB), kbB]).
 * m = [n, MB, NB, Kq, ncq, M, N, brA, brB, bkA, bkB, kbA, kbB].
 */
export const GEMM44_FP8 = `${ROW_NATIVES}${glsl(
  'kilnGemm44Fp8',
  'Array(4)',
  `float kilnScaleAt(int which, int p) {
  if (which == 0) { ivec2 s = user_asSize; return texelFetch(user_as, ivec2(p % s.x, p / s.x), 0).r; }
  ivec2 s = user_bsSize;
  return texelFetch(user_bs, ivec2(p % s.x, p / s.x), 0).r;
}
vec4 kilnGemm44Fp8(float t, float MB, float NB, float Kq, float ncq, float M, float N, float brA, float brB, float bkA, float bkB, float kbA, float kbB) {
  float aStep = 0.0;
  float bStep = 0.0;
  ${BLOCK_INDEX}
  int nq = int(ncq);
  int im = int(M) - 1;
  // a run-time zero added to each scaled partial: keeps it a rounded product, never fused into
  // an fma with the accumulator (NVIDIA's GL contracts a * b + c; core's reference rounds twice)
  vec4 zero = vec4(min(M, 0.0));
  int jn = int(N) - 1;
  int j0 = 4 * bj;
  vec4 c0 = vec4(0.0); vec4 c1 = vec4(0.0); vec4 c2 = vec4(0.0); vec4 c3 = vec4(0.0);
  // the scale rows do not change along K: found once; B's four columns share one scale where
  // they lie in one scale block (B's block rows a multiple of 4), and A's four rows likewise:
  // the same values, fewer fetches
  int iba = int(brA); int ibb = int(brB); int ika = int(bkA); int ikb = int(bkB);
  ivec4 sra = ivec4(min(a0, im) / iba, min(a0 + 1, im) / iba, min(a0 + 2, im) / iba, min(a0 + 3, im) / iba) * int(kbA);
  ivec4 srb = ivec4(min(j0, jn) / ibb, min(j0 + 1, jn) / ibb, min(j0 + 2, jn) / ibb, min(j0 + 3, jn) / ibb) * int(kbB);
  bool oneA = sra.x == sra.w;
  bool oneB = srb.x == srb.w;
  for (int q0 = 0; q0 < kq; q0 += nq) {
    vec4 p0 = vec4(0.0); vec4 p1 = vec4(0.0); vec4 p2 = vec4(0.0); vec4 p3 = vec4(0.0);
    int q1 = min(q0 + nq, kq);
    for (int q = q0; q < q1; q++) {
      ${step('p')}
    }
    int k0 = 4 * q0;
    int ka = k0 / ika; int kb = k0 / ikb;
    vec4 sa = vec4(kilnScaleAt(0, sra.x + ka));
    if (!oneA) { sa.y = kilnScaleAt(0, sra.y + ka); sa.z = kilnScaleAt(0, sra.z + ka); sa.w = kilnScaleAt(0, sra.w + ka); }
    vec4 sb = vec4(kilnScaleAt(1, srb.x + kb));
    if (!oneB) { sb.y = kilnScaleAt(1, srb.y + kb); sb.z = kilnScaleAt(1, srb.z + kb); sb.w = kilnScaleAt(1, srb.w + kb); }
    ${ROWS.map((r) => `c${r} = c${r} + (p${r} * (sa.${'xyzw'[r]} * sb) + zero);`).join('\n    ')}
  }
  subKernelResult_kilnOut1 = c1; subKernelResult_kilnOut2 = c2; subKernelResult_kilnOut3 = c3;
  return c0;
}
`,
)}function (a, b, as, bs, m) { const r = kilnGemm44Fp8(this.thread.x, m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8], m[9], m[10], m[11], m[12]); kilnOut1(0.0); kilnOut2(0.0); kilnOut3(0.0); return r; }`;

/**
 * Unpack the four block textures (p0..p3: rows 0..3 of each 4x4 block) into the flat row-major
 * storage layout [batch, M, N]. m = [n, M, N, MB, NB].
 */
export const UNPACK44 = `${glsl(
  'kilnUnpack44',
  'Number',
  `float kilnUnpack44(float o, float M, float N, float MB, float NB) {
  int io = int(o);
  int n = int(N);
  int mm = int(M);
  int r = io / n;
  int j = io - r * n;
  int bt = r / mm;
  int i = r - bt * mm;
  int t = (bt * int(MB) + i / 4) * int(NB) + j / 4;
  ivec2 s = user_p0Size;
  ivec2 st = ivec2(t % s.x, t / s.x);
  int w = i - (i / 4) * 4;
  vec4 v;
  if (w == 0) { v = texelFetch(user_p0, st, 0); }
  else if (w == 1) { v = texelFetch(user_p1, st, 0); }
  else if (w == 2) { v = texelFetch(user_p2, st, 0); }
  else { v = texelFetch(user_p3, st, 0); }
  return v[j - (j / 4) * 4];
}
`,
)}function (p0, p1, p2, p3, m) { return kilnUnpack44(this.thread.x, m[1], m[2], m[3], m[4]); }`;

// ---- WebGL 1.0 (GLSL ES 1.00: headless-gl) ------------------------------------------------
//
// The same three passes, the same packed layouts and the same per-output K order, written for
// GLSL ES 1.00: no texelFetch (texture2D at normalised texel centres (i + 0.5) / size, NEAREST
// filtering as gpu.js sets it), no `%`, no intBitsToFloat, loops with constant bounds (a
// `break` at the dynamic end), no dynamic vector indexing. Index arithmetic is float on
// integer values below 2^24 (exact), with divisions corrected to the exact quotient
// (`kilnDivMod`), so it does not depend on the driver's int precision or division rounding.
// The four outputs of the GEMM go to four render targets through gpu.js's WebGL1 kernel map
// (WEBGL_draw_buffers, gl_FragData[0..3]).

/** Loop bound: above any K/4 the packed plan admits (K <= MAX_TEXTURE_SIZE). */
const GL1_LOOP_MAX = 65536;

/** (floor(a / b), a - b floor(a / b)) for integer-valued 0 <= a < 2^24, 1 <= b: exact (the quotient corrected twice). */
const GL1_DIVMOD = `vec2 kilnDivMod(float a, float b) {
  float q = floor(a / b);
  float r = a - q * b;
  if (r < 0.0) { q -= 1.0; r += b; } else if (r >= b) { q += 1.0; r -= b; }
  if (r < 0.0) { q -= 1.0; r += b; } else if (r >= b) { q += 1.0; r -= b; }
  return vec2(q, r);
}
`;

/** Texel `p` (flat) of a texture of size s: its normalised centre. */
const GL1_AT = `vec2 kilnAt(float p, vec2 s) {
  vec2 d = kilnDivMod(p, s.x);
  return (vec2(d.y, d.x) + 0.5) / s;
}
`;

/** 2^e exactly for integer |e| < 32, by constant multiplies (exp2 is approximate on some GPUs). */
const GL1_POW2 = `float kilnPow2(float e) {
  float r = 1.0;
  float a = abs(e);
  bool n = e < 0.0;
  if (a >= 16.0) { r *= n ? 0.0000152587890625 : 65536.0; a -= 16.0; }
  if (a >= 8.0) { r *= n ? 0.00390625 : 256.0; a -= 8.0; }
  if (a >= 4.0) { r *= n ? 0.0625 : 16.0; a -= 4.0; }
  if (a >= 2.0) { r *= n ? 0.25 : 4.0; a -= 2.0; }
  if (a >= 1.0) { r *= n ? 0.5 : 2.0; }
  return r;
}
`;

/**
 * FP8 code -> value in GLSL ES 1.00 (float arithmetic on the code; products of powers of two are
 * exact). NaN and inf come from a zero the compiler cannot fold (min(code, 0), codes being >= 0):
 * with `c - c` as the zero, llvmpipe turned `s / z` into NaN; `s * (1.0 / z)` is the form that
 * gives the infinity.
 */
const DECODE_FP8_GL1: Record<'e4m3' | 'e5m2', string> = {
  e4m3: `${GL1_POW2}float kilnDecodeFp8(float c) {
  float s = c >= 128.0 ? -1.0 : 1.0;
  float u = c >= 128.0 ? c - 128.0 : c;
  float e = floor(u * 0.125);
  float mm = u - e * 8.0;
  if (e == 15.0 && mm == 7.0) { float z = min(c, 0.0); return z / z; }
  if (e == 0.0) { return s * mm * 0.001953125; }
  return s * (8.0 + mm) * kilnPow2(e - 10.0);
}
`,
  e5m2: `${GL1_POW2}float kilnDecodeFp8(float c) {
  float s = c >= 128.0 ? -1.0 : 1.0;
  float u = c >= 128.0 ? c - 128.0 : c;
  float e = floor(u * 0.25);
  float mm = u - e * 4.0;
  if (e == 31.0) { float z = min(c, 0.0); if (mm == 0.0) { return s * (1.0 / z); } return z / z; }
  if (e == 0.0) { return s * mm * 0.0000152587890625; }
  return s * (4.0 + mm) * kilnPow2(e - 17.0);
}
`,
};

/** `packKernel` for WebGL 1.0: the same layouts and meta. */
export function packKernelGl1(layout: 'a' | 'b', decode?: 'e4m3' | 'e5m2'): string {
  const name = `kilnPack${layout.toUpperCase()}${decode ? `_${decode}` : ''}Gl1`;
  const coords =
    layout === 'a'
      ? `vec2 d = kilnDivMod(y, Rb);
  vec2 e = kilnDivMod(x, 4.0);
  float b = d.x;
  float q = e.x;
  float r = 4.0 * d.y + e.y;`
      : `vec2 d = kilnDivMod(y, Cq);
  float b = d.x;
  float q = d.y;
  float r = x;`;
  const read = (c: number): string => {
    const t = `texture2D(user_x, kilnAt(base + (c0 + ${c}.0) * sc, s)).r`;
    return decode ? `kilnDecodeFp8(${t})` : t;
  };
  return `${glsl(
    name,
    'Array(4)',
    `${GL1_DIVMOD}${GL1_AT}${decode ? DECODE_FP8_GL1[decode] : ''}vec4 ${name}(float x, float y, float R, float Rb, float Cq, float C, float bs, float sr, float sc) {
  ${coords}
  vec4 v = vec4(0.0);
  if (r < R) {
    vec2 s = vec2(user_xSize);
    float base = b * bs + r * sr;
    float c0 = q * 4.0;
    if (c0 < C) { v.x = ${read(0)}; }
    if (c0 + 1.0 < C) { v.y = ${read(1)}; }
    if (c0 + 2.0 < C) { v.z = ${read(2)}; }
    if (c0 + 3.0 < C) { v.w = ${read(3)}; }
  }
  return v;
}
`,
  )}function (x, m) { return ${name}(this.thread.x, this.thread.y, m[1], m[2], m[3], m[4], m[5], m[6], m[7]); }`;
}

/** One step of 4 along K in GLSL ES 1.00: texels at x = kx .. kx + 3 (kx = 4q + 0.5: centres) of rows ua / ub. */
function stepGl1(acc: string): string {
  return `vec4 x0 = texture2D(user_a, vec2(kx * ia, ua));
    vec4 x1 = texture2D(user_a, vec2((kx + 1.0) * ia, ua));
    vec4 x2 = texture2D(user_a, vec2((kx + 2.0) * ia, ua));
    vec4 x3 = texture2D(user_a, vec2((kx + 3.0) * ia, ua));
    vec4 y0 = texture2D(user_b, vec2(kx * ib, ub));
    vec4 y1 = texture2D(user_b, vec2((kx + 1.0) * ib, ub));
    vec4 y2 = texture2D(user_b, vec2((kx + 2.0) * ib, ub));
    vec4 y3 = texture2D(user_b, vec2((kx + 3.0) * ib, ub));
    ${ROWS.map((r) => `${acc}${r} = ${acc}${r} + x${r}.x * y0; ${acc}${r} = ${acc}${r} + x${r}.y * y1; ${acc}${r} = ${acc}${r} + x${r}.z * y2; ${acc}${r} = ${acc}${r} + x${r}.w * y3;`).join('\n    ')}`;
}

/** GLSL ES 1.00: the texture rows (ua, ub: centres, normalised) and texel widths (ia, ib) of block (bt, bi, bj)'s A and B rows. */
const OPERAND_ROWS_GL1 = `vec2 sa = vec2(user_aSize);
  vec2 sb = vec2(user_bSize);
  float ua = (bt * aStep + bi + 0.5) / sa.y;
  float ub = (bt * bStep + bj + 0.5) / sb.y;
  float ia = 1.0 / sa.x;
  float ib = 1.0 / sb.x;`;

/** One step of 4 along K for a 1x4 block in GLSL ES 1.00: A's texel of row r (kx + r), B's 4 texels, into `acc` (the order of stepGl1's row r). */
function step14Gl1(acc: string): string {
  return `vec4 x = texture2D(user_a, vec2((kx + r) * ia, ua));
    vec4 y0 = texture2D(user_b, vec2(kx * ib, ub));
    vec4 y1 = texture2D(user_b, vec2((kx + 1.0) * ib, ub));
    vec4 y2 = texture2D(user_b, vec2((kx + 2.0) * ib, ub));
    vec4 y3 = texture2D(user_b, vec2((kx + 3.0) * ib, ub));
    ${acc} = ${acc} + x.x * y0; ${acc} = ${acc} + x.y * y1; ${acc} = ${acc} + x.z * y2; ${acc} = ${acc} + x.w * y3;`;
}

const BLOCK_INDEX_GL1 = `vec2 d = kilnDivMod(t, NB);
  vec2 e = kilnDivMod(d.x, MB);
  float bj = d.y;
  float bt = e.x;
  float bi = e.y;
  ${OPERAND_ROWS_GL1}
  float a0 = 4.0 * bi;
  int kq = int(Kq);`;

/** `GEMM44` for WebGL 1.0 (same meta). */
export const GEMM44_GL1 = `${ROW_NATIVES}${glsl(
  'kilnGemm44Gl1',
  'Array(4)',
  `${GL1_DIVMOD}vec4 kilnGemm44Gl1(float t, float MB, float NB, float Kq, float aStep, float bStep) {
  ${BLOCK_INDEX_GL1}
  vec4 c0 = vec4(0.0); vec4 c1 = vec4(0.0); vec4 c2 = vec4(0.0); vec4 c3 = vec4(0.0);
  float kx = 0.5;
  for (int q = 0; q < ${GL1_LOOP_MAX}; q++) {
    if (q >= kq) { break; }
    ${stepGl1('c')}
    kx += 4.0;
  }
  subKernelResult_kilnOut1 = c1; subKernelResult_kilnOut2 = c2; subKernelResult_kilnOut3 = c3;
  return c0;
}
`,
)}function (a, b, m) { const r = kilnGemm44Gl1(this.thread.x, m[1], m[2], m[3], m[4], m[5]); kilnOut1(0.0); kilnOut2(0.0); kilnOut3(0.0); return r; }`;

/** `GEMM44_U2` for WebGL 1.0 (same meta): two 4-value steps per iteration, the odd last step after the loop. */
export const GEMM44_U2_GL1 = `${ROW_NATIVES}${glsl(
  'kilnGemm44U2Gl1',
  'Array(4)',
  `${GL1_DIVMOD}vec4 kilnGemm44U2Gl1(float t, float MB, float NB, float Kq, float aStep, float bStep) {
  ${BLOCK_INDEX_GL1}
  vec4 c0 = vec4(0.0); vec4 c1 = vec4(0.0); vec4 c2 = vec4(0.0); vec4 c3 = vec4(0.0);
  float kx = 0.5;
  int kp = kq / 2;
  for (int q = 0; q < ${GL1_LOOP_MAX / 2}; q++) {
    if (q >= kp) { break; }
    {
    ${stepGl1('c')}
    }
    kx += 4.0;
    {
    ${stepGl1('c')}
    }
    kx += 4.0;
  }
  if (kq - 2 * kp > 0) {
    ${stepGl1('c')}
  }
  subKernelResult_kilnOut1 = c1; subKernelResult_kilnOut2 = c2; subKernelResult_kilnOut3 = c3;
  return c0;
}
`,
)}function (a, b, m) { const r = kilnGemm44U2Gl1(this.thread.x, m[1], m[2], m[3], m[4], m[5]); kilnOut1(0.0); kilnOut2(0.0); kilnOut3(0.0); return r; }`;

/**
 * GLSL ES 1.00, the FP8 kernels' block scales: the scale rows do not change along K, so they
 * are found once per fragment (scaleRows4Gl1); per chunk starting at k0 (scaleChunk4Gl1) one fetch serves
 * every row / column of the fragment that lies in one scale block (A's or B's block rows a
 * multiple of 4, as for 1x128 and 128x128 blocks), else each is fetched. The same values as
 * one fetch per row and chunk: bit-identical. Scales are [row / br][k0 / bk], kb per row.
 */
const SCALE_OPERANDS_GL1 = {
  a: { first: 'a0', last: 'im', br: 'brA', bk: 'bkA', kb: 'kbA' },
  b: { first: 'j0', last: 'jn', br: 'brB', bk: 'bkB', kb: 'kbB' },
} as const;
/** The scale rows `srX` of operand X's four rows (A: a0 .. a0 + 3 clamped to M - 1; B: columns j0 .. j0 + 3 clamped to N - 1), `oneX`, and its scale texture's size `sXs`. */
function scaleRows4Gl1(x: 'a' | 'b'): string {
  const o = SCALE_OPERANDS_GL1[x];
  const rows = [0, 1, 2, 3].map((i) => `kilnDivMod(min(${o.first}${i ? ` + ${i}.0` : ''}, ${o.last}), ${o.br}).x`).join(', ');
  return `vec4 sr${x} = vec4(${rows}) * ${o.kb};
  bool one${x.toUpperCase()} = sr${x}.x == sr${x}.w;
  vec2 s${x}s = vec2(user_${x}sSize);`;
}
/** Operand X's four scales `sX` of the chunk starting at k0: one fetch when they share a block. */
function scaleChunk4Gl1(x: 'a' | 'b'): string {
  const o = SCALE_OPERANDS_GL1[x];
  const fetch = (c: string) => `texture2D(user_${x}s, kilnAt(sr${x}.${c} + k${x}, s${x}s)).r`;
  return `float k${x} = kilnDivMod(k0, ${o.bk}).x;
    vec4 s${x} = vec4(${fetch('x')});
    if (!one${x.toUpperCase()}) {
${['y', 'z', 'w'].map((c) => `      s${x}.${c} = ${fetch(c)};`).join('\n')}
    }`;
}

/** The K loop's trip counts of a flat kernel compiled for one shape: Kq 4-value steps, ncq per promotion chunk. */
export interface FlatK {
  readonly Kq: number;
  readonly ncq: number;
}

/**
 * GLSL ES 1.00: the FP8 GEMMs' K loop over promotion chunks (ncq 4-value steps each): `init`
 * zeroes the chunk partials, `step` adds one 4-value step into them, `promote` adds the scaled
 * partials into the accumulators; `scales` fetches the chunk's block scales (`sa`, `sb`) first
 * (the chunk starts at k0). With `k` the loops' trip counts are constants.
 */
function fp8ChunksGl1(init: string, step: string, promote: string, scales: string, k?: FlatK): string {
  // with the trip counts known (FlatK) both loops have constant bounds and no test (a whole
  // number of chunks) or only the K-end test (a shorter last chunk)
  const chunks = k ? Math.ceil(k.Kq / k.ncq) : GL1_LOOP_MAX;
  const steps = k ? k.ncq : GL1_LOOP_MAX;
  const test = !k ? 'if (s >= nq || q >= kq) { break; }' : k.Kq % k.ncq ? 'if (q >= kq) { break; }' : '';
  return `int q = 0;
  for (int ch = 0; ch < ${chunks}; ch++) {
    ${k ? '' : 'if (q >= kq) { break; }'}
    float k0 = kx - 0.5;
    ${init}
    for (int s = 0; s < ${steps}; s++) {
      ${test}
      ${step}
      kx += 4.0;
      q += 1;
    }
    ${scales}
    ${promote}
  }`;
}

/**
 * `GEMM44_FP8` for WebGL 1.0 (same meta): a loop over chunks (of ncq steps, the last one
 * shorter) around a loop over the chunk's steps, both with constant bounds and a `break`; the
 * partials are scaled into the accumulators after each chunk: the same operations in the same
 * order as the chunked loops of the WebGL2 kernel. (It was one loop with a step counter and the
 * chunk end tested inside it.)
 */
export function gemm44Fp8Gl1(k?: FlatK): string {
  return `${ROW_NATIVES}${glsl(
  'kilnGemm44Fp8Gl1',
  'Array(4)',
  `${GL1_DIVMOD}${GL1_AT}vec4 kilnGemm44Fp8Gl1(float t, float MB, float NB, float Kq, float ncq, float M, float N, float brA, float brB, float bkA, float bkB, float kbA, float kbB) {
  float aStep = 0.0;
  float bStep = 0.0;
  ${BLOCK_INDEX_GL1}
  int nq = int(ncq);
  float im = M - 1.0;
  // a run-time zero: see GEMM44_FP8
  vec4 zero = vec4(min(M, 0.0));
  float jn = N - 1.0;
  float j0 = 4.0 * bj;
  vec4 c0 = vec4(0.0); vec4 c1 = vec4(0.0); vec4 c2 = vec4(0.0); vec4 c3 = vec4(0.0);
  float kx = 0.5;
  ${scaleRows4Gl1('b')}
  ${scaleRows4Gl1('a')}
  ${fp8ChunksGl1(
    'vec4 p0 = vec4(0.0); vec4 p1 = vec4(0.0); vec4 p2 = vec4(0.0); vec4 p3 = vec4(0.0);',
    stepGl1('p'),
    ROWS.map((r) => `c${r} = c${r} + (p${r} * (sa.${'xyzw'[r]} * sb) + zero);`).join('\n    '),
    `${scaleChunk4Gl1('a')}\n    ${scaleChunk4Gl1('b')}`,
    k,
  )}
  subKernelResult_kilnOut1 = c1; subKernelResult_kilnOut2 = c2; subKernelResult_kilnOut3 = c3;
  return c0;
}
`,
)}function (a, b, as, bs, m) { const r = kilnGemm44Fp8Gl1(this.thread.x, m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8], m[9], m[10], m[11], m[12]); kilnOut1(0.0); kilnOut2(0.0); kilnOut3(0.0); return r; }`;
}
export const GEMM44_FP8_GL1 = gemm44Fp8Gl1();

/**
 * The FP8 block GEMM as 1x4 blocks whose output is the flat result (see GEMM14_GL1): row m's
 * columns 4 bj .. 4 bj + 3 per fragment (t = m NB + bj), the chunk partials and promotions of
 * GEMM44_FP8_GL1's row m % 4 in the same order (bit-identical). Same meta as GEMM44_FP8_GL1 with
 * n4 first (MB unused).
 */
export function gemm14Fp8Gl1(k?: FlatK): string {
  return `${glsl(
  'kilnGemm14Fp8Gl1',
  'Array(4)',
  `${GL1_DIVMOD}${GL1_AT}vec4 kilnGemm14Fp8Gl1(float t, float NB, float Kq, float ncq, float M, float N, float brA, float brB, float bkA, float bkB, float kbA, float kbB) {
  float aStep = 0.0;
  float bStep = 0.0;
  float bt = 0.0;
  vec2 d = kilnDivMod(t, NB);
  float bj = d.y;
  float m = d.x;
  vec2 f = kilnDivMod(m, 4.0);
  float bi = f.x;
  float r = f.y;
  ${OPERAND_ROWS_GL1}
  int kq = int(Kq);
  int nq = int(ncq);
  float im = M - 1.0;
  // a run-time zero: see GEMM44_FP8
  vec4 zero = vec4(min(M, 0.0));
  float jn = N - 1.0;
  float j0 = 4.0 * bj;
  vec4 c = vec4(0.0);
  float kx = 0.5;
  float sra = kilnDivMod(min(m, im), brA).x * kbA;
  vec2 sas = vec2(user_asSize);
  ${scaleRows4Gl1('b')}
  ${fp8ChunksGl1('vec4 p = vec4(0.0);', step14Gl1('p'), 'c = c + (p * (sa * sb) + zero);', `float sa = texture2D(user_as, kilnAt(sra + kilnDivMod(k0, bkA).x, sas)).r;
    ${scaleChunk4Gl1('b')}`, k)}
  return c;
}
`,
)}function (a, b, as, bs, m) { return kilnGemm14Fp8Gl1(this.thread.x, m[2], m[3], m[4], m[5], m[6], m[7], m[8], m[9], m[10], m[11], m[12]); }`;
}
/** `gemm14Fp8Gl1` with the trip counts run-time values. */
export const GEMM14_FP8_GL1 = gemm14Fp8Gl1();

/** `UNPACK44` for WebGL 1.0 (same meta). */
export const UNPACK44_GL1 = `${glsl(
  'kilnUnpack44Gl1',
  'Number',
  `${GL1_DIVMOD}vec4 kilnBlock(float w, vec2 st) {
  if (w == 0.0) { return texture2D(user_p0, st); }
  if (w == 1.0) { return texture2D(user_p1, st); }
  if (w == 2.0) { return texture2D(user_p2, st); }
  return texture2D(user_p3, st);
}
float kilnUnpack44Gl1(float o, float M, float N, float MB, float NB) {
  vec2 d = kilnDivMod(o, N);
  vec2 e = kilnDivMod(d.x, M);
  vec2 fi = kilnDivMod(e.y, 4.0);
  vec2 fj = kilnDivMod(d.y, 4.0);
  float t = (e.x * MB + fi.x) * NB + fj.x;
  vec2 s = vec2(user_p0Size);
  vec2 g = kilnDivMod(t, s.x);
  vec4 v = kilnBlock(fi.y, (vec2(g.y, g.x) + 0.5) / s);
  if (fj.y == 0.0) { return v.x; }
  if (fj.y == 1.0) { return v.y; }
  if (fj.y == 2.0) { return v.z; }
  return v.w;
}
`,
)}function (p0, p1, p2, p3, m) { return kilnUnpack44Gl1(this.thread.x, m[1], m[2], m[3], m[4]); }`;

/**
 * A 1x4 output block per fragment, for WebGL 1.0 (the headless-gl engine): fragment t is row m
 * of batch b and columns 4 bj .. 4 bj + 3 (t = (b M + m) NB + bj), returned as one vec4, so with
 * N % 4 == 0 the output texture holds the result's values in flat row-major order, four per
 * texel: the backend stores it as is (engine `flat4`) and a read needs no unpack and no gather
 * pass. Same packed operands and meta as GEMM44_GL1, and per output the same K order and
 * operations (row r of GEMM44's block): bit-identical. Four times the fragments of GEMM44 with a
 * quarter of its reuse per fetch: for small products, where fragments are few.
 * meta [n4, M, NB, Kq, aStep, bStep].
 */
export const GEMM14_GL1 = `${glsl(
  'kilnGemm14Gl1',
  'Array(4)',
  `${GL1_DIVMOD}vec4 kilnGemm14Gl1(float t, float M, float NB, float Kq, float aStep, float bStep) {
  vec2 d = kilnDivMod(t, NB);
  vec2 e = kilnDivMod(d.x, M);
  vec2 f = kilnDivMod(e.y, 4.0);
  float bj = d.y;
  float bt = e.x;
  float bi = f.x;
  float r = f.y;
  ${OPERAND_ROWS_GL1}
  int kq = int(Kq);
  vec4 c = vec4(0.0);
  float kx = 0.5;
  for (int q = 0; q < ${GL1_LOOP_MAX}; q++) {
    if (q >= kq) { break; }
    ${step14Gl1('c')}
    kx += 4.0;
  }
  return c;
}
`,
)}function (a, b, m) { return kilnGemm14Gl1(this.thread.x, m[1], m[2], m[3], m[4], m[5]); }`;

/**
 * Selectable f32 GEMM kernels (env KILN_GPUJS_GEMM, `GpujsBackend.gemmVariant`), all
 * bit-identical: 'packed' (GEMM44: one 4-value K step per loop iteration) and 'unroll2'
 * (GEMM44_U2: two steps per iteration).
 */
export const GEMM_VARIANTS = ['packed', 'unroll2'] as const;
export type GemmVariant = (typeof GEMM_VARIANTS)[number];

/** The packed GEMM's kernel sources for one GLSL dialect. */
export interface GemmKernels {
  pack(layout: 'a' | 'b', decode?: 'e4m3' | 'e5m2'): string;
  readonly gemm: string;
  /** the f32 GEMM per variant */
  readonly variants: Record<GemmVariant, string>;
  readonly gemmFp8: string;
  readonly unpack: string;
  /** the 1x4-block f32 / FP8 GEMMs whose output is the flat result (WebGL 1.0 only); the FP8 one compiled for the K loop's trip counts */
  readonly gemm14?: string;
  gemm14Fp8?(k?: FlatK): string;
  /** the 4x4-block FP8 GEMM compiled for the K loop's trip counts (WebGL 1.0 only) */
  gemmFp8For?(k: FlatK): string;
}

/** A per-K kernel generator memoised by its trip counts: a GEMM call looks its source up instead of building it. */
function memoFlatK(make: (k?: FlatK) => string): (k?: FlatK) => string {
  const made = new Map<string, string>();
  return (k) => {
    const key = k ? `${k.Kq},${k.ncq}` : '';
    let src = made.get(key);
    if (src === undefined) made.set(key, (src = make(k)));
    return src;
  };
}

/** GLSL ES 3.00 (WebGL2: the Chromium engine). */
export const GEMM_KERNELS_WEBGL2: GemmKernels = { pack: packKernel, gemm: GEMM44, variants: { packed: GEMM44, unroll2: GEMM44_U2 }, gemmFp8: GEMM44_FP8, unpack: UNPACK44 };
/** GLSL ES 1.00 (WebGL 1.0 with WEBGL_draw_buffers: the headless-gl engine). */
export const GEMM_KERNELS_WEBGL1: GemmKernels = { pack: packKernelGl1, gemm: GEMM44_GL1, variants: { packed: GEMM44_GL1, unroll2: GEMM44_U2_GL1 }, gemmFp8: GEMM44_FP8_GL1, unpack: UNPACK44_GL1, gemm14: GEMM14_GL1, gemm14Fp8: memoFlatK(gemm14Fp8Gl1), gemmFp8For: memoFlatK(gemm44Fp8Gl1) };
