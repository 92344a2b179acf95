import type { Tensor } from '@kiln/core';
import { BackendError, add, crossEntropy, dispose, exp, keep, matmul, memory, reshape, rmsNorm, softmax, sum, tidy, topk, transpose } from '@kiln/core';
import { assert, expectCodes, fail } from '../check.js';
import type { Area, CaseDef, Ctx } from '../harness.js';
import { liveTensors } from '../harness.js';

function counts(c: Ctx) {
  const m = memory().backends[c.backend.name] ?? { tensors: 0, bytes: 0, buffers: 0, backendBytes: 0 };
  const b = c.backend.memory();
  return { tensors: m.tensors, bytes: m.bytes, buffers: m.buffers, backendBytes: b.bytes, backendBuffers: b.buffers };
}

function sameCounts(label: string, before: ReturnType<typeof counts>, after: ReturnType<typeof counts>): void {
  for (const k of Object.keys(before) as (keyof typeof before)[]) {
    if (before[k] !== after[k]) fail(`${label}: ${k} ${before[k]} -> ${after[k]} (expected back at baseline)`);
  }
}

const cases: CaseDef[] = [
  {
    name: 'tidy disposes intermediates and keeps what it returns (tensor, array, object, nested tidy, keep())',
    run(c) {
      const x = c.tensor([1, 2, 3, 4], [2, 2]);
      const base = liveTensors(c.backend.name);
      const y = tidy(() => add(exp(x), 1));
      assert(liveTensors(c.backend.name) === base + 1, `tidy returning one tensor left ${liveTensors(c.backend.name) - base} live`);
      assert(!y.isDisposed, 'the returned tensor must stay live');
      y.dispose();
      const { a, list } = tidy(() => {
        const t = exp(x);
        const inner = tidy(() => add(t, add(t, 1)));
        return { a: inner, list: [exp(inner), sum(inner)] };
      });
      assert(liveTensors(c.backend.name) === base + 3, `tidy returning an object with 3 tensors left ${liveTensors(c.backend.name) - base} live`);
      dispose([a, list]);
      assert(liveTensors(c.backend.name) === base, 'dispose(value) frees every tensor in it');
      let kept: Tensor | undefined;
      tidy(() => {
        kept = keep(exp(x));
        exp(x);
      });
      assert(kept && !kept.isDisposed && liveTensors(c.backend.name) === base + 1, 'keep() exempts a tensor from tidy');
      kept!.dispose();
      assert(liveTensors(c.backend.name) === base, 'baseline');
    },
  },
  {
    name: 'tidy disposes everything when its function throws, and refuses async functions with a BackendError',
    async run(c) {
      const x = c.tensor([1, 2], [2]);
      const base = liveTensors(c.backend.name);
      try {
        tidy(() => {
          exp(x);
          add(x, x);
          throw new Error('boom');
        });
        fail('tidy should rethrow');
      } catch (e) {
        assert((e as Error).message === 'boom', `tidy rethrows the error, got ${String(e)}`);
      }
      assert(liveTensors(c.backend.name) === base, 'tensors made before the throw are disposed');
      let err: unknown;
      try {
        tidy(() => Promise.resolve(exp(x)) as never);
      } catch (e) {
        err = e;
      }
      assert(err instanceof BackendError && err.op === 'tidy', `tidy(async) should throw BackendError from tidy, got ${String(err)}`);
      await Promise.resolve();
      assert(liveTensors(c.backend.name) === base, 'baseline after a refused async tidy');
    },
  },
  {
    name: 'memory() and Backend.memory() return to baseline after a chain of composed ops (softmax, rmsNorm, matmul, topk, crossEntropy)',
    async run(c) {
      const before = counts(c);
      const x = c.tensor(Array.from({ length: 4 * 96 }, (_, i) => Math.sin(i)), [4, 96]);
      const w = c.tensor(new Array(96).fill(1), [96]);
      const wt = c.tensor(Array.from({ length: 96 * 10 }, (_, i) => Math.cos(i)), [10, 96]);
      const t = c.tensor([1, 2, 3, 9], [4], 'i32');
      const mid = counts(c);
      assert(mid.backendBuffers >= before.backendBuffers + 4 && mid.backendBytes >= before.backendBytes + (4 * 96 + 96 + 960) * 4 + 16, `Backend.memory() should count the 4 new buffers (${JSON.stringify(before)} -> ${JSON.stringify(mid)})`);
      const loss = tidy(() => {
        const h = rmsNorm(softmax(x), w);
        const logits = matmul(h, transpose(wt));
        const { values } = topk(logits, 3);
        return add(crossEntropy(logits, t), sum(values));
      });
      await loss.data();
      loss.dispose();
      sameCounts('after the op chain (inputs still live)', mid, counts(c));
      for (const v of [x, w, wt, t]) v.dispose();
      sameCounts('after disposing the inputs', before, counts(c));
    },
  },
  {
    name: 'reshape shares storage (one buffer, reference counted): the data stays until the last view is disposed',
    async run(c) {
      const before = counts(c);
      const x = c.tensor([1, 2, 3, 4, 5, 6], [2, 3]);
      const y = reshape(x, [3, 2]);
      const z = reshape(y, [6]);
      const mid = counts(c);
      assert(mid.buffers === before.buffers + 1 && mid.tensors === before.tensors + 3, `three views of one buffer: ${JSON.stringify(mid)} vs ${JSON.stringify(before)}`);
      assert(mid.backendBuffers === before.backendBuffers + 1, 'the backend holds one buffer for the three views');
      assert(y.dataId === x.dataId && z.dataId === x.dataId, 'reshape keeps the DataId');
      x.dispose();
      y.dispose();
      expectCodes('reshape view after the others were disposed', 'f32', await z.data(), [1, 2, 3, 4, 5, 6]);
      assert(counts(c).backendBuffers === before.backendBuffers + 1, 'storage stays while a view is live');
      z.dispose();
      sameCounts('after disposing every view', before, counts(c));
    },
  },
  {
    name: 'Backend.memory() counts bytes and buffers of write and release, for every dtype',
    run(c) {
      for (const [dtype, bytes] of [
        ['f32', 4],
        ['f16', 2],
        ['bf16', 2],
        ['e4m3', 1],
        ['e5m2', 1],
        ['i32', 4],
        ['u8', 1],
        ['bool', 1],
      ] as const) {
        const before = c.backend.memory();
        const codes = dtype === 'f32' ? new Float32Array(1000) : dtype === 'i32' ? new Int32Array(1000) : bytes === 2 ? new Uint16Array(1000) : new Uint8Array(1000);
        const id = c.backend.write(codes, dtype, [10, 100]);
        const mid = c.backend.memory();
        c.backend.release(id);
        const after = c.backend.memory();
        assert(mid.buffers === before.buffers + 1, `${dtype}: write adds one buffer (${before.buffers} -> ${mid.buffers})`);
        assert(mid.bytes >= before.bytes + 1000 * bytes, `${dtype}: write of 1000 elements adds at least ${1000 * bytes} bytes (${before.bytes} -> ${mid.bytes})`);
        assert(after.buffers === before.buffers && after.bytes === before.bytes, `${dtype}: release returns to ${JSON.stringify(before)}, got ${JSON.stringify(after)}`);
      }
    },
  },
  {
    name: 'every primitive returns new storage, even when the result equals an input (same-dtype cast, full slice, identity transpose, single concat)',
    async run(c) {
      const x = c.tensor([1, 2, 3, 4, 5, 6], [2, 3]);
      for (const [label, call] of [
        ['cast f32 -> f32', () => c.backend.cast(x, 'f32', { saturate: false })],
        ['slice of everything', () => c.backend.slice(x, [0, 0], [2, 3])],
        ['identity transpose', () => c.backend.transpose(x, [0, 1])],
        ['concat of one tensor', () => c.backend.concat([x], 0, [2, 3])],
        ['where with one branch', () => c.backend.where(c.tensor([1], [1], 'bool'), x, x, [2, 3])],
      ] as const) {
        const r = await c.prim(label, 'f32', [2, 3], call, [x]);
        expectCodes(label, 'f32', r.codes, [1, 2, 3, 4, 5, 6]);
      }
      expectCodes('the input is intact after its copies were released', 'f32', await x.data(), [1, 2, 3, 4, 5, 6]);
    },
  },
];

export const memoryArea: Area = { name: 'memory', cases };
