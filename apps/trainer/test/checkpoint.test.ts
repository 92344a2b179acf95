import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as k from '@kiln/core';
import { CpuBackend } from '@kiln/backend-cpu';
import {
  HfCheckpoint,
  SafetensorsFile,
  checkTokenIds,
  loadModelWeights,
  parseQuantizationConfig,
  readInputIds,
  writeFileAtomic,
  writeSafetensorsAtomic,
  type LoadableModel,
} from '../src/checkpoint/index.js';
import { expectCheckpointError } from './helpers.js';

let backend: CpuBackend;
let dir: string;
beforeAll(() => {
  backend = new CpuBackend();
  k.useBackend(backend);
  dir = mkdtempSync(join(tmpdir(), 'kiln-ckpt-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const FIX = new URL('./fixtures/', import.meta.url).pathname;

function f32(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32 - 0.5) * 2;
  }
  return out;
}

type Entry = { dtype: string; shape: number[]; data: ArrayBufferView };
let nextDir = 0;
function writeCheckpoint(tensors: Record<string, Entry>, config: Record<string, unknown> = { model_type: 'deepseek_v3' }, shards?: string[][]): string {
  const d = join(dir, `c${nextDir++}`);
  mkdirSync(d);
  writeFileSync(join(d, 'config.json'), JSON.stringify(config));
  const enc = (names: string[]) => k.encodeSafetensors(Object.fromEntries(names.map((n) => [n, { dtype: tensors[n]!.dtype, shape: tensors[n]!.shape, bytes: k.bytesOf(tensors[n]!.data) }])));
  if (!shards) {
    writeFileSync(join(d, 'model.safetensors'), enc(Object.keys(tensors)));
  } else {
    const weightMap: Record<string, string> = {};
    shards.forEach((names, i) => {
      const fn = `model-${i + 1}-of-${shards.length}.safetensors`;
      writeFileSync(join(d, fn), enc(names));
      for (const n of names) weightMap[n] = fn;
    });
    writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  }
  return d;
}


describe('SafetensorsFile (lazy reader)', () => {
  it('reads tensors one at a time, narrowing F64 and I64', async () => {
    const a = f32(12, 1);
    const path = join(dir, 'lazy.safetensors');
    writeFileSync(
      path,
      k.encodeSafetensors({
        a: { dtype: 'F32', shape: [3, 4], bytes: k.bytesOf(a) },
        d: { dtype: 'F64', shape: [2], bytes: k.bytesOf(new Float64Array([1.5, -2])) },
        i: { dtype: 'I64', shape: [3], bytes: k.bytesOf(new BigInt64Array([0n, 7n, -3n])) },
      }),
    );
    const f = await SafetensorsFile.open(path);
    try {
      expect(f.names().sort()).toEqual(['a', 'd', 'i']);
      const t = await f.readTensor('a');
      expect(t.shape).toEqual([3, 4]);
      expect(Array.from(t.dataSync() as Float32Array)).toEqual(Array.from(a));
      expect(Array.from((await f.readTensor('d')).dataSync() as Float32Array)).toEqual([1.5, -2]);
      const i = await f.readTensor('i');
      expect(i.dtype).toBe('i32');
      expect(Array.from(i.dataSync() as Int32Array)).toEqual([0, 7, -3]);
      await expectCheckpointError(f.readTensor('nope'), path, "tensor 'nope'", 'not found');
    } finally {
      await f.close();
    }
  });

  it('refuses I64 values outside the int32 range, naming the tensor', async () => {
    const path = join(dir, 'big.safetensors');
    writeFileSync(path, k.encodeSafetensors({ ids: { dtype: 'I64', shape: [2], bytes: k.bytesOf(new BigInt64Array([1n, 2n ** 40n])) } }));
    const f = await SafetensorsFile.open(path);
    await expectCheckpointError(f.readTensor('ids'), "tensor 'ids'", 'int32');
    await f.close();
  });

  it('refuses truncated and corrupted files with a typed error naming the file', async () => {
    const good = k.encodeSafetensors({ w: { dtype: 'F32', shape: [4, 4], bytes: k.bytesOf(f32(16, 2)) } });
    const trunc = join(dir, 'trunc.safetensors');
    writeFileSync(trunc, good.subarray(0, good.length - 5));
    await expectCheckpointError(SafetensorsFile.open(trunc), trunc);
    const tiny = join(dir, 'tiny.safetensors');
    writeFileSync(tiny, good.subarray(0, 5));
    await expectCheckpointError(SafetensorsFile.open(tiny), tiny, 'too short');
    const bad = Uint8Array.from(good);
    bad[10] = 0x7b; // break the JSON header
    bad[11] = 0x7b;
    const corrupt = join(dir, 'corrupt.safetensors');
    writeFileSync(corrupt, bad);
    await expectCheckpointError(SafetensorsFile.open(corrupt), corrupt);
    const hugeHeader = Uint8Array.from(good);
    new DataView(hugeHeader.buffer).setUint32(0, 1e9, true);
    const hh = join(dir, 'hh.safetensors');
    writeFileSync(hh, hugeHeader);
    await expectCheckpointError(SafetensorsFile.open(hh), hh);
    await expectCheckpointError(SafetensorsFile.open(join(dir, 'missing.safetensors')), 'missing.safetensors', 'cannot open');
  });
});

describe('HfCheckpoint', () => {
  const w = f32(6, 3);
  const b = f32(3, 4);
  const tensors = { 'x.weight': { dtype: 'F32', shape: [3, 2], data: w }, 'x.bias': { dtype: 'F32', shape: [3], data: b } };

  it('opens single-file and sharded checkpoints the same way', async () => {
    for (const d of [writeCheckpoint(tensors), writeCheckpoint(tensors, undefined, [['x.weight'], ['x.bias']])]) {
      const c = await HfCheckpoint.open(d);
      try {
        expect(c.names().sort()).toEqual(['x.bias', 'x.weight']);
        expect(c.config.model_type).toBe('deepseek_v3');
        const t = (await c.load('x.weight')) as k.Tensor;
        expect(Array.from(t.dataSync() as Float32Array)).toEqual(Array.from(w));
      } finally {
        await c.close();
      }
    }
  });

  it('converts BF16 to f32', async () => {
    const vals = new Float32Array([1, -2.5, 0.15625]);
    const d = writeCheckpoint({ n: { dtype: 'BF16', shape: [3], data: k.encodeBf16(vals) } });
    const c = await HfCheckpoint.open(d);
    const t = (await c.load('n')) as k.Tensor;
    expect(t.dtype).toBe('f32');
    expect(Array.from(t.dataSync() as Float32Array)).toEqual([1, -2.5, 0.15625]);
    await c.close();
  });

  it('refuses bad directories, configs and indexes', async () => {
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    await expectCheckpointError(HfCheckpoint.open(empty), 'config.json');
    writeFileSync(join(empty, 'config.json'), '{not json');
    await expectCheckpointError(HfCheckpoint.open(empty), 'config.json', 'not valid JSON');
    writeFileSync(join(empty, 'config.json'), '{}');
    await expectCheckpointError(HfCheckpoint.open(empty), 'no model.safetensors');
    const d = writeCheckpoint(tensors, undefined, [['x.weight'], ['x.bias']]);
    const idx = JSON.parse(readFileSync(join(d, 'model.safetensors.index.json'), 'utf8'));
    idx.weight_map['y.weight'] = idx.weight_map['x.weight'];
    writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify(idx));
    await expectCheckpointError(HfCheckpoint.open(d), "tensor 'y.weight'", 'not found in this shard');
    idx.weight_map['y.weight'] = '../evil.safetensors';
    writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify(idx));
    await expectCheckpointError(HfCheckpoint.open(d), 'shard file name');
  });

  it('validates quantization_config', () => {
    const ok = { quantization_config: { quant_method: 'fp8', fmt: 'e4m3', activation_scheme: 'dynamic', weight_block_size: [128, 128] } };
    expect(parseQuantizationConfig(ok, 'c.json')?.weightBlockSize).toEqual([128, 128]);
    expect(parseQuantizationConfig({}, 'c.json')).toBeUndefined();
    const bad = (q: Record<string, unknown>) => () => parseQuantizationConfig({ quantization_config: { ...ok.quantization_config, ...q } }, 'c.json');
    expect(bad({ quant_method: 'gptq' })).toThrow(/quant_method.*expected "fp8"/);
    expect(bad({ fmt: 'e5m2' })).toThrow(/fmt.*expected "e4m3"/);
    expect(bad({ weight_block_size: [64, 64] })).toThrow(/weight_block_size.*expected \[128, 128\]/);
    expect(bad({ activation_scheme: 'static' })).toThrow(/activation_scheme/);
  });
});

