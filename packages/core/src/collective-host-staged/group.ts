/**
 * Making a host-staged group: from backends you already have (`createHostStagedGroup`), or
 * `worldSize` new ones made by a backend package's factory (`createHostStagedGroupWith`, what
 * `createWebGpuGroup` and `createGpujsGroup` are).
 */
import type { Backend } from '../backend.js';
import { ArgumentError } from '../errors.js';
import { checkTimeout } from '../collective-args.js';
import { HostStagedCollective } from './host-staged-collective.js';
import { GroupState } from './rendezvous.js';

/** Default timeout of every call of a host-staged group, in ms. */
export const HOST_STAGED_DEFAULT_TIMEOUT_MS = 60_000;
const MAX_WORLD_SIZE = 4096;

export interface HostStagedGroupOptions {
  /** Default timeout of every call in ms (default 60000); a call's own `timeoutMs` wins. */
  readonly timeoutMs?: number;
  /** The function named in argument errors (default `createHostStagedGroup`). */
  readonly caller?: string;
}

export interface HostStagedGroupWithOptions extends HostStagedGroupOptions {
  /**
   * One backend per rank, distinct instances (any kiln Backend: data moves through the host).
   * Default: `createBackend(rank)` for every rank. The group never disposes them.
   */
  readonly backends?: readonly Backend[];
}

function checkWorldSize(worldSize: unknown, op: string): asserts worldSize is number {
  if (!Number.isInteger(worldSize) || (worldSize as number) < 1 || (worldSize as number) > MAX_WORLD_SIZE) {
    throw new ArgumentError(op, `worldSize must be an integer in [1, ${MAX_WORLD_SIZE}], got ${String(worldSize)}`);
  }
}

function checkBackends(backends: unknown, worldSize: number, op: string): asserts backends is readonly Backend[] {
  if (!Array.isArray(backends) || backends.length !== worldSize) {
    throw new ArgumentError(op, `backends must be an array of one backend per rank (${worldSize}), got ${Array.isArray(backends) ? `${backends.length}` : typeof backends}`);
  }
  if (new Set(backends).size !== backends.length) throw new ArgumentError(op, 'backends must be distinct instances (one device per rank)');
  for (const b of backends as unknown[]) {
    const ok = b !== null && typeof b === 'object' && typeof (b as Backend).write === 'function' && typeof (b as Backend).read === 'function';
    if (!ok) throw new ArgumentError(op, 'backends must be kiln Backends (objects with write and read, e.g. from a backend package)');
  }
}

/**
 * A group whose ranks are `backends` (index = rank; distinct instances, any kiln Backend):
 * returns one Collective per rank. Ranks are async functions of this process that call the
 * collectives concurrently; data moves by readback and upload through the host. The group
 * never disposes the backends.
 */
export function createHostStagedGroup(backends: readonly Backend[], options: HostStagedGroupOptions = {}): HostStagedCollective[] {
  const op = options.caller ?? 'createHostStagedGroup';
  if (!Array.isArray(backends) || backends.length === 0 || backends.length > MAX_WORLD_SIZE) {
    const got = Array.isArray(backends) ? `${backends.length}` : typeof backends;
    throw new ArgumentError(op, `backends must be an array of 1 to ${MAX_WORLD_SIZE} kiln Backends (one per rank), got ${got}`);
  }
  checkBackends(backends, backends.length, op);
  const worldSize = backends.length;
  const timeoutMs = options.timeoutMs ?? HOST_STAGED_DEFAULT_TIMEOUT_MS;
  checkTimeout(timeoutMs, op);
  const state = new GroupState(worldSize);
  return backends.map((b, r) => new HostStagedCollective(state, r, b, timeoutMs));
}

/**
 * A host-staged group of `worldSize` ranks: `options.backends`, or a new backend per rank from
 * `createBackend(rank)` (created one after another; if one fails, those already made are
 * disposed and the error is thrown). Arguments are checked before any backend is created.
 */
export async function createHostStagedGroupWith(
  worldSize: number,
  createBackend: (rank: number) => Backend | Promise<Backend>,
  options: HostStagedGroupWithOptions = {},
): Promise<HostStagedCollective[]> {
  const op = options.caller ?? 'createHostStagedGroup';
  checkWorldSize(worldSize, op);
  checkTimeout(options.timeoutMs ?? HOST_STAGED_DEFAULT_TIMEOUT_MS, op);
  const groupOptions = { caller: op, ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}) };
  if (options.backends !== undefined) {
    checkBackends(options.backends, worldSize, op);
    return createHostStagedGroup(options.backends, groupOptions);
  }
  const made: Backend[] = [];
  try {
    for (let r = 0; r < worldSize; r++) made.push(await createBackend(r));
  } catch (err) {
    for (const b of made) b.dispose?.();
    throw err;
  }
  return createHostStagedGroup(made, groupOptions);
}
