export * from './adamw.js';
export * from './schedule.js';
export * from './device-adamw.js';
