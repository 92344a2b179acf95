/**
 * gpu.js kernel sources (JavaScript that gpu.js translates to GLSL ES 3.0). Every kernel
 * computes one output element per thread (`this.thread.x`, the flat index) and takes its
 * operands as textures plus one `m` array of shape metadata (the last argument). Values are
 * f32; integer dtypes and f16/bf16/FP8 codes are integer-valued floats.
 */
import type { BinaryOp, ComputeDType, DType, ReduceOp, UnaryOp } from '@kiln/core';

const isNan = (v: string): string => `!(${v} <= 0.0 || ${v} > 0.0)`;

/**
 * A kernel over K strided operands. m = [n, nd, dims(nd), strides of operand 0 (nd), ...,
 * base offset of each operand (K)]; `o0..` are the operands' element offsets, `v0..` their values.
 */
export function stridedKernel(k: number, body: string, extra = ''): string {
  const names = Array.from({ length: k }, (_, i) => `x${i}`);
  const decl = names.map((_, i) => `let o${i} = m[2 + nd * ${k + 1} + ${i}];`).join(' ');
  const acc = names.map((_, i) => `o${i} = o${i} + c * m[2 + nd * ${i + 1} + d];`).join(' ');
  const vals = names.map((n, i) => `let v${i} = ${n}[o${i}];`).join(' ');
  return `function (${[...names, ...(extra ? [extra] : []), 'm'].join(', ')}) {
  let rem = this.thread.x;
  let nd = m[1];
  ${decl}
  for (let d = nd - 1; d >= 0; d--) {
    let dim = m[2 + d];
    let qd = floorDiv(rem, dim);
    let c = rem - qd * dim;
    rem = qd;
    ${acc}
  }
  ${vals}
  ${body}
}`;
}

/** Wraps an integer-valued float to the dtype's range (i32 values beyond 2^24 are not exact). */
function wrap(expr: string, dtype: ComputeDType): string {
  if (dtype === 'u8') return `(${expr}) - Math.floor((${expr}) / 256.0) * 256.0`;
  if (dtype === 'bool') return `((${expr}) != 0.0 ? 1.0 : 0.0)`;
  return expr;
}

const F32_UNARY: Partial<Record<UnaryOp, string>> = {
  neg: '-x',
  abs: 'Math.abs(x)',
  sign: `(x > 0.0 ? 1.0 : (x < 0.0 ? -1.0 : x))`,
  square: 'x * x',
  sqrt: 'Math.sqrt(x)',
  rsqrt: '1.0 / Math.sqrt(x)',
  reciprocal: '1.0 / x',
  exp: 'EXP(x)',
  log: '(x == 0.0 ? -INF_ : (x < 0.0 ? NAN_ : (x > 1.0 && x * 0.5 == x ? x : Math.log(x))))',
  // the Taylor series below 0.3 (no cancellation in e^2x - 1), the exp form above
  tanh: `(Math.abs(x) > 9.0 ? (x > 0.0 ? 1.0 : -1.0) : (Math.abs(x) < 0.3 ? x + x * (x * x) * (-0.3333333333333333 + (x * x) * (0.13333333333333333 + (x * x) * (-0.05396825396825397 + (x * x) * (0.021869488536155203 + (x * x) * (-0.008863235529902197 + (x * x) * (0.003592128036572481 + (x * x) * -0.0014558343870513183)))))) : (EXP(2.0 * x) - 1.0) / (EXP(2.0 * x) + 1.0)))`,
  sigmoid: '1.0 / (1.0 + EXP(-x))',
  relu: '(x <= 0.0 ? 0.0 : x)',
  floor: 'Math.floor(x)',
  ceil: 'Math.ceil(x)',
  round: `(Math.abs(x) >= 8388608.0 ? x : (x == 0.0 ? x : (x < 0.0 && x >= -0.5 ? -(m[0] * 0.0) : (Math.floor(x + 0.5) - x == 0.5 && Math.floor(x + 0.5) % 2.0 != 0.0 ? Math.floor(x + 0.5) - 1.0 : Math.floor(x + 0.5)))))`,
};

const INT_UNARY: Partial<Record<UnaryOp, string>> = {
  neg: '-x',
  abs: 'Math.abs(x)',
  sign: '(x > 0.0 ? 1.0 : (x < 0.0 ? -1.0 : 0.0))',
  square: 'x * x',
  relu: '(x > 0.0 ? x : 0.0)',
  floor: 'Math.floor(x)',
  ceil: 'Math.ceil(x)',
  round: 'Math.floor(x)',
};

// erf: a Taylor series near 0 (relative accuracy for tiny x), else 1 - erfc from Numerical
// Recipes' Chebyshev fit (fractional error < 1.2e-7).
const ERF = `let ax = Math.abs(x);
  let r = 0.0;
  if (ax < 0.5) {
    let x2 = x * x;
    r = x * (1.1283791670955126 + x2 * (-0.37612638903183754 + x2 * (0.11283791670955126 + x2 * (-0.026866170645131252 + x2 * (0.005223977625442188 + x2 * (-0.0008548327023450852 + x2 * 0.00012055332981789664))))));
  } else {
    let t = 1.0 / (1.0 + 0.5 * ax);
    let e = t * EXP(-ax * ax - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
    r = x >= 0.0 ? 1.0 - e : e - 1.0;
  }
  if (${isNan('x')}) { r = x; }
  return r;`;

