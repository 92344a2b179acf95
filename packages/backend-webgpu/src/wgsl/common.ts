import type { DType } from '@kiln/core';
import { elementBytes } from '../packing.js';

/**
 * WGSL building blocks shared by the kernels. Every buffer is bound as `array<u32>`;
 * `meta` (binding 0) holds a kernel's integer parameters (prm[0] is always the number of
 * output elements), `out` (binding 1) is the output, inputs follow.
 */

export const WG = 256;

export function header(inputs: readonly string[], outAccess: 'read_write' = 'read_write'): string {
  let s = `@group(0) @binding(0) var<storage, read> prm: array<u32>;\n`;
  s += `@group(0) @binding(1) var<storage, ${outAccess}> out: array<u32>;\n`;
  inputs.forEach((name, k) => {
    s += `@group(0) @binding(${k + 2}) var<storage, read> ${name}: array<u32>;\n`;
  });
  return s;
}

/** `fn rd_<name>(i: u32) -> u32`: the raw code of element i of a packed buffer of dtype. */
export function reader(name: string, dtype: DType): string {
  switch (elementBytes(dtype)) {
    case 4:
      return `fn rd_${name}(i: u32) -> u32 { return ${name}[i]; }\n`;
    case 2:
      return `fn rd_${name}(i: u32) -> u32 { return (${name}[i >> 1u] >> ((i & 1u) * 16u)) & 0xffffu; }\n`;
    default:
      return `fn rd_${name}(i: u32) -> u32 { return (${name}[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu; }\n`;
  }
}

/** WGSL type a compute dtype is held in. */
export function wty(dtype: DType): 'f32' | 'i32' | 'u32' {
  return dtype === 'f32' ? 'f32' : dtype === 'i32' ? 'i32' : 'u32';
}

/** Expression converting a raw code (u32) to the compute value of dtype. */
export function fromCode(dtype: DType, e: string): string {
  return dtype === 'f32' ? `bitcast<f32>(${e})` : dtype === 'i32' ? `bitcast<i32>(${e})` : e;
}

/** Expression converting a compute value to its raw code. */
export function toCode(dtype: DType, e: string): string {
  if (dtype === 'f32' || dtype === 'i32') return `bitcast<u32>(${e})`;
  if (dtype === 'bool') return `select(0u, 1u, (${e}) != 0u)`;
  return `((${e}) & 0xffu)`;
}

/**
 * The elementwise driver: each invocation writes one whole output word (one f32/i32 element,
 * two f16/bf16 codes or four byte codes), so packed outputs are written without
 * read-modify-write races. `body` must define `fn elem(i: u32) -> u32` returning the code of
 * output element i.
 */
export function elementwise(outDtype: DType, body: string, inputs: readonly string[]): string {
  const eb = elementBytes(outDtype);
  const per = 4 / eb;
  const mask = eb === 4 ? '0xffffffffu' : eb === 2 ? '0xffffu' : '0xffu';
  let main: string;
  if (per === 1) {
    main = `  if (w >= n) { return; }\n  out[w] = elem(w);\n`;
  } else {
    main =
      `  if (w * ${per}u >= n) { return; }\n  var word = 0u;\n` +
      `  for (var k = 0u; k < ${per}u; k++) {\n    let i = w * ${per}u + k;\n    if (i < n) { word = word | ((elem(i) & ${mask}) << (k * ${eb * 8}u)); }\n  }\n  out[w] = word;\n`;
  }
  return (
    header(inputs) +
    body +
    `\n@compute @workgroup_size(${WG})\nfn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {\n` +
    `  let w = gid.x + gid.y * nwg.x * ${WG}u;\n  let n = prm[0];\n` +
    main +
    `}\n`
  );
}

/**
 * Strided addressing over collapsed dims. meta layout from `stridedMeta`:
 * [n, nd, dims[nd], strides of operand 0 [nd], ..., strides of operand nops-1 [nd], base offsets [nops], ...extra].
 * `fn off(i, op) -> u32`: the element offset of output element i in operand op.
 */
export function stridedFn(nops: number): string {
  return `
fn off(i: u32, op: u32) -> u32 {
  let nd = prm[1];
  var rem = i;
  let sbase = 2u + nd * (1u + op);
  var o = prm[2u + nd * ${1 + nops}u + op];
  var d = nd;
  loop {
    if (d == 0u) { break; }
    d = d - 1u;
    let dim = prm[2u + d];
    let c = rem % dim;
    rem = rem / dim;
    o = o + c * prm[sbase + d];
  }
  return o;
}
`;
}

/** Index of the first extra word after a strided meta block of nops operands. */
export function extraAt(nd: number, nops: number): number {
  return 2 + nd * (1 + nops) + nops;
}

