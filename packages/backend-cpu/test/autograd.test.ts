import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as k from '@kiln/core';
import { CpuBackend } from '../src/index.js';
import { gradcheck } from '@kiln/conformance';

let backend: CpuBackend;
beforeAll(() => {
  backend = new CpuBackend();
  k.useBackend(backend);
});
afterAll(() => backend.dispose());

// The gradient checks of every op run in @kiln/conformance's 'autograd' area (against every
// backend); these are the tape's own behaviours.
describe('autograd tape', () => {
  it('casts to low precision pass gradients straight through', () => {
    const a = k.tensor([0.1, -2.3, 7.77]);
    const { value, grads } = k.valueAndGrads(() => k.sum(k.mul(k.cast(k.cast(a, 'bf16'), 'f32'), 3)), [a]);
    expect(Array.from(grads[0].valuesSync())).toEqual([3, 3, 3]);
    k.dispose([a, value, grads]);
  });

  it('shared gradcheck catches a wrong backward rule', async () => {
    // A deliberately wrong rule (d/dx x^2 = x) must be reported.
    const wrongSquare = (x: k.Tensor) => {
      const y = k.noGrad(() => k.square(x));
      k.recordGrad('wrongSquare', [x], y, (dy, [xs]) => [k.mul(dy, xs)]);
      return y;
    };
    await expect(gradcheck('wrong square', ([x]) => wrongSquare(x), [{ shape: [5] }])).rejects.toThrow(/analytic .* numeric/);
  });

  it('accumulates gradients of a parameter used several times, and gives zeros to unused ones', () => {
    const a = k.tensor([1, 2, 3]);
    const unused = k.tensor([5]);
    const { value, grads } = k.valueAndGrads(() => k.sum(k.add(k.mul(a, a), a)), [a, unused]);
    expect(Array.from(grads[0].valuesSync())).toEqual([3, 5, 7]);
    expect(Array.from(grads[1].valuesSync())).toEqual([0]);
    k.dispose([a, unused, value, grads]);
  });

  it('noGrad records nothing and tidy inside f is safe', () => {
    const a = k.tensor([1, 2]);
    const { value, grads } = k.valueAndGrads(() => k.tidy(() => k.sum(k.mul(k.noGrad(() => k.mul(a, 10)), a))), [a]);
    // noGrad part is a constant: d/da sum(c * a) = c = 10a (held fixed).
    expect(Array.from(grads[0].valuesSync())).toEqual([10, 20]);
    k.dispose([a, value, grads]);
  });
});
