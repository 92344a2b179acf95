// kiln f32 GEMM kernel (AssemblyScript -> WebAssembly SIMD128).
//
// Everything works on raw byte addresses inside one (shared) linear memory that the
// host owns; there is no allocation and no runtime. Matrices are row-major f32.
//
//   packA : op(A) [m x k]  -> strips of MR rows, each strip laid out [k][MR]
//   packB : op(B) [k x n]  -> strips of NR columns, each strip laid out [k][NR]
//   compute: C[r0:r1, c0:c1] = packedA * packedB, cache blocked over K (KC), M (MC), N (NC)
//   batch : pack + compute for a run of batch entries (one thread's share)
//
// Microkernel: MR x NR = 2 x 16, i.e. 8 f32x4 accumulators + 4 B vectors + 1 A splat.
// V8's x64 backend has 15 allocatable xmm registers for wasm; larger tiles (4x8 with
// 2 splats in flight, 6x8, 3x16) measured slower because they spill.
// Accumulation is plain f32 (mul then add, no FMA: relaxed-simd is not on by default
// in Node 20), summing K in order within each KC block, blocks added in order.

// @ts-ignore: decorator
@inline const MR: i32 = 2;
// @ts-ignore: decorator
@inline const NR: i32 = 16;
// @ts-ignore: decorator
@inline const KC: i32 = 256;
// @ts-ignore: decorator
@inline const MC: i32 = 128;
// @ts-ignore: decorator
@inline const NC: i32 = 1024;
// Up to this many rows, the product reads B in place (smallM) instead of packing it.
// @ts-ignore: decorator
@inline const SMALL_M: i32 = 8;

/** The row count up to which `batch` (and the host's tile tasks) use `smallM`. */
export function smallLimit(): i32 {
  return SMALL_M;
}

/** Reads a u32 (used by the host-side scheduler to read the batch table). */
export function peek(ptr: usize): u32 {
  return load<u32>(ptr);
}

/**
 * C tile (2 x 16) at `c` (row stride `ldc` bytes) = (acc ? C : 0) + sum_p a[p][0..1] * b[p][0..15].
 * `pa` points at kc*2 floats, `pb` at kc*16 floats.
 */
function kernel(pa: usize, pb: usize, kc: i32, c: usize, ldc: usize, acc: bool): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c02 = f32x4.splat(0), c03 = f32x4.splat(0);
  let c10 = f32x4.splat(0), c11 = f32x4.splat(0), c12 = f32x4.splat(0), c13 = f32x4.splat(0);
  const end = pa + (<usize>kc << 3);
  while (pa < end) {
    const b0 = v128.load(pb), b1 = v128.load(pb, 16), b2 = v128.load(pb, 32), b3 = v128.load(pb, 48);
    let a = v128.load32_splat(pa);
    c00 = f32x4.add(c00, f32x4.mul(a, b0));
    c01 = f32x4.add(c01, f32x4.mul(a, b1));
    c02 = f32x4.add(c02, f32x4.mul(a, b2));
    c03 = f32x4.add(c03, f32x4.mul(a, b3));
    a = v128.load32_splat(pa, 4);
    c10 = f32x4.add(c10, f32x4.mul(a, b0));
    c11 = f32x4.add(c11, f32x4.mul(a, b1));
    c12 = f32x4.add(c12, f32x4.mul(a, b2));
    c13 = f32x4.add(c13, f32x4.mul(a, b3));
    pa += 8;
    pb += 64;
  }
  const d = c + ldc;
  if (acc) {
    c00 = f32x4.add(v128.load(c), c00);
    c01 = f32x4.add(v128.load(c, 16), c01);
    c02 = f32x4.add(v128.load(c, 32), c02);
    c03 = f32x4.add(v128.load(c, 48), c03);
    c10 = f32x4.add(v128.load(d), c10);
    c11 = f32x4.add(v128.load(d, 16), c11);
    c12 = f32x4.add(v128.load(d, 32), c12);
    c13 = f32x4.add(v128.load(d, 48), c13);
  }
  v128.store(c, c00);
  v128.store(c, c01, 16);
  v128.store(c, c02, 32);
  v128.store(c, c03, 48);
  v128.store(d, c10);
  v128.store(d, c11, 16);
  v128.store(d, c12, 32);
  v128.store(d, c13, 48);
}

