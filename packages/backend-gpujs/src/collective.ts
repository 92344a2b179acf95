/**
 * Collectives between gpu.js backends of one process: each rank is its own `GpujsBackend`
 * (its own engine: a headless-gl context or a headless Chromium page, so its own textures). WebGL contexts
 * share nothing, so data moves by texture readback and upload through the host: this is
 * core's host-staged group (`createHostStagedGroupWith`) with a `GpujsBackend` per rank.
 * See docs/backend-gpujs.md#collective.
 */
import { HostStagedCollective, createHostStagedGroupWith, type HostStagedGroupWithOptions } from '@kiln/core';
import { GpujsBackend, type GpujsBackendOptions } from './gpujs-backend.js';

/**
 * `backends` (one per rank, distinct; default: a new `GpujsBackend` per rank, created with the other
 * options; the group never disposes them) and `timeoutMs` (default of every call, 60000).
 */
export interface GpujsGroupOptions extends GpujsBackendOptions, Omit<HostStagedGroupWithOptions, 'caller'> {}

/** The Collective of one rank of a gpu.js group (core's `HostStagedCollective`). */
export const GpujsCollective = HostStagedCollective;
export type GpujsCollective = HostStagedCollective;

/**
 * `worldSize` ranks in this process, one gpu.js backend each: returns one Collective per rank
 * (index = rank). Without `options.backends` it starts a `GpujsBackend` (an engine: headless-gl
 * or a headless Chromium page) per rank; dispose them (`collective.backend.dispose()`) when done. Throws a
 * BackendError with the reason when WebGL2 is unavailable.
 */
export function createGpujsGroup(worldSize: number, options: GpujsGroupOptions = {}): Promise<GpujsCollective[]> {
  const { backends: _b, timeoutMs: _t, ...backendOptions } = options;
  return createHostStagedGroupWith(worldSize, () => GpujsBackend.create(backendOptions), { ...options, caller: 'createGpujsGroup' });
}
