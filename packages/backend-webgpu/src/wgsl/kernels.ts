import type { BinaryOp, DType, ReduceOp, UnaryOp } from '@kiln/core';
import { CODECS, WG, elementwise, extraAt, fromCode, header, reader, stridedFn, toCode, wty } from './common.js';
import { MATH } from './math.js';

/** fill: meta [n, wordCode]; every word of the output gets the replicated code. */
export function fillShader(): string {
  return (
    header([]) +
    `@compute @workgroup_size(${WG})\nfn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {\n` +
    `  let w = gid.x + gid.y * nwg.x * ${WG}u;\n  if (w >= prm[0]) { return; }\n  out[w] = prm[1];\n}\n`
  );
}

/** random: meta [n, seed, lo bits, range bits (uniform) | mean bits, std bits (normal), 0]. */
export function randomShader(normal: boolean): string {
  const body = `
fn mix32(x0: u32) -> u32 {
  var x = x0;
  x = x ^ (x >> 16u);
  x = x * 0x7feb352du;
  x = x ^ (x >> 15u);
  x = x * 0x846ca68bu;
  x = x ^ (x >> 16u);
  return x;
}
fn rbits(seed: u32, counter: u32) -> u32 {
  let key = mix32(seed ^ 0x9e3779b9u);
  return mix32((counter * 0x85ebca6bu) ^ key);
}
${MATH}
fn elem(i: u32) -> u32 {
  let seed = prm[1];
  let a = bitcast<f32>(prm[2]);
  let b = bitcast<f32>(prm[3]);
${
  normal
    ? `  let u1 = f32((rbits(seed, 2u * i) >> 8u) + 1u) * 5.9604644775390625e-8;
  let u2 = f32(rbits(seed, 2u * i + 1u) >> 8u) * 5.9604644775390625e-8;
  let z = sqrt(-2.0 * k_log(u1)) * k_cos(6.283185307179586 * u2);
  return bitcast<u32>(a + bitcast<f32>(bitcast<u32>(b * z) ^ prm[4]));`
    : `  let u = f32(rbits(seed, i) >> 8u) * 5.9604644775390625e-8;
  // the product rounds on its own, as the reference's does: XOR with the runtime zero prm[4]
  // keeps a driver from contracting a + b * u into one fma
  return bitcast<u32>(a + bitcast<f32>(bitcast<u32>(b * u) ^ prm[4]));`
}
}
`;
  return elementwise('f32', body, []);
}

function unaryF32(op: UnaryOp): string {
  switch (op) {
    case 'neg': return '-x';
    case 'abs': return 'abs(x)';
    case 'sign': return 'select(select(select(-1.0, 1.0, x > 0.0), x, x == 0.0), x, is_nan_bits(bitcast<u32>(x)))';
    case 'square': return 'x * x';
    case 'sqrt': return 'k_sqrt(x)';
    case 'rsqrt': return 'k_rsqrt(x)';
    case 'reciprocal': return 'k_div(1.0, x)';
    case 'exp': return 'k_exp(x)';
    case 'log': return 'k_log(x)';
    case 'sin': return 'k_sin(x)';
    case 'cos': return 'k_cos(x)';
    case 'tanh': return 'k_tanh(x)';
    case 'sigmoid': return 'k_sigmoid(x)';
    case 'relu': return 'bitcast<f32>(select(bitcast<u32>(x), 0u, (bitcast<u32>(x) >> 31u) != 0u && !is_nan_bits(bitcast<u32>(x))))';
    case 'erf': return 'k_erf(x)';
    case 'floor': return 'floor(x)';
    case 'ceil': return 'ceil(x)';
    case 'round': return 'k_round(x)';
    default: return '';
  }
}

function unaryI32(op: UnaryOp): string {
  switch (op) {
    case 'neg': return '-x';
    case 'abs': return 'select(x, -x, x < 0)';
    case 'sign': return 'select(select(0, 1, x > 0), -1, x < 0)';
    case 'square': return 'x * x';
    case 'relu': return 'max(x, 0)';
    case 'floor':
    case 'ceil':
    case 'round': return 'x';
    default: return '';
  }
}