/**
 * Packs strips [s0, s1) of op(A) (m x k). A is stored [m][k] (transA = 0) or [k][m]
 * (transA = 1). Strip s holds rows 2s, 2s+1 as [k][2]; a row past m is packed as zeros.
 */
export function packA(a: usize, transA: i32, m: i32, k: i32, dst: usize, s0: i32, s1: i32): void {
  const k4 = <usize>k << 2;
  if (transA != 0) {
    // Storage [k][m]: row p holds op(A)[:, p]. Walk 8 strips (16 columns, one 64-byte
    // line of each storage row) at a time so that each line read is used whole.
    const m4 = <usize>m << 2;
    const full = min(s1, m >> 1); // strips with both rows inside m
    let s = s0;
    for (; s + 8 <= full; s += 8) {
      let src = a + (<usize>s << 3);
      let d = dst + <usize>s * (k4 << 1);
      const ds = k4 << 1; // bytes per packed strip
      for (let p = 0; p < k; p++) {
        store<u64>(d, load<u64>(src));
        store<u64>(d + ds, load<u64>(src, 8));
        store<u64>(d + ds * 2, load<u64>(src, 16));
        store<u64>(d + ds * 3, load<u64>(src, 24));
        store<u64>(d + ds * 4, load<u64>(src, 32));
        store<u64>(d + ds * 5, load<u64>(src, 40));
        store<u64>(d + ds * 6, load<u64>(src, 48));
        store<u64>(d + ds * 7, load<u64>(src, 56));
        src += m4;
        d += 8;
      }
    }
    s0 = s;
  }
  for (let s = s0; s < s1; s++) {
    let d = dst + <usize>s * (k4 << 1);
    const i0 = s << 1;
    const two = i0 + 1 < m;
    if (transA == 0) {
      const r0 = a + <usize>i0 * k4;
      const r1 = r0 + k4;
      let p = 0;
      if (two) {
        for (; p + 4 <= k; p += 4) {
          const v0 = v128.load(r0 + (<usize>p << 2));
          const v1 = v128.load(r1 + (<usize>p << 2));
          v128.store(d, i32x4.shuffle(v0, v1, 0, 4, 1, 5));
          v128.store(d, i32x4.shuffle(v0, v1, 2, 6, 3, 7), 16);
          d += 32;
        }
        for (; p < k; p++) {
          store<f32>(d, load<f32>(r0 + (<usize>p << 2)));
          store<f32>(d, load<f32>(r1 + (<usize>p << 2)), 4);
          d += 8;
        }
      } else {
        for (; p < k; p++) {
          store<f32>(d, load<f32>(r0 + (<usize>p << 2)));
          store<f32>(d, 0, 4);
          d += 8;
        }
      }
    } else {
      const m4 = <usize>m << 2;
      let src = a + (<usize>i0 << 2);
      if (two) {
        for (let p = 0; p < k; p++) {
          store<u64>(d, load<u64>(src));
          src += m4;
          d += 8;
        }
      } else {
        for (let p = 0; p < k; p++) {
          store<f32>(d, load<f32>(src));
          store<f32>(d, 0, 4);
          src += m4;
          d += 8;
        }
      }
    }
  }
}

/**
 * Packs strips [t0, t1) of op(B) (k x n). B is stored [k][n] (transB = 0) or [n][k]
 * (transB = 1). Strip t holds columns 16t..16t+15 as [k][16]; columns past n are zeros.
 */
