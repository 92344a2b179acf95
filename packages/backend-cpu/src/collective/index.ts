/**
 * In-process collectives of the CPU backend: N ranks on threads of one process (Node.js
 * worker_threads, or Web Workers) exchanging tensors through SharedArrayBuffers.
 * See docs/collectives.md.
 */
export { createCpuCollectiveGroup, abortCpuCollectiveGroup, type CpuCollectiveGroup, type CpuCollectiveGroupOptions } from './group.js';
export { CpuCollective, joinCpuCollective, type JoinCpuCollectiveOptions } from './cpu-collective.js';
export { runCpuRanks, CpuRankError, type RankContext, type RankEntry, type RunCpuRanksOptions } from './launcher.js';