/** unary: meta [n]. */
export function unaryShader(op: UnaryOp, inDtype: DType, outDtype: DType): string {
  let body = CODECS + MATH + reader('x', inDtype);
  let expr: string;
  if (op === 'isnan') {
    expr = inDtype === 'f32' ? 'select(0u, 1u, is_nan_bits(c))' : '0u';
  } else if (op === 'not') {
    expr = inDtype === 'f32' ? 'select(0u, 1u, (c & 0x7fffffffu) == 0u)' : 'select(0u, 1u, c == 0u)';
  } else if (inDtype === 'f32') {
    expr = `bitcast<u32>(${unaryF32(op)})`;
    body += '';
  } else {
    const ie = unaryI32(op);
    const xi = inDtype === 'i32' ? 'bitcast<i32>(c)' : 'i32(c)';
    if (ie && outDtype !== 'f32') {
      return elementwise(outDtype, body + `fn elem(i: u32) -> u32 {\n  let c = rd_x(i);\n  let x = ${xi};\n  return ${toCode(outDtype === 'i32' ? 'i32' : 'u8', `bitcast<u32>(${ie})`)};\n}\n`, ['x']);
    }
    // integer inputs of ops that are not integer-valued go through their exact f32 value
    return elementwise(outDtype, body + `fn elem(i: u32) -> u32 {\n  let c = rd_x(i);\n  let x = bitcast<f32>(i32_bits(${xi}));\n  return bitcast<u32>(${unaryF32(op)});\n}\n`, ['x']);
  }
  return elementwise(outDtype, body + `fn elem(i: u32) -> u32 {\n  let c = rd_x(i);\n  let x = bitcast<f32>(c);\n  return ${outDtype === 'f32' ? expr : toCode(outDtype, expr)};\n}\n`, ['x']);
}

function binaryExpr(op: BinaryOp, dtype: DType): string {
  const cmp: Partial<Record<BinaryOp, string>> = { eq: '==', ne: '!=', lt: '<', le: '<=', gt: '>', ge: '>=' };
  if (op === 'and') return 'select(0u, 1u, ca != 0u && cb != 0u)';
  if (op === 'or') return 'select(0u, 1u, ca != 0u || cb != 0u)';
  if (op in cmp) {
    if (dtype === 'f32') {
      if (op === 'ne') return 'select(0u, 1u, is_nan_bits(ca) || is_nan_bits(cb) || !(a == b))';
      return `select(0u, 1u, !is_nan_bits(ca) && !is_nan_bits(cb) && (a ${cmp[op]} b))`;
    }
    return `select(0u, 1u, a ${cmp[op]} b)`;
  }
  if (dtype === 'f32') {
    switch (op) {
      case 'add': return 'bitcast<u32>(a + b)';
      case 'sub': return 'bitcast<u32>(a - b)';
      case 'mul': return 'bitcast<u32>(a * b)';
      case 'div': return 'bitcast<u32>(k_div(a, b))';
      case 'pow': return 'bitcast<u32>(k_pow(a, b))';
      case 'maximum': return 'k_max_bits(ca, cb)';
      case 'minimum': return 'k_min_bits(ca, cb)';
      case 'mod': return 'bitcast<u32>(k_fmod_floor(a, b))';
      default: return '';
    }
  }
  let e: string;
  switch (op) {
    case 'add': e = 'a + b'; break;
    case 'sub': e = 'a - b'; break;
    case 'mul': e = 'a * b'; break;
    case 'div': e = 'select(a / b, 0, b == 0)'; break;
    case 'pow': e = 'ipow(a, b)'; break;
    case 'maximum': e = 'max(a, b)'; break;
    case 'minimum': e = 'min(a, b)'; break;
    case 'mod': e = 'imod(a, b)'; break;
    default: return '';
  }
  return `bitcast<u32>(${e})`;
}

const INT_HELPERS = `
fn ipow(a: i32, b: i32) -> i32 {
  if (b < 0) {
    if (a == 1) { return 1; }
    if (a == -1) { return select(1, -1, (b & 1) == 1); }
    return 0;
  }
  var r = 1;
  var base = a;
  var e = u32(b);
  loop {
    if (e == 0u) { break; }
    if ((e & 1u) == 1u) { r = r * base; }
    base = base * base;
    e = e >> 1u;
  }
  return r;
}
fn imod(a: i32, b: i32) -> i32 {
  if (b == 0) { return 0; }
  var r = a % b;
  if (r != 0 && ((r < 0) != (b < 0))) { r = r + b; }
  return r;
}
`;

