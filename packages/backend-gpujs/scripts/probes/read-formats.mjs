// Probe: readPixels cost by format (RGBA float vs RGBA8, same bytes), a fresh Float32Array vs a kept one, on a raw
// headless-gl context. Results: bench/results/gpujs-gpu/h200-read-staging/probe-read-formats.txt.
//   xvfb-run -a node scripts/probes/read-formats.mjs
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const createGL = createRequire(require.resolve('gpu.js'))('gl');
const gl = createGL(1, 1, { antialias: false, depth: false, stencil: false, alpha: false });
const ext = gl.getExtension('OES_texture_float');
console.log('OES_texture_float', !!ext, gl.getParameter(gl.RENDERER), gl.getParameter(gl.VERSION));
const R = 41;
const med = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
function target(w, h, type) {
  const t = gl.createTexture();
  gl.bindTexture(gl.TEXTURE_2D, t);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
  gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, w, h, 0, gl.RGBA, type, null);
  const f = gl.createFramebuffer();
  gl.bindFramebuffer(gl.FRAMEBUFFER, f);
  gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, t, 0);
  return { t, f, ok: gl.checkFramebufferStatus(gl.FRAMEBUFFER) === gl.FRAMEBUFFER_COMPLETE };
}
for (const bytes of [65536, 262144, 1048576]) {
  const texF = Math.sqrt(bytes / 16);
  const texB = Math.sqrt(bytes / 4);
  const a = target(texF, texF, gl.FLOAT);
  const bb = target(texB, texB, gl.UNSIGNED_BYTE);
  const time = (o, w, type, Arr, clear) => {
    const out = new Arr(w * w * 4);
    const ts = [];
    for (let r = 0; r <= R; r++) {
      gl.bindFramebuffer(gl.FRAMEBUFFER, o.f);
      if (clear) { gl.clearColor(0.1 * r, 0.5, 0.25, 1); gl.clear(gl.COLOR_BUFFER_BIT); gl.finish(); }
      const t0 = performance.now();
      gl.readPixels(0, 0, w, w, gl.RGBA, type, out);
      if (r) ts.push(performance.now() - t0);
    }
    return med(ts).toFixed(3);
  };
  console.log(`${bytes} B: float ${texF}^2 ok ${a.ok}: ${time(a, texF, gl.FLOAT, Float32Array, true)} ms (no clear ${time(a, texF, gl.FLOAT, Float32Array, false)}); rgba8 ${texB}^2 ok ${bb.ok}: ${time(bb, texB, gl.UNSIGNED_BYTE, Uint8Array, true)} ms (no clear ${time(bb, texB, gl.UNSIGNED_BYTE, Uint8Array, false)})`);
}
