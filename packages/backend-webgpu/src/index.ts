/**
 * @kiln/backend-webgpu: kiln's WebGPU backend. Importing the package registers the 'webgpu'
 * backend factory (priority 300). It uses `navigator.gpu` in browsers and Dawn (the `webgpu`
 * npm package, loaded lazily) in Node. Where there is no adapter the import still succeeds;
 * creating the backend then throws a BackendError saying why. On a software adapter
 * (llvmpipe, SwiftShader, lavapipe) the backend works but sets `notPreferred`, so
 * `bestAvailableBackend()` picks the CPU backend instead; `setBackend('webgpu')` still uses it.
 */
import type { BackendFactory } from '@kiln/core';
import { registerBackend } from '@kiln/core';
import { WebGpuBackend, type WebGpuBackendOptions } from './webgpu-backend.js';

export { WebGpuBackend, WebGpuStorage, type WebGpuBackendOptions, type RowKernels } from './webgpu-backend.js';
export { acquireDevice, parseDawnFlags, limitsShortfall, softwareAdapterName, REQUIRED_LIMITS, type AcquiredDevice, type AcquireOptions, type KernelLimits } from './gpu.js';
export { WebGpuCollective, createWebGpuGroup, type WebGpuGroupOptions } from './collective/index.js';
export { elementBytes, perWord, wordsFor, bufferBytesFor, packToWords, unpackWords, replicateCode, sizeClass } from './packing.js';

/** Creates a WebGPU backend (throws BackendError with the reason when no adapter is available). */
export function createWebGpuBackend(options: WebGpuBackendOptions = {}): Promise<WebGpuBackend> {
  return WebGpuBackend.create(options);
}

export const webgpuBackendFactory: BackendFactory = {
  name: 'webgpu',
  priority: 300,
  create: () => WebGpuBackend.create(),
};

registerBackend(webgpuBackendFactory);
