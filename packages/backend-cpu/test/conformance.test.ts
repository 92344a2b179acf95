import { runConformance } from '@kiln/conformance';
import { CpuBackend } from '@kiln/backend-cpu';

runConformance(() => new CpuBackend());
