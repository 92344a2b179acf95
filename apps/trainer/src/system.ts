import os from 'node:os';

export interface SystemInfo {
  readonly node: string;
  /** e.g. `linux 6.1.0 (x64)` */
  readonly os: string;
  readonly platform: NodeJS.Platform;
  readonly arch: string;
  /** CPU model name, as the OS reports it. */
  readonly cpu: string;
  /** Logical cores available to this process. */
  readonly cores: number;
  readonly totalMemoryBytes: number;
  readonly freeMemoryBytes: number;
}

export function systemInfo(): SystemInfo {
  const cpus = os.cpus();
  const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : cpus.length;
  return {
    node: process.version,
    os: `${os.type()} ${os.release()} (${os.arch()})`,
    platform: process.platform,
    arch: process.arch,
    cpu: cpus[0]?.model.trim() || 'unknown',
    cores,
    totalMemoryBytes: os.totalmem(),
    freeMemoryBytes: os.freemem(),
  };
}
