// Shared by the WebGPU benchmarks (bench/webgpu-*.bench.mjs): tfjs-backend-webgpu on the same
// Dawn as kiln's backend (the peer), timing kiln and the peer in alternation, seeded inputs.
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);

/**
 * kiln's WebGPU backend (`WebGpuBackend` from @kiln/backend-webgpu), or exit(0) saying why when
 * there is no adapter here (no GPU and no Mesa/EGL): nothing to compare, nothing written.
 */
export async function kilnWebGpuOrExit(WebGpuBackend, bench) {
  try {
    return await WebGpuBackend.create();
  } catch (e) {
    console.log(`${bench}: skipped: ${e.message}`);
    process.exit(0);
  }
}

/**
 * tfjs-core with tfjs-backend-webgpu initialised on Dawn (the `webgpu` package kiln's backend
 * depends on), with the same Dawn flags and feature level as `kiln` (a WebGpuBackend).
 * Returns { tf, version }. A GPU error on tfjs's device (an invalid pipeline, out of memory)
 * ends the run with exit code 1: tfjs goes on without the failed work, so its timings would be
 * wrong, not slow (an invalid tf.addN once made a tfjs chain look faster than the GPU's peak).
 */
export async function tfjsOnDawn(kiln, parseDawnFlags) {
  const kilnReq = createRequire(require.resolve('@kiln/backend-webgpu/package.json'));
  const dawn = await import(pathToFileURL(kilnReq.resolve('webgpu')).href);
  Object.assign(globalThis, dawn.globals);
  // tfjs gets the same Dawn flags as kiln (e.g. toggles such as disable_robustness apply to both)
  const flags = parseDawnFlags(process.env.KILN_WEBGPU_DAWN_FLAGS ?? '');
  const compat = kiln.device.details.featureLevel === 'compatibility';
  const gpu = dawn.create(flags.length ? flags : compat ? ['backend=opengl'] : []);
  const requestAdapter = gpu.requestAdapter.bind(gpu);
  gpu.requestAdapter = (o = {}) => requestAdapter({ ...o, ...(compat ? { featureLevel: 'compatibility' } : {}) });
  if (!globalThis.navigator) globalThis.navigator = {};
  Object.defineProperty(globalThis.navigator, 'gpu', { value: gpu, configurable: true });
  const tf = await import('@tensorflow/tfjs-core');
  await import('@tensorflow/tfjs-backend-webgpu');
  if (!(await tf.setBackend('webgpu'))) throw new Error('tfjs-backend-webgpu did not initialise');
  tf.backend().device.addEventListener('uncapturederror', (e) => {
    console.error(`tfjs-backend-webgpu raised a GPU error, so its timings are not valid; no results written:\n${e.error?.message ?? e}`);
    process.exit(1);
  });
  return { tf, version: require('@tensorflow/tfjs-backend-webgpu/package.json').version };
}

/**
 * kiln (fa) and the peer (fb) timed in alternation, one call each per round, so that a change of
 * machine load during the run is shared fairly; medians after a warm-up call of each.
 */
export async function measurePair(fa, fb, { minReps = 3, maxReps = 9, budgetMs = 4000 } = {}) {
  await fa(); // warm-up: pipelines compiled, pools filled
  await fb();
  const ta = [];
  const tb = [];
  const start = performance.now();
  while (ta.length < maxReps && (ta.length < minReps || performance.now() - start < budgetMs)) {
    let t = performance.now();
    await fa();
    ta.push(performance.now() - t);
    t = performance.now();
    await fb();
    tb.push(performance.now() - t);
  }
  const med = (xs) => {
    xs.sort((x, y) => x - y);
    const mid = xs.length >> 1;
    return xs.length % 2 ? xs[mid] : (xs[mid - 1] + xs[mid]) / 2;
  };
  return [{ medianMs: med(ta), reps: ta.length }, { medianMs: med(tb), reps: tb.length }];
}

/** n seeded uniform values in [-1, 1) (an LCG: the same inputs for both libraries, every run). */
export function randomF32(n, seed) {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32) * 2 - 1;
  }
  return out;
}
