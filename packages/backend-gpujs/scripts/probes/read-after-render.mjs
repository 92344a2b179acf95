// Probe: readPixels right after a draw into the texture vs of an untouched texture (is a read slow because of the
// render before it? no: 0.04 ms for 256 KiB either way on an H200). W: texture side (128).
//   xvfb-run -a node scripts/probes/read-after-render.mjs
import { createRequire } from 'node:module';
import { useFillProgram } from './fill-program.mjs';
const require = createRequire(import.meta.url);
const createGL = createRequire(require.resolve('gpu.js'))('gl');
const gl = createGL(1, 1, { antialias: false, depth: false, stencil: false, alpha: false });
gl.getExtension('OES_texture_float');
const R = 41;
const med = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const W = Number(process.env.W ?? 128);
const tex = () => { const t = gl.createTexture(); gl.bindTexture(gl.TEXTURE_2D, t); gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST); gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST); gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, W, W, 0, gl.RGBA, gl.FLOAT, null); return t; };
const t0 = tex(); const t1 = tex();
const fb = (t) => { const f = gl.createFramebuffer(); gl.bindFramebuffer(gl.FRAMEBUFFER, f); gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, t, 0); return f; };
const f0 = fb(t0); const f1 = fb(t1);
const out = new Float32Array(W * W * 4);
const u = useFillProgram(gl, W);
const T = (pre, fn) => { const xs = []; for (let r = 0; r <= R; r++) { pre(r); const a = performance.now(); fn(r); if (r) xs.push(performance.now() - a); } return med(xs).toFixed(4); };
const read = (f) => () => { gl.bindFramebuffer(gl.FRAMEBUFFER, f); gl.readPixels(0, 0, W, W, gl.RGBA, gl.FLOAT, out); };
console.log(`W ${W}: untouched t1 read`, T(() => {}, read(f1)));
console.log('draw into t0 + finish, then read t0', T((r) => { gl.bindFramebuffer(gl.FRAMEBUFFER, f0); gl.uniform1f(u, r); gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4); gl.finish(); }, read(f0)));
console.log('draw into t0 + finish, then read t1 (untouched)', T((r) => { gl.bindFramebuffer(gl.FRAMEBUFFER, f0); gl.uniform1f(u, r); gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4); gl.finish(); }, read(f1)));
console.log('clear t0 + finish, then read t0', T((r) => { gl.bindFramebuffer(gl.FRAMEBUFFER, f0); gl.clearColor(r, 1, 2, 3); gl.clear(gl.COLOR_BUFFER_BIT); gl.finish(); }, read(f0)));
console.log('draw into t0 + finish, read t0 twice (second timed)', T((r) => { gl.bindFramebuffer(gl.FRAMEBUFFER, f0); gl.uniform1f(u, r); gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4); gl.finish(); read(f0)(); }, read(f0)));
console.log('draw into t0 + flush, then read t0', T((r) => { gl.bindFramebuffer(gl.FRAMEBUFFER, f0); gl.uniform1f(u, r); gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4); gl.flush(); }, read(f0)));
console.log('draw+read t0 (both timed)', T(() => {}, (r) => { gl.bindFramebuffer(gl.FRAMEBUFFER, f0); gl.uniform1f(u, r); gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4); read(f0)(); }));
console.log('draw + finish (timed)', T(() => {}, (r) => { gl.bindFramebuffer(gl.FRAMEBUFFER, f0); gl.uniform1f(u, r); gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4); gl.finish(); }));
