/**
 * The `para` program: one file per command under commands/, wired into commander here; errors
 * become one readable line on stderr and an exit code (2: bad input, 1: a bug or crash).
 */
import { Command, CommanderError } from 'commander';
import { isParaError } from '@para/core/node';
import { registerBenchCommand } from './commands/bench';
import { registerDemoCommand } from './commands/demo';
import { registerEvalCommand } from './commands/eval';
import { registerGenerateCommand } from './commands/generate';
import { registerInfoCommand } from './commands/info';
import { registerLogitsCommand } from './commands/logits';
import { registerPretrainCommand } from './commands/pretrain';
import { registerTokenizerCommand } from './commands/tokenizer';
import { registerTrainCommand } from './commands/train';
import { PARA_VERSION } from './version';

export function buildProgram(): Command {
  const program = new Command('para')
    .description('PARA (Prompt Aware Representation Adjustment) fine-tuning and inference on TensorFlow.js')
    .version(PARA_VERSION, '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  registerInfoCommand(program);
  registerLogitsCommand(program);
  registerGenerateCommand(program);
  registerTokenizerCommand(program);
  registerPretrainCommand(program);
  registerTrainCommand(program);
  registerEvalCommand(program);
  registerDemoCommand(program);
  registerBenchCommand(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // Help and version exit with 0; usage errors were already printed by commander.
      return e.exitCode;
    }
    if (isParaError(e)) {
      process.stderr.write(`para: error [${e.code}]: ${e.message}\n`);
      return 2;
    }
    process.stderr.write(`para: unexpected error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return 1;
  }
}
