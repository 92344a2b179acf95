#!/usr/bin/env node
// Idempotent bootstrap from plain Node + npm: get pnpm (via npx on a fresh clone), install, build.
import { execSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { packageManager } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const localPnpm = join(root, 'node_modules', '.bin', 'pnpm');
const pnpm = existsSync(localPnpm) ? `"${localPnpm}"` : `npx --yes ${packageManager}`;
// turbo looks for the package manager on PATH: put the repo's own bin folder first.
const binDir = join(root, 'node_modules', '.bin');
// JOBS: node-gyp builds (headless-gl's bundled ANGLE, minutes of C++) use every core.
const env = { ...process.env, npm_config_update_notifier: 'false', JOBS: process.env.JOBS ?? 'max', PATH: `${binDir}${delimiter}${process.env.PATH ?? ''}` };
const run = (cmd) => execSync(cmd, { cwd: root, stdio: 'inherit', env });

const frozen = process.env.CI ? ' --frozen-lockfile' : '';
run(`${pnpm} install${frozen} --reporter=append-only`);
run(`"${join(root, 'node_modules', '.bin', 'turbo')}" run build --output-logs=errors-only`);
