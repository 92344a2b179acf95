import type { Area } from '../harness.js';
import { autogradArea } from './autograd.js';
import { binaryArea } from './binary-broadcast.js';
import { castArea } from './cast.js';
import { composedArea } from './composed.js';
import { creationAndRandom } from './creation-and-random.js';
import { errorsArea } from './errors.js';
import { fp8Area } from './fp8.js';
import { indexingArea } from './indexing.js';
import { layoutArea } from './layout.js';
import { matmulArea } from './matmul.js';
import { memoryArea } from './memory.js';
import { reduceArea } from './reduce.js';
import { storageAndDtypes } from './storage-and-dtypes.js';
import { unaryArea } from './unary.js';
import { whereArea } from './where.js';

/** Every area of the suite, in run order. */
export const AREAS: readonly Area[] = [
  storageAndDtypes,
  creationAndRandom,
  unaryArea,
  binaryArea,
  whereArea,
  reduceArea,
  matmulArea,
  indexingArea,
  layoutArea,
  castArea,
  composedArea,
  fp8Area,
  autogradArea,
  errorsArea,
  memoryArea,
];
