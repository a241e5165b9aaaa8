/**
 * `para generate [--model DIR] (--prompt TEXT | --ids 1,2,3) [--max-new-tokens N] [--temperature T]
 * [--top-k K] [--top-p P] [--seed S] [--json] [--backend NAME]`
 *
 * Streams the new text to stdout as tokens come (a newline at the end). `--prompt` needs the
 * tokenizer in the model directory (tokenizer.json); with `--ids` and no tokenizer the new ids
 * are streamed instead. `--json` prints `{"ids": [...new token ids], "text": "...new text"}`
 * at the end (text "" without a tokenizer). Greedy unless `--temperature` > 0. `--adapter DIR`
 * decodes with a PARA, LoRA or IA3 adapter (PEFT layout; PARA pools the whole prompt).
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ParaError } from '@para/core/node';
import { loadTokenizer, type ParaTokenizer } from '@para/tokenizer/node';
import type { Command } from 'commander';
import { defaultBackboneDir } from '../backbone';
import { startBackend } from '../backend';
import { loadModelAndAdapter, parseIdList, writeOut } from './logits';

interface GenerateFlags {
  model?: string;
  prompt?: string;
  ids?: string;
  maxNewTokens?: string;
  temperature?: string;
  topK?: string;
  topP?: string;
  seed?: string;
  json?: boolean;
  backend?: string;
  adapter?: string;
}

function number(
  value: string | undefined,
  flag: string,
  fallback: number,
  ok: (n: number) => boolean,
  expected: string,
): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || !ok(n))
    throw new ParaError('INVALID_ARGUMENT', `bad value for ${flag}`, {
      field: flag,
      expected,
      actual: JSON.stringify(value),
    });
  return n;
}

async function hasFile(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

export function registerGenerateCommand(program: Command): void {
  program
    .command('generate')
    .description('generate text (or token ids) from a prompt, streaming tokens as they come')
    .option(
      '-m, --model <dir>',
      'Hugging Face checkpoint directory (config.json + model.safetensors [+ tokenizer.json]); default: the bundled backbone',
    )
    .option('-p, --prompt <text>', 'prompt text (needs tokenizer.json in the model directory)')
    .option('--ids <ids>', 'prompt token ids, comma-separated (instead of --prompt)')
    .option('-n, --max-new-tokens <n>', 'new tokens at most (default 32)')
    .option('-t, --temperature <t>', 'sampling temperature; 0 = greedy (default 0)')
    .option('--top-k <k>', 'sample from the k most probable tokens (0 = off)')
    .option('--top-p <p>', 'nucleus sampling threshold in (0, 1] (1 = off)')
    .option('--seed <s>', 'sampling seed (default 0)')
    .option(
      '--adapter <dir>',
      'adapter directory (adapter_config.json + adapter_model.safetensors): PARA, LoRA or IA3',
    )
    .option('--json', 'print {"ids": [...], "text": "..."} at the end instead of streaming')
    .option(
      '-b, --backend <name>',
      'start this backend (tensorflow, wasm, cpu, webgpu); overrides PARA_BACKEND',
    )
    .action(async (opts: GenerateFlags) => {
      const dir = opts.model ?? defaultBackboneDir();
      if ((opts.prompt === undefined) === (opts.ids === undefined)) {
        throw new ParaError('INVALID_ARGUMENT', 'give exactly one of --prompt and --ids', {
          field: '--prompt/--ids',
          expected: '--prompt TEXT or --ids 1,2,3',
        });
      }
      const maxNewTokens = number(
        opts.maxNewTokens,
        '--max-new-tokens',
        32,
        (n) => Number.isInteger(n) && n >= 1,
        'a positive integer',
      );
      const temperature = number(
        opts.temperature,
        '--temperature',
        0,
        (n) => n >= 0,
        'a number ≥ 0',
      );
      const topK = number(
        opts.topK,
        '--top-k',
        0,
        (n) => Number.isInteger(n) && n >= 0,
        'an integer ≥ 0',
      );
      const topP = number(opts.topP, '--top-p', 1, (n) => n > 0 && n <= 1, 'a number in (0, 1]');
      const seed = number(opts.seed, '--seed', 0, Number.isSafeInteger, 'an integer');
      const promptIds = opts.ids !== undefined ? parseIdList(opts.ids, '--ids') : undefined;

      // The tokenizer is the model directory's, when it has one (--prompt needs it).
      const haveTokenizer = await hasFile(join(dir, 'tokenizer.json'));
      if (opts.prompt !== undefined && !haveTokenizer) {
        await stat(dir).catch((cause) => {
          throw new ParaError('FILE_NOT_FOUND', 'model directory not found', {
            file: dir,
            field: '--model',
            cause,
          });
        });
        throw new ParaError('FILE_NOT_FOUND', '--prompt needs a tokenizer in the model directory', {
          file: join(dir, 'tokenizer.json'),
          field: '--prompt',
          expected: 'tokenizer.json (or use --ids)',
        });
      }
      const tokenizer = haveTokenizer ? await loadTokenizer(dir) : undefined;
      const ids =
        promptIds ??
        (tokenizer as ParaTokenizer).encode(opts.prompt as string, { addSpecialTokens: true });
      if (ids.length === 0)
        throw new ParaError('INVALID_ARGUMENT', 'the prompt encodes to no tokens', {
          field: '--prompt',
          expected: 'non-empty text',
        });

      await startBackend(opts.backend, opts.json === true);
      const { model, adapter } = await loadModelAndAdapter(dir, opts.adapter);
      try {
        const stopTokens = [...model.config.eosTokenIds];
        if (tokenizer?.eosTokenId !== undefined && !stopTokens.includes(tokenizer.eosTokenId))
          stopTokens.push(tokenizer.eosTokenId);
        const out: number[] = [];
        let printed = '';
        await model.generate([ids], {
          maxNewTokens,
          temperature,
          topK,
          topP,
          seed,
          stopTokens,
          ...(adapter === null ? {} : { adapter: adapter.attach(model), request: {} }),
          onToken: async ({ token }) => {
            out.push(token);
            if (opts.json) return;
            if (tokenizer === undefined) {
              await writeOut(`${out.length > 1 ? ' ' : ''}${token}`);
              return;
            }
            // Decode everything so far and print what is new; hold back a split UTF-8 character.
            const text = tokenizer.decode(out, { skipSpecialTokens: true });
            if (text.endsWith('\uFFFD') || !text.startsWith(printed)) return;
            await writeOut(text.slice(printed.length));
            printed = text;
          },
        });
        const text =
          tokenizer === undefined ? '' : tokenizer.decode(out, { skipSpecialTokens: true });
        if (opts.json) await writeOut(`${JSON.stringify({ ids: out, text })}\n`);
        else await writeOut(`${tokenizer === undefined ? '' : text.slice(printed.length)}\n`);
      } finally {
        adapter?.dispose();
        model.dispose();
      }
    });
}