/** binary: strided meta over 2 operands. */
export function binaryShader(op: BinaryOp, dtype: DType, outDtype: DType): string {
  const isInt = dtype !== 'f32';
  const load = (name: string) => (dtype === 'f32' ? `bitcast<f32>(c${name})` : dtype === 'i32' ? `bitcast<i32>(c${name})` : `i32(c${name})`);
  let expr = binaryExpr(op, dtype);
  if (outDtype === 'u8') expr = `((${expr}) & 0xffu)`;
  const body =
    CODECS + MATH + (isInt ? INT_HELPERS : '') + stridedFn(2) + reader('a', dtype) + reader('b', dtype) +
    `fn elem(i: u32) -> u32 {\n  let ca = rd_a(off(i, 0u));\n  let cb = rd_b(off(i, 1u));\n  let a = ${load('a')};\n  let b = ${load('b')};\n  return ${expr};\n}\n`;
  return elementwise(outDtype, body, ['a', 'b']);
}

/** where: strided meta over 3 operands (cond, a, b); codes copied as they are. */
export function whereShader(dtype: DType): string {
  const body =
    stridedFn(3) + reader('c', 'bool') + reader('a', dtype) + reader('b', dtype) +
    `fn elem(i: u32) -> u32 {\n  if (rd_c(off(i, 0u)) != 0u) { return rd_a(off(i, 1u)); }\n  return rd_b(off(i, 2u));\n}\n`;
  return elementwise(dtype, body, ['c', 'a', 'b']);
}

/** Strided copy of codes (slice, transpose, broadcast materialisation): strided meta over 1 operand. */
export function copyShader(dtype: DType): string {
  return elementwise(dtype, stridedFn(1) + reader('x', dtype) + `fn elem(i: u32) -> u32 { return rd_x(off(i, 0u)); }\n`, ['x']);
}

/**
 * concat of k inputs along an axis, viewed as [outer, rowLen] with input j covering columns
 * [start_j, start_j + width_j): meta [n, rowLen, start_0, width_0, start_1, width_1, ...].
 */
export function concatShader(dtype: DType, k: number): string {
  const names = Array.from({ length: k }, (_, j) => `x${j}`);
  let body = names.map((nm) => reader(nm, dtype)).join('');
  body += `fn elem(i: u32) -> u32 {\n  let rowLen = prm[1];\n  let o = i / rowLen;\n  let r = i % rowLen;\n`;
  names.forEach((nm, j) => {
    body += `  { let st = prm[${2 + 2 * j}u]; let wd = prm[${3 + 2 * j}u]; if (r >= st && r < st + wd) { return rd_${nm}(o * wd + (r - st)); } }\n`;
  });
  body += `  return 0u;\n}\n`;
  return elementwise(dtype, body, names);
}

/** cast: meta [n, saturate]. */
export function castShader(from: DType, to: DType): string {
  const toBits = (c: string): string => {
    switch (from) {
      case 'f32': return c;
      case 'f16': return `f16_bits(${c})`;
      case 'bf16': return `bf16_bits(${c})`;
      case 'e4m3': return `e4m3_bits(${c})`;
      case 'e5m2': return `e5m2_bits(${c})`;
      case 'i32': return `i32_bits(bitcast<i32>(${c}))`;
      case 'u8': return `i32_bits(i32(${c}))`;
      case 'bool': return `i32_bits(select(0, 1, ${c} != 0u))`;
    }
  };
  const isIntFrom = from === 'i32' || from === 'u8' || from === 'bool';
  let e: string;
  if (from === to) e = from === 'bool' ? 'select(0u, 1u, c != 0u)' : 'c';
  else if (to === 'bool') {
    const mask = from === 'f32' ? '0x7fffffffu' : from === 'f16' || from === 'bf16' ? '0x7fffu' : from === 'e4m3' || from === 'e5m2' ? '0x7fu' : '0xffffffffu';
    e = `select(0u, 1u, (c & ${mask}) != 0u)`;
  } else if (isIntFrom && to === 'i32') e = from === 'bool' ? 'select(0u, 1u, c != 0u)' : 'c';
  else if (isIntFrom && to === 'u8') e = from === 'bool' ? 'select(0u, 1u, c != 0u)' : '(c & 0xffu)';
  else {
    const b = toBits('c');
    switch (to) {
      case 'f32': e = b; break;
      case 'i32': e = `bitcast<u32>(bits_i32(${b}))`; break;
      case 'u8': e = `bits_u8(${b})`; break;
      case 'f16': e = `to_f16(${b}, sat)`; break;
      case 'bf16': e = `to_bf16(${b})`; break;
      case 'e4m3': e = `to_e4m3(${b}, sat)`; break;
      case 'e5m2': e = `to_e5m2(${b}, sat)`; break;
    }
  }
  const body = CODECS + reader('x', from) + `fn elem(i: u32) -> u32 {\n  let sat = prm[1] != 0u;\n  let c = rd_x(i);\n  return ${e!};\n}\n`;
  return elementwise(to, body, ['x']);
}

