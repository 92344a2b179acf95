/** An environment variable where there is a `process` (Node), else undefined (browsers): the backend's tuning knobs. */
export function envVar(name: string): string | undefined {
  return (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.[name];
}