export function packB(b: usize, transB: i32, k: i32, n: i32, dst: usize, t0: i32, t1: i32): void {
  const k4 = <usize>k << 2;
  const n4 = <usize>n << 2;
  for (let t = t0; t < t1; t++) {
    const dstStrip = dst + <usize>t * (k4 << 4);
    const j0 = t << 4;
    const full = j0 + 16 <= n;
    if (transB == 0) {
      let src = b + (<usize>j0 << 2);
      let d = dstStrip;
      if (full) {
        for (let p = 0; p < k; p++) {
          v128.store(d, v128.load(src));
          v128.store(d, v128.load(src, 16), 16);
          v128.store(d, v128.load(src, 32), 32);
          v128.store(d, v128.load(src, 48), 48);
          src += n4;
          d += 64;
        }
      } else {
        const w = n - j0;
        for (let p = 0; p < k; p++) {
          v128.store(d, f32x4.splat(0));
          v128.store(d, f32x4.splat(0), 16);
          v128.store(d, f32x4.splat(0), 32);
          v128.store(d, f32x4.splat(0), 48);
          for (let jj = 0; jj < w; jj++) {
            store<f32>(d + (<usize>jj << 2), load<f32>(src + (<usize>jj << 2)));
          }
          src += n4;
          d += 64;
        }
      }
    } else {
      // B stored [n][k]: column j of op(B) is the contiguous row j of storage.
      const w = full ? 16 : n - j0;
      const groups = w >> 2; // full groups of 4 columns: transpose 4x4 blocks
      for (let g = 0; g < groups; g++) {
        const c0 = b + <usize>(j0 + (g << 2)) * k4;
        const c1 = c0 + k4, c2 = c1 + k4, c3 = c2 + k4;
        let d = dstStrip + (<usize>g << 4);
        let p = 0;
        for (; p + 4 <= k; p += 4) {
          const o = <usize>p << 2;
          const v0 = v128.load(c0 + o), v1 = v128.load(c1 + o), v2 = v128.load(c2 + o), v3 = v128.load(c3 + o);
          const u0 = i32x4.shuffle(v0, v1, 0, 4, 1, 5);
          const u1 = i32x4.shuffle(v2, v3, 0, 4, 1, 5);
          const u2 = i32x4.shuffle(v0, v1, 2, 6, 3, 7);
          const u3 = i32x4.shuffle(v2, v3, 2, 6, 3, 7);
          v128.store(d, i32x4.shuffle(u0, u1, 0, 1, 4, 5));
          v128.store(d, i32x4.shuffle(u0, u1, 2, 3, 6, 7), 64);
          v128.store(d, i32x4.shuffle(u2, u3, 0, 1, 4, 5), 128);
          v128.store(d, i32x4.shuffle(u2, u3, 2, 3, 6, 7), 192);
          d += 256;
        }
        for (; p < k; p++) {
          const o = <usize>p << 2;
          store<f32>(d, load<f32>(c0 + o));
          store<f32>(d, load<f32>(c1 + o), 4);
          store<f32>(d, load<f32>(c2 + o), 8);
          store<f32>(d, load<f32>(c3 + o), 12);
          d += 64;
        }
      }
      // leftover columns (fewer than 4) and zero padding
      for (let jj = groups << 2; jj < 16; jj++) {
        let d = dstStrip + (<usize>jj << 2);
        if (jj < w) {
          let src = b + <usize>(j0 + jj) * k4;
          for (let p = 0; p < k; p++) {
            store<f32>(d, load<f32>(src));
            src += 4;
            d += 64;
          }
        } else {
          for (let p = 0; p < k; p++) {
            store<f32>(d, 0);
            d += 64;
          }
        }
      }
    }
  }
}

/** Edge tile: goes through a 2 x 16 scratch tile so that only valid elements of C are touched. */
function edge(pa: usize, pb: usize, kc: i32, c: usize, ldc: usize, acc: bool, rows: i32, cols: i32, scratch: usize): void {
  if (acc) {
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < cols; j++) {
        store<f32>(scratch + (<usize>(r * NR + j) << 2), load<f32>(c + <usize>r * ldc + (<usize>j << 2)));
      }
    }
  }
  kernel(pa, pb, kc, scratch, NR << 2, acc);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) {
      store<f32>(c + <usize>r * ldc + (<usize>j << 2), load<f32>(scratch + (<usize>(r * NR + j) << 2)));
    }
  }
}

/**
 * C[r0:r1, c0:c1] = op(A) op(B) from packed panels (full-K strips). r0 must be a multiple
 * of MR and c0 of NR. C is [m][n] at `c`. k must be >= 1.
 */