/** reduce one axis: meta [n = outer*inner, len, inner]. */
export function reduceShader(op: ReduceOp, dtype: DType): string {
  const outDtype: DType = op === 'argmax' || op === 'argmin' ? 'i32' : dtype;
  const T = wty(dtype);
  const ld = (idx: string) => fromCode(dtype, `rd_x(${idx})`);
  let loop: string;
  if (dtype === 'f32') {
    switch (op) {
      case 'sum':
        // compensated (Kahan-Babuska) summation: error ~2 eps * sum|x| regardless of len
        loop = `  var s = 0.0;\n  var comp = 0.0;\n  for (var j = 0u; j < len; j++) {\n    let v = ${ld('base + j * inner')};\n    let t = s + v;\n    if (abs(s) >= abs(v)) { comp = comp + ((s - t) + v); } else { comp = comp + ((v - t) + s); }\n    s = t;\n  }\n  let r = s + comp;\n  return bitcast<u32>(select(r, s, (bitcast<u32>(s) & 0x7fffffffu) >= 0x7f800000u));\n`;
        break;
      case 'prod':
        loop = `  var p = 1.0;\n  for (var j = 0u; j < len; j++) { p = p * ${ld('base + j * inner')}; }\n  return bitcast<u32>(p);\n`;
        break;
      case 'max':
      case 'min': {
        const f = op === 'max' ? 'k_max_bits' : 'k_min_bits';
        loop = `  var m = rd_x(base);\n  for (var j = 1u; j < len; j++) { m = ${f}(m, rd_x(base + j * inner)); }\n  return m;\n`;
        break;
      }
      case 'argmax':
        loop = `  var best = ${ld('base')};\n  var bi = 0u;\n  if (is_nan_bits(bitcast<u32>(best))) { return 0u; }\n  for (var j = 1u; j < len; j++) {\n    let v = ${ld('base + j * inner')};\n    if (is_nan_bits(bitcast<u32>(v))) { return j; }\n    if (v > best) { best = v; bi = j; }\n  }\n  return bi;\n`;
        break;
      default:
        loop = `  var best = ${ld('base')};\n  var bi = 0u;\n  for (var j = 1u; j < len; j++) {\n    let v = ${ld('base + j * inner')};\n    let vn = is_nan_bits(bitcast<u32>(v));\n    if ((!vn && v < best) || (is_nan_bits(bitcast<u32>(best)) && !vn)) { best = v; bi = j; }\n  }\n  return bi;\n`;
    }
  } else {
    switch (op) {
      case 'sum':
        loop = `  var s: ${T} = ${T}(0);\n  for (var j = 0u; j < len; j++) { s = s + ${ld('base + j * inner')}; }\n  return ${toCode(dtype, 's')};\n`;
        break;
      case 'prod':
        loop = `  var p: ${T} = ${T}(1);\n  for (var j = 0u; j < len; j++) { p = p * ${ld('base + j * inner')}; }\n  return ${toCode(dtype, 'p')};\n`;
        break;
      case 'max':
      case 'min':
        loop = `  var m = ${ld('base')};\n  for (var j = 1u; j < len; j++) { m = ${op}(m, ${ld('base + j * inner')}); }\n  return ${toCode(dtype, 'm')};\n`;
        break;
      default: {
        const c = op === 'argmax' ? '>' : '<';
        loop = `  var best = ${ld('base')};\n  var bi = 0u;\n  for (var j = 1u; j < len; j++) {\n    let v = ${ld('base + j * inner')};\n    if (v ${c} best) { best = v; bi = j; }\n  }\n  return bi;\n`;
      }
    }
  }
  const body =
    CODECS + MATH + reader('x', dtype) +
    `fn elem(i: u32) -> u32 {\n  let len = prm[1];\n  let inner = prm[2];\n  let base = (i / inner) * len * inner + (i % inner);\n${loop}}\n`;
  return elementwise(outDtype, body, ['x']);
}

