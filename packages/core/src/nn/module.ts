import { ShapeError } from '../errors.js';
import { full, randomNormal } from '../ops/creation.js';
import { deriveSeed } from '../random.js';
import { formatShape } from '../shape.js';
import type { Tensor } from '../tensor.js';

/** How a module creates its parameters: normal(0, std) from a seed stream, or all zeros. */
export interface ParamInit {
  seed: number;
  std: number;
  zeros?: boolean;
}

/** Creates parameter tensors; every call draws from its own derived seed. */
export class Initializer {
  private counter = 0;
  constructor(readonly options: ParamInit = { seed: 0, std: 0.02 }) {}
  normal(shape: readonly number[]): Tensor {
    const o = this.options;
    const stream = this.counter++;
    return o.zeros ? full([...shape], 0) : randomNormal([...shape], deriveSeed(o.seed, stream), 0, o.std);
  }
  ones(shape: readonly number[]): Tensor {
    this.counter++;
    return full([...shape], this.options.zeros ? 0 : 1);
  }
  zerosT(shape: readonly number[]): Tensor {
    this.counter++;
    return full([...shape], 0);
  }
}

/**
 * A tiny module base: named parameters (Hugging Face names relative to the module) and named
 * children; `parameters()` walks both with dotted prefixes.
 */
export abstract class Module {
  protected readonly params = new Map<string, Tensor>();
  protected readonly children = new Map<string, Module>();

  protected registerParameter(name: string, t: Tensor): Tensor {
    this.params.set(name, t);
    return t;
  }
  protected registerModule<M extends Module>(name: string, m: M): M {
    this.children.set(name, m);
    return m;
  }

  /** Every parameter, keyed by its dotted name under `prefix`. */
  parameters(prefix = ''): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const [n, t] of this.params) out.set(prefix + n, t);
    for (const [n, m] of this.children) for (const [pn, t] of m.parameters(`${prefix}${n}.`)) out.set(pn, t);
    return out;
  }

  /** The module at a dotted path relative to this one (undefined if absent). */
  /** Every module below this one (depth first), with its dotted name. */
  *modules(prefix = ''): Generator<[string, Module]> {
    for (const [n, m] of this.children) {
      yield [`${prefix}${n}`, m];
      yield* m.modules(`${prefix}${n}.`);
    }
  }
  child(path: string): Module | undefined {
    if (path === '') return this;
    for (const [n, m] of this.children) {
      if (path === n) return m;
      if (path.startsWith(n + '.')) {
        const found = m.child(path.slice(n.length + 1));
        if (found) return found;
      }
    }
    return undefined;
  }

  /**
   * Replaces a parameter (dotted name). The shape must match; the old tensor is disposed.
   * Returns false if no parameter has that name.
   */
  setParameter(name: string, t: Tensor): boolean {
    const dot = name.lastIndexOf('.');
    const owner = dot < 0 ? this : this.child(name.slice(0, dot));
    const leaf = dot < 0 ? name : name.slice(dot + 1);
    if (!owner) return false;
    return owner.setOwnParameter(leaf, t, name);
  }

  /** @internal */
  protected setOwnParameter(leaf: string, t: Tensor, fullName: string): boolean {
    const old = this.params.get(leaf);
    if (!old) return false;
    checkShape(fullName, old.shape, t.shape);
    if (old !== t) old.dispose();
    this.params.set(leaf, t);
    return true;
  }

  protected param(name: string): Tensor {
    const t = this.params.get(name);
    if (!t) throw new Error(`no parameter ${name}`);
    return t;
  }

  dispose(): void {
    for (const t of this.params.values()) t.dispose();
    for (const m of this.children.values()) m.dispose();
  }
}

export function checkShape(name: string, want: readonly number[], got: readonly number[]): void {
  if (want.length !== got.length || want.some((d, i) => d !== got[i])) {
    throw new ShapeError('setParameter', `${name}: expected shape ${formatShape(want)}, got ${formatShape(got)}`);
  }
}