export function unaryKernel(op: UnaryOp, dtype: ComputeDType): string | undefined {
  const pre = 'let x = x0[this.thread.x];';
  if (op === 'isnan') return `function (x0, m) { ${pre} return ${dtype === 'f32' ? `${isNan('x')} ? 1.0 : 0.0` : '0.0'}; }`;
  if (op === 'not') return `function (x0, m) { ${pre} return x == 0.0 ? 1.0 : 0.0; }`;
  if (dtype === 'f32') {
    if (op === 'erf') return `function (x0, m) { ${pre} ${ERF} }`;
    if (op === 'sin' || op === 'cos') return `function (x0, m) { ${pre} ${trig(op)} }`;
    const e = F32_UNARY[op];
    // NaN passes through every f32 op (SwiftShader's exp(NaN) is inf)
    return e && `function (x0, m) { ${pre} if (${isNan('x')}) { return x; } return ${e}; }`;
  }
  const e = INT_UNARY[op];
  return e && `function (x0, m) { ${pre} return ${wrap(e, dtype)}; }`;
}

const F32_BINARY: Partial<Record<BinaryOp, string>> = {
  add: 'return a + b;',
  sub: 'return a - b;',
  mul: 'return a * b;',
  div: 'return divRN(a, b);',
  // GLSL pow is undefined for a < 0: odd/even integer exponents are handled by sign
  pow: `if (b == 0.0) { return 1.0; }
  if (${isNan('a')} || ${isNan('b')}) { return a + b; }
  if (a == 0.0) { return b > 0.0 ? 0.0 : INF_; }
  if (a < 0.0) {
    if (Math.floor(b) != b) { return NAN_; }
    let p = Math.pow(-a, b);
    return Math.abs(b) < 16777216.0 && Math.abs(b % 2.0) == 1.0 ? -p : p;
  }
  return Math.pow(a, b);`,
  maximum: `if (${isNan('a')}) { return a; } if (${isNan('b')}) { return b; } return a > b ? a : b;`,
  minimum: `if (${isNan('a')}) { return a; } if (${isNan('b')}) { return b; } return a < b ? a : b;`,
  mod: `let r = a - b * Math.floor(a / b);
  if (r != 0.0 && (r < 0.0) != (b < 0.0)) { r = r + b; }
  if (Math.abs(r) >= Math.abs(b)) { r = r - b; }
  return r;`,
};

const INT_BINARY: Partial<Record<BinaryOp, string>> = {
  add: 'return W(a + b);',
  sub: 'return W(a - b);',
  mul: 'return W(a * b);',
  div: 'if (b == 0.0) { return 0.0; } let q = a / b; let t = q < 0.0 ? Math.ceil(q) : Math.floor(q); if (Math.abs(t * b) > Math.abs(a)) { t = t - (q < 0.0 ? -1.0 : 1.0); } return W(t);',
  pow: 'let p = Math.pow(Math.abs(a), b); if (a < 0.0 && Math.abs(b % 2.0) == 1.0) { p = -p; } if (b < 0.0) { return W(Math.abs(a) == 1.0 ? p : 0.0); } return W(p < 0.0 ? Math.ceil(p - 0.25) : Math.floor(p + 0.25));',
  maximum: 'return a > b ? a : b;',
  minimum: 'return a < b ? a : b;',
  mod: 'if (b == 0.0) { return 0.0; } let r = a - b * Math.floor(a / b); if (r != 0.0 && (r < 0.0) != (b < 0.0)) { r = r + b; } if (Math.abs(r) >= Math.abs(b)) { r = r - b; } return W(r);',
};

const CMP: Partial<Record<BinaryOp, string>> = {
  eq: 'a == b',
  ne: '!(a == b)',
  lt: 'a < b',
  le: 'a <= b',
  gt: 'a > b',
  ge: 'a >= b',
  and: 'a != 0.0 && b != 0.0',
  or: 'a != 0.0 || b != 0.0',
};

export function binaryKernel(op: BinaryOp, dtype: ComputeDType): string | undefined {
  let body: string | undefined;
  if (op in CMP) body = `return (${CMP[op]}) ? 1.0 : 0.0;`;
  else if (dtype === 'f32') body = F32_BINARY[op];
  else {
    const b = INT_BINARY[op];
    body = b && b.replace(/W\(([^;]*)\);/g, (_, e: string) => `${wrap(e, dtype)};`);
  }
  return body && stridedKernel(2, `let a = v0; let b = v1;\n  ${body}`);
}

export const WHERE = stridedKernel(3, 'return v0 != 0.0 ? v1 : v2;');
export const COPY_STRIDED = stridedKernel(1, 'return v0;');
export const COPY = 'function (x0, m) { return x0[this.thread.x]; }';
export const FILL = 'function (m) { return m[1]; }';

