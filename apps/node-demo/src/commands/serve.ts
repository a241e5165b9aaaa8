/**
 * `para serve [--model DIR] [--adapters DIR] [--host H] [--port N] [--max-batch N]
 * [--max-len N] [--max-queue N] [--max-prefill-tokens N] [--preallocate] [--max-adapter-memory SIZE] [--timeout-ms MS] [--api-key K]
 * [--keys-file FILE] [--data-dir DIR]
 * [--model-name NAME] [--log-level LEVEL] [--backend NAME]`
 *
 * An OpenAI-compatible server (@para/serve) for one backbone and the adapters under a root
 * directory, each addressed by its directory name in the `model` field. With no flags: the
 * bundled backbone with the bundled adapters (assets/adapters/*) on 127.0.0.1:8000. Prints a
 * ready-to-paste curl and an `openai` client snippet once listening; SIGTERM / SIGINT stop it
 * gracefully (running requests finish or are cancelled within 10 s) and it exits 0.
 *
 * Fine-tuning (OpenAI's Files and fine-tuning API, @para/serve's fine-tuning.ts): uploads, jobs
 * and the fine-tuned adapters live under `--data-dir` (default ./para-data, created on the first
 * upload); the adapters of DIR/adapters are served beside the `--adapters` root, each tuned
 * model as `ft:<model>:<suffix>:<id>` for the key that made it. A stop checkpoints running jobs;
 * the next start resumes them.
 */
import * as path from 'node:path';
import { ParaError } from '@para/core/node';
import { loadPretrained } from '@para/model/node';
import {
  AdapterRegistry,
  createServer,
  directorySource,
  fineTunedAdaptersDir,
  loadKeysFile,
  unionSource,
} from '@para/serve/node';
import type { Command } from 'commander';
import { defaultBackboneDir } from '../backbone';
import { startBackend } from '../backend';
import { writeOut } from './logits';

interface ServeFlags {
  model?: string;
  adapters?: string;
  host: string;
  port: string;
  maxBatch: string;
  maxLen?: string;
  maxQueue: string;
  maxPrefillTokens?: string;
  preallocate?: boolean;
  maxAdapterMemory: string;
  timeoutMs: string;
  apiKey?: string;
  keysFile?: string;
  dataDir: string;
  modelName?: string;
  logLevel: string;
  backend?: string;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function integer(value: string, flag: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < min || n > max)
    throw new ParaError('INVALID_ARGUMENT', `bad value for ${flag}`, {
      field: flag,
      expected: `an integer in [${min}, ${max}]`,
      actual: JSON.stringify(value),
    });
  return n;
}

