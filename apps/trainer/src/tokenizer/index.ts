export * from './bpe.js';
export * from './train.js';
