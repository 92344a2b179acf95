/**
 * Collectives between WebGPU devices of one process. Each rank is a backend instance (in Node:
 * its own Dawn GPUDevice in its own worker thread). WebGPU cannot copy between GPUDevices, so
 * data moves by readback and upload through the host: this is core's host-staged group
 * (`createHostStagedGroupWith`) with a `WebGpuBackend` per rank. See
 * docs/backend-webgpu.md#collectives.
 */
import { HostStagedCollective, createHostStagedGroupWith, type HostStagedGroupWithOptions } from '@kiln/core';
import { WebGpuBackend, type WebGpuBackendOptions } from '../webgpu-backend.js';

/**
 * `backends` (one per rank, distinct; default: a new `WebGpuBackend` per rank, created with the other
 * options; the group never disposes them) and `timeoutMs` (default of every call, 60000).
 */
export interface WebGpuGroupOptions extends WebGpuBackendOptions, Omit<HostStagedGroupWithOptions, 'caller'> {}

/** The Collective of one rank of a WebGPU group (core's `HostStagedCollective`). */
export const WebGpuCollective = HostStagedCollective;
export type WebGpuCollective = HostStagedCollective;

/**
 * A group of `worldSize` ranks in this process, one per backend: returns one Collective per
 * rank (index = rank). Without `options.backends` it creates a `WebGpuBackend` (its own
 * GPUDevice) per rank; dispose them (`collective.backend.dispose()`) when done. Throws a
 * BackendError when no adapter is available.
 */
export function createWebGpuGroup(worldSize: number, options: WebGpuGroupOptions = {}): Promise<WebGpuCollective[]> {
  const { backends: _b, timeoutMs: _t, ...backendOptions } = options;
  return createHostStagedGroupWith(worldSize, () => WebGpuBackend.create(backendOptions), { ...options, caller: 'createWebGpuGroup' });
}
