declare const __KILN_TRAINER_VERSION__: string | undefined;

/** The @kiln/trainer version (injected from package.json at build time). */
export const VERSION: string = typeof __KILN_TRAINER_VERSION__ === 'string' ? __KILN_TRAINER_VERSION__ : '0.0.0-dev';
