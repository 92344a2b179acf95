/**
 * Host-staged collectives: a group of in-process ranks, one kiln Backend each, whose data
 * moves by readback and upload through the host. See docs/packages.md (Collectives) and
 * docs/architecture.md (The Collective interface).
 */
export { HostStagedCollective } from './host-staged-collective.js';
export {
  HOST_STAGED_DEFAULT_TIMEOUT_MS,
  createHostStagedGroup,
  createHostStagedGroupWith,
  type HostStagedGroupOptions,
  type HostStagedGroupWithOptions,
} from './group.js';
export { checkReducible, allReduceCodes } from './host-reduce.js';
