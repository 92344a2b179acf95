import { elementwise, header } from './common.js';
import { MATH } from './math.js';

/**
 * Fused row kernels over the last axis (one invocation per row, f32 in and out):
 * softmax, logSoftmax and rmsNorm. meta: [rows, len, eps bits]. The row sums use compensated
 * summation, so the result is within a few ulps of the float64 reference whatever the width.
 */
export function rowShader(kind: 'softmax' | 'logSoftmax' | 'rmsNorm'): string {
  const inputs = kind === 'rmsNorm' ? ['x', 'w'] : ['x'];
  const ld = (e: string) => `bitcast<f32>(x[${e}])`;
  let body: string;
  if (kind === 'rmsNorm') {
    body = `
  var s = 0.0;
  var comp = 0.0;
  for (var j = 0u; j < len; j++) {
    let v = ${ld('base + j')};
    let y = v * v - comp;
    let t = s + y;
    comp = (t - s) - y;
    s = t;
  }
  let r = k_rsqrt(s / f32(len) + bitcast<f32>(prm[2]));
  for (var j = 0u; j < len; j++) { out[base + j] = bitcast<u32>(${ld('base + j')} * r * bitcast<f32>(w[j])); }
`;
  } else {
    body = `
  var mb = x[base];
  for (var j = 1u; j < len; j++) { mb = k_max_bits(mb, x[base + j]); }
  let m = bitcast<f32>(mb);
  let finite = (mb & 0x7f800000u) != 0x7f800000u;
  var s = 0.0;
  var comp = 0.0;
  for (var j = 0u; j < len; j++) {
    let d = ${ld('base + j')} - m;
    let y = select(k_nan(), k_exp(d), finite) - comp;
    let t = s + y;
    comp = (t - s) - y;
    s = t;
  }
  // the compensated total (Kahan: the running sum s is short by comp)
  let total = s - comp;
  ${
    kind === 'softmax'
      ? `for (var j = 0u; j < len; j++) { out[base + j] = bitcast<u32>(select(k_nan(), k_exp(${ld('base + j')} - m), finite) / total); }`
      : `let ls = k_log(total);
  for (var j = 0u; j < len; j++) { out[base + j] = bitcast<u32>(select(k_nan(), (${ld('base + j')} - m) - ls, finite)); }`
  }
`;
  }
  return (
    header(inputs) +
    MATH +
    `
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = gid.x + gid.y * nwg.x * 64u;
  if (row >= prm[0]) { return; }
  let len = prm[1];
  let base = row * len;
${body}}
`
  );
}

/** swiglu: silu(g) * u elementwise; meta [n]. */
export function swigluShader(): string {
  return elementwise(
    'f32',
    MATH + `fn elem(i: u32) -> u32 {\n  let g = bitcast<f32>(gate[i]);\n  return bitcast<u32>(g * k_sigmoid(g) * bitcast<f32>(up[i]));\n}\n`,
    ['gate', 'up'],
  );
}

/**
 * Rotary embedding, one output element per invocation: x [rows of d] with rows cycling over T
 * positions, cos/sin [T, d/2]. meta [n, d, T, interleaved]. Each product rounds on its own as
 * in the composed op (a runtime zero XORed in keeps drivers from fusing them).
 */
export function rotaryShader(): string {
  const body = `fn elem(i: u32) -> u32 {
  let d = prm[1]; let T = prm[2]; let h = d / 2u;
  let col = i % d; let t = (i / d) % T;
  var p: u32; var first: bool; var partner: u32;
  if (prm[3] == 1u) {
    p = col / 2u; first = (col % 2u) == 0u; partner = select(i - 1u, i + 1u, first);
  } else {
    first = col < h; p = select(col - h, col, first); partner = select(i - h, i + h, first);
  }
  let c = bitcast<f32>(C[t * h + p]); let s = bitcast<f32>(S[t * h + p]);
  let xv = bitcast<f32>(X[i]); let xo = bitcast<f32>(X[partner]);
  let z = prm[4];
  if (first) {
    // a = xv, b = xo: a cos - b sin
    return bitcast<u32>(bitcast<f32>(bitcast<u32>(xv * c) ^ z) - bitcast<f32>(bitcast<u32>(xo * s) ^ z));
  }
  // b = xv, a = xo: a sin + b cos
  return bitcast<u32>(bitcast<f32>(bitcast<u32>(xo * s) ^ z) + bitcast<f32>(bitcast<u32>(xv * c) ^ z));
}
`;
  return elementwise('f32', body, ['X', 'C', 'S']);
}
