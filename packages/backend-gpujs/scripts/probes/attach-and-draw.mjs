// Probe: headless-gl FBO attach cost (its JS wrapper detaches and reattaches every attachment) for reads and draws:
// a fixed attachment, re-attaching per call, an FBO per texture. bench/results/gpujs-gpu/h200-read-staging/.
//   xvfb-run -a node scripts/probes/attach-and-draw.mjs
import { createRequire } from 'node:module';
import { useFillProgram } from './fill-program.mjs';
const require = createRequire(import.meta.url);
const createGL = createRequire(require.resolve('gpu.js'))('gl');
const gl = createGL(1, 1, { antialias: false, depth: false, stencil: false, alpha: false });
gl.getExtension('OES_texture_float');
const db = gl.getExtension('WEBGL_draw_buffers');
console.log('draw buffers', !!db, db && gl.getParameter(db.MAX_DRAW_BUFFERS_WEBGL));
const native = Object.getPrototypeOf(Object.getPrototypeOf(Object.getPrototypeOf(gl)));
console.log('native has framebufferTexture2D', typeof native.framebufferTexture2D, Object.getPrototypeOf(gl).constructor.name, Object.getPrototypeOf(Object.getPrototypeOf(gl)).constructor.name);
const R = 41;
const med = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const W = 128;
const tex = () => { const t = gl.createTexture(); gl.bindTexture(gl.TEXTURE_2D, t); gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST); gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST); gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, W, W, 0, gl.RGBA, gl.FLOAT, null); return t; };
const ts = [tex(), tex(), tex(), tex()];
const f = gl.createFramebuffer();
const out = new Float32Array(W * W * 4);
const T = (fn) => { const xs = []; for (let r = 0; r <= R; r++) { const t0 = performance.now(); fn(r); if (r) xs.push(performance.now() - t0); } return med(xs).toFixed(4); };
gl.bindFramebuffer(gl.FRAMEBUFFER, f);
gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, ts[0], 0);
console.log('fixed attachment, readPixels', T(() => gl.readPixels(0, 0, W, W, gl.RGBA, gl.FLOAT, out)));
console.log('wrapper attach (alternating) + readPixels', T((r) => { gl.bindFramebuffer(gl.FRAMEBUFFER, f); gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, ts[r % 4], 0); gl.readPixels(0, 0, W, W, gl.RGBA, gl.FLOAT, out); }));
console.log('wrapper attach only (+finish)', T((r) => { gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, ts[r % 4], 0); gl.finish(); }));
console.log('new Float32Array + readPixels', T(() => { const o = new Float32Array(W * W * 4); gl.readPixels(0, 0, W, W, gl.RGBA, gl.FLOAT, o); }));
const fbs = ts.map((t) => { const fb = gl.createFramebuffer(); gl.bindFramebuffer(gl.FRAMEBUFFER, fb); gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, t, 0); return fb; });
console.log('FBO per texture: bind + readPixels', T((r) => { gl.bindFramebuffer(gl.FRAMEBUFFER, fbs[r % 4]); gl.readPixels(0, 0, W, W, gl.RGBA, gl.FLOAT, out); }));
// a draw into alternating textures: the kernel-call pattern
const u = useFillProgram(gl, W);
gl.bindFramebuffer(gl.FRAMEBUFFER, f);
console.log('draw, fixed target (+finish)', T((r) => { gl.uniform1f(u, r); gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4); gl.finish(); }));
console.log('draw, wrapper attach alternating (+finish)', T((r) => { gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, ts[r % 4], 0); gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4); gl.finish(); }));
console.log('draw, FBO per texture (+finish)', T((r) => { gl.bindFramebuffer(gl.FRAMEBUFFER, fbs[r % 4]); gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4); gl.finish(); }));
console.log('20 draws, wrapper attach alternating, one finish', T((r) => { for (let i = 0; i < 20; i++) { gl.bindFramebuffer(gl.FRAMEBUFFER, f); gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, ts[i % 4], 0); gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4); } gl.finish(); }));
console.log('20 draws, FBO per texture, one finish', T((r) => { for (let i = 0; i < 20; i++) { gl.bindFramebuffer(gl.FRAMEBUFFER, fbs[i % 4]); gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4); } gl.finish(); }));
