/**
 * f32 math for the kernels. WGSL's built-in precision is loose (exp: 3 + 2|x| ulp, log: 2^-21
 * absolute near 1, sin/cos: 2^-11 absolute, division 2.5 ulp), so the functions the
 * conformance suite holds to 4 ulp are written here with explicit range reduction and
 * minimax polynomials, in plain f32 arithmetic (no fma needed); NaN and infinities are
 * handled on bit patterns, so a driver that assumes no NaNs cannot fold them away.
 */
/** Correctly rounded f32 division (see k_div); MATH includes it. */
export const K_DIV = /* wgsl */ `
// a / b rounded to nearest even. WGSL lets '/' be 2.5 ulp off (NVIDIA's is 1 ulp off at times),
// so the quotient of the normalised significands is refined with its remainder, then the
// nearer of it and its neighbour is kept, judged by their exact remainders (fma), and scaled
// back. A quotient of two floats is never halfway between two floats, so no tie arises.
// Zeros, infinities, NaN, subnormal operands and results are left to the hardware.
fn k_div(a: f32, b: f32) -> f32 {
  let q = a / b;
  let xa = bitcast<u32>(a) & 0x7f800000u; let xb = bitcast<u32>(b) & 0x7f800000u;
  if (xa == 0u || xa == 0x7f800000u || xb == 0u || xb == 0x7f800000u) { return q; }
  let fa = frexp(abs(a)); let fb = frexp(abs(b));
  let x = fa.fract; let y = fb.fract; // [0.5, 1)
  let e = fa.exp - fb.exp;
  var t = x / y;
  t = fma(fma(-t, y, x), 1.0 / y, t);
  let r = fma(-t, y, x);
  let nb = bitcast<u32>(t);
  let n = bitcast<f32>(select(nb - 1u, nb + 1u, r > 0.0));
  if (r != 0.0 && abs(fma(-n, y, x)) < abs(r)) { t = n; }
  // t in [0.5, 2): the result is normal when 2^(e-1) >= 2^-126
  if (e - 1 < -126) { return q; }
  let s = select(1.0, -1.0, (a < 0.0) != (b < 0.0));
  return s * ldexp(ldexp(t, e / 2), e - e / 2); // two steps: 2^e alone may overflow
}
`;

