/**
 * @kiln/backend-gpujs: kiln's gpu.js (WebGL2) backend. Importing the package registers the
 * 'gpujs' backend factory (priority 200). In Node it runs gpu.js inside a headless Chromium
 * (Debian's `chromium`, or $KILN_CHROMIUM) driven by playwright-core, WebGL2 on SwiftShader
 * by default. Where no browser or no WebGL2 context is available the import still succeeds;
 * creating the backend then throws a BackendError saying why. gpu.js's CPU mode never counts.
 */
import type { BackendFactory } from '@kiln/core';
import { registerBackend } from '@kiln/core';
import { GpujsBackend, type GpujsBackendOptions } from './gpujs-backend.js';

export { GpujsBackend, GpujsStorage, HOST_FALLBACKS, MAX_ELEMENTS, type GpujsBackendOptions } from './gpujs-backend.js';
export { findChromium, CHROMIUM_PATHS, type BrowserOptions } from './browser.js';
export { installEngine, type EngineApi, type EngineCommand, type EngineInfo } from './engine.js';
export { GpujsCollective, createGpujsGroup, type GpujsGroupOptions } from './collective.js';

/** Creates a gpu.js backend (throws BackendError with the reason when WebGL2 is unavailable). */
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
