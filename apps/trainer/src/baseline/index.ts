export * from './bpb.js';
