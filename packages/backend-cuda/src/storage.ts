import type { Ptr } from './addon.js';

/**
 * A CUDA backend DataId: one device allocation from the addon's stream-ordered pool.
 * `backendId` identifies the owning CudaBackend instance, so a tensor of another backend
 * (or another CUDA backend instance) is refused by rule instead of being misread.
 */
export class CudaStorage {
  released = false;
  constructor(
    readonly ptr: Ptr,
    readonly bytes: number,
    readonly backendId: number,
  ) {}
}