/** "512MiB", "1GiB", "300M", "1048576" → bytes. */
function bytes(value: string, flag: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$/i.exec(value);
  const units: Record<string, number> = {
    '': 1,
    k: 1024,
    m: 1024 ** 2,
    g: 1024 ** 3,
    t: 1024 ** 4,
  };
  const n = m === null ? Number.NaN : Number(m[1]) * (units[(m[2] ?? '').toLowerCase()] ?? 1);
  if (!(n >= 1))
    throw new ParaError('INVALID_ARGUMENT', `bad value for ${flag}`, {
      field: flag,
      expected: 'a size such as 512MiB, 1GiB or a number of bytes',
      actual: JSON.stringify(value),
    });
  return Math.floor(n);
}

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description(
      'serve the backbone and its adapters over an OpenAI-compatible HTTP API (continuous batching, many tenants)',
    )
    .option(
      '-m, --model <dir>',
      'Hugging Face checkpoint directory with tokenizer.json; default: the bundled backbone',
    )
    .option(
      '--adapters <dir>',
      'root directory of adapter directories (PEFT layout), served by their names; default with no --model: the bundled adapters',
    )
    .option('--host <host>', 'interface to bind (0.0.0.0 for every interface)', '127.0.0.1')
    .option('--port <n>', 'TCP port (0: any free port)', '8000')
    .option('--max-batch <n>', 'requests decoding at once (KV rows)', '8')
    .option(
      '--max-len <n>',
      'tokens per request, prompt and new (KV slots per row); default min(256, the model’s positions)',
    )
    .option('--max-queue <n>', 'requests waiting for a row at most (beyond: HTTP 429)', '64')
    .option(
      '--max-prefill-tokens <n>',
      'padded prompt tokens of one batched prefill of newcomers at most; default max(2048, max len)',
    )
    .option(
      '--preallocate',
      'allocate the KV cache for all --max-batch rows at the first request (default: rows as requests need them)',
    )
    .option(
      '--max-adapter-memory <size>',
      'adapter tensors kept loaded at most (LRU eviction)',
      '1GiB',
    )
    .option('--timeout-ms <ms>', 'per-request deadline (0: none)', '0')
    .option(
      '--api-key <key>',
      'require Authorization: Bearer <key> on /v1 (default: PARA_API_KEY, else none)',
    )
    .option(
      '--keys-file <file>',
      'JSON {"keys": [{"key", "models": [...] | "*", "admin"?}]}: each key may use only its models',
    )
    .option(
      '--data-dir <dir>',
      'where uploaded files, fine-tuning jobs and fine-tuned adapters are kept (created on first use)',
      'para-data',
    )
    .option(
      '--model-name <name>',
      'id of the base model in the API (default: the model directory’s name)',
    )
    .option(
      '--log-level <level>',
      `structured (pino JSON) logs on stderr: ${LOG_LEVELS.join(', ')}`,
      'info',
    )
    .option(
      '-b, --backend <name>',
      'start this backend (tensorflow, wasm, cpu, webgpu); overrides PARA_BACKEND',
    )
    .action(async (opts: ServeFlags) => {
      const dir = opts.model ?? defaultBackboneDir();
      const adaptersDir =
        opts.adapters ??
        (opts.model === undefined ? path.join(path.dirname(dir), 'adapters') : undefined);
      const port = integer(opts.port, '--port', 0, 65535);
      const maxBatch = integer(opts.maxBatch, '--max-batch', 1, 1024);
      const maxLen = opts.maxLen === undefined ? undefined : integer(opts.maxLen, '--max-len', 2);
      const maxQueue = integer(opts.maxQueue, '--max-queue', 0);
      const maxPrefillTokens =
        opts.maxPrefillTokens === undefined
          ? undefined
          : integer(opts.maxPrefillTokens, '--max-prefill-tokens', 1);
      const timeoutMs = integer(opts.timeoutMs, '--timeout-ms', 0);
      const maxBytes = bytes(opts.maxAdapterMemory, '--max-adapter-memory');
      const apiKey = opts.apiKey ?? process.env.PARA_API_KEY ?? undefined;
      const modelName = opts.modelName ?? path.basename(path.resolve(dir));
      if (!LOG_LEVELS.includes(opts.logLevel))
        throw new ParaError('INVALID_ARGUMENT', 'bad value for --log-level', {
          field: '--log-level',
          expected: LOG_LEVELS.join(', '),
          actual: JSON.stringify(opts.logLevel),
        });

      const keys = opts.keysFile === undefined ? undefined : await loadKeysFile(opts.keysFile);

      await startBackend(opts.backend);
      const { model, tokenizer } = await loadPretrained(dir);
      const fineTuning = { dataDir: path.resolve(opts.dataDir), modelDir: dir };
      const sourceOptions = {
        baseModelName: path.resolve(dir),
        baseModelMismatch: 'warn' as const,
        warn: (m: string) => process.stderr.write(`para serve: warning: ${m}\n`),
      };
      // The adapters root (POST /v1/adapters uploads go there) and, read-only, the fine-tuned
      // adapters of the data directory (only finished jobs write there).
      const { save: _jobsOnly, ...fineTuned } = directorySource(
        fineTunedAdaptersDir(fineTuning),
        sourceOptions,
      );
      const registry = new AdapterRegistry(
        model,
        unionSource([
          ...(adaptersDir === undefined ? [] : [directorySource(adaptersDir, sourceOptions)]),
          fineTuned,
        ]),
        { maxBytes },
      );
      let server: Awaited<ReturnType<typeof createServer>>;
      try {
        server = await createServer({
          model,
          tokenizer,
          registry,
          modelName,
          logger:
            opts.logLevel === 'silent' ? false : { level: opts.logLevel, stream: process.stderr },
          engine: {
            maxBatch,
            maxQueue,
            timeoutMs,
            ...(maxLen === undefined ? {} : { maxLen }),
            ...(maxPrefillTokens === undefined ? {} : { maxPrefillTokens }),
            ...(opts.preallocate === true ? { preallocate: true } : {}),
          },
          ...(apiKey === undefined || apiKey === '' ? {} : { apiKey }),
          ...(keys === undefined ? {} : { keys }),
          fineTuning,
        });
      } catch (e) {
        registry.dispose();
        model.dispose();
        throw e;
      }
      const stopped = new Promise<string>((resolve) => {
        process.once('SIGTERM', () => resolve('SIGTERM'));
        process.once('SIGINT', () => resolve('SIGINT'));
      });
      let url: string;
      try {
        url = await server.listen({ host: opts.host, port });
      } catch (e) {
        await server.close();
        registry.dispose();
        model.dispose();
        const err = e as NodeJS.ErrnoException;
        throw new ParaError(
          'INVALID_ARGUMENT',
          `cannot listen on ${opts.host}:${port}: ${err.message}`,
          {
            field: err.code === 'EADDRINUSE' ? '--port' : '--host',
            cause: e,
          },
        );
      }
      const adapters = (await registry.list())
        .map((a) => a.name)
        .filter((n) => !server.fineTuning?.isJobAdapter(n));
      const example = adapters[0] ?? modelName;
      const auth = apiKey ? ` -H 'authorization: Bearer ${apiKey}'` : '';
      const body = JSON.stringify({
        model: example,
        prompt: 'Opposite of hot:',
        max_tokens: 8,
        temperature: 0,
      });
      await writeOut(
        [
          `para serve: ${modelName}${adapters.length > 0 ? ` with ${adapters.length} adapter${adapters.length > 1 ? 's' : ''} (${adapters.join(', ')})` : ''} on ${url}`,
          `  max batch ${server.engine.maxBatch}, max len ${server.engine.maxLen}, max queue ${server.engine.maxQueue}${apiKey ? ', API key required' : ''}${keys ? `, ${keys.length} tenant keys` : ''}`,
          '',
          'Try it:',
          `  curl -s ${url}/v1/completions -H 'content-type: application/json'${auth} -d '${body}'`,
          '',
          'Or with the openai client (npm i openai):',
          "  import OpenAI from 'openai';",
          `  const client = new OpenAI({ baseURL: '${url}/v1', apiKey: '${apiKey ?? 'none'}' });`,
          `  const r = await client.completions.create({ model: '${example}', prompt: 'Opposite of hot:', max_tokens: 8, temperature: 0 });`,
          '  console.log(r.choices[0].text);',
          '',
          `Fine-tuning: POST ${url}/v1/files, then ${url}/v1/fine_tuning/jobs (data in ${fineTuning.dataDir})`,
          `Metrics: ${url}/metrics   Health: ${url}/health`,
          'Ctrl-C (or SIGTERM) stops it.',
          '',
        ].join('\n'),
      );
      const signal = await stopped;
      process.stderr.write(`para serve: ${signal}: finishing running requests, then exiting\n`);
      await server.close();
      registry.dispose();
      model.dispose();
      process.stderr.write('para serve: stopped\n');
    });
}
