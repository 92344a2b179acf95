/** Runs `f` with environment variable `name` set to `value`, then removes it (tests that pin kernels). */
export function withEnv<T>(name: string, value: string, f: () => T): T {
  process.env[name] = value;
  try {
    return f();
  } finally {
    delete process.env[name];
  }
}

/** The same for an async `f`: the variable stays set until it settles. */
export async function withEnvAsync<T>(name: string, value: string, f: () => Promise<T>): Promise<T> {
  process.env[name] = value;
  try {
    return await f();
  } finally {
    delete process.env[name];
  }
}
