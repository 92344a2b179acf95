// Where a small op's time goes on a real GPU (run from the repo root after building the backend:
// node bench/probes/webgpu-dispatch-floor.mjs): raw Dawn dependent dispatches (the submit + GPU
// floor), raw independent ones, and kiln's per-op chain with its main-thread issue time.
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
const req = createRequire(new URL('../../packages/backend-webgpu/package.json', import.meta.url));
const dawn = await import(pathToFileURL(req.resolve('webgpu')).href);
Object.assign(globalThis, dawn.globals);
const gpu = dawn.create([]);
const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
const device = await adapter.requestDevice();
const code = `@group(0) @binding(0) var<storage, read_write> o: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) { o[g.x] = o[g.x] + 1.0; }`;
const pipe = device.createComputePipeline({ layout: 'auto', compute: { module: device.createShaderModule({ code }), entryPoint: 'main' } });
const bufs = Array.from({ length: 64 }, () => device.createBuffer({ size: 4096, usage: GPUBufferUsage.STORAGE }));
const bgs = bufs.map((b) => device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: b } }] }));
async function run(n, pick, wgs = 1) {
  const e = device.createCommandEncoder();
  const p = e.beginComputePass();
  p.setPipeline(pipe);
  for (let i = 0; i < n; i++) { p.setBindGroup(0, bgs[pick(i)]); p.dispatchWorkgroups(wgs); }
  p.end();
  const t0 = performance.now();
  device.queue.submit([e.finish()]);
  await device.queue.onSubmittedWorkDone();
  return performance.now() - t0;
}
for (const [label, pick] of [['same buffer (barrier each)', () => 0], ['64 buffers round robin', (i) => i % 64]]) {
  for (const wgs of [1, 1024]) {
    await run(100, pick, wgs);
    const t = [];
    for (let r = 0; r < 5; r++) { const a = await run(100, pick, wgs); const b = await run(2100, pick, wgs); t.push((b - a) / 2000); }
    t.sort((x, y) => x - y);
    console.log(`raw dawn, ${label}, ${wgs} workgroups: ${(t[2] * 1000).toFixed(2)} us per dispatch (submit + GPU)`);
  }
}
device.destroy();
// kiln: 8x8x8 products chained, issue time on the main thread and the whole chain
process.env.EGL_PLATFORM ??= 'surfaceless';
const { WebGpuBackend } = await import('@kiln/backend-webgpu');
const b = await WebGpuBackend.create();
const v = (dataId, shape) => ({ dataId, shape, dtype: 'f32' });
for (const [m, n, k] of [[8, 8, 8], [256, 256, 256], [512, 512, 512]]) {
  const a = b.write(new Float32Array(m * k).fill(1), 'f32', [m, k]);
  const w = b.write(new Float32Array(k * n).fill(1), 'f32', [k, n]);
  const chain = async (c) => { const ids = []; const t0 = performance.now(); for (let i = 0; i < c; i++) ids.push(b.matmul(v(a, [m, k]), v(w, [k, n]), { transposeA: false, transposeB: false }, [m, n])); const t1 = performance.now(); await b.read(v(ids[c - 1], [1])); const t2 = performance.now(); for (const id of ids) b.release(id); return [t1 - t0, t2 - t0]; };
  await chain(10); await chain(500);
  const issue = [], total = [];
  for (let r = 0; r < 5; r++) { const [i1, t1] = await chain(10); const [i2, t2] = await chain(510); issue.push((i2 - i1) / 500); total.push((t2 - t1) / 500); }
  issue.sort((x, y) => x - y); total.sort((x, y) => x - y);
  console.log(`kiln ${m}x${n}x${k}: main-thread issue ${(issue[2] * 1000).toFixed(1)} us/op, chain ${(total[2] * 1000).toFixed(1)} us/op`);
}
b.dispose();
process.exit(0);
