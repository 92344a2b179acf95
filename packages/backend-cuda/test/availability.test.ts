import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BackendError, probeBackends, registeredBackends } from '@kiln/core';
import { CudaBackend, cudaBackendFactory, cudaUnavailableReason, loadAddon } from '@kiln/backend-cuda';
import { describe, expect, it } from 'vitest';

const pkg = join(__dirname, '..');
const hasGpu = cudaUnavailableReason() === undefined;

describe('@kiln/backend-cuda without a GPU', () => {
  it('registers the cuda factory at priority 400 on import', () => {
    expect(registeredBackends()).toContain('cuda');
    expect(cudaBackendFactory.priority).toBe(400);
  });

  it('compiled the addon when CI requires it (KILN_CUDA_REQUIRE_BUILD=1), and it loads', () => {
    if (process.env.KILN_CUDA_REQUIRE_BUILD !== '1') return;
    expect(existsSync(join(pkg, 'build', 'Release', 'kiln_cuda.node'))).toBe(true);
    const load = loadAddon();
    expect(load.ok ? 'loaded' : load.reason).toBe('loaded');
  });

  it.skipIf(hasGpu)('reports itself unavailable with the reason, and creating it throws a BackendError saying so', async () => {
    const why = cudaUnavailableReason();
    expect(why).toMatch(/driver|not built|device|load/i);
    expect(() => new CudaBackend()).toThrow(BackendError);
    await expect(cudaBackendFactory.create()).rejects.toThrow(why!);
    const listed = (await probeBackends()).find((b) => b.name === 'cuda');
    expect(listed?.available).toBe(false);
    expect(listed?.reason).toContain(why!.slice(0, 20));
  });

  it.skipIf(hasGpu)('the addon probes without a driver instead of crashing the process', () => {
    const load = loadAddon();
    if (!load.ok) return;
    const p = load.addon.probe();
    expect(p.ok).toBe(false);
    expect(p.deviceCount).toBe(0);
    expect(p.runtimeVersion).toBeGreaterThanOrEqual(12000);
    expect(() => load.addon.alloc(16)).toThrow(/not initialised/);
  });
});
