import { CheckpointError } from './errors.js';
import { SafetensorsFile } from './safetensors-file.js';

export interface InputIds {
  ids: Int32Array;
  batch: number;
  seq: number;
}

/** Reads `input_ids` (I32 or I64, [batch, seq]) from a safetensors file. */
export async function readInputIds(path: string, name = 'input_ids'): Promise<InputIds> {
  const f = await SafetensorsFile.open(path);
  try {
    if (!f.has(name)) throw new CheckpointError(path, `missing (expected I32 or I64 [batch, seq]; the file has ${f.names().map((n) => `'${n}'`).join(', ') || 'no tensors'})`, name);
    const e = f.entry(name);
    if (e.dtype !== 'I32' && e.dtype !== 'I64') throw new CheckpointError(path, `dtype is ${e.dtype}, expected I32 or I64`, name);
    if (e.shape.length !== 2 || e.shape[0]! < 1 || e.shape[1]! < 1) throw new CheckpointError(path, `shape is [${e.shape.join(', ')}], expected [batch, seq] with batch, seq >= 1`, name);
    const { data } = await f.readHost(name);
    return { ids: data as Int32Array, batch: e.shape[0]!, seq: e.shape[1]! };
  } finally {
    await f.close();
  }
}

/** Refuses token ids outside [0, vocabSize). */
export function checkTokenIds(ids: ArrayLike<number>, vocabSize: number, source: string, name = 'input_ids'): void {
  for (let i = 0; i < ids.length; i++) {
    const v = ids[i]!;
    if (!Number.isInteger(v) || v < 0 || v >= vocabSize) {
      throw new CheckpointError(source, `element ${i} is ${v}, expected a token id in [0, ${vocabSize}) (vocab_size)`, name);
    }
  }
}