export const MATH = /* wgsl */ `
fn k_isnan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
fn k_isinf(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) == 0x7f800000u; }
// NaN and infinity built at run time (WGSL rejects them as constant expressions)
var<private> k_zero: u32 = 0u;
fn k_nan() -> f32 { return bitcast<f32>(0x7fc00000u | k_zero); }
fn k_inf() -> f32 { return bitcast<f32>(0x7f800000u | k_zero); }

${K_DIV}
fn k_sqrt(x: f32) -> f32 { return sqrt(x); }
fn k_rsqrt(x: f32) -> f32 { return 1.0 / sqrt(x); }
fn k_round(x: f32) -> f32 { return round(x); }

fn k_max_bits(a: u32, b: u32) -> u32 {
  if ((a & 0x7fffffffu) > 0x7f800000u) { return a; }
  if ((b & 0x7fffffffu) > 0x7f800000u) { return b; }
  let x = bitcast<f32>(a);
  let y = bitcast<f32>(b);
  if (x > y) { return a; }
  if (y > x) { return b; }
  return a & b; // equal: max(-0, +0) = +0
}
fn k_min_bits(a: u32, b: u32) -> u32 {
  if ((a & 0x7fffffffu) > 0x7f800000u) { return a; }
  if ((b & 0x7fffffffu) > 0x7f800000u) { return b; }
  let x = bitcast<f32>(a);
  let y = bitcast<f32>(b);
  if (x < y) { return a; }
  if (y < x) { return b; }
  return a | b; // equal: min(-0, +0) = -0
}

// exp(x): x = k ln2 + r (ln2 in two parts, exact k*ln2_hi), |r| <= ln2/2, degree-7 Taylor on r.
fn k_exp(x: f32) -> f32 {
  if (k_isnan(x)) { return x; }
  if (x > 88.72284) { return k_inf(); }
  if (x < -103.97208) { return 0.0; }
  let k = round(x * 1.4426950408889634);
  let r = (x - k * 0.693145751953125) - k * 1.428606765330187e-6;
  var p = 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r * r + r;
  let y = 1.0 + p;
  // scale by 2^k in two steps so that subnormal results and k = 128 work
  let ki = i32(k);
  let k1 = ki / 2;
  let k2 = ki - k1;
  return y * bitcast<f32>(u32(k1 + 127) << 23u) * bitcast<f32>(u32(k2 + 127) << 23u);
}

// log(x): x = 2^e m with m in [sqrt(1/2), sqrt(2)), log(m) = 2 atanh(f) with f = (m-1)/(m+1).
fn k_log(x: f32) -> f32 {
  let b = bitcast<u32>(x);
  if (k_isnan(x)) { return x; }
  if ((b & 0x7fffffffu) == 0u) { return -k_inf(); }
  if ((b >> 31u) != 0u) { return k_nan(); }
  if (b == 0x7f800000u) { return x; }
  var bb = b;
  var e = 0;
  if ((bb >> 23u) == 0u) { bb = bitcast<u32>(x * 16777216.0); e = -24; }
  e = e + i32(bb >> 23u) - 127;
  var m = bitcast<f32>((bb & 0x7fffffu) | 0x3f800000u);
  if (m > 1.41421356) { m = m * 0.5; e = e + 1; }
  let f = m - 1.0;
  let s = f / (2.0 + f);
  let z = s * s;
  let w = z * z;
  let t1 = w * (0.40000972152 + w * 0.24279078841);
  let t2 = z * (0.66666662693 + w * 0.28498786688);
  let R = t2 + t1;
  let hfsq = 0.5 * f * f;
  let ef = f32(e);
  return ef * 0.693145751953125 - ((hfsq - (s * (hfsq + R) + ef * 1.428606765330187e-6)) - f);
}

// sin/cos: Cody-Waite reduction by pi/2 in three parts, minimax polynomials on [-pi/4, pi/4].
fn k_sincos_poly(r: f32, q: i32) -> f32 {
  let z = r * r;
  var res: f32;
  if ((q & 1) == 0) {
    res = r + r * z * (-1.6666654611e-1 + z * (8.3321608736e-3 + z * -1.9515295891e-4));
  } else {
    res = 1.0 - 0.5 * z + z * z * (4.166664568298827e-2 + z * (-1.388731625493765e-3 + z * 2.443315711809948e-5));
  }
  if ((q & 2) != 0) { res = -res; }
  return res;
}
fn k_reduce(x: f32) -> vec2<f32> {
  let k = round(x * 0.63661977236758134);
  let r = ((x - k * 1.5703125) - k * 4.8375129699707031e-4) - k * 7.5497899548918821e-8;
  return vec2<f32>(r, k);
}
fn k_sin(x: f32) -> f32 {
  if (k_isnan(x) || k_isinf(x)) { return k_nan(); }
  let rk = k_reduce(x);
  return k_sincos_poly(rk.x, i32(rk.y) & 3);
}
fn k_cos(x: f32) -> f32 {
  if (k_isnan(x) || k_isinf(x)) { return k_nan(); }
  let rk = k_reduce(x);
  return k_sincos_poly(rk.x, (i32(rk.y) + 1) & 3);
}

fn k_tanh(x: f32) -> f32 {
  if (k_isnan(x)) { return x; }
  let a = abs(x);
  var r: f32;
  if (a > 9.1) {
    r = 1.0;
  } else if (a < 0.6) {
    // Taylor series to x^19 (max error 0.8 ulp on [0, 0.6])
    let z = x * x;
    var p = -2.3912911424355248e-4;
    p = p * z + 5.900274409455859e-4;
    p = p * z - 1.4558343870513183e-3;
    p = p * z + 3.5921280365724811e-3;
    p = p * z - 8.8632355299021966e-3;
    p = p * z + 2.1869488536155203e-2;
    p = p * z - 5.3968253968253971e-2;
    p = p * z + 1.3333333333333333e-1;
    p = p * z - 3.3333333333333333e-1;
    r = a + a * z * p;
  } else {
    let e = k_exp(2.0 * a);
    r = 1.0 - 2.0 / (e + 1.0);
  }
  return select(r, -r, x < 0.0);
}

fn k_sigmoid(x: f32) -> f32 {
  if (k_isnan(x)) { return x; }
  if (x >= 0.0) { return 1.0 / (1.0 + k_exp(-x)); }
  let e = k_exp(x);
  return e / (1.0 + e);
}

fn k_erf(a: f32) -> f32 {
  if (k_isnan(a)) { return a; }
  let t = abs(a);
  let s = a * a;
  var r: f32;
  if (t > 0.927734375) {
    r = -1.72853470e-5 * t + 3.83197126e-4;
    let u = -3.88396438e-3 * t + 2.42546219e-2;
    r = r * s + u;
    r = r * t - 1.06777877e-1;
    r = r * t - 6.34846687e-1;
    r = r * t - 1.28717512e-1;
    r = r * t - t;
    r = 1.0 - k_exp(r);
    if (t > 4.0) { r = 1.0; }
    r = select(r, -r, a < 0.0);
  } else {
    r = -5.96761703e-4;
    r = r * s + 4.99119423e-3;
    r = r * s - 2.67681349e-2;
    r = r * s + 1.12819925e-1;
    r = r * s - 3.76125336e-1;
    r = r * s + 1.28379166e-1;
    r = r * a + a;
  }
  return r;
}

// 2^k for -126 <= k <= 127
fn k_pow2(k: i32) -> f32 { return bitcast<f32>(u32(clamp(k, -126, 127) + 127) << 23u); }

// Math.pow semantics (JavaScript's, which the CPU backend uses)
fn k_pow(a: f32, b: f32) -> f32 {
  if (k_isnan(b)) { return k_nan(); }
  if (b == 0.0) { return 1.0; }
  if (k_isnan(a)) { return k_nan(); }
  let bi = trunc(b);
  let isInt = bi == b && !k_isinf(b);
  let odd = isInt && abs(b) < 16777216.0 && (i32(abs(bi)) & 1) == 1;
  if (a == 0.0) {
    let neg = (bitcast<u32>(a) >> 31u) != 0u && odd;
    if (b > 0.0) { return select(0.0, -0.0, neg); }
    return select(k_inf(), -k_inf(), neg);
  }
  if (k_isinf(b)) {
    let aa = abs(a);
    if (aa == 1.0) { return k_nan(); }
    if ((aa > 1.0) == (b > 0.0)) { return k_inf(); }
    return 0.0;
  }
  if (a < 0.0 && !isInt) { return k_nan(); }
  if (k_isinf(a)) {
    let neg = a < 0.0 && odd;
    if (b > 0.0) { return select(k_inf(), -k_inf(), neg); }
    return select(0.0, -0.0, neg);
  }
  if (isInt && abs(b) <= 64.0) {
    // exact-as-possible repeated squaring for small integer exponents
    var r = 1.0;
    var base = abs(a);
    var e = u32(abs(bi));
    loop {
      if (e == 0u) { break; }
      if ((e & 1u) == 1u) { r = r * base; }
      base = base * base;
      e = e >> 1u;
    }
    if (b < 0.0) { r = 1.0 / r; }
    return select(r, -r, a < 0.0 && odd);
  }
  // |a|^b = 2^(b e) * exp(b log m) with |a| = 2^e m, m in [sqrt(1/2), sqrt(2)): b e is split
  // into exact parts (b = bh + bl with 12-bit halves, e an integer < 2^8), so only the small
  // b log m carries rounding error.
  var ab = bitcast<u32>(abs(a));
  var e = 0;
  if ((ab >> 23u) == 0u) { ab = bitcast<u32>(abs(a) * 16777216.0); e = -24; }
  e = e + i32(ab >> 23u) - 127;
  var m = bitcast<f32>((ab & 0x7fffffu) | 0x3f800000u);
  if (m > 1.41421356) { m = m * 0.5; e = e + 1; }
  let ef = f32(e);
  let bh = bitcast<f32>(bitcast<u32>(b) & 0xfffff000u);
  let bl = b - bh;
  let ph = bh * ef;
  let pl = bl * ef;
  let n = round(ph + pl);
  let frac = (ph - n) + pl;
  let u = frac * 0.6931471805599453 + b * k_log(m);
  if (n > 300.0) { return select(k_inf(), -k_inf(), a < 0.0 && odd); }
  if (n < -300.0) { return select(0.0, -0.0, a < 0.0 && odd); }
  let ni = i32(n);
  let n1 = ni / 3;
  let n2 = ni / 3;
  let n3 = ni - n1 - n2;
  let r = k_exp(u) * k_pow2(n1) * k_pow2(n2) * k_pow2(n3);
  return select(r, -r, a < 0.0 && odd);
}

// Floored modulo (Python's %), exact: |a| mod |b| by binary long division on the mantissas.
fn k_fmod_floor(a: f32, b: f32) -> f32 {
  if (k_isnan(a) || k_isnan(b) || k_isinf(a) || b == 0.0) { return k_nan(); }
  if (k_isinf(b)) {
    if (a == 0.0 || (a < 0.0) == (b < 0.0)) { return a; }
    return b;
  }
  let ua = bitcast<u32>(a) & 0x7fffffffu;
  let ub = bitcast<u32>(b) & 0x7fffffffu;
  var r: f32;
  if (ua < ub) {
    r = abs(a);
  } else {
    var ea = i32(ua >> 23u);
    var ma = ua & 0x7fffffu;
    if (ea == 0) { ea = 1; } else { ma = ma | 0x800000u; }
    var eb = i32(ub >> 23u);
    var mb = ub & 0x7fffffu;
    if (eb == 0) { eb = 1; } else { mb = mb | 0x800000u; }
    var m = ma % mb;
    var e = ea;
    loop {
      if (e <= eb) { break; }
      m = (m << 1u) % mb;
      e = e - 1;
    }
    // value = m * 2^(eb - 150) (eb >= 1), m < mb <= 2^24: build the bits directly
    if (m == 0u) {
      r = 0.0;
    } else {
      let p = 31 - i32(countLeadingZeros(m));
      let E = p + eb - 23;
      if (E >= 1) {
        r = bitcast<f32>((u32(E) << 23u) | ((m << u32(23 - p)) & 0x7fffffu));
      } else {
        r = bitcast<f32>(m << u32(eb - 1));
      }
    }
  }
  // r = |a| mod |b| with a's sign, then floored adjustment
  var rs = select(r, -r, a < 0.0);
  if (rs != 0.0) {
    if ((rs < 0.0) != (b < 0.0)) { rs = rs + b; }
  } else {
    rs = select(0.0, -0.0, b < 0.0);
  }
  return rs;
}
`;
