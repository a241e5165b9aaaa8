/**
 * `para setup tensorflow [--gpu]` (root: `pnpm setup:tensorflow [--gpu]`): builds
 * @tensorflow/tfjs-node(-gpu)'s native binding against the TensorFlow wheel, so the `tensorflow`
 * backend starts (see src/setup/tensorflow.ts for the steps). Progress goes to stderr; the result
 * is one line on stdout (one JSON object with `--json`). A missing prerequisite is a typed error
 * (exit 2) naming what to install.
 */
import type { Command } from 'commander';
import { CliExit, formatErrorLine, type JsonError } from '../errors';
import { PINNED_TENSORFLOW, SetupError, setupTensorflow } from '../setup/tensorflow';

interface SetupFlags {
  gpu?: boolean;
  force?: boolean;
  python?: string;
  wheel?: string;
  cacheDir?: string;
  nodedir?: string;
  json?: boolean;
}

/** A SetupError in the CLI's error shape (code, message, expected, actual). */
export function setupErrorJson(e: SetupError): JsonError {
  return {
    code: e.code,
    message: e.message,
    file: null,
    field: null,
    expected: e.expected ?? null,
    actual: e.actual ?? null,
  };
}

export function registerSetupCommand(program: Command): void {
  const setup = program
    .command('setup')
    .description('install optional native parts (the tensorflow backend)');
  setup
    .command('tensorflow')
    .description(
      `build @tensorflow/tfjs-node's binding against TensorFlow ${PINNED_TENSORFLOW} from its Python wheel (pip), offline, and check it; --gpu: @tensorflow/tfjs-node-gpu with the CUDA 12 build and its CUDA runtime wheels`,
    )
    .option(
      '--gpu',
      'the CUDA build (`tensorflow` wheel + nvidia-*-cu12 wheels) into @tensorflow/tfjs-node-gpu',
    )
    .option('--force', 'rebuild even when already set up')
    .option('--python <cmd>', 'the Python that runs pip and reads the wheel (default python3)')
    .option('--wheel <file>', 'use this TensorFlow wheel instead of downloading one')
    .option(
      '--cache-dir <dir>',
      'where wheels are kept (default $PARA_CACHE_DIR/tensorflow, else ~/.cache/para/tensorflow)',
    )
    .option('--nodedir <dir>', "Node's headers for node-gyp (default: next to the running node)")
    .option('--json', 'print the result as JSON')
    .action(async (opts: SetupFlags) => {
      try {
        const r = await setupTensorflow({
          gpu: opts.gpu === true,
          force: opts.force === true,
          ...(opts.python === undefined ? {} : { python: opts.python }),
          ...(opts.wheel === undefined ? {} : { wheel: opts.wheel }),
          ...(opts.cacheDir === undefined ? {} : { cacheDir: opts.cacheDir }),
          ...(opts.nodedir === undefined ? {} : { nodedir: opts.nodedir }),
        });
        process.stdout.write(
          opts.json
            ? `${JSON.stringify(r, null, 2)}\n`
            : `${r.status === 'already-set-up' ? 'already set up' : 'set up'}: ${r.package} on TensorFlow ${r.tensorflow} (devices: ${r.verify.devices.join(', ')}); \`para info\` shows it, \`--backend tensorflow\` uses it\n`,
        );
      } catch (e) {
        if (!(e instanceof SetupError)) throw e;
        const j = setupErrorJson(e);
        process.stderr.write(
          opts.json ? `${JSON.stringify({ error: j })}\n` : `${formatErrorLine(j)}\n`,
        );
        throw new CliExit(2);
      }
    });
}