/** m = [n, len, inner]. */
export function reduceKernel(op: ReduceOp, dtype: DType): string {
  const head = `function (x, m) {
  let o = this.thread.x;
  let len = m[1];
  let inner = m[2];
  let outer = floorDiv(o, inner);
  let j = o - outer * inner;
  let base = outer * len * inner + j;`;
  const f = dtype === 'f32';
  switch (op) {
    case 'sum':
      return `${head}
  let acc = 0.0;
  for (let k = 0; k < len; k++) { acc = acc + x[base + k * inner]; }
  return acc;
}`;
    case 'prod':
      return `${head}
  let acc = 1.0;
  for (let k = 0; k < len; k++) { acc = acc * x[base + k * inner]; }
  return acc;
}`;
    case 'max':
    case 'min': {
      const better = op === 'max' ? 'v > acc' : 'v < acc';
      return `${head}
  let acc = x[base];
  let nan = 0.0;
  for (let k = 0; k < len; k++) {
    let v = x[base + k * inner];
    ${f ? `if (${isNan('v')}) { nan = 1.0; }` : ''}
    if (${better}) { acc = v; }
  }
  if (nan > 0.0) { return NAN_; }
  return acc;
}`;
    }
    default: {
      if (op === 'argmin') {
        return `${head}
  let best = 0.0;
  let bi = 0.0;
  let have = 0.0;
  for (let k = 0; k < len; k++) {
    let v = x[base + k * inner];
    if (${f ? `!(${isNan('v')})` : 'v == v'}) {
      if (have == 0.0 || v < best) { best = v; bi = k; have = 1.0; }
    }
  }
  return bi;
}`;
      }
      return `${head}
  let best = x[base];
  let bi = 0.0;
  let found = 0.0;
  for (let k = 0; k < len; k++) {
    let v = x[base + k * inner];
    if (found == 0.0) {
      ${f ? `if (${isNan('v')}) { found = 1.0; bi = k; best = v; }` : ''}
      if (found == 0.0 && v > best) { best = v; bi = k; }
    }
  }
  return bi;
}`;
    }
  }
}

/** m = [n, M, N, K, sa, sb, sam, sak, sbk, sbn]. */
export const MATMUL = `function (a, b, m) {
  let o = this.thread.x;
  let M = m[1];
  let N = m[2];
  let K = m[3];
  let mn = M * N;
  let bt = floorDiv(o, mn);
  let r = o - bt * mn;
  let i = floorDiv(r, N);
  let j = r - i * N;
  let pa = bt * m[4] + i * m[6];
  let pb = bt * m[5] + j * m[9];
  let sak = m[7];
  let sbk = m[8];
  let acc = 0.0;
  for (let k = 0; k < K; k++) { acc = acc + a[pa + k * sak] * b[pb + k * sbk]; }
  return acc;
}`;

/** indexSelect: m = [n, axisLen, nIdx, inner]. */
export const INDEX_SELECT = `function (x, idx, m) {
  let o = this.thread.x;
  let len = m[1];
  let nIdx = m[2];
  let inner = m[3];
  let blk = nIdx * inner;
  let outer = floorDiv(o, blk);
  let r = o - outer * blk;
  let k = floorDiv(r, inner);
  let j = r - k * inner;
  return x[(outer * len + idx[k]) * inner + j];
}`;

/** gather: strided over indices' shape with x's strides (axis stride 0); m ends with x's axis stride. */
export const GATHER = stridedKernel(1, 'let mm = m[2 + nd * 2 + 1]; return x0[o0 + idx[this.thread.x] * mm];', 'idx');

/** indexAdd: m = [n, axisLen, nIdx, inner]. */
export const INDEX_ADD = `function (base, idx, src, m) {
  let o = this.thread.x;
  let len = m[1];
  let nIdx = m[2];
  let inner = m[3];
  let blk = len * inner;
  let outer = floorDiv(o, blk);
  let r = o - outer * blk;
  let row = floorDiv(r, inner);
  let j = r - row * inner;
  let acc = base[o];
  for (let k = 0; k < nIdx; k++) {
    if (idx[k] == row) { acc = acc + src[(outer * nIdx + k) * inner + j]; }
  }
  return acc;
}`;

/** scatterAdd: m = [n, nd, baseDims, idxDims, idxStrides, srcStrides, axis]. */
export const SCATTER_ADD = `function (base, idx, src, m) {
  let o = this.thread.x;
  let nd = m[1];
  let axis = m[2 + nd * 4];
  let rem = o;
  let oi = 0.0;
  let os = 0.0;
  let pa = 0.0;
  let ok = 1.0;
  for (let d = nd - 1; d >= 0; d--) {
    let dim = m[2 + d];
    let qd = floorDiv(rem, dim);
    let c = rem - qd * dim;
    rem = qd;
    if (d == axis) { pa = c; } else {
      if (c >= m[2 + nd + d]) { ok = 0.0; }
      oi = oi + c * m[2 + nd * 2 + d];
      os = os + c * m[2 + nd * 3 + d];
    }
  }
  let acc = base[o];
  if (ok > 0.0) {
    let cnt = m[2 + nd + axis];
    let si = m[2 + nd * 2 + axis];
    let ss = m[2 + nd * 3 + axis];
    for (let k = 0; k < cnt; k++) {
      if (idx[oi + k * si] == pa) { acc = acc + src[os + k * ss]; }
    }
  }
  return acc;
}`;

/** Two-input concat along rows: m = [n, widthA, widthB]. */
export const CONCAT2 = `function (a, b, m) {
  let o = this.thread.x;
  let wa = m[1];
  let wb = m[2];
  let w = wa + wb;
  let row = floorDiv(o, w);
  let c = o - row * w;
  if (c < wa) { return a[row * wa + c]; }
  return b[row * wb + c - wa];
}`;

