import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import * as k from '@kiln/core';
import { CpuBackend } from '@kiln/backend-cpu';

import { CheckpointError } from '../src/checkpoint/errors.js';

/** Activates a CPU backend for the file's tests and disposes it after them; returns a getter. */
export function useCpuBackendForTests(): () => CpuBackend {
  let backend: CpuBackend | undefined;
  beforeAll(() => {
    backend = new CpuBackend();
    k.useBackend(backend);
  });
  afterAll(() => backend?.dispose());
  return () => backend!;
}

/** A temporary directory for the file's tests, removed after them; returns a getter. */
export function useTempDirForTests(prefix: string): () => string {
  let dir: string | undefined;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), prefix));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  return () => dir!;
}

/** Awaits p, expecting a CheckpointError whose message matches every part; returns it. */
export async function expectCheckpointError(p: Promise<unknown>, ...parts: (string | RegExp)[]): Promise<CheckpointError> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(CheckpointError);
  for (const part of parts) expect((err as Error).message).toMatch(part);
  return err as CheckpointError;
}

/** Relative L2 error ||got - want|| / ||want||, in float64. */
export function relL2(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    num += (got[i]! - want[i]!) ** 2;
    den += want[i]! ** 2;
  }
  return Math.sqrt(num / den);
}
