import { afterAll, beforeAll } from 'vitest';
import * as k from '@kiln/core';
import { CpuBackend } from '@kiln/backend-cpu';

/** Activates a CPU backend for the file's tests and disposes it after them. */
export function useCpuBackendForTests(): void {
  let backend: CpuBackend;
  beforeAll(() => {
    backend = new CpuBackend();
    k.useBackend(backend);
  });
  afterAll(() => backend.dispose());
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
