/**
 * Collectives between WebGPU devices of one process (ranks = backend instances), by readback
 * and upload through the host. See docs/backend-webgpu.md#collectives.
 */
export { WebGpuCollective, createWebGpuGroup, type WebGpuGroupOptions } from './webgpu-collective.js';
