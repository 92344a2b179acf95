import { header } from './common.js';
import { MATH } from './math.js';

/**
 * Fused row kernels over the last axis with one workgroup of W invocations per row (f32 in and
 * out): softmax, logSoftmax and rmsNorm for long rows. The invocations stride over the row
 * together (their loads are contiguous, where one invocation per row reads rows `len` apart), each
 * keeping a compensated partial; the W partials are combined exactly (two-sum pairs) in a fixed
 * order, so every invocation gets the same statistics and the result is within a few ulps of the
 * float64 reference whatever the width, and deterministic on a given device.
 *
 * W = 64. `subgroups` (the 'subgroups' feature, subgroups of at most W): each subgroup combines
 * its values by a `subgroupShuffleXor` butterfly, its first invocation (`subgroupMin` of the
 * local index: no assumption about which invocations share a subgroup) stores the result, and
 * after one barrier every invocation combines the stored results in local-index order. Without
 * the feature (or with larger subgroups): a tree in workgroup memory (log2 W barriers).
 * meta: [rows, len, eps bits]; dispatch one workgroup per row (rows past 65535 fold into y).
 */
export function rowWideShader(kind: 'softmax' | 'logSoftmax' | 'rmsNorm', subgroups: boolean): string {
  const W = 64;
  const inputs = kind === 'rmsNorm' ? ['x', 'w'] : ['x'];
  const ld = (e: string) => `bitcast<f32>(x[${e}])`;
  // (s, c): a sum held as s + c. two-sum keeps the rounding error of s + s' exactly.
  const combine = `fn add_pair(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
  let s = a.x + b.x;
  let bb = s - a.x;
  let e = (a.x - (s - bb)) + (b.x - bb);
  // an infinite or NaN sum keeps its own value (the error term would be NaN)
  if ((bitcast<u32>(s) & 0x7fffffffu) >= 0x7f800000u) { return vec2<f32>(s, 0.0); }
  return vec2<f32>(s, (a.y + b.y) + e);
}
`;
  // reductions of u32 max bits and of sum pairs over the workgroup's W invocations
  const reduce = (name: string, ty: string, op: (a: string, b: string) => string): string => {
    const butterfly = subgroups
      ? `  if (sgs <= ${W}u) {
    var v = v0;
    for (var o = 1u; o < sgs; o = o << 1u) { v = ${op('v', 'subgroupShuffleXor(v, o)')}; }
    let first = subgroupMin(lid) == lid;
    if (first) { red_${name}[lid] = v; }
    lead_${name}[lid] = select(0u, 1u, first);
    workgroupBarrier();
    // invocation 0 leads its subgroup, so red[0] holds a result
    var r = red_${name}[0];
    for (var i = 1u; i < ${W}u; i++) { if (lead_${name}[i] == 1u) { r = ${op('r', `red_${name}[i]`)}; } }
    workgroupBarrier();
    return r;
  }
`
      : '';
    return `fn ${name}(v0: ${ty}, lid: u32, sgs: u32) -> ${ty} {
${butterfly}  red_${name}[lid] = v0;
  workgroupBarrier();
  for (var s = ${W / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { red_${name}[lid] = ${op(`red_${name}[lid]`, `red_${name}[lid + s]`)}; }
    workgroupBarrier();
  }
  let v = red_${name}[0];
  workgroupBarrier();
  return v;
}
`;
  };
  const lead = (name: string) => (subgroups ? `var<workgroup> lead_${name}: array<u32, ${W}>;\n` : '');
  let decl = `var<workgroup> red_sum: array<vec2<f32>, ${W}>;\n${lead('sum')}`;
  let fns = combine + reduce('sum', 'vec2<f32>', (a, b) => `add_pair(${a}, ${b})`);
  let body: string;
  // Kahan partial per invocation: the sum is s - comp
  const kahan = (value: string) => `  var s = 0.0;
  var comp = 0.0;
  for (var j = lid; j < len; j += ${W}u) {
    let y = ${value} - comp;
    let t = s + y;
    comp = (t - s) - y;
    s = t;
  }
  let tot = sum(vec2<f32>(s, -comp), lid, sgs);
  let total = tot.x + tot.y;
`;
  if (kind === 'rmsNorm') {
    body = `${kahan(`${ld('base + j')} * ${ld('base + j')}`)}  let r = k_rsqrt(total / f32(len) + bitcast<f32>(prm[2]));
  for (var j = lid; j < len; j += ${W}u) { out[base + j] = bitcast<u32>(${ld('base + j')} * r * bitcast<f32>(w[j])); }
`;
  } else {
    decl += `var<workgroup> red_mx: array<u32, ${W}>;\n${lead('mx')}`;
    fns += reduce('mx', 'u32', (a, b) => `k_max_bits(${a}, ${b})`);
    body = `  var mbl = x[base + min(lid, len - 1u)];
  for (var j = lid + ${W}u; j < len; j += ${W}u) { mbl = k_max_bits(mbl, x[base + j]); }
  let mb = mx(mbl, lid, sgs);
  let m = bitcast<f32>(mb);
  let finite = (mb & 0x7f800000u) != 0x7f800000u;
${kahan(`select(k_nan(), k_exp(${ld('base + j')} - m), finite)`)}  ${
      kind === 'softmax'
        ? `for (var j = lid; j < len; j += ${W}u) { out[base + j] = bitcast<u32>(select(k_nan(), k_exp(${ld('base + j')} - m), finite) / total); }`
        : `let ls = k_log(total);
  for (var j = lid; j < len; j += ${W}u) { out[base + j] = bitcast<u32>(select(k_nan(), (${ld('base + j')} - m) - ls, finite)); }`
    }
`;
  }
  const builtins = subgroups
    ? `@builtin(local_invocation_index) lid: u32, @builtin(subgroup_size) sgs: u32`
    : `@builtin(local_invocation_index) lid: u32`;
  return `${subgroups ? 'enable subgroups;\n' : ''}${header(inputs)}${MATH}${decl}${fns}
@compute @workgroup_size(${W})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, ${builtins}) {
  ${subgroups ? '' : `let sgs = ${W}u;\n  `}let row = wg.x + wg.y * nwg.x;
  if (row >= prm[0]) { return; }
  let len = prm[1];
  let base = row * len;
${body}}
`;
}
