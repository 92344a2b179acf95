import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { ArgumentError } from '@kiln/core';
import { Command, Option } from 'commander';
import { exportHuggingFace, modelFromSnapshot, writeExportReference } from '../export/hf-export.js';
import { loadLatestSnapshot, loadSnapshot } from '../train/snapshot.js';
import { disposeBackends, selectBackend, writeOut } from './shared.js';

export interface ExportCommandOptions {
  run?: string;
  checkpoint?: string;
  out: string;
  dropMtp?: boolean;
  dtype?: 'f32' | 'bf16';
  /** tokenizer.json to include (default: the run directory's tokenizer.json when there is one). */
  tokenizer?: string;
  /** Also write reference.safetensors (input ids + kiln's logits) for check_hf_export.py. */
  reference?: boolean;
  backend?: string;
  json?: boolean;
}

export interface ExportReport {
  checkpoint: string;
  step: number;
  out: string;
  files: string[];
  warnings: string[];
}

/** `kiln export`: a training checkpoint as a Hugging Face model directory. */
export async function runExport(options: ExportCommandOptions, print = true): Promise<ExportReport> {
  if ((options.run === undefined) === (options.checkpoint === undefined)) throw new ArgumentError('export', 'give exactly one of --run RUN_DIR and --checkpoint DIR');
  const backend = await selectBackend('export', options.backend);
  try {
    const warnings: string[] = [];
    let snap;
    let ckptDir: string;
    let runDir: string;
    if (options.run !== undefined) {
      runDir = options.run;
      snap = await loadLatestSnapshot(runDir, { onWarning: (m) => warnings.push(m) });
      if (!snap) throw new ArgumentError('export', `${runDir} has no complete checkpoint (looked in ${join(runDir, 'checkpoints')})${warnings.length ? `: ${warnings.join('; ')}` : ''}`);
      ckptDir = join(runDir, 'checkpoints', `step-${String(snap.step).padStart(8, '0')}`);
    } else {
      ckptDir = options.checkpoint!;
      runDir = dirname(dirname(resolve(ckptDir)));
      snap = await loadSnapshot(ckptDir);
    }
    let tokenizer = options.tokenizer;
    if (tokenizer === undefined && existsSync(join(runDir, 'tokenizer.json'))) tokenizer = join(runDir, 'tokenizer.json');
    const model = modelFromSnapshot(snap, ckptDir);
    let files: string[];
    try {
      ({ files } = await exportHuggingFace(model, options.out, { dropMtp: options.dropMtp, dtype: options.dtype, tokenizerJson: tokenizer, baseConfig: snap.configJson.model as Record<string, unknown> }));
    } finally {
      model.dispose();
    }
    if (options.reference) files.push(await writeExportReference(options.out));
    const report: ExportReport = { checkpoint: resolve(ckptDir), step: snap.step, out: resolve(options.out), files, warnings };
    if (print) {
      await writeOut(
        options.json
          ? `${JSON.stringify(report)}\n`
          : [...warnings.map((w) => `warning: ${w}`), `exported step ${snap.step} from ${report.checkpoint}${options.dropMtp ? ' (without MTP)' : ''} as ${options.dtype ?? 'f32'}:`, ...files.map((f) => `  ${f}`), ''].join('\n'),
      );
    }
    return report;
  } finally {
    await disposeBackends([backend.name]);
  }
}

export function exportCommand(): Command {
  return new Command('export')
    .description('export a training checkpoint as a Hugging Face model (config.json, model.safetensors, tokenizer.json)')
    .option('--run <dir>', "a run directory: its newest complete checkpoint")
    .option('--checkpoint <dir>', 'one checkpoint directory (RUN_DIR/checkpoints/step-XXXXXXXX)')
    .requiredOption('--out <dir>', 'output directory')
    .option('--drop-mtp', 'leave the multi-token-prediction modules out')
    .addOption(new Option('--dtype <dtype>', 'tensor dtype').choices(['f32', 'bf16']).default('f32'))
    .option('--tokenizer <file>', "tokenizer.json to include (default: the run's tokenizer.json)")
    .option('--reference', 'also write reference.safetensors (input ids + kiln logits) for test/fixtures/check_hf_export.py')
    .option('--backend <name>', 'backend (default: the best available)')
    .option('--json', 'print the result as JSON')
    .action(async (opts: ExportCommandOptions) => {
      await runExport(opts);
    });
}
