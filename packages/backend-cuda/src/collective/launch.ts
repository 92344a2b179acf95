/**
 * A torchrun-like launcher: `launchRanks` starts `nproc` copies of a Node script, one per GPU,
 * and `joinFromEnv` is the child side.
 *
 * Children get KILN_RANK, KILN_WORLD_SIZE, KILN_LOCAL_RANK (the CUDA device ordinal the
 * CudaBackend picks by default), KILN_LOCAL_WORLD_SIZE and KILN_NCCL_ID_FILE: a path in a
 * private temporary directory (0700) where rank 0 writes the NCCL unique id (0600, written to a
 * temporary name and renamed, so a reader never sees half an id) and the others wait for it.
 * Their output lines are prefixed with `[rank r]`. When a child exits non-zero (or is killed),
 * the launcher terminates the others (SIGTERM, then SIGKILL after `killGraceMs`) and reports
 * that child's exit code. SIGINT/SIGTERM to the launcher are forwarded once to every child
 * (children run in their own process group, so a terminal's Ctrl-C reaches them only once).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, fsyncSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { ArgumentError, CollectiveError, CollectiveTimeoutError } from '@kiln/core';
import { loadAddon } from '../addon.js';

export const NCCL_ID_BYTES = 128;

export interface LaunchOptions {
  /** Number of processes (ranks), one per GPU. */
  readonly nproc: number;
  /** Arguments of `node`: the script, then its arguments. */
  readonly argv: readonly string[];
  /** Extra environment of every child (over process.env). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** The Node binary (default process.execPath). */
  readonly execPath?: string;
  /** Where prefixed output lines go (default process.stdout / process.stderr). */
  readonly stdout?: (line: string) => void;
  readonly stderr?: (line: string) => void;
  /** Wait this long after SIGTERM before SIGKILL (default 5000 ms). */
  readonly killGraceMs?: number;
  /** Forward SIGINT/SIGTERM of this process to the children (default true). */
  readonly forwardSignals?: boolean;
}

export interface LaunchResult {
  /** 0 when every rank exited 0; else the first failing rank's code (128 + signal number when killed). */
  readonly exitCode: number;
  /** The first rank that failed, if any. */
  readonly failedRank?: number;
  /** Every rank's exit code (null: killed by a signal) and signal. */
  readonly ranks: readonly { readonly code: number | null; readonly signal: NodeJS.Signals | null }[];
}

const SIGNAL_NUMBERS: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGTERM: 15, SIGABRT: 6 };

/** The exit code a shell reports for a child: its code, or 128 + the signal's number. */
export function exitCodeOf(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  return 128 + (signal ? (SIGNAL_NUMBERS[signal] ?? 1) : 1);
}

/** Splits a byte stream into lines and hands each (without its newline) to `emit`. */
export function lineSplitter(emit: (line: string) => void): { push(chunk: Buffer | string): void; end(): void } {
  let rest = '';
  return {
    push(chunk) {
      const text = rest + chunk.toString();
      const lines = text.split('\n');
      rest = lines.pop() ?? '';
      for (const l of lines) emit(l);
    },
    end() {
      if (rest !== '') emit(rest);
      rest = '';
    },
  };
}

