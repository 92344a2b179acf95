/**
 * kiln's counter-based random generator. Element i of a random tensor depends only on
 * (seed, i), so every backend can produce the same values in parallel without shared state.
 * Uniform values are bit-identical on every backend; normal values use Box-Muller and agree
 * to the precision of each backend's log/cos.
 */

/** A 32-bit integer mixer (xor-shift-multiply finaliser) with good avalanche. */
export function mix32(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  return x;
}

/** 32 random bits for (seed, counter). */
export function randomBits(seed: number, counter: number): number {
  const key = mix32((seed ^ 0x9e3779b9) >>> 0);
  return mix32((Math.imul(counter >>> 0, 0x85ebca6b) ^ key) >>> 0);
}

/** Uniform in [0, 1) with 24 bits: exactly representable in f32. */
export function uniformAt(seed: number, i: number): number {
  return (randomBits(seed, i) >>> 8) * 5.9604644775390625e-8;
}

/** Standard normal for element i, from counters 2i and 2i+1 (Box-Muller, cosine branch). */
export function normalAt(seed: number, i: number): number {
  const u1 = ((randomBits(seed, 2 * i) >>> 8) + 1) * 5.9604644775390625e-8; // (0, 1]
  const u2 = (randomBits(seed, 2 * i + 1) >>> 8) * 5.9604644775390625e-8;
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}

/** Derives a fresh 32-bit seed from a base seed and a stream index (for per-layer init). */
export function deriveSeed(seed: number, stream: number): number {
  return mix32((mix32(seed >>> 0) + Math.imul(stream + 1, 0x9e3779b9)) >>> 0);
}