/** Bit-exact conversions between f32 bit patterns and the storage formats (integer arithmetic only). */
export const CODECS = `
// f32 bits -> minifloat code, round half to even: a port of core's encodeMinifloat.
fn enc_mf(bits: u32, mb: u32, bias: i32, maxFinite: u32, overflow: u32, nanCode: u32, infCode: u32, totalBits: u32, sat: bool) -> u32 {
  let sign = select(0u, 1u << (totalBits - 1u), (bits >> 31u) != 0u);
  let a = bits & 0x7fffffffu;
  let ef = a >> 23u;
  let frac = a & 0x7fffffu;
  if (ef == 0xffu) {
    if (frac != 0u) { return sign | nanCode; }
    return sign | select(infCode, maxFinite, sat);
  }
  if (a == 0u) { return sign; }
  var e: i32;
  var m: u32;
  if (ef == 0u) { e = -126; m = frac; } else { e = i32(ef) - 127; m = frac | 0x800000u; }
  let emin = 1 - bias;
  loop {
    if (m >= 0x800000u) { break; }
    m = m << 1u;
    e = e - 1;
  }
  let te = max(e, emin);
  let shift = 23 - i32(mb) + (te - e);
  var q = 0u;
  if (shift <= 25) {
    let s = u32(shift);
    q = m >> s;
    let rem = m & ((1u << s) - 1u);
    let half = 1u << (s - 1u);
    if (rem > half || (rem == half && (q & 1u) == 1u)) { q = q + 1u; }
  }
  let code = u32(te + bias - 1) * (1u << mb) + q;
  if (code > maxFinite) { return sign | select(overflow, maxFinite, sat); }
  return sign | code;
}

// finite minifloat magnitude -> f32 bits (exact)
fn mf_bits(mag: u32, mb: u32, bias: i32) -> u32 {
  if (mag == 0u) { return 0u; }
  var m = mag & ((1u << mb) - 1u);
  let e = mag >> mb;
  var ee: i32;
  if (e == 0u) {
    ee = 1 - bias;
    loop {
      if ((m & (1u << mb)) != 0u) { break; }
      m = m << 1u;
      ee = ee - 1;
    }
    m = m & ((1u << mb) - 1u);
  } else {
    ee = i32(e) - bias;
  }
  return (u32(ee + 127) << 23u) | (m << (23u - mb));
}

fn f16_bits(h: u32) -> u32 {
  let s = (h & 0x8000u) << 16u;
  let mag = h & 0x7fffu;
  if (mag == 0x7c00u) { return s | 0x7f800000u; }
  if (mag > 0x7c00u) { return s | 0x7fc00000u; }
  return s | mf_bits(mag, 10u, 15);
}
fn bf16_bits(h: u32) -> u32 { return (h & 0xffffu) << 16u; }
fn e4m3_bits(c: u32) -> u32 {
  let s = (c & 0x80u) << 24u;
  let mag = c & 0x7fu;
  if (mag == 0x7fu) { return s | 0x7fc00000u; }
  return s | mf_bits(mag, 3u, 7);
}
fn e5m2_bits(c: u32) -> u32 {
  let s = (c & 0x80u) << 24u;
  let mag = c & 0x7fu;
  if (mag == 0x7cu) { return s | 0x7f800000u; }
  if (mag > 0x7cu) { return s | 0x7fc00000u; }
  return s | mf_bits(mag, 2u, 15);
}
fn to_f16(bits: u32, sat: bool) -> u32 { return enc_mf(bits, 10u, 15, 0x7bffu, 0x7c00u, 0x7e00u, 0x7c00u, 16u, sat); }
fn to_e4m3(bits: u32, sat: bool) -> u32 { return enc_mf(bits, 3u, 7, 0x7eu, 0x7fu, 0x7fu, 0x7fu, 8u, sat); }
fn to_e5m2(bits: u32, sat: bool) -> u32 { return enc_mf(bits, 2u, 15, 0x7bu, 0x7cu, 0x7fu, 0x7cu, 8u, sat); }
fn to_bf16(bits: u32) -> u32 {
  if ((bits & 0x7fffffffu) > 0x7f800000u) { return 0x7fc0u; }
  let lsb = (bits >> 16u) & 1u;
  return ((bits + 0x7fffu + lsb) >> 16u) & 0xffffu;
}

// i32 -> f32 bits, round half to even (WGSL leaves the rounding of inexact conversions open)
fn i32_bits(v: i32) -> u32 {
  if (v == 0) { return 0u; }
  let u = bitcast<u32>(v);
  let s = select(0u, 0x80000000u, v < 0);
  let a = select(u, 0u - u, v < 0);
  let p = 31u - countLeadingZeros(a);
  var mant: u32;
  var ex = p;
  if (p <= 23u) {
    mant = a << (23u - p);
  } else {
    let sh = p - 23u;
    mant = a >> sh;
    let rem = a & ((1u << sh) - 1u);
    let half = 1u << (sh - 1u);
    if (rem > half || (rem == half && (mant & 1u) == 1u)) { mant = mant + 1u; }
    if (mant == 0x1000000u) { mant = mant >> 1u; ex = ex + 1u; }
  }
  return s | ((ex + 127u) << 23u) | (mant & 0x7fffffu);
}

fn is_nan_bits(b: u32) -> bool { return (b & 0x7fffffffu) > 0x7f800000u; }

// f32 bits -> i32: truncate toward zero, NaN -> 0, saturating
fn bits_i32(b: u32) -> i32 {
  if (is_nan_bits(b)) { return 0; }
  let x = bitcast<f32>(b);
  if (x >= 2147483648.0) { return 2147483647; }
  if (x <= -2147483648.0) { return -2147483647 - 1; }
  return i32(trunc(x));
}
fn bits_u8(b: u32) -> u32 {
  if (is_nan_bits(b)) { return 0u; }
  let x = bitcast<f32>(b);
  if (x >= 255.0) { return 255u; }
  if (x <= 0.0) { return 0u; }
  return u32(trunc(x));
}
`;
