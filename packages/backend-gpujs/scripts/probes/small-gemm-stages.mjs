// Probe: where a small GEMM + read goes on the headless-gl engine vs tfjs-webgl: end to end, issue + finish, GPU time
// per GEMM in a chain of 20, read alone; flat 1x4 vs 4x4 blocks. R (reps, default 41); sizes as arguments.
//   xvfb-run -a node scripts/probes/small-gemm-stages.mjs 128 256 512
import { headlessGlBackendOrExit, tfjsWebglOnHeadlessGl } from '../headless-gl-backend.mjs';
const R = Number(process.env.R ?? 41);
const med = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const b = await headlessGlBackendOrExit();
const sp = b.syncPage;
const fin = () => sp.finish();
const { tf, gl: tfGl } = await tfjsWebglOnHeadlessGl();
const T = (f) => { const ts = []; for (let r = 0; r <= R; r++) { const t0 = performance.now(); f(); if (r) ts.push(performance.now() - t0); } return med(ts); };
const out = [];
const say = (s) => { console.log(s); out.push(s); };
for (const n of (process.argv.slice(2).map(Number).filter(Boolean).length ? process.argv.slice(2).map(Number) : [16, 128, 256, 512])) {
  const A = Float32Array.from({ length: n * n }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
  const B = Float32Array.from({ length: n * n }, (_, i) => ((i * 104729) % 1000) / 1000 - 0.5);
  const va = { dataId: b.write(A, 'f32', [n, n]), shape: [n, n], dtype: 'f32' };
  const vb = { dataId: b.write(B, 'f32', [n, n]), shape: [n, n], dtype: 'f32' };
  const xa = tf.tensor2d(A, [n, n]);
  const xb = tf.tensor2d(B, [n, n]);
  for (const [label, setup] of [['flat', () => { b.flatGemmMax = 1 << 30; }], ['4x4', () => { b.flatGemmMax = 0; }]]) {
    setup();
    const mm = () => b.matmul(va, vb, { transposeA: false, transposeB: false }, [n, n]);
    const v = (c) => ({ dataId: c, shape: [n, n], dtype: 'f32' });
    const e2e = T(() => { const c = mm(); b.readSync(v(c)); b.release(c); });
    const issue = T(() => { const c = mm(); b.flush(); b.release(c); fin(); });
    const issueNoFin = (() => { const ts = []; for (let r = 0; r <= R; r++) { const t0 = performance.now(); const c = mm(); b.flush(); const t1 = performance.now(); fin(); b.release(c); if (r) ts.push(t1 - t0); } return med(ts); })();
    const chain = T(() => { const cs = []; for (let i = 0; i < 20; i++) cs.push(mm()); b.flush(); fin(); for (const c of cs) b.release(c); }) / 20;
    const readOnly = (() => { const ts = []; for (let r = 0; r <= R; r++) { const c = mm(); b.flush(); fin(); const t0 = performance.now(); b.readSync(v(c)); if (r) ts.push(performance.now() - t0); b.release(c); } return med(ts); })();
    say(`kiln ${label} ${n}: e2e ${e2e.toFixed(3)} | issue+finish ${issue.toFixed(3)} (JS issue ${issueNoFin.toFixed(3)}) | chain/GEMM ${chain.toFixed(3)} | read only ${readOnly.toFixed(3)}`);
  }
  b.flatGemmMax = 256 * 256;
  const te2e = T(() => { const c = tf.matMul(xa, xb); c.dataSync(); c.dispose(); });
  const tissue = T(() => { const c = tf.matMul(xa, xb); tfGl.finish(); c.dispose(); });
  const tchain = T(() => { const cs = []; for (let i = 0; i < 20; i++) cs.push(tf.matMul(xa, xb)); tfGl.finish(); for (const c of cs) c.dispose(); }) / 20;
  const tread = (() => { const ts = []; for (let r = 0; r <= R; r++) { const c = tf.matMul(xa, xb); tfGl.finish(); const t0 = performance.now(); c.dataSync(); if (r) ts.push(performance.now() - t0); c.dispose(); } return med(ts); })();
  say(`tfjs ${n}: e2e ${te2e.toFixed(3)} | issue+finish ${tissue.toFixed(3)} | chain/GEMM ${tchain.toFixed(3)} | read only ${tread.toFixed(3)}`);
  // an empty GL roundtrip: finish alone
  say(`finish alone ${T(() => fin()).toFixed(3)}`);
  b.release(va.dataId); b.release(vb.dataId); xa.dispose(); xb.dispose();
}
