#!/usr/bin/env node
// Per-call cost of small gpu.js kernels on the headless-gl engine (the engine's own commands,
// no host-side planning): a chain y = x + 1 (free the previous y: the common "temporaries die
// young" case), the same with every result kept alive until the end, and alternating sizes
// (one kernel, two output sizes: setOutput on every call before the texture pool).
//   xvfb-run -a node scripts/profile-kernel-calls.mjs [sizes...]   (default 16 4096 65536)
//   PROFILE_REPS (default 400); add --cpu-prof to node for a profile (scripts/summarize-cpuprofile.mjs)
import { headlessGlBackendOrExit } from './headless-gl-backend.mjs';

const sizes = process.argv.slice(2).map(Number).filter(Boolean);
if (sizes.length === 0) sizes.push(16, 4096, 65536);
const R = Number(process.env.PROFILE_REPS ?? 400);
const b = await headlessGlBackendOrExit();
const sp = b.syncPage;
console.log(`gpujs: ${b.device.name}`);
const SRC = 'function (a, m) { return a[this.thread.x] + 1.0; }';
let next = 1 << 20;
const up = (n) => {
  const id = next++;
  sp.exec([{ t: 'up', id, n, f32: Float32Array.from({ length: n }, (_, i) => i % 13) }]);
  return id;
};
const k = (x, n) => {
  const id = next++;
  sp.exec([{ t: 'k', id, n, src: SRC, ins: [x], meta: [] }]);
  return id;
};
const time = (label, body) => {
  body(20);
  sp.finish();
  const t0 = performance.now();
  body(R);
  sp.finish();
  console.log(`  ${label}: ${((performance.now() - t0) / R).toFixed(4)} ms/call`);
};
for (const n of sizes) {
  console.log(`n = ${n}`);
  const x = up(n);
  time('chain, previous result freed', (reps) => {
    let y = k(x, n);
    for (let i = 1; i < reps; i++) {
      const z = k(y, n);
      sp.exec([{ t: 'free', id: y }]);
      y = z;
    }
    sp.exec([{ t: 'free', id: y }]);
  });
  time('all results alive until the end', (reps) => {
    const ys = [];
    for (let i = 0; i < reps; i++) ys.push(k(x, n));
    sp.exec(ys.map((id) => ({ t: 'free', id })));
  });
  const x2 = up(n + 4);
  time('alternating two sizes, freed', (reps) => {
    for (let i = 0; i < reps; i++) {
      const y = i & 1 ? k(x2, n + 4) : k(x, n);
      sp.exec([{ t: 'free', id: y }]);
    }
  });
  sp.exec([{ t: 'free', id: x }, { t: 'free', id: x2 }]);
  if (sp.stats) console.log(`  engine stats: ${JSON.stringify(sp.stats())}`);
}
b.dispose();