/** Starts `nproc` ranks and resolves when all have exited (or one failed and the rest were stopped). */
export function launchRanks(options: LaunchOptions): Promise<LaunchResult> {
  const { nproc, argv } = options;
  if (!Number.isInteger(nproc) || nproc < 1) throw new ArgumentError('launchRanks', `nproc must be a positive integer, got ${String(nproc)}`);
  if (!Array.isArray(argv) || argv.length === 0) throw new ArgumentError('launchRanks', 'argv must hold the script to run (and its arguments)');
  const out = options.stdout ?? ((l: string) => process.stdout.write(`${l}\n`));
  const err = options.stderr ?? ((l: string) => process.stderr.write(`${l}\n`));
  const grace = options.killGraceMs ?? 5000;
  const dir = mkdtempSync(join(tmpdir(), 'kiln-launch-')); // mode 0700
  const idFile = join(dir, 'nccl-id');
  const children: ChildProcess[] = [];
  const results: { code: number | null; signal: NodeJS.Signals | null }[] = new Array(nproc);
  let exited = 0;
  let failedRank: number | undefined;
  let killTimer: NodeJS.Timeout | undefined;

  return new Promise<LaunchResult>((resolve) => {
    const stopOthers = (): void => {
      for (let r = 0; r < nproc; r++) if (results[r] === undefined) children[r]?.kill('SIGTERM');
      killTimer = setTimeout(() => {
        for (let r = 0; r < nproc; r++) if (results[r] === undefined) children[r]?.kill('SIGKILL');
      }, grace);
      killTimer.unref();
    };
    const forward = (signal: NodeJS.Signals) => (): void => {
      for (let r = 0; r < nproc; r++) if (results[r] === undefined) children[r]?.kill(signal);
    };
    const onInt = forward('SIGINT');
    const onTerm = forward('SIGTERM');
    const forwardSignals = options.forwardSignals ?? true;
    if (forwardSignals) {
      process.on('SIGINT', onInt);
      process.on('SIGTERM', onTerm);
    }
    // If this process exits abruptly, take the children with it.
    const onExit = (): void => {
      for (let r = 0; r < nproc; r++) if (results[r] === undefined) children[r]?.kill('SIGKILL');
    };
    process.on('exit', onExit);

    const finish = (): void => {
      if (killTimer) clearTimeout(killTimer);
      if (forwardSignals) {
        process.removeListener('SIGINT', onInt);
        process.removeListener('SIGTERM', onTerm);
      }
      process.removeListener('exit', onExit);
      rmSync(dir, { recursive: true, force: true });
      const exitCode = failedRank === undefined ? 0 : exitCodeOf(results[failedRank].code, results[failedRank].signal);
      resolve({ exitCode, failedRank, ranks: results });
    };

    for (let rank = 0; rank < nproc; rank++) {
      const env: Record<string, string | undefined> = {
        ...process.env,
        ...options.env,
        KILN_RANK: String(rank),
        KILN_WORLD_SIZE: String(nproc),
        KILN_LOCAL_RANK: String(rank),
        KILN_LOCAL_WORLD_SIZE: String(nproc),
        KILN_NCCL_ID_FILE: idFile,
      };
      const child = spawn(options.execPath ?? process.execPath, [...argv], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      children.push(child);
      const o = lineSplitter((l) => out(`[rank ${rank}] ${l}`));
      const e = lineSplitter((l) => err(`[rank ${rank}] ${l}`));
      child.stdout!.on('data', (c: Buffer) => o.push(c));
      child.stderr!.on('data', (c: Buffer) => e.push(c));
      child.on('error', (error) => {
        // Could not start (e.g. the binary is missing): counts as a failure of this rank.
        e.push(`failed to start: ${error.message}\n`);
        if (results[rank] === undefined) onClose(rank, 127, null);
      });
      child.on('close', (code, signal) => {
        o.end();
        e.end();
        onClose(rank, code, signal);
      });
    }

    function onClose(rank: number, code: number | null, signal: NodeJS.Signals | null): void {
      if (results[rank] !== undefined) return;
      results[rank] = { code, signal };
      exited++;
      if (failedRank === undefined && (code !== 0 || signal !== null)) {
        failedRank = rank;
        stopOthers();
      }
      if (exited === nproc) finish();
    }
  });
}

export interface JoinedRank {
  readonly rank: number;
  readonly worldSize: number;
  /** Device ordinal on this machine (KILN_LOCAL_RANK). */
  readonly localRank: number;
  /** The 128-byte NCCL unique id shared by every rank. */
  readonly uniqueId: Uint8Array;
}

export interface JoinFromEnvOptions {
  /** Makes the unique id on rank 0 (default: the addon's ncclUniqueId()). */
  readonly createUniqueId?: () => Uint8Array;
  /** How long ranks > 0 wait for rank 0's id file (default 120000 ms). */
  readonly timeoutMs?: number;
  /** The environment to read (default process.env). */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

/** Writes `bytes` to `path` atomically with mode 0600: a temporary name, fsync, then rename. */
export function writeFileAtomic(path: string, bytes: Uint8Array): void {
  const tmp = join(dirname(path), `.${process.pid}-${Date.now()}.tmp`);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, bytes);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

function defaultUniqueId(): Uint8Array {
  const load = loadAddon();
  if (!load.ok) throw new CollectiveError('joinFromEnv', `rank 0 cannot make an NCCL unique id: ${load.reason}`);
  const a = load.addon as unknown as { ncclAvailable(): { ok: boolean; reason: string }; ncclUniqueId(): Uint8Array };
  const av = a.ncclAvailable();
  if (!av.ok) throw new CollectiveError('joinFromEnv', `rank 0 cannot make an NCCL unique id: ${av.reason}`);
  return a.ncclUniqueId();
}

/**
 * The child side of `launchRanks`: this process's rank and the shared NCCL unique id (rank 0
 * makes it and writes the id file; the others wait for it), or undefined when the process was
 * not started by the launcher (no KILN_RANK).
 */
export async function joinFromEnv(options: JoinFromEnvOptions = {}): Promise<JoinedRank | undefined> {
  const env = options.env ?? process.env;
  if (env.KILN_RANK === undefined) return undefined;
  const op = 'joinFromEnv';
  const int = (name: string): number => {
    const v = env[name];
    const n = Number(v);
    if (v === undefined || !/^\d+$/.test(v) || !Number.isSafeInteger(n)) throw new ArgumentError(op, `${name} must be a non-negative integer, got ${JSON.stringify(v)}`);
    return n;
  };
  const rank = int('KILN_RANK');
  const worldSize = int('KILN_WORLD_SIZE');
  const localRank = env.KILN_LOCAL_RANK === undefined ? rank : int('KILN_LOCAL_RANK');
  if (worldSize < 1 || rank >= worldSize) throw new ArgumentError(op, `KILN_RANK ${rank} is outside KILN_WORLD_SIZE ${worldSize}`);
  const file = env.KILN_NCCL_ID_FILE;
  if (!file) throw new ArgumentError(op, 'KILN_NCCL_ID_FILE is not set (start the ranks with launchRanks / kiln train --nproc)');
  if (rank === 0) {
    const id = (options.createUniqueId ?? defaultUniqueId)();
    if (!(id instanceof Uint8Array) || id.byteLength !== NCCL_ID_BYTES) throw new CollectiveError(op, `the unique id must be ${NCCL_ID_BYTES} bytes, got ${id?.byteLength}`);
    writeFileAtomic(file, id);
    return { rank, worldSize, localRank, uniqueId: id };
  }
  const timeoutMs = options.timeoutMs ?? 120_000;
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(file)) {
    if (Date.now() > deadline) throw new CollectiveTimeoutError(op, `rank ${rank} waited ${timeoutMs} ms for rank 0's NCCL id file ${file}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const id = new Uint8Array(readFileSync(file));
  if (id.byteLength !== NCCL_ID_BYTES) throw new CollectiveError(op, `${file} holds ${id.byteLength} bytes, expected ${NCCL_ID_BYTES}`);
  return { rank, worldSize, localRank, uniqueId: id };
}
