/**
 * The `para` program: one file per command under commands/, wired into commander here. Errors
 * become one readable line on stderr (one JSON object with `--json`, see errors.ts) and an exit
 * code: 2 for bad input (usage errors and typed ParaErrors), 1 for a bug or crash.
 */

import { isParaError } from '@para/core/node';
import { Command, CommanderError } from 'commander';
import { registerBenchCommand } from './commands/bench';
import { registerDemoCommand } from './commands/demo';
import { registerEvalCommand } from './commands/eval';
import { registerGenerateCommand } from './commands/generate';
import { registerInfoCommand } from './commands/info';
import { registerLogitsCommand } from './commands/logits';
import { registerPretrainCommand } from './commands/pretrain';
import { registerServeCommand } from './commands/serve';
import { registerSetupCommand } from './commands/setup';
import { registerTokenizerCommand } from './commands/tokenizer';
import { registerTrainCommand } from './commands/train';
import {
  CliExit,
  formatErrorLine,
  type JsonError,
  paraErrorForCli,
  usageErrorJson,
  wantsJson,
} from './errors';
import { addHelpExamples } from './examples';
import { PARA_VERSION } from './version';

/** Exit code of a usage error (unknown flag, missing required flag, bad value). */
export const EXIT_USAGE = 2;

export function buildProgram(options: { json?: boolean } = {}): Command {
  const program = new Command('para')
    .description(
      'PARA (Prompt Aware Representation Adjustment) fine-tuning and inference on TensorFlow.js',
    )
    .version(PARA_VERSION, '-V, --version')
    .exitOverride();
  // Inherited by every subcommand created after this (commander copies these settings).
  if (options.json) {
    // The usage error comes back as a JSON object from main(); commander prints nothing on stderr.
    program.configureOutput({ outputError: () => undefined, writeErr: () => undefined });
  } else {
    program.showHelpAfterError('(run with --help for usage)');
  }
  registerInfoCommand(program);
  registerLogitsCommand(program);
  registerGenerateCommand(program);
  registerTokenizerCommand(program);
  registerPretrainCommand(program);
  registerTrainCommand(program);
  registerEvalCommand(program);
  registerDemoCommand(program);
  registerBenchCommand(program);
  registerServeCommand(program);
  registerSetupCommand(program);
  addHelpExamples(program);
  return program;
}

function report(json: boolean, error: JsonError): void {
  process.stderr.write(json ? `${JSON.stringify({ error })}\n` : `${formatErrorLine(error)}\n`);
}

export async function main(argv: string[]): Promise<number> {
  const json = wantsJson(argv);
  const program = buildProgram({ json });
  // The command whose action runs: its options translate library field names into flags.
  let running: Command | undefined;
  program.hook('preAction', (_self, action) => {
    running = action;
  });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version exit with 0; every other commander error is a usage error. Its
      // text was printed by commander already, except with --json.
      if (e.exitCode === 0) return 0;
      if (json) {
        const j = usageErrorJson(e);
        if (e.code === 'commander.help') j.message = 'a subcommand is required';
        report(true, j);
      }
      return EXIT_USAGE;
    }
    if (e instanceof CliExit) return e.exitCode;
    if (isParaError(e)) {
      report(json, paraErrorForCli(e, running));
      return 2;
    }
    const message = e instanceof Error ? (e.stack ?? e.message) : String(e);
    if (json)
      report(true, {
        code: 'INTERNAL',
        message: e instanceof Error ? e.message : String(e),
        file: null,
        field: null,
        expected: null,
        actual: null,
      });
    else process.stderr.write(`para: unexpected error: ${message}\n`);
    return 1;
  }
}