export function compute(
  pa: usize, pb: usize, c: usize, m: i32, n: i32, k: i32,
  r0: i32, r1: i32, c0: i32, c1: i32, scratch: usize,
): void {
  const ldc = <usize>n << 2;
  const aStrip = <usize>k << 3; // bytes per packed A strip
  const bStrip = <usize>k << 6; // bytes per packed B strip
  for (let p0 = 0; p0 < k; p0 += KC) {
    const kc = min(KC, k - p0);
    const acc = p0 > 0;
    for (let jc = c0; jc < c1; jc += NC) {
      const jcEnd = min(jc + NC, c1);
      for (let ic = r0; ic < r1; ic += MC) {
        const icEnd = min(ic + MC, r1);
        for (let j = jc; j < jcEnd; j += NR) {
          const bp = pb + <usize>(j >> 4) * bStrip + (<usize>p0 << 6);
          const cols = min(NR, n - j);
          for (let i = ic; i < icEnd; i += MR) {
            const ap = pa + <usize>(i >> 1) * aStrip + (<usize>p0 << 3);
            const cp = c + <usize>i * ldc + (<usize>j << 2);
            const rows = min(MR, m - i);
            if (rows == MR && cols == NR) {
              kernel(ap, bp, kc, cp, ldc, acc);
            } else {
              edge(ap, bp, kc, cp, ldc, acc, rows, cols, scratch);
            }
          }
        }
      }
    }
  }
}

/**
 * Few rows (m <= SMALL_M, GEMV-like): packing B would cost as much as the product, so B is
 * read once, in place. Computes columns [c0, c1) of C [m][n] (c0 a multiple of 4).
 * A must be row-major [m][k] here (the caller transposes a transA operand into scratch).
 * transB = 0: C rows are built as running sums over p of a[i][p] * B[p][:], in order of p,
 * exactly like the main kernel. transB = 1: each C element is a dot product of two
 * contiguous rows, summed in 8 lanes then pairwise; still f32 throughout.
 */