/** Casts between compute dtypes (and decodes f16/bf16/FP8 codes to f32 values). */
export function castKernel(from: DType, to: DType): string | undefined {
  const decode = DECODE[from];
  let v = 'x';
  let pre = 'let x = x0[this.thread.x];';
  if (decode) {
    pre += ` ${decode}`;
    v = 'f';
  }
  const floatSrc = from === 'f32' || decode !== undefined;
  let e: string | undefined;
  switch (to) {
    case 'f32':
      e = v;
      break;
    case 'bool':
      e = `${v} != 0.0 ? 1.0 : 0.0`;
      break;
    case 'i32':
      e = floatSrc ? `(${isNan(v)} ? 0.0 : (${v} <= -2147483648.0 ? -2147483648.0 : (${v} >= 2147483647.0 ? 2147483648.0 : (${v} < 0.0 ? Math.ceil(${v}) : Math.floor(${v})))))` : from === 'bool' ? `${v} != 0.0 ? 1.0 : 0.0` : v;
      break;
    case 'u8':
      e = floatSrc
        ? `(${isNan(v)} ? 0.0 : (${v} >= 255.0 ? 255.0 : (${v} <= 0.0 ? 0.0 : Math.floor(${v}))))`
        : from === 'bool'
          ? `${v} != 0.0 ? 1.0 : 0.0`
          : wrap(v, 'u8');
      break;
    default:
      return undefined;
  }
  return `function (x0, m) { ${pre} return ${e}; }`;
}

/** Code -> f32 value, in float arithmetic (exact: every code's value is an f32). */
const DECODE: Partial<Record<DType, string>> = {
  f16: minifloatDecode(5, 10, 15, false),
  bf16: minifloatDecode(8, 7, 127, false),
  e4m3: minifloatDecode(4, 3, 7, true),
  e5m2: minifloatDecode(5, 2, 15, false),
};

function minifloatDecode(eb: number, mb: number, bias: number, fn: boolean): string {
  const total = 1 + eb + mb;
  const signDiv = 2 ** (total - 1);
  const mDiv = 2 ** mb;
  const eMax = 2 ** eb - 1;
  const special = fn
    ? `if (e == ${eMax}.0 && mm == ${mDiv - 1}.0) { f = NAN_; }` // e4m3fn: only S.1111.111 is NaN
    : `if (e == ${eMax}.0) { f = mm == 0.0 ? s * INF_ : NAN_; }`;
  return `let s = x >= ${signDiv}.0 ? -1.0 : 1.0;
  let u = x >= ${signDiv}.0 ? x - ${signDiv}.0 : x;
  let e = Math.floor(u * ${1 / mDiv});
  let mm = u - e * ${mDiv}.0;
  let f = 0.0;
  if (e == 0.0) { f = ${1 - bias - mb >= -126 ? `s * mm * ${2 ** (1 - bias - mb)}` : `s * (mm * ZERO_)`}; } else { f = s * (1.0 + mm * ${1 / mDiv}) * pow2i(e - ${bias}.0); }
  // subnormal codes whose value is an f32 subnormal (bf16's) are flushed to a zero of their sign,
  // as llvmpipe does: NVIDIA's GL gave half their value. Zero codes are built explicitly: NVIDIA's GL turned bf16 ±0 (whose subnormal scale 2^-133 is
  // itself an f32 subnormal) into +2^-133
  if (u == 0.0) { f = s * mm; }
  ${special}`;
}

/**
 * Final kernel text: NaN, infinity and a zero a compiler cannot fold away (ZERO_: signed zeros
 * survive `s * ZERO_`) come from runtime arithmetic on `m[0]` (the element count), since
 * constant 0/0 is a GLSL compile error.
 */
