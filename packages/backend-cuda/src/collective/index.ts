export {
  NcclCollective,
  createNcclCollective,
  ncclAddonOf,
  ncclUniqueIdOf,
  DEFAULT_TIMEOUT_MS,
  type CreateNcclCollectiveOptions,
  type NcclAddon,
  type NcclBackendLike,
} from './nccl-collective.js';
export { launchRanks, joinFromEnv, writeFileAtomic, exitCodeOf, lineSplitter, NCCL_ID_BYTES, type LaunchOptions, type LaunchResult, type JoinedRank, type JoinFromEnvOptions } from './launch.js';
export * as ncclPlan from './plan.js';
