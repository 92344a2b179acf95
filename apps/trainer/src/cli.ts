#!/usr/bin/env node
import { main } from './program.js';

// Exit explicitly once output is flushed: a backend that failed mid-command may still hold
// worker threads or device handles that would otherwise keep the process alive.
main(process.argv).then((code) => {
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
});
