import { ArgumentError } from '@kiln/core';

/** Linear warmup from 0 to peakLr over warmupSteps, then cosine decay to minLr at totalSteps (minLr after). */
export interface WarmupCosineOptions {
  peakLr: number;
  warmupSteps: number;
  totalSteps: number;
  minLr?: number;
}

function check(cond: boolean, msg: string): void {
  if (!cond) throw new ArgumentError('schedule', msg);
}

/** Learning rate at `step` (0-based; step 0 gets peakLr/warmupSteps so no step is wasted at lr 0). */
export function warmupCosine(step: number, o: WarmupCosineOptions): number {
  const minLr = o.minLr ?? 0;
  check(o.warmupSteps >= 0 && o.totalSteps >= o.warmupSteps, 'warmupCosine: need 0 <= warmupSteps <= totalSteps');
  if (step < o.warmupSteps) return (o.peakLr * (step + 1)) / o.warmupSteps;
  const decaySteps = o.totalSteps - o.warmupSteps;
  if (decaySteps === 0 || step >= o.totalSteps) return step >= o.totalSteps ? minLr : o.peakLr;
  const t = (step - o.warmupSteps) / decaySteps;
  return minLr + 0.5 * (o.peakLr - minLr) * (1 + Math.cos(Math.PI * t));
}

/**
 * DeepSeek-V3's shape: linear warmup to peakLr over warmupSteps, constant until decayStart, cosine decay
 * to minLr over decaySteps, then minLr.
 */
export interface WarmupConstantDecayOptions {
  peakLr: number;
  warmupSteps: number;
  decayStart: number;
  decaySteps: number;
  minLr: number;
}

export function warmupConstantDecay(step: number, o: WarmupConstantDecayOptions): number {
  check(o.warmupSteps >= 0 && o.decayStart >= o.warmupSteps && o.decaySteps >= 0, 'warmupConstantDecay: need 0 <= warmupSteps <= decayStart and decaySteps >= 0');
  if (step < o.warmupSteps) return (o.peakLr * (step + 1)) / o.warmupSteps;
  if (step < o.decayStart) return o.peakLr;
  if (step >= o.decayStart + o.decaySteps) return o.minLr;
  const t = (step - o.decayStart) / o.decaySteps;
  return o.minLr + 0.5 * (o.peakLr - o.minLr) * (1 + Math.cos(Math.PI * t));
}
