export * from './brown.js';
export * from './stream.js';
export * from './readers.js';
export * from './shards.js';
