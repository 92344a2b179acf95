/**
 * Whether `err` is one of @kiln/core's typed errors. Checked by shape rather than with
 * `instanceof`, because the ESM and CJS builds of @kiln/core each define their own class.
 */
export function isKilnError(err: unknown): err is Error & { op: string } {
  if (!(err instanceof Error)) return false;
  if (typeof (err as { op?: unknown }).op !== 'string') return false;
  for (let p: object | null = err; p; p = Object.getPrototypeOf(p)) {
    if (p.constructor?.name === 'KilnError') return true;
  }
  return false;
}
