/**
 * Whether a WebGL 1.0 context renders to an RGBA float texture: OES_texture_float (and
 * WEBGL_color_buffer_float where offered) and a framebuffer with a 2x2 float texture that is
 * complete. The headless-gl and page engines refuse a context that cannot (every kernel output
 * is a float render target).
 */
export function rendersToFloatTextures(gl: unknown): boolean {
  const g = gl as Record<string, (...a: unknown[]) => unknown> & Record<string, number>;
  if (!g.getExtension('OES_texture_float')) return false;
  g.getExtension('WEBGL_color_buffer_float');
  const tex = g.createTexture();
  g.bindTexture(g.TEXTURE_2D, tex);
  g.texImage2D(g.TEXTURE_2D, 0, g.RGBA, 2, 2, 0, g.RGBA, g.FLOAT, null);
  const fb = g.createFramebuffer();
  g.bindFramebuffer(g.FRAMEBUFFER, fb);
  g.framebufferTexture2D(g.FRAMEBUFFER, g.COLOR_ATTACHMENT0, g.TEXTURE_2D, tex, 0);
  const ok = g.checkFramebufferStatus(g.FRAMEBUFFER) === g.FRAMEBUFFER_COMPLETE;
  g.bindFramebuffer(g.FRAMEBUFFER, null);
  g.bindTexture(g.TEXTURE_2D, null);
  g.deleteFramebuffer(fb);
  g.deleteTexture(tex);
  return ok;
}