describe('FP8 weights (DeepSeek block format)', () => {
  const N = 130;
  const K = 260;
  const w = f32(N * K, 5);
  const q = k.quantizeBlockwise(w, [N, K], [128, 128]);
  const fp8Config = { model_type: 'deepseek_v3', quantization_config: { quant_method: 'fp8', fmt: 'e4m3', activation_scheme: 'dynamic', weight_block_size: [128, 128] } };

  it('loads F8_E4M3 + weight_scale_inv dequantized or kept as a QuantizedTensor', async () => {
    const d = writeCheckpoint(
      {
        'l.weight': { dtype: 'F8_E4M3', shape: [N, K], data: q.codes },
        'l.weight_scale_inv': { dtype: 'F32', shape: [2, 3], data: q.scales },
      },
      fp8Config,
    );
    const c = await HfCheckpoint.open(d);
    expect(c.quantization?.quantMethod).toBe('fp8');
    expect(c.isFp8('l.weight')).toBe(true);
    const kept = await c.load('l.weight', { fp8: 'keep' });
    expect(kept).toBeInstanceOf(k.QuantizedTensor);
    const qt = kept as k.QuantizedTensor;
    expect(qt.shape).toEqual([N, K]);
    expect(qt.block).toEqual([128, 128]);
    const deq = (await c.load('l.weight')) as k.Tensor;
    expect(deq.dtype).toBe('f32');
    const want = k.dequantizeBlockwise(q.codes, q.scales, [N, K], [128, 128]);
    expect(Array.from(deq.dataSync() as Float32Array)).toEqual(Array.from(want));
    await c.close();
  });

  it('refuses a missing or misshapen scale, naming the tensor and the expected shape', async () => {
    const d1 = writeCheckpoint({ 'l.weight': { dtype: 'F8_E4M3', shape: [N, K], data: q.codes } }, fp8Config);
    const c1 = await HfCheckpoint.open(d1);
    await expectCheckpointError(c1.load('l.weight'), "tensor 'l.weight'", 'l.weight_scale_inv');
    await c1.close();
    const d2 = writeCheckpoint(
      { 'l.weight': { dtype: 'F8_E4M3', shape: [N, K], data: q.codes }, 'l.weight_scale_inv': { dtype: 'F32', shape: [3, 2], data: q.scales } },
      fp8Config,
    );
    const c2 = await HfCheckpoint.open(d2);
    await expectCheckpointError(c2.load('l.weight'), "tensor 'l.weight_scale_inv'", /expected \[2, 3\]/);
    await c2.close();
  });
});

