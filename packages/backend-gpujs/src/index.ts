/**
 * @kiln/backend-gpujs: kiln's gpu.js (WebGL) backend. Importing the package registers the
 * 'gpujs' backend factory (priority 200). In Node it runs gpu.js on one of two engines
 * (option `engine`, $KILN_GPUJS_ENGINE): 'headless-gl' (gpu.js's Node build on the optional
 * `gl` package, WebGL 1.0 through GLX: Xvfb + Mesa, or the GPU's driver) or 'chromium'
 * (gpu.js inside a headless Chromium driven by playwright-core, WebGL2 on SwiftShader by
 * default); 'auto' takes headless-gl when it can create a context, else Chromium. In a browser
 * page or worker it runs on the 'page' engine: gpu.js's browser build in that page (global
 * `GPU` from a script tag, else `import('gpu.js')`, which bundlers resolve to its browser
 * build), on WebGL2 (WebGL 1.0 fallback), called synchronously (`readSync` exists). Where no
 * engine can start the import still succeeds; creating the backend then throws a
 * BackendError saying why. gpu.js's CPU mode never counts.
 */
import type { BackendFactory } from '@kiln/core';
import { registerBackend } from '@kiln/core';
import { GpujsBackend, type GpujsBackendOptions } from './gpujs-backend.js';

export { GpujsBackend, GpujsStorage, HOST_FALLBACKS, MAX_ELEMENTS, type GpujsBackendOptions, type GpujsEngineKind } from './gpujs-backend.js';
export { findChromium, CHROMIUM_PATHS, type BrowserOptions } from './browser.js';
export { createEngine, installEngine, type EngineApi, type EngineCodec, type EngineCommand, type EngineCoreOptions, type EngineInfo, type EngineStats } from './engine.js';
export { openEngine, openHeadlessGlEngine, type EngineOptions, type HeadlessGlOptions } from './node-engine.js';
export { openPageEngine, inBrowser, type PageEngine, type PageEngineOptions } from './page-engine.js';
export { GEMM_VARIANTS, type GemmVariant } from './gemm.js';
export { GpujsCollective, createGpujsGroup, type GpujsGroupOptions } from './collective.js';

/** Creates a gpu.js backend (throws BackendError with the reason when no engine can start). */
export function createGpujsBackend(options: GpujsBackendOptions = {}): Promise<GpujsBackend> {
  return GpujsBackend.create(options);
}

export const gpujsBackendFactory: BackendFactory = {
  name: 'gpujs',
  priority: 200,
  create: () => GpujsBackend.create(),
};

registerBackend(gpujsBackendFactory);

import { HELPERS, MATMUL, finalize, fp8GemmKernel } from './kernels.js';
/** The gpu.js sources of the GEMM kernels (for benchmarks that run them in their own page). */
export function kernelSources(): { matmul: string; fp8: string; helpers: readonly string[] } {
  return { matmul: finalize(MATMUL), fp8: finalize(fp8GemmKernel('e4m3', 'e4m3')), helpers: HELPERS };
}
