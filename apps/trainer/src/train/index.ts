export * from './balance.js';
export * from './config.js';
export * from './trainer.js';
export { Progress, type ProgressMode } from './progress.js';
