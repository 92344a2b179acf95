import { Command, CommanderError } from 'commander';
import { demoCommand } from './commands/demo.js';
import { exportCommand } from './commands/export.js';
import { generateCommand } from './commands/generate.js';
import { infoCommand } from './commands/info.js';
import { logitsCommand } from './commands/logits.js';
import { plotCommand } from './commands/plot.js';
import { tokenizerCommand } from './commands/tokenizer.js';
import { trainCommand } from './commands/train.js';
import { isKilnError } from './errors.js';
import { VERSION } from './version.js';

/** The `kiln` command line: every command, global options and help. */
export function createProgram(): Command {
  const program = new Command('kiln')
    .description("kiln's trainer: DeepSeek-V3-style training on the best backend this machine has")
    .version(VERSION, '-V, --version', 'print the kiln version')
    .option('--verbose', 'print stack traces of errors (or set KILN_DEBUG=1)')
    .addCommand(infoCommand())
    .addCommand(demoCommand())
    .addCommand(tokenizerCommand())
    .addCommand(logitsCommand())
    .addCommand(generateCommand())
    .addCommand(trainCommand())
    .addCommand(exportCommand())
    .addCommand(plotCommand())
    .addHelpText(
      'after',
      ['', 'Examples:', '  kiln info              backends available here, with device names', '  kiln info --json', '  kiln demo --size 512   a checked GEMM on the best backend',
        '  kiln logits --model DIR --input ids.safetensors --out logits.safetensors',
        '  kiln generate --model DIR --prompt "The jury" --max-new-tokens 40',
        '  kiln train              train the default preset, then compare with xz -9e',
        '  kiln export --run runs/RUN --out hf/   the newest checkpoint as a Hugging Face model',
        '  kiln plot runs/A runs/B --out runs.html'].join('\n'),
    );
  // Unknown commands/options and bad values: commander prints the error, then the help;
  // main() turns its exit into a return code.
  for (const cmd of [program, ...program.commands]) cmd.exitOverride().showHelpAfterError().showSuggestionAfterError();
  return program;
}

function wantsStack(argv: readonly string[]): boolean {
  const debug = process.env.KILN_DEBUG;
  return argv.includes('--verbose') || (debug !== undefined && debug !== '' && debug !== '0' && debug !== 'false');
}

/**
 * Runs the CLI on `argv` (as `process.argv`: node, script, ...args) and returns the exit
 * code; errors are reported on stderr, never thrown.
 */
export async function main(argv: readonly string[] = process.argv): Promise<number> {
  const program = createProgram();
  try {
    await program.parseAsync([...argv]);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here too, with exit code 0; commander already printed.
      return err.exitCode;
    }
    const verbose = wantsStack(argv);
    if (isKilnError(err)) {
      process.stderr.write(`kiln: ${err.message}\n`);
      if (verbose && err.stack) process.stderr.write(`${err.stack}\n`);
      return 1;
    }
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`kiln: unexpected error: ${message}\n`);
    if (verbose && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    else process.stderr.write('(run again with --verbose or KILN_DEBUG=1 for the stack trace; please report it if it is a bug)\n');
    return 1;
  }
}
