/**
 * @kiln/backend-cpu: kiln's reference CPU backend. Importing the package registers the
 * 'cpu' backend factory with @kiln/core (priority 100, the fallback below every GPU backend).
 */
import type { BackendFactory } from '@kiln/core';
import { registerBackend } from '@kiln/core';
import { CpuBackend, type CpuBackendOptions } from './cpu-backend.js';

export { CpuBackend, type CpuBackendOptions } from './cpu-backend.js';
export { CpuData } from './storage.js';

/** Creates a CPU backend instance (without making it current; see `useBackend`). */
export function createCpuBackend(options: CpuBackendOptions = {}): CpuBackend {
  return new CpuBackend(options);
}

export const cpuBackendFactory: BackendFactory = {
  name: 'cpu',
  priority: 100,
  create: async () => new CpuBackend(),
};

registerBackend(cpuBackendFactory);

// ---- re-exports owned by other engineers (added by the lead once those modules exist) ----
export * from './gemm/public.js';
export * from './collective/index.js';