/** gather: strided meta over 1 operand (x at the indices' coordinates with the axis stride 0) + extra [axisStride, axisDim]. */
export function gatherShader(dtype: DType, nd: number): string {
  const ex = extraAt(nd, 1);
  const body =
    stridedFn(1) + reader('x', dtype) +
    `fn elem(i: u32) -> u32 {\n  var k = bitcast<i32>(idx[i]);\n  let dim = i32(prm[${ex + 1}u]);\n  if (k < 0) { k = k + dim; }\n  if (k < 0 || k >= dim) { return 0u; }\n  return rd_x(off(i, 0u) + u32(k) * prm[${ex}u]);\n}\n`;
  return elementwise(dtype, body, ['x', 'idx']);
}

/** indexSelect: meta [n, dim, nIdx, inner]. */
export function indexSelectShader(dtype: DType): string {
  const body =
    reader('x', dtype) +
    `fn elem(i: u32) -> u32 {\n  let dim = prm[1];\n  let nIdx = prm[2];\n  let inner = prm[3];\n  let r = i % inner;\n  let t = (i / inner) % nIdx;\n  let o = i / (inner * nIdx);\n  var k = bitcast<i32>(idx[t]);\n  if (k < 0) { k = k + i32(dim); }\n  if (k < 0 || k >= i32(dim)) { return 0u; }\n  return rd_x((o * dim + u32(k)) * inner + r);\n}\n`;
  return elementwise(dtype, body, ['x', 'idx']);
}

/**
 * scatterAdd, deterministic: each output element of base sums, in index order, the src
 * elements whose index along the axis points at it. meta: [n, nd, baseShape[nd], idxShape[nd],
 * idxStrides[nd], srcStrides[nd], axis].
 */
export function scatterAddShader(dtype: 'f32' | 'i32'): string {
  const T = dtype;
  const body =
    reader('base', dtype) +
    `fn elem(i: u32) -> u32 {
  let nd = prm[1];
  let axis = prm[2u + 4u * nd];
  var rem = i;
  var ioff = 0u;
  var soff = 0u;
  var tgt = 0u;
  var d = nd;
  loop {
    if (d == 0u) { break; }
    d = d - 1u;
    let dim = prm[2u + d];
    let c = rem % dim;
    rem = rem / dim;
    if (d == axis) { tgt = c; continue; }
    if (c >= prm[2u + nd + d]) { return rd_base(i); }
    ioff = ioff + c * prm[2u + 2u * nd + d];
    soff = soff + c * prm[2u + 3u * nd + d];
  }
  var acc = bitcast<${T}>(rd_base(i));
  let cnt = prm[2u + nd + axis];
  let is = prm[2u + 2u * nd + axis];
  let ss = prm[2u + 3u * nd + axis];
  for (var p = 0u; p < cnt; p++) {
    if (u32(bitcast<i32>(idx[ioff + p * is])) == tgt) { acc = acc + bitcast<${T}>(src[soff + p * ss]); }
  }
  return bitcast<u32>(acc);
}
`;
  return elementwise(dtype, body, ['base', 'idx', 'src']);
}

/** indexAdd, deterministic: meta [n, dim, nIdx, inner]; src is [outer, nIdx, inner]. */
export function indexAddShader(dtype: 'f32' | 'i32'): string {
  const T = dtype;
  const body = `fn elem(i: u32) -> u32 {
  let dim = prm[1];
  let nIdx = prm[2];
  let inner = prm[3];
  let r = i % inner;
  let j = (i / inner) % dim;
  let o = i / (inner * dim);
  var acc = bitcast<${T}>(base[i]);
  for (var t = 0u; t < nIdx; t++) {
    var k = bitcast<i32>(idx[t]);
    if (k < 0) { k = k + i32(dim); }
    if (u32(k) == j) { acc = acc + bitcast<${T}>(src[(o * nIdx + t) * inner + r]); }
  }
  return bitcast<u32>(acc);
}
`;
  return elementwise(dtype, body, ['base', 'idx', 'src']);
}
