import { describe, expect, it } from 'vitest';
import {
  BackendError,
  bestAvailableBackend,
  broadcastShapes,
  broadcastStrides,
  DTypeError,
  dtypeInfo,
  inferReshape,
  normalizeAxis,
  probeBackends,
  promoteTypes,
  registerBackend,
  ShapeError,
  stridesOf,
  uniformAt,
  normalAt,
  randomBits,
  type Backend,
} from '@kiln/core';

describe('shapes', () => {
  it('broadcasts like NumPy and names the conflict', () => {
    expect(broadcastShapes([3, 1, 5], [4, 1], 'add')).toEqual([3, 4, 5]);
    expect(broadcastShapes([], [2, 3], 'add')).toEqual([2, 3]);
    expect(broadcastShapes([0, 1], [1, 7], 'add')).toEqual([0, 7]);
    expect(() => broadcastShapes([2, 3], [4, 3], 'add')).toThrow(ShapeError);
    expect(() => broadcastShapes([2, 3], [4, 3], 'add')).toThrow(/add: shapes \[2, 3\] and \[4, 3\]/);
  });
  it('computes strides and broadcast strides', () => {
    expect(stridesOf([2, 3, 4])).toEqual([12, 4, 1]);
    expect(broadcastStrides([3, 1], [2, 3, 5])).toEqual([0, 1, 0]);
  });
  it('infers -1 in reshape and rejects bad targets', () => {
    expect(inferReshape(24, [2, -1, 3], 'reshape')).toEqual([2, 4, 3]);
    expect(() => inferReshape(24, [5, -1], 'reshape')).toThrow(ShapeError);
    expect(() => inferReshape(24, [-1, -1], 'reshape')).toThrow(/only one dimension/);
  });
  it('normalises axes', () => {
    expect(normalizeAxis(-1, 3, 'sum')).toBe(2);
    expect(() => normalizeAxis(3, 3, 'sum')).toThrow(/axis 3 is out of range/);
  });
});

describe('dtypes', () => {
  it('knows sizes and rejects unknown names', () => {
    expect(dtypeInfo('bf16').bytes).toBe(2);
    expect(dtypeInfo('e4m3').bytes).toBe(1);
    expect(() => dtypeInfo('f64' as never)).toThrow(DTypeError);
  });
  it('promotes: wider float wins, FP8 arithmetic widens to f32', () => {
    expect(promoteTypes('f32', 'bf16')).toBe('f32');
    expect(promoteTypes('bf16', 'i32')).toBe('bf16');
    expect(promoteTypes('f16', 'bf16')).toBe('f32');
    expect(promoteTypes('e4m3', 'e4m3')).toBe('f32');
    expect(promoteTypes('u8', 'i32')).toBe('i32');
    expect(promoteTypes('bool', 'u8')).toBe('u8');
  });
});

describe('random reference generator', () => {
  it('is deterministic, seed-sensitive and roughly uniform', () => {
    expect(randomBits(1, 5)).toBe(randomBits(1, 5));
    expect(randomBits(1, 5)).not.toBe(randomBits(2, 5));
    const n = 50000;
    let s = 0;
    let s2 = 0;
    for (let i = 0; i < n; i++) {
      const u = uniformAt(7, i);
      expect(u >= 0 && u < 1).toBe(true);
      s += u;
      s2 += u * u;
    }
    expect(Math.abs(s / n - 0.5)).toBeLessThan(0.01);
    expect(Math.abs(s2 / n - s * s / n / n - 1 / 12)).toBeLessThan(0.01);
  });
  it('gives standard normals', () => {
    const n = 50000;
    let s = 0;
    let s2 = 0;
    for (let i = 0; i < n; i++) {
      const z = normalAt(3, i);
      s += z;
      s2 += z * z;
    }
    expect(Math.abs(s / n)).toBeLessThan(0.02);
    expect(Math.abs(s2 / n - 1)).toBeLessThan(0.03);
  });
});

describe('backend registry', () => {
  it('picks the highest-priority backend that initialises and reports why others do not', async () => {
    const fake = (name: string) => ({ name, device: { backend: name, name: `${name} device`, accelerated: false } }) as unknown as Backend;
    registerBackend({ name: 'test-broken', priority: 1000, create: async () => { throw new BackendError('init', 'no such device'); } });
    registerBackend({ name: 'test-ok', priority: 900, create: async () => fake('test-ok') });
    registerBackend({ name: 'test-low', priority: 10, create: async () => fake('test-low') });
    const picked = await bestAvailableBackend();
    expect(picked.name).toBe('test-ok');
    const report = await probeBackends();
    const broken = report.find((r) => r.name === 'test-broken');
    expect(broken?.available).toBe(false);
    expect(broken?.reason).toMatch(/no such device/);
    expect(report.find((r) => r.name === 'test-ok')?.device).toBe('test-ok device');
  });

  it('passes over a backend that is available but not preferred (a software GPU) for the next one that initialises', async () => {
    const fake = (name: string, notPreferred?: string) => ({ name, notPreferred, device: { backend: name, name: `${name} device`, accelerated: false } }) as unknown as Backend;
    registerBackend({ name: 'test-soft', priority: 1100, create: async () => fake('test-soft', 'software adapter (llvmpipe): the CPU backend is faster') });
    expect((await bestAvailableBackend()).name).toBe('test-ok');
    const report = await probeBackends();
    const soft = report.find((r) => r.name === 'test-soft');
    expect(soft?.available).toBe(true);
    expect(soft?.notPreferred).toMatch(/software adapter/);
    expect(report.find((r) => r.name === 'test-ok')?.notPreferred).toBeUndefined();
  });
});
