import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/**
 * The backend packages kiln knows about, highest priority first. Each registers its backend
 * (named after the package suffix) with @kiln/core when imported. A package that is not
 * installed is reported as such; installing it makes it appear in `kiln info` and `kiln demo`.
 */
export const KNOWN_BACKEND_PACKAGES: readonly string[] = [
  '@kiln/backend-cuda',
  '@kiln/backend-webgpu',
  '@kiln/backend-gpujs',
  '@kiln/backend-cpu',
];

/**
 * Backend packages imported only when their backend is asked for by name (`--backend`), with
 * what using them costs: `kiln info` and the default pick (`bestAvailableBackend()`) never
 * import them, so they never start anything. The gpu.js backend starts an engine per
 * instance (headless-gl, or a headless Chromium), and on a software GL it is `notPreferred`
 * anyway.
 */
export const ON_REQUEST_BACKEND_PACKAGES: Readonly<Record<string, string>> = {
  '@kiln/backend-gpujs': 'starts a gpu.js engine (headless-gl on an X display, else a headless Chromium)',
};

export interface BackendPackageStatus {
  /** npm package name, e.g. `@kiln/backend-cpu`. */
  readonly package: string;
  /** Registry name the package registers, e.g. `cpu` (by convention the package suffix). */
  readonly backend: string;
  /**
   * `loaded`: imported (its backend is registered); `on request`: installed but not imported
   * (see ON_REQUEST_BACKEND_PACKAGES); `not installed`; `failed`: importing threw.
   */
  readonly status: 'loaded' | 'on request' | 'not installed' | 'failed';
  /** Why importing failed, for `failed`. */
  readonly error?: string;
}

/** Registry name a backend package registers, by convention: `@kiln/backend-cpu` -> `cpu`. */
export function backendNameOf(pkg: string): string {
  return pkg.replace(/^@kiln\/backend-/, '');
}

function isModuleNotFound(err: unknown, pkg: string): boolean {
  if (!err || typeof err !== 'object') return false;
  const code = (err as { code?: unknown }).code;
  const message = String((err as { message?: unknown }).message ?? '');
  // Only "this package is missing", not "a dependency of this package is missing".
  return (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && message.includes(`'${pkg}'`);
}

// A variable specifier keeps bundlers from resolving optional packages at build time.
const importModule = (specifier: string): Promise<unknown> => import(specifier);

async function importFromCwd(pkg: string): Promise<unknown> {
  const req = createRequire(join(process.cwd(), 'package.json'));
  let resolved: string;
  try {
    resolved = req.resolve(pkg);
  } catch {
    return undefined;
  }
  return importModule(pathToFileURL(resolved).href);
}

/** Whether `pkg` can be found (next to the trainer, or in the current directory), without importing it. */
function isInstalled(pkg: string): boolean {
  // ESM: import.meta.url is set (a bundler's require shim has no .resolve); CJS: it is empty.
  const here = import.meta.url ? createRequire(import.meta.url) : require;
  for (const req of [here, createRequire(join(process.cwd(), 'package.json'))]) {
    try {
      req.resolve(pkg);
      return true;
    } catch {
      // not found from here
    }
  }
  return false;
}

/**
 * Imports every known backend package that can be found (next to the trainer, or in the
 * current directory's node_modules), so that each registers its backend. Packages in
 * ON_REQUEST_BACKEND_PACKAGES are imported only when `requested` names their backend;
 * otherwise they are reported as `on request` (or `not installed`). Never throws.
 */
export async function loadBackendPackages(packages: readonly string[] = KNOWN_BACKEND_PACKAGES, requested?: string): Promise<BackendPackageStatus[]> {
  const out: BackendPackageStatus[] = [];
  for (const pkg of packages) {
    const backend = backendNameOf(pkg);
    if (pkg in ON_REQUEST_BACKEND_PACKAGES && backend !== requested) {
      out.push({ package: pkg, backend, status: isInstalled(pkg) ? 'on request' : 'not installed' });
      continue;
    }
    out.push(await importBackendPackage(pkg, backend));
  }
  return out;
}

async function importBackendPackage(pkg: string, backend: string): Promise<BackendPackageStatus> {
  try {
    await importModule(pkg);
    return { package: pkg, backend, status: 'loaded' };
  } catch (err) {
    if (!isModuleNotFound(err, pkg)) return { package: pkg, backend, status: 'failed', error: err instanceof Error ? err.message : String(err) };
    try {
      const mod = await importFromCwd(pkg);
      return mod === undefined ? { package: pkg, backend, status: 'not installed' } : { package: pkg, backend, status: 'loaded' };
    } catch (err2) {
      return { package: pkg, backend, status: 'failed', error: err2 instanceof Error ? err2.message : String(err2) };
    }
  }
}