export function smallM(a: usize, m: i32, k: i32, b: usize, transB: i32, n: i32, c: usize, c0: i32, c1: i32): void {
  const k4 = <usize>k << 2;
  const n4 = <usize>n << 2;
  if (transB == 0) {
    // column chunks of 256 floats: the m C row segments stay in L1 while B streams by
    for (let j0 = c0; j0 < c1; j0 += 256) {
      const j1 = min(j0 + 256, c1);
      const jv = j0 + ((j1 - j0) & ~3); // end of whole vectors
      for (let i = 0; i < m; i++) {
        const cr = c + <usize>i * n4;
        for (let j = j0; j < j1; j++) store<f32>(cr + (<usize>j << 2), 0);
      }
      let p = 0;
      for (; p + 4 <= k; p += 4) {
        const b0 = b + <usize>p * n4;
        const b1 = b0 + n4, b2 = b1 + n4, b3 = b2 + n4;
        for (let i = 0; i < m; i++) {
          const ar = a + <usize>i * k4 + (<usize>p << 2);
          const a0 = v128.load32_splat(ar), a1 = v128.load32_splat(ar, 4), a2 = v128.load32_splat(ar, 8), a3 = v128.load32_splat(ar, 12);
          const cr = c + <usize>i * n4;
          for (let j = j0; j < jv; j += 4) {
            const o = <usize>j << 2;
            let v = v128.load(cr + o);
            v = f32x4.add(v, f32x4.mul(a0, v128.load(b0 + o)));
            v = f32x4.add(v, f32x4.mul(a1, v128.load(b1 + o)));
            v = f32x4.add(v, f32x4.mul(a2, v128.load(b2 + o)));
            v = f32x4.add(v, f32x4.mul(a3, v128.load(b3 + o)));
            v128.store(cr + o, v);
          }
          const s0 = load<f32>(ar), s1 = load<f32>(ar, 4), s2 = load<f32>(ar, 8), s3 = load<f32>(ar, 12);
          for (let j = jv; j < j1; j++) {
            const o = <usize>j << 2;
            let v = load<f32>(cr + o);
            v = v + s0 * load<f32>(b0 + o);
            v = v + s1 * load<f32>(b1 + o);
            v = v + s2 * load<f32>(b2 + o);
            v = v + s3 * load<f32>(b3 + o);
            store<f32>(cr + o, v);
          }
        }
      }
      for (; p < k; p++) {
        const bp = b + <usize>p * n4;
        for (let i = 0; i < m; i++) {
          const ar = a + <usize>i * k4 + (<usize>p << 2);
          const av = v128.load32_splat(ar);
          const s = load<f32>(ar);
          const cr = c + <usize>i * n4;
          for (let j = j0; j < jv; j += 4) {
            const o = <usize>j << 2;
            v128.store(cr + o, f32x4.add(v128.load(cr + o), f32x4.mul(av, v128.load(bp + o))));
          }
          for (let j = jv; j < j1; j++) {
            const o = <usize>j << 2;
            store<f32>(cr + o, load<f32>(cr + o) + s * load<f32>(bp + o));
          }
        }
      }
    }
  } else {
    const kv = k & ~7;
    for (let j = c0; j < c1; j++) {
      const br = b + <usize>j * k4;
      for (let i = 0; i < m; i++) {
        const ar = a + <usize>i * k4;
        let s0 = f32x4.splat(0), s1 = f32x4.splat(0);
        for (let p = 0; p < kv; p += 8) {
          const o = <usize>p << 2;
          s0 = f32x4.add(s0, f32x4.mul(v128.load(ar + o), v128.load(br + o)));
          s1 = f32x4.add(s1, f32x4.mul(v128.load(ar + o, 16), v128.load(br + o, 16)));
        }
        s0 = f32x4.add(s0, s1);
        let s = (f32x4.extract_lane(s0, 0) + f32x4.extract_lane(s0, 1)) + (f32x4.extract_lane(s0, 2) + f32x4.extract_lane(s0, 3));
        for (let p = kv; p < k; p++) s += load<f32>(ar + (<usize>p << 2)) * load<f32>(br + (<usize>p << 2));
        store<f32>(c + <usize>i * n4 + (<usize>j << 2), s);
      }
    }
  }
}

/** Copies op(A) of a transA operand (stored [k][m]) into dst as [m][k]. */
export function transposeA(a: usize, m: i32, k: i32, dst: usize): void {
  const m4 = <usize>m << 2;
  const k4 = <usize>k << 2;
  for (let p = 0; p < k; p++) {
    const src = a + <usize>p * m4;
    for (let i = 0; i < m; i++) store<f32>(dst + <usize>i * k4 + (<usize>p << 2), load<f32>(src + (<usize>i << 2)));
  }
}

/**
 * Full GEMMs for batch entries [e0, e1). `table` holds 3 u32 byte addresses per entry
 * (A, B, C). `pa`/`pb` are this thread's packing buffers; an operand whose address
 * equals the previous entry's (broadcast) is not packed again.
 */
export function batch(
  table: usize, e0: i32, e1: i32, m: i32, n: i32, k: i32, transA: i32, transB: i32,
  pa: usize, pb: usize, scratch: usize,
): void {
  const ms = (m + MR - 1) / MR;
  const ns = (n + NR - 1) / NR;
  let lastA: usize = 0, lastB: usize = 0;
  for (let e = e0; e < e1; e++) {
    const t = table + <usize>e * 12;
    const ap = <usize>load<u32>(t), bp = <usize>load<u32>(t, 4), cp = <usize>load<u32>(t, 8);
    if (m <= SMALL_M) {
      if (transA != 0 && ap != lastA) transposeA(ap, m, k, pa);
      lastA = ap;
      smallM(transA != 0 ? pa : ap, m, k, bp, transB, n, cp, 0, n);
      continue;
    }
    if (ap != lastA) {
      packA(ap, transA, m, k, pa, 0, ms);
      lastA = ap;
    }
    if (bp != lastB) {
      packB(bp, transB, k, n, pb, 0, ns);
      lastB = bp;
    }
    compute(pa, pb, cp, m, n, k, 0, m, 0, n, scratch);
  }
}
