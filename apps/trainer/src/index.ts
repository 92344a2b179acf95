/**
 * @kiln/trainer: the trainer behind the `kiln` CLI, usable as a library.
 * Commands come as functions (`collectInfo`, `runDemo`) and as the CLI itself (`main`).
 */
export { VERSION } from './version.js';
export { createProgram, main } from './program.js';
export { KNOWN_BACKEND_PACKAGES, ON_REQUEST_BACKEND_PACKAGES, loadBackendPackages, backendNameOf, type BackendPackageStatus } from './backends.js';
export { systemInfo, type SystemInfo } from './system.js';
export { isKilnError } from './errors.js';
export { collectInfo, formatInfo, formatMemory, type InfoReport, type BackendReport } from './commands/info.js';
export { runDemo, formatDemo, DEMO_TOLERANCE, type DemoOptions, type DemoResult } from './commands/demo.js';
export * from './model/config.js';
export { DeepseekV3ForCausalLM, layerConfig, type CreateOptions, type ForwardOptions } from './model/deepseek-v3.js';
export { loadPretrained, type LoadPretrainedOptions, type Pretrained } from './model/pretrained.js';
export * from './checkpoint/index.js';
export * from './generate/index.js';
export { runLogits, type LogitsOptions, type LogitsReport } from './commands/logits.js';
export { runGenerate, loadHfTokenizer, type GenerateCommandOptions, type GenerateReport } from './commands/generate.js';
export { runTokenizerTrain, type TokenizerTrainOptions, type TokenizerTrainReport } from './commands/tokenizer.js';
export * from './tokenizer/index.js';
export * from './data/index.js';
export * from './optim/index.js';
export * from './baseline/index.js';
export { saveSnapshot, loadLatestSnapshot, loadSnapshot, assertSameConfig, listSnapshotDirs, snapshotDirName, CheckpointDiskFullError, ConfigMismatchError, MODEL_TENSOR_PREFIX, SNAPSHOT_FORMAT, SNAPSHOT_VERSION, type SnapshotTensor, type TrainingSnapshot, type SaveSnapshotOptions, type SnapshotProgress } from './train/snapshot.js';
export * from './train/index.js';
export { PRESETS, DEFAULT_PRESET, type Preset, type ModelSettings, type TrainSettings, type Precision, type ScheduleKind } from './presets/index.js';
export { runTrainCommand, trainCommand, type TrainCommandOptions } from './commands/train.js';
export { exportHuggingFace, loadHuggingFaceModel, writeExportReference, modelFromSnapshot, type HfExportOptions } from './export/index.js';
export { toConfigJson } from './model/config-json.js';
export { MetricsError, readRunMetrics, plotRuns, renderCharts, type RunMetrics, type PlotOptions, type Chart, type ChartId } from './plot/index.js';
export { runExport, exportCommand, type ExportCommandOptions, type ExportReport } from './commands/export.js';
export { runPlot, plotCommand, type PlotCommandOptions } from './commands/plot.js';
