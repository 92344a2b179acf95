import { runConformance } from '@kiln/conformance';
import { WebGpuBackend } from '@kiln/backend-webgpu';

// Dawn's OpenGL backend on Mesa needs EGL without a display (llvmpipe in CI).
process.env.EGL_PLATFORM ??= 'surfaceless';

runConformance(() => WebGpuBackend.create(), { name: 'webgpu' });
