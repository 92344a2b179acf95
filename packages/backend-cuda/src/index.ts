/**
 * @kiln/backend-cuda: kiln's NVIDIA GPU backend. Importing the package registers the 'cuda'
 * backend factory (priority 400, above every other backend). On a machine without the addon,
 * a driver or a GPU the import still succeeds; creating the backend then throws a
 * BackendError whose message says why, and `bestAvailableBackend()` moves on.
 */
import type { BackendFactory } from '@kiln/core';
import { BackendError, registerBackend } from '@kiln/core';
import { cudaUnavailableReason } from './addon.js';
import { CudaBackend, type CudaBackendOptions } from './cuda-backend.js';

export { CudaBackend, type CudaBackendOptions, type Fp8GemmPath } from './cuda-backend.js';
export { CudaStorage } from './storage.js';
export { cudaUnavailableReason, loadAddon, type CudaAddon, type Capabilities, type DeviceProps } from './addon.js';

/** Creates a CUDA backend instance (throws BackendError with the reason when unavailable). */
export function createCudaBackend(options: CudaBackendOptions = {}): CudaBackend {
  return new CudaBackend(options);
}

export const cudaBackendFactory: BackendFactory = {
  name: 'cuda',
  priority: 400,
  create: async () => {
    const why = cudaUnavailableReason();
    if (why) throw new BackendError('cuda', why);
    return new CudaBackend();
  },
};

registerBackend(cudaBackendFactory);
export * from './collective/index.js';