describe('loadModelWeights', () => {
  class FakeModel implements LoadableModel {
    readonly params = new Map<string, k.Tensor>();
    readonly set = new Map<string, k.Tensor | k.QuantizedTensor>();
    constructor(shapes: Record<string, number[]>) {
      for (const [n, s] of Object.entries(shapes)) this.params.set(n, k.zeros(s));
    }
    parameters() {
      return this.params;
    }
    setParameter(name: string, v: k.Tensor | k.QuantizedTensor) {
      this.set.set(name, v);
    }
  }
  const ckptTensors = {
    'model.layers.0.mlp.up_proj.weight': { dtype: 'F32', shape: [4, 2], data: f32(8, 6) },
    'model.norm.weight': { dtype: 'F32', shape: [2], data: f32(2, 7) },
  };

  it('loads every parameter and notes absent MTP layers', async () => {
    const c = await HfCheckpoint.open(writeCheckpoint(ckptTensors));
    const m = new FakeModel({ 'model.layers.0.mlp.up_proj.weight': [4, 2], 'model.norm.weight': [2], 'model.layers.1.eh_proj.weight': [2, 4] });
    const r = await loadModelWeights(m, c, { numHiddenLayers: 1 });
    expect(r.loaded).toBe(2);
    expect(m.set.size).toBe(2);
    expect(r.notes.join('\n')).toMatch(/MTP layer model\.layers\.1\.\* is not in the checkpoint/);
    await c.close();
  });

  it('refuses a missing tensor and a wrong shape', async () => {
    const c = await HfCheckpoint.open(writeCheckpoint(ckptTensors));
    await expectCheckpointError(loadModelWeights(new FakeModel({ 'model.layers.0.mlp.down_proj.weight': [2, 4] }), c, { numHiddenLayers: 1 }), "tensor 'model.layers.0.mlp.down_proj.weight'", 'missing', /\[2, 4\]/);
    await expectCheckpointError(loadModelWeights(new FakeModel({ 'model.norm.weight': [3] }), c, { numHiddenLayers: 1 }), "tensor 'model.norm.weight'", /shape is \[2\], expected \[3\]/);
    await c.close();
  });
});

