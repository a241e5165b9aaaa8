/**
 * `para logits [--model DIR] (--ids 1,5,9 | --prompt TEXT) [--backend NAME]`: the float32 logits
 * of every position of one sequence, as `{"logits": [[...V values], ... T rows]}` on stdout and
 * nothing else. `--prompt` is encoded as `para generate` encodes it (the model directory's
 * tokenizer, special tokens added); the default model is the bundled backbone.
 * `--adapter DIR` applies a PARA, LoRA or IA3 adapter (PEFT layout); `--prompt-len N`: PARA's
 * vectors come from the first N ids (default: all of them).
 * Logits that are NaN or infinite (float32 overflow) are not printed: the command fails with
 * NON_FINITE (exit 2) naming the first position and token.
 */

import * as path from 'node:path';
import { type AnyAdapter, loadAdapter } from '@para/adapters/node';
import { findNonFinite, ParaError } from '@para/core/node';
import { type CausalLM, loadModel } from '@para/model/node';
import { loadTokenizer } from '@para/tokenizer/node';
import type { Command } from 'commander';
import { defaultBackboneDir } from '../backbone';
import { startBackend } from '../backend';

/** `1,5,9` → [1, 5, 9]; anything else is INVALID_ARGUMENT naming the flag. */
export function parseIdList(value: string | undefined, flag: string): number[] {
  if (value === undefined || value.trim() === '') {
    throw new ParaError('INVALID_ARGUMENT', `${flag} is required`, {
      field: flag,
      expected: 'comma-separated token ids, e.g. 1,5,9',
    });
  }
  const parts = value.split(',').map((s) => s.trim());
  const ids = parts.map(Number);
  const bad = parts.findIndex((s, i) => !/^\d+$/.test(s) || !Number.isSafeInteger(ids[i]));
  if (bad >= 0) {
    throw new ParaError('INVALID_ARGUMENT', `bad token id "${parts[bad]}"`, {
      field: flag,
      expected: 'comma-separated non-negative integers, e.g. 1,5,9',
      actual: JSON.stringify(value),
    });
  }
  return ids;
}

/** The model in `dir` and, if `adapterDir` is given, its adapter (the model is freed if that fails). */
export async function loadModelAndAdapter(
  dir: string,
  adapterDir: string | undefined,
): Promise<{ model: CausalLM; adapter: AnyAdapter | null }> {
  const model = await loadModel(dir);
  if (adapterDir === undefined) return { model, adapter: null };
  try {
    // An adapter trained on another backbone (by its base_model_name_or_path) is loaded with a
    // warning: its shapes fit, which is all loadAdapter can check.
    const adapter = await loadAdapter(adapterDir, model, {
      baseModelName: path.resolve(dir),
      baseModelMismatch: 'warn',
      warn: (m) => process.stderr.write(`para: warning: ${m}\n`),
    });
    return { model, adapter };
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/** Write to stdout and wait for it to drain (large outputs through a pipe). */
export function writeOut(text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(text, (err) => (err ? reject(err) : resolve()));
  });
}

export function registerLogitsCommand(program: Command): void {
  program
    .command('logits')
    .description(
      'print the float32 logits of every position of a token sequence as JSON: {"logits": [[...], ...]}',
    )
    .option(
      '-m, --model <dir>',
      'Hugging Face checkpoint directory (config.json + model.safetensors); default: the bundled backbone',
    )
    .option('--ids <ids>', 'comma-separated token ids, e.g. 1,5,9')
    .option(
      '-p, --prompt <text>',
      'prompt text instead of --ids (needs tokenizer.json in the model directory)',
    )
    .option(
      '-b, --backend <name>',
      'start this backend (tensorflow, wasm, cpu, webgpu); overrides PARA_BACKEND',
    )
    .option(
      '--adapter <dir>',
      'adapter directory (adapter_config.json + adapter_model.safetensors): PARA, LoRA or IA3',
    )
    .option(
      '--prompt-len <n>',
      'with --adapter: PARA pools over the first N ids only (default: all ids)',
    )
    .action(
      async (opts: {
        model?: string;
        ids?: string;
        prompt?: string;
        backend?: string;
        adapter?: string;
        promptLen?: string;
      }) => {
        const dir = opts.model ?? defaultBackboneDir();
        if (opts.prompt !== undefined && opts.ids !== undefined) {
          throw new ParaError('INVALID_ARGUMENT', 'give --ids or --prompt, not both', {
            field: '--ids/--prompt',
            expected: '--ids 1,5,9 or --prompt TEXT',
          });
        }
        const ids =
          opts.prompt === undefined
            ? parseIdList(opts.ids, '--ids')
            : (await loadTokenizer(dir)).encode(opts.prompt, { addSpecialTokens: true });
        if (ids.length === 0)
          throw new ParaError('INVALID_ARGUMENT', 'the prompt encodes to no tokens', {
            field: '--prompt',
            expected: 'non-empty text',
          });
        const promptLen = opts.promptLen === undefined ? ids.length : Number(opts.promptLen);
        if (
          opts.promptLen !== undefined &&
          (opts.adapter === undefined ||
            !/^\d+$/.test(opts.promptLen.trim()) ||
            promptLen < 1 ||
            promptLen > ids.length)
        ) {
          throw new ParaError(
            'INVALID_ARGUMENT',
            opts.adapter === undefined
              ? '--prompt-len needs --adapter'
              : 'bad value for --prompt-len',
            {
              field: '--prompt-len',
              expected: `an integer in [1, ${ids.length}] (the number of --ids) with --adapter`,
              actual: JSON.stringify(opts.promptLen),
            },
          );
        }
        await startBackend(opts.backend);
        const { model, adapter } = await loadModelAndAdapter(dir, opts.adapter);
        try {
          const logits = model.forward(
            [ids],
            adapter === null
              ? {}
              : { adapter: adapter.attach(model), request: { promptLengths: [promptLen] } },
          ); // [1, T, V]
          const data = await logits.data();
          logits.dispose();
          const V = model.config.vocabSize;
          // JSON has no NaN or Infinity: refuse rather than print something no parser reads.
          const bad = findNonFinite(data);
          if (bad !== null) {
            const t = Math.floor(bad.index / V);
            throw new ParaError('NON_FINITE', 'the logits hold NaN or infinite values', {
              file: dir,
              field: 'logits',
              expected:
                'finite logits (the weights are finite, so the computation overflowed float32: weights far too large)',
              actual: `${bad.count} non-finite values, the first at position ${t}, token ${bad.index - t * V}`,
            });
          }
          // Float32 values printed as the doubles they are: exact, and parseable anywhere.
          const rows = ids.map(
            (_, t) => `[${Array.from(data.subarray(t * V, (t + 1) * V)).join(',')}]`,
          );
          await writeOut(`{"logits": [${rows.join(', ')}]}\n`);
        } finally {
          adapter?.dispose();
          model.dispose();
        }
      },
    );
}
