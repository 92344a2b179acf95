import { BackendError, bestAvailableBackend, initBackend, setBackend, type Backend } from '@kiln/core';
import { loadBackendPackages } from '../backends.js';
import { InvalidArgumentError } from 'commander';

/** Writes to stdout and resolves once the text is handed to the OS (safe before exiting). */
export function writeOut(text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(text, (err) => (err ? reject(err) : resolve()));
  });
}

/**
 * Releases the named backends' resources (worker threads, devices) so the process can exit.
 * Only pass backends that were initialised: `initBackend` would create a missing one.
 */
export async function disposeBackends(names: readonly string[]): Promise<void> {
  for (const name of new Set(names)) {
    try {
      // an async close is awaited: exiting while WebGPU's worker destroyed its device aborted
      // the process from inside Dawn
      const b = await initBackend(name);
      if (b.close) await b.close();
      else b.dispose?.();
    } catch {
      // Best effort: the process is about to exit anyway.
    }
  }
}

/** Parses a positive integer option value; commander reports the message on failure. */
export function positiveInt(label: string, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n < 1 || n > max) {
      throw new InvalidArgumentError(`${label} must be an integer from 1 to ${max}, got ${JSON.stringify(value)}.`);
    }
    return n;
  };
}

/**
 * Loads the installed backend packages and activates `name`, or the best available backend
 * when it is undefined. An on-request package (gpu.js) is imported only when `name` is its
 * backend. A named backend that is not installed or failed to load is a BackendError saying
 * which and why.
 */
export async function selectBackend(command: string, name: string | undefined): Promise<Backend> {
  const packages = await loadBackendPackages(undefined, name);
  if (name === undefined) return bestAvailableBackend();
  const pkg = packages.find((p) => p.backend === name);
  if (pkg?.status === 'not installed') {
    throw new BackendError(command, `backend ${JSON.stringify(name)} is not available: ${pkg.package} is not installed`);
  }
  if (pkg?.status === 'failed') {
    throw new BackendError(command, `backend ${JSON.stringify(name)} is not available: ${pkg.package} failed to load: ${pkg.error}`);
  }
  return setBackend(name);
}
