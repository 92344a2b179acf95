import { bestAvailableBackend, memory, probeBackends, type MemoryInfo } from '@kiln/core';
import { Command } from 'commander';
import { KNOWN_BACKEND_PACKAGES, ON_REQUEST_BACKEND_PACKAGES, loadBackendPackages } from '../backends.js';
import { formatBytes, formatFields, formatTable } from '../format.js';
import { systemInfo, type SystemInfo } from '../system.js';
import { VERSION } from '../version.js';
import { disposeBackends, writeOut } from './shared.js';

export interface BackendReport {
  /** Registry name, e.g. `cpu`. */
  readonly name: string;
  /** The package that provides it, when it is one kiln knows about. */
  readonly package?: string;
  /** `not installed` when the package could not be found. */
  readonly installed: boolean;
  /** Priority in `bestAvailableBackend()`; absent when not registered. */
  readonly priority?: number;
  readonly available: boolean;
  readonly device?: string;
  readonly accelerated?: boolean;
  /** Why `bestAvailableBackend()` passes over it although it works (e.g. a software GPU adapter). */
  readonly notPreferred?: string;
  /** Why the backend is unavailable. */
  readonly reason?: string;
  /**
   * Installed but not probed, because creating it is expensive (what it would start): use it
   * by name (`--backend <name>`). `available` is false (unknown) for these.
   */
  readonly onRequest?: string;
}

export interface InfoReport {
  readonly kiln: string;
  readonly backends: readonly BackendReport[];
  /** What `bestAvailableBackend()` picks, or null when nothing initialises. */
  readonly best: { readonly name: string; readonly device: string } | null;
  /** Why no backend was picked, when `best` is null. */
  readonly bestError?: string;
  readonly system: SystemInfo;
  readonly memory: MemoryInfo;
}

/**
 * Loads every known backend package, probes the registered backends and reports what is
 * available here. Leaves the best backend current (and every probed backend initialised).
 * On-request packages (gpu.js: headless-gl or a headless Chromium) are listed without being imported or
 * probed.
 */
export async function collectInfo(): Promise<InfoReport> {
  const packages = await loadBackendPackages();
  const probed = await probeBackends();
  const backends: BackendReport[] = [];
  const seen = new Set<string>();
  for (const p of probed) {
    seen.add(p.name);
    const pkg = packages.find((s) => s.backend === p.name);
    backends.push({
      name: p.name,
      ...(pkg?.status === 'loaded' ? { package: pkg.package } : {}),
      installed: true,
      priority: p.priority,
      available: p.available,
      ...(p.device !== undefined ? { device: p.device } : {}),
      ...(p.accelerated !== undefined ? { accelerated: p.accelerated } : {}),
      ...(p.notPreferred !== undefined ? { notPreferred: p.notPreferred } : {}),
      ...(p.reason !== undefined ? { reason: p.reason } : {}),
    });
  }
  for (const s of packages) {
    if (seen.has(s.backend)) continue;
    if (s.status === 'on request') {
      const cost = ON_REQUEST_BACKEND_PACKAGES[s.package];
      const reason = `available on request: ${cost}; use --backend ${s.backend}`;
      backends.push({ name: s.backend, package: s.package, installed: true, available: false, onRequest: cost, reason });
      continue;
    }
    const reason =
      s.status === 'not installed'
        ? 'not installed'
        : s.status === 'failed'
          ? `failed to load: ${s.error}`
          : `${s.package} loaded but registered no backend named ${JSON.stringify(s.backend)}`;
    backends.push({ name: s.backend, package: s.package, installed: s.status !== 'not installed', available: false, reason });
  }
  // Registered backends by priority first, then the known packages that are missing, in list order.
  const known = (name: string) => KNOWN_BACKEND_PACKAGES.findIndex((p) => p.endsWith(`-${name}`));
  backends.sort((a, b) => (b.priority ?? -1) - (a.priority ?? -1) || known(a.name) - known(b.name));

  let best: InfoReport['best'] = null;
  let bestError: string | undefined;
  try {
    const b = await bestAvailableBackend();
    best = { name: b.name, device: b.device.name };
  } catch (err) {
    bestError = err instanceof Error ? err.message : String(err);
  }
  return { kiln: VERSION, backends, best, ...(bestError !== undefined ? { bestError } : {}), system: systemInfo(), memory: memory() };
}

export function formatMemory(m: MemoryInfo): string {
  const per = Object.entries(m.backends).map(
    ([name, s]) => `${name}: ${s.tensors} tensors, ${formatBytes(s.bytes)} in ${s.buffers} buffers, backend holds ${formatBytes(s.backendBytes)}`,
  );
  return `${m.tensors} tensors, ${formatBytes(m.bytes)}${per.length ? ` (${per.join('; ')})` : ''}`;
}

/** The reason without core's `initBackend: backend "x" failed to initialise: ` preamble. */
function shortReason(b: BackendReport): string {
  return (b.reason ?? '').replace(/^initBackend: backend "[^"]*" failed to initialise: /, '');
}

export function formatInfo(r: InfoReport): string {
  const table = formatTable(
    ['backend', 'package', 'priority', 'available', 'device', 'reason'],
    r.backends.map((b) => [
      b.name,
      b.package ?? '-',
      b.priority === undefined ? '-' : String(b.priority),
      b.available ? 'yes' : b.onRequest !== undefined ? 'on request' : 'no',
      b.device ?? '-',
      b.available ? (b.notPreferred ? `not preferred: ${b.notPreferred}` : '') : shortReason(b),
    ]),
  );
  const best = r.best ? `${r.best.name} (${r.best.device})` : `none: ${r.bestError ?? 'no backend initialised'}`;
  const s = r.system;
  return [
    `kiln ${r.kiln}`,
    '',
    'Backends',
    table,
    '',
    `Best available backend: ${best}`,
    '',
    'System',
    formatFields([
      ['node', s.node],
      ['os', s.os],
      ['cpu', s.cpu],
      ['cores', String(s.cores)],
      ['memory', `${formatBytes(s.totalMemoryBytes)} total, ${formatBytes(s.freeMemoryBytes)} free`],
    ]),
    '',
    `kiln memory: ${formatMemory(r.memory)}`,
  ].join('\n');
}

export function infoCommand(): Command {
  return new Command('info')
    .description('show which backends are available on this machine (with device names), the system and kiln memory')
    .option('--json', 'print a JSON report instead of text')
    .action(async (opts: { json?: boolean }) => {
      const report = await collectInfo();
      try {
        await writeOut(opts.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatInfo(report)}\n`);
      } finally {
        await disposeBackends(report.backends.filter((b) => b.available).map((b) => b.name));
      }
    });
}