export function finalize(src: string): string {
  src = src.replace(/EXP\(/g, 'expf(');
  if (!/NAN_|INF_|ZERO_/.test(src)) return src;
  const at = src.indexOf('{') + 1;
  const body = src.slice(at).replace(/NAN_/g, '(zz / zz)').replace(/INF_/g, '(1.0 / zz)').replace(/ZERO_/g, 'zz');
  return `${src.slice(0, at)}\n  let zz = m[0] - m[0];${body}`;
}

/**
 * sin/cos: Cody-Waite reduction by pi/2 (three-part constant) and Taylor/minimax polynomials
 * on [-pi/4, pi/4], in f32 arithmetic (GLSL's sin/cos precision is undefined; SwiftShader's
 * is ~2^-15 absolute).
 */
function trig(op: 'sin' | 'cos'): string {
  return `if (!(Math.abs(x) < 1.0e30)) { return NAN_; }
  let q = Math.floor(x * 0.6366197723675814 + 0.5);
  let r = x - q * 1.5703125;
  r = r - q * 4.8351287841796875e-4;
  r = r - q * 3.138557660899353e-7;
  r = r - q * 6.077100628276710e-11;
  let r2 = r * r;
  let sn = r + r * r2 * (-0.16666666666666666 + r2 * (0.008333333333333333 + r2 * (-1.984126984126984e-4 + r2 * (2.7557319223985893e-6 + r2 * -2.505210838544172e-8))));
  let cs = 1.0 + r2 * (-0.5 + r2 * (0.041666666666666664 + r2 * (-0.001388888888888889 + r2 * (2.48015873015873e-5 + r2 * (-2.755731922398589e-7 + r2 * 2.08767569878681e-9)))));
  let qq = q - Math.floor(q / 4.0) * 4.0${op === 'cos' ? ' + 1.0' : ''};
  qq = qq - Math.floor(qq / 4.0) * 4.0;
  if (qq == 0.0) { return sn; }
  if (qq == 1.0) { return cs; }
  if (qq == 2.0) { return -sn; }
  return -cs;`;
}

/**
 * Functions every kernel may call (added to the gpu.js instance). expf: 2^k * e^r with
 * r = x - k ln2 (two-part ln2, |r| <= ln2/2) and a degree-7 Taylor polynomial (2^k as two exact
 * pow2i factors, not GLSL pow: a GPU's pow(2, h) is exp2(h log2 2), not always exact) (truncation
 * error < 1e-8 relative), in f32 arithmetic: within a few ulp, where GLSL's exp is only
 * specified to 3 + 2|x| ulp.
 */
export const HELPERS: readonly string[] = [
  // floor(a / b) of integer-valued 0 <= a, 1 <= b, a + 8b < 2^24, exactly: GLSL's '/' need not be
  // correctly rounded (desktop GLSL allows 2.5 ulp; NVIDIA's GL was 1 ulp off), so an exact
  // integer quotient can come out just below it and floor drops by one, by up to 3 for quotients
  // above 2^22; the remainder (exact: q b and a - q b are integers below 2^24) puts it back: a
  // coarse step floor(r / b) (|r| < 4b), then two unit steps. Every flat index -> coordinates
  // split in kernels.ts goes through this.
  `function floorDiv(a, b) {
  let q = Math.floor(a / b);
  let r = a - q * b;
  q = q + Math.floor(r / b);
  r = a - q * b;
  if (r < 0.0) { q = q - 1.0; r = r + b; } else if (r >= b) { q = q + 1.0; r = r - b; }
  if (r < 0.0) { q = q - 1.0; } else if (r >= b) { q = q + 1.0; }
  return q;
}`,
  // 2^e for integer-valued |e| <= 127, exactly, by constant multiplies (GLSL pow/exp2 may be approximate)
  `function pow2i(e) {
  let a = Math.abs(e);
  let neg = e < 0.0;
  let p = 1.0;
  if (a >= 64.0) { p = p * (neg ? ${2 ** -64} : ${2 ** 64}); a = a - 64.0; }
  if (a >= 32.0) { p = p * (neg ? ${2 ** -32} : ${2 ** 32}); a = a - 32.0; }
  if (a >= 16.0) { p = p * (neg ? ${2 ** -16} : ${2 ** 16}); a = a - 16.0; }
  if (a >= 8.0) { p = p * (neg ? ${2 ** -8} : ${2 ** 8}); a = a - 8.0; }
  if (a >= 4.0) { p = p * (neg ? 0.0625 : 16.0); a = a - 4.0; }
  if (a >= 2.0) { p = p * (neg ? 0.25 : 4.0); a = a - 2.0; }
  if (a >= 1.0) { p = p * (neg ? 0.5 : 2.0); }
  return p;
}`,
  // the f32 quotient a / b correctly rounded (round to nearest even), whatever GLSL's '/' gives
  // (its precision is undefined; NVIDIA's GL is 1 ulp off). Normal operands and a normal result:
  // both scaled to [1, 2) by exact powers of two, the hardware quotient q corrected by whole
  // ulps (up to 8, i.e. a '/' up to 4 ulp off) using the exact sign of the remainder x - q y, computed on integers below 2^24
  // held in floats (12-bit limbs, every product and sum exact, so mul-add contraction cannot
  // change anything); a quotient is never exactly halfway between two floats, so no ties.
  // Zeros, infinities, NaN, subnormal operands and results outside the normal range keep '/'.
  `function divRN(a, b) {
  let q0 = a / b;
  let aa = Math.abs(a);
  let ab = Math.abs(b);
  // inf / finite: NVIDIA's GL divides as a * (1 / b), and 1 / b flushes to zero for |b| > 2^126
  if (aa > 3.4028234663852886e38 && ab <= 3.4028234663852886e38 && ab > 0.0) { return (a < 0.0) != (b < 0.0) ? -aa : aa; }
  if (!(aa >= 1.1754943508222875e-38 && aa <= 3.4028234663852886e38 && ab >= 1.1754943508222875e-38 && ab <= 3.4028234663852886e38)) { return q0; }
  let ea = Math.min(Math.max(Math.floor(Math.log(aa) * 1.4426950408889634), -126.0), 127.0);
  let eb = Math.min(Math.max(Math.floor(Math.log(ab) * 1.4426950408889634), -126.0), 127.0);
  for (let t = 0; t < 2; t++) {
    if (pow2i(ea) > aa) { ea = ea - 1.0; } else if (pow2i(ea) * 2.0 <= aa) { ea = ea + 1.0; }
    if (pow2i(eb) > ab) { eb = eb - 1.0; } else if (pow2i(eb) * 2.0 <= ab) { eb = eb + 1.0; }
  }
  let d = ea - eb;
  // below 2^-126 the quotient is subnormal or zero: the hardware's (flushed) one. From 2^-126
  // up it is computed here: the hardware quotient of a huge divisor is zero even where the true
  // one is normal (NVIDIA: a * (1 / b) with 1 / b flushed)
  if (d > 126.0 || d < -126.0) { return q0; }
  // (2^-ea in two factors: 2^-127 alone is subnormal, flushed to zero on most GPUs)
  let ha = Math.floor(ea * 0.5);
  let hb = Math.floor(eb * 0.5);
  let x = aa * pow2i(-ha) * pow2i(ha - ea);
  let y = ab * pow2i(-hb) * pow2i(hb - eb);
  let q = Math.min(Math.max(x / y, 0.5), 2.0);
  let xi = x * 8388608.0;
  let yi = y * 8388608.0;
  let xh = Math.floor(xi * 0.000244140625);
  let xl = xi - xh * 4096.0;
  let yh = Math.floor(yi * 0.000244140625);
  let yl = yi - yh * 4096.0;
  for (let it = 0; it < 8; it++) {
    let big = q >= 1.0 ? 1.0 : 0.0;
    let u = big > 0.5 ? 1.1920928955078125e-7 : 5.960464477539063e-8;
    let qi = big > 0.5 ? q * 8388608.0 : q * 16777216.0;
    let qh = Math.floor(qi * 0.000244140625);
    let ql = qi - qh * 4096.0;
    let hh = qh * yh;
    let hl = qh * yl;
    let lh = ql * yh;
    let ll = ql * yl;
    let hhh = Math.floor(hh * 0.000244140625);
    let hlh = Math.floor(hl * 0.000244140625);
    let lhh = Math.floor(lh * 0.000244140625);
    let llh = Math.floor(ll * 0.000244140625);
    // D = xi * 2^(23 or 24) - qi * yi in base-4096 limbs d0..d3
    let d0 = 0.0 - (ll - llh * 4096.0);
    let d1 = 0.0 - llh - (hl - hlh * 4096.0) - (lh - lhh * 4096.0);
    let d2 = 0.0 - hlh - lhh - (hh - hhh * 4096.0);
    let d3 = 0.0 - hhh;
    if (big > 0.5) {
      let v = xh * 2048.0;
      let vh = Math.floor(v * 0.000244140625);
      let w = xl * 2048.0;
      let wh = Math.floor(w * 0.000244140625);
      d1 = d1 + (w - wh * 4096.0);
      d2 = d2 + wh + (v - vh * 4096.0);
      d3 = d3 + vh;
    } else {
      d2 = d2 + xl;
      d3 = d3 + xh;
    }
    // q too small: D > yi / 2, i.e. D - (floor(yi / 2) + 1) >= 0
    let hu = Math.floor(yi * 0.5) + 1.0;
    let huh = Math.floor(hu * 0.000244140625);
    let e0 = d0 - (hu - huh * 4096.0);
    let e1 = d1 - huh;
    let c = Math.floor(e0 * 0.000244140625);
    e1 = e1 + c;
    c = Math.floor(e1 * 0.000244140625);
    let e2 = d2 + c;
    c = Math.floor(e2 * 0.000244140625);
    let e3 = d3 + c;
    // q too big: -D > yi * f / 2 (f = 1/2 below a power of two, where the spacing halves), i.e. -D - (floor(yi f / 2) + 1) >= 0
    let pw = q == 1.0 || q == 0.5 ? 0.5 : 1.0;
    let hd = Math.floor(yi * pw * 0.5) + 1.0;
    let hdh = Math.floor(hd * 0.000244140625);
    let g0 = 0.0 - d0 - (hd - hdh * 4096.0);
    let g1 = 0.0 - d1 - hdh;
    c = Math.floor(g0 * 0.000244140625);
    g1 = g1 + c;
    c = Math.floor(g1 * 0.000244140625);
    let g2 = 0.0 - d2 + c;
    c = Math.floor(g2 * 0.000244140625);
    let g3 = 0.0 - d3 + c;
    if (e3 >= 0.0) { q = q + u; } else if (g3 >= 0.0) { q = q - u * pw; }
  }
  let h = Math.floor(d * 0.5);
  let r = q * pow2i(h) * pow2i(d - h);
  return (a < 0.0) != (b < 0.0) ? -r : r;
}`,
  `function expf(x) {
  if (x > 88.72283935546875) { return x * 1.0e30 * 1.0e30; }
  if (x < -104.0) { return 0.0; }
  let k = Math.floor(x * 1.4426950408889634 + 0.5);
  let r = x - k * 0.693145751953125;
  r = r - k * 1.4286068203094173e-6;
  let p = 1.0 + r * (1.0 + r * (0.5 + r * (0.16666666666666666 + r * (0.041666666666666664 + r * (0.008333333333333333 + r * (0.001388888888888889 + r * 1.984126984126984e-4))))));
  let h = Math.floor(k / 2.0);
  return p * pow2i(h) * pow2i(k - h);
}`,
];

/** Fused row kernels over the last axis: m = [n, len, eps]. One thread per output element. */
export function rowKernel(kind: 'softmax' | 'logSoftmax' | 'rmsNorm'): string {
  const head = `function (x, ${kind === 'rmsNorm' ? 'w, ' : ''}m) {
  let o = this.thread.x;
  let len = m[1];
  let row = floorDiv(o, len);
  let b = row * len;`;
  if (kind === 'rmsNorm') {
    return `${head}
  let s = 0.0;
  for (let k = 0; k < len; k++) { let v = x[b + k]; s = s + v * v; }
  let r = 1.0 / Math.sqrt(s / len + m[2]);
  return x[o] * r * w[o - b];
}`;
  }
  return `${head}
  let mx = x[b];
  for (let k = 0; k < len; k++) { let v = x[b + k]; if (v > mx) { mx = v; } }
  let s = 0.0;
  for (let q = 0; q < len; q++) { s = s + EXP(x[b + q] - mx); }
  ${kind === 'softmax' ? 'return EXP(x[o] - mx) / s;' : 'return (x[o] - mx) - Math.log(s);'}
}`;
}

export const SWIGLU = 'function (g, u, m) { let x = g[this.thread.x]; let sg = 1.0 / (1.0 + EXP(-x)); return x * sg * u[this.thread.x]; }';

/** FP8 code -> value as an expression-free statement block writing `out` from `code` (prefix p). */
function fp8Decode(fmt: 'e4m3' | 'e5m2', code: string, out: string, p: string): string {
  return (fmt === 'e4m3' ? minifloatDecode(4, 3, 7, true) : minifloatDecode(5, 2, 15, false))
    .replace(/\blet (s|u|e|mm|f) /g, `let ${p}$1 `)
    .replace(/\b(s|u|e|mm|f)\b/g, `${p}$1`)
    .replace(/\bx\b/g, code)
    .concat(`\n  let ${out} = ${p}f;`);
}

/**
 * FP8 block-scaled GEMM a [M, K] x b [N, K]^T, as core's fp8GemmReference without an
 * accumulator model: per chunk of `nc` along K the products (exact in f32) accumulate in f32,
 * then the partial times (scaleA * scaleB) of the chunk's first K block is added in f32.
 * m = [n, M, N, K, nc, brA, brB, bkA, bkB, kbA, kbB].
 */
export function fp8GemmKernel(fa: 'e4m3' | 'e5m2', fb: 'e4m3' | 'e5m2'): string {
  return `function (ac, bc, as, bs, m) {
  let o = this.thread.x;
  let N = m[2];
  let K = m[3];
  let nc = m[4];
  let i = floorDiv(o, N);
  let j = o - i * N;
  let rowA = floorDiv(i, m[5]) * m[9];
  let rowB = floorDiv(j, m[6]) * m[10];
  let acc = 0.0;
  let partial = 0.0;
  let k0 = 0.0;
  let zero = Math.min(K, 0.0);
  for (let k = 0; k < K; k++) {
    let ca = ac[i * K + k];
    let cb = bc[j * K + k];
    ${fp8Decode(fa, 'ca', 'va', 'qa_')}
    ${fp8Decode(fb, 'cb', 'vb', 'qb_')}
    partial = partial + va * vb;
    if (k + 1 - k0 == nc || k + 1 == K) {
      let sc = as[rowA + floorDiv(k0, m[7])] * bs[rowB + floorDiv(k0, m[8])];
      // + zero (a run-time 0): keeps the scaled partial a rounded product, never fused into
      // an fma with the accumulator (NVIDIA's GL contracts a * b + c)
      acc = acc + (partial * sc + zero);
      partial = 0.0;
      k0 = k + 1;
    }
  }
  return acc;
}`;
}

/** The float formats a cast can encode to on the GPU, as core's encoders define them. */
const ENCODE_FORMATS = {
  e4m3: { mb: 3, bias: 7, maxFinite: 0x7e, overflow: 0x7f, inf: 0x7f, nan: 0x7f, sign: 0x80, satOverflow: 0x7e, satInf: 0x7e },
  e5m2: { mb: 2, bias: 15, maxFinite: 0x7b, overflow: 0x7c, inf: 0x7c, nan: 0x7f, sign: 0x80, satOverflow: 0x7b, satInf: 0x7b },
  f16: { mb: 10, bias: 15, maxFinite: 0x7bff, overflow: 0x7c00, inf: 0x7c00, nan: 0x7e00, sign: 0x8000, satOverflow: 0x7bff, satInf: 0x7bff },
  // bf16 shares f32's range and ignores saturate (as core's f32ToBf16Bits / the CPU backend)
  bf16: { mb: 7, bias: 127, maxFinite: 0x7f7f, overflow: 0x7f80, inf: 0x7f80, nan: 0x7fc0, sign: 0x8000, satOverflow: 0x7f80, satInf: 0x7f80 },
} as const;
export type EncodeTarget = keyof typeof ENCODE_FORMATS;

/**
 * f32 value -> code of `to` as statements writing `out` (names prefixed `p`), bit for bit
 * core's encodeMinifloat (f16, FP8) / f32ToBf16Bits (bf16): round half to even, overflow to
 * the format's inf/NaN code (or its largest finite with `saturate`), subnormal targets, signed
 * zero. `mag` is the value (its magnitude and NaN-ness are used), `sgn` the expression whose
 * sign (including -0) the code gets. Only exact f32 operations: the exponent is
 * floor(log2 |x|) corrected by comparisons against exact powers of two (pow2i), the scaled
 * magnitude |x| * 2^(mb - e) is a product by powers of two (exact), and the rounding uses
 * floor and comparisons on it. A NaN gets the sign `nanNeg` (1.0: negative) says: a decoded
 * code's sign; for f32 values positive (GLSL cannot see a NaN's sign). bf16 NaN is always
 * 0x7fc0. f32 subnormals encode as the GPU holds them (flushed to zero on most).
 */
export function encodeStmts(to: EncodeTarget, mag: string, sgn: string, out: string, p: string, saturate: boolean, nanNeg = '0.0'): string {
  const f = ENCODE_FORMATS[to];
  const emin = 1 - f.bias;
  return `let ${p}v = ${mag};
  let ${p}s = ${sgn};
  let ${p}a = Math.abs(${p}v);
  let ${p}neg = ${p}s < 0.0 || (${p}s == 0.0 && 1.0 / ${p}s < 0.0) ? 1.0 : 0.0;
  let ${p}c = 0.0;
  if (${isNan(`${p}v`)}) { ${p}c = ${f.nan}.0; ${p}neg = ${to === 'bf16' ? '0.0' : nanNeg}; } else if (${p}a > 3.4028234663852886e38) { ${p}c = ${saturate ? f.satInf : f.inf}.0; } else if (${p}a >= 1.1754943508222875e-38) {
    let ${p}e = Math.min(Math.max(Math.floor(Math.log(${p}a) * 1.4426950408889634), -126.0), 127.0);
    for (let ${p}t = 0; ${p}t < 2; ${p}t++) {
      if (pow2i(${p}e) > ${p}a) { ${p}e = ${p}e - 1.0; } else if (pow2i(${p}e) * 2.0 <= ${p}a) { ${p}e = ${p}e + 1.0; }
    }
    let ${p}te = Math.max(${p}e, ${emin}.0);
    let ${p}k = ${f.mb}.0 - ${p}te;
    let ${p}h = Math.floor(${p}k * 0.5);
    let ${p}q = ${p}a * pow2i(${p}h) * pow2i(${p}k - ${p}h);
    let ${p}fl = Math.floor(${p}q);
    let ${p}r = ${p}q - ${p}fl;
    if (${p}r > 0.5 || (${p}r == 0.5 && ${p}fl - 2.0 * Math.floor(${p}fl * 0.5) == 1.0)) { ${p}fl = ${p}fl + 1.0; }
    ${p}c = (${p}te + ${f.bias - 1}.0) * ${2 ** f.mb}.0 + ${p}fl;
    if (${p}c > ${f.maxFinite}.0) { ${p}c = ${saturate ? f.satOverflow : f.overflow}.0; }
  }
  let ${out} = ${p}c + ${p}neg * ${f.sign}.0;`;
}

/** Cast to a float code dtype (f16, bf16, e4m3, e5m2) on the GPU, through the exact f32 value of the source. */
export function encodeCastKernel(from: DType, to: DType, saturate: boolean): string | undefined {
  if (!(to in ENCODE_FORMATS) || from === to) return undefined;
  const decode = DECODE[from];
  const pre = `let x = x0[this.thread.x];${decode ? ` ${decode}` : ''}`;
  const v = decode ? 'f' : 'x';
  return `function (x0, m) { ${pre}
  ${encodeStmts(to as EncodeTarget, v, v, 'code', 'en_', saturate, decode ? '(s < 0.0 ? 1.0 : 0.0)' : '0.0')}
  return code; }`;
}

/**
 * quantizeBlockwise's scales, as core's quantizeBlockwise: per block amax = max |x| (NaN if the
 * block has one), at least AMAX_FLOOR; scale = amax * f32(1 / max_fp8) (one rounded product);
 * ue8m0: rounded up to 2^k (finite scales). One thread per block.
 * m = [n, rows, cols, blockRows, blockCols, blocks per row, f32(1/max), ue8m0 (0/1), AMAX_FLOOR].
 */
export const QUANT_SCALES = `function (x, m) {
  let o = this.thread.x;
  let cols = m[2];
  let bi = floorDiv(o, m[5]);
  let bj = o - bi * m[5];
  let r0 = bi * m[3];
  let c0 = bj * m[4];
  let h = Math.min(m[1] - r0, m[3]);
  let w = Math.min(cols - c0, m[4]);
  let amax = 0.0;
  let nan = 0.0;
  for (let i = 0; i < h; i++) {
    let row = (r0 + i) * cols + c0;
    for (let j = 0; j < w; j++) {
      let v = x[row + j];
      // the NaN test on the value itself, not on |v| (Mesa folds !(|v| <= 0 || |v| > 0) to false)
      if (${isNan('v')}) { nan = 1.0; }
      let a = Math.abs(v);
      if (a > amax) { amax = a; }
    }
  }
  if (nan > 0.5) { return NAN_; }
  if (amax < m[8]) { amax = m[8]; }
  let s = amax * m[6];
  if (m[7] > 0.5 && s <= 3.4028234663852886e38) {
    let e = Math.min(Math.max(Math.floor(Math.log(s) * 1.4426950408889634), -126.0), 126.0);
    for (let t = 0; t < 2; t++) {
      if (pow2i(e) > s) { e = e - 1.0; } else if (pow2i(e) * 2.0 <= s) { e = e + 1.0; }
    }
    if (pow2i(e) < s) { s = pow2i(e + 1.0); }
  }
  return s;
}`;

/**
 * quantizeBlockwise's codes: fp8(f32(x / scale)) with the correctly rounded quotient (divRN),
 * the code's sign from x (the scale is positive). m = [n, cols, blockRows, blockCols, blocks per row].
 */
export function quantCodesKernel(format: 'e4m3' | 'e5m2'): string {
  return `function (x, sc, m) {
  let o = this.thread.x;
  let cols = m[1];
  let r = floorDiv(o, cols);
  let c = o - r * cols;
  let s = sc[floorDiv(r, m[2]) * m[4] + floorDiv(c, m[3])];
  let v = x[o];
  let q = divRN(v, s);
  ${encodeStmts(format, 'q', 'v', 'code', 'en_', false)}
  // +-inf / inf (a block whose amax is inf): core's quotient is the CPU's default NaN, negative on x86
  if (Math.abs(v) > 3.4028234663852886e38 && s > 3.4028234663852886e38) { code = 255.0; }
  return code;
}`;
}

/** Casts to f16/bf16/FP8 and quantizeBlockwise as GPU kernels (default) or, with KILN_GPUJS_GPU_ENCODE=0, on the host. */
export function gpuEncodeEnabled(): boolean {
  return (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.KILN_GPUJS_GPU_ENCODE !== '0';
}

/**
 * Casts to f16/bf16/FP8 on the GPU only when asked ($KILN_GPUJS_GPU_CAST=1): a shader cannot see
 * an f32 NaN's sign and sees f32 subnormals flushed, so by default `cast` keeps the exact host
 * path (the conformance suite's casts pass bit for bit); quantizeBlockwise, the FP8 training hot
 * path, runs on the GPU by default (its conformance cases pass).
 */
export function gpuCastEnabled(): boolean {
  return gpuEncodeEnabled() && (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.KILN_GPUJS_GPU_CAST === '1';
}
