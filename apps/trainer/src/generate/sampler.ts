import { ArgumentError, uniformAt } from '@kiln/core';

export interface SamplingOptions {
  /** 0 (default) is greedy: the argmax, ties to the lowest id. */
  temperature?: number;
  /** Nucleus sampling: keep the smallest set of tokens whose probability reaches topP (default 1). */
  topP?: number;
  seed?: number;
}

/** Picks the next token from one row of logits; `draw` numbers the random draws of a seed. */
export function sampleToken(logits: ArrayLike<number>, options: SamplingOptions, draw: number): number {
  const temperature = options.temperature ?? 0;
  const topP = options.topP ?? 1;
  if (!(temperature >= 0) || !Number.isFinite(temperature)) throw new ArgumentError('generate', `temperature must be a finite number >= 0, got ${temperature}`);
  if (!(topP > 0 && topP <= 1)) throw new ArgumentError('generate', `top-p must be in (0, 1], got ${topP}`);
  if (temperature === 0) return argmax(logits);
  // Softmax in float64 over logits / T, then the nucleus, then one uniform draw.
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]!);
  const p = new Float64Array(logits.length);
  let total = 0;
  for (let i = 0; i < logits.length; i++) total += p[i] = Math.exp((logits[i]! - max) / temperature);
  const order = Array.from({ length: p.length }, (_, i) => i).sort((a, b) => p[b]! - p[a]! || a - b);
  let kept = 0;
  let mass = 0;
  while (kept < order.length && mass < topP * total) mass += p[order[kept++]!]!;
  let u = uniformAt(options.seed ?? 0, draw) * mass;
  for (let j = 0; j < kept; j++) {
    u -= p[order[j]!]!;
    if (u < 0) return order[j]!;
  }
  return order[kept - 1]!;
}

export function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[best]!) best = i;
  return best;
}
