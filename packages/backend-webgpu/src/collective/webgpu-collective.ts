/**
 * Collectives between WebGPU devices of one process. Each rank is a backend instance (in Node:
 * its own Dawn GPUDevice in its own worker thread). WebGPU cannot copy between GPUDevices, so
 * data moves by readback and upload through the host: this is core's host-staged group
 * (`createHostStagedGroupWith`) with a `WebGpuBackend` per rank. See
 * docs/backend-webgpu.md#collectives.
 */
import { HostStagedCollective, createHostStagedGroupWith, type Backend } from '@kiln/core';
import { WebGpuBackend, type WebGpuBackendOptions } from '../webgpu-backend.js';

export interface WebGpuGroupOptions extends WebGpuBackendOptions {
  /**
   * One backend per rank, distinct instances (normally `WebGpuBackend`s, each its own
   * GPUDevice; any kiln Backend works, since data moves through the host). Default: a new
   * `WebGpuBackend` per rank, created with the other options. The group never disposes them.
   */
  readonly backends?: readonly Backend[];
  /** Default timeout of every call in ms (default 60000); a call's own `timeoutMs` wins. */
  readonly timeoutMs?: number;
}

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
  const { backends, timeoutMs, ...backendOptions } = options;
  return createHostStagedGroupWith(worldSize, () => WebGpuBackend.create(backendOptions), {
    caller: 'createWebGpuGroup',
    ...(backends !== undefined ? { backends } : {}),
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
  });
}