describe('input ids and atomic output', () => {
  it('reads I32 and I64 input_ids and checks their range', async () => {
    const p32 = join(dir, 'ids32.safetensors');
    await writeSafetensorsAtomic(p32, { input_ids: { dtype: 'I32', shape: [1, 3], data: new Int32Array([1, 2, 3]) } });
    const p64 = join(dir, 'ids64.safetensors');
    await writeSafetensorsAtomic(p64, { input_ids: { dtype: 'I64', shape: [3, 1], data: new BigInt64Array([4n, 5n, 6n]) } });
    expect(await readInputIds(p32)).toEqual({ ids: new Int32Array([1, 2, 3]), batch: 1, seq: 3 });
    expect(await readInputIds(p64)).toEqual({ ids: new Int32Array([4, 5, 6]), batch: 3, seq: 1 });
    expect(() => checkTokenIds(new Int32Array([0, 9, 10]), 10, p32)).toThrow(/element 2 is 10, expected a token id in \[0, 10\)/);
    const pf = join(dir, 'idsf.safetensors');
    await writeSafetensorsAtomic(pf, { input_ids: { dtype: 'F32', shape: [1, 1], data: new Float32Array([1]) } });
    await expectCheckpointError(readInputIds(pf), "tensor 'input_ids'", 'expected I32 or I64');
    await writeSafetensorsAtomic(pf, { x: { dtype: 'I32', shape: [3], data: new Int32Array(3) } });
    await expectCheckpointError(readInputIds(pf), "tensor 'input_ids'", 'missing');
  });

  it('writes atomically, leaving no temporary files', async () => {
    const sub = mkdtempSync(join(dir, 'atomic-'));
    const p = join(sub, 'out.bin');
    await writeFileAtomic(p, new Uint8Array([1, 2, 3]));
    await writeFileAtomic(p, new Uint8Array([4, 5]));
    expect(Array.from(readFileSync(p))).toEqual([4, 5]);
    expect(readdirSync(sub)).toEqual(['out.bin']);
  });
});

describe('parity fixtures (made by transformers 5.17, see fixtures/README.md)', () => {
  it.each(['dsv3-qlora-yarn', 'dsv3-noqlora-sharded', 'dsv3-fp8'])('%s opens and every tensor reads', async (name) => {
    const c = await HfCheckpoint.open(join(FIX, name));
    try {
      expect(c.config.model_type).toBe('deepseek_v3');
      for (const n of c.names()) {
        if (n.endsWith('_scale_inv')) continue;
        const t = await c.load(n, { fp8: 'keep' });
        t.dispose();
      }
    } finally {
      await c.close();
    }
  });

  it('dsv3-fp8: every traced 1x128-activation GEMM matches matmulFp8 on the loaded FP8 weights', async () => {
    const c = await HfCheckpoint.open(join(FIX, 'dsv3-fp8'));
    const trace = await SafetensorsFile.open(join(FIX, 'dsv3-fp8', 'fp8_gemm_trace.safetensors'));
    try {
      const gemms = trace.names().filter((n) => n.endsWith('.input')).map((n) => n.slice(0, -'.input'.length));
      expect(gemms.length).toBeGreaterThan(10);
      let worst = 0;
      for (const g of gemms) {
        const w = (await c.load(`${g}.weight`, { fp8: 'keep' })) as k.QuantizedTensor;
        const x = await trace.readTensor(`${g}.input`);
        const want = (await trace.readHost(`${g}.output`)).data as Float32Array;
        const xq = k.quantize(x, { block: [1, 128] });
        const y = k.matmulFp8(xq, w);
        const got = y.dataSync() as Float32Array;
        let num = 0;
        let den = 0;
        for (let i = 0; i < want.length; i++) {
          num += (got[i]! - want[i]!) ** 2;
          den += want[i]! ** 2;
        }
        worst = Math.max(worst, Math.sqrt(num / den));
        for (const t of [w, x, xq, y]) t.dispose();
      }
      // The reference accumulates exactly (float64) and rounds once; kiln accumulates in f32.
      expect(worst).toBeLessThan(1e-6);
    } finally {
      await trace.close();
      await c.close();
    }
  });
});
