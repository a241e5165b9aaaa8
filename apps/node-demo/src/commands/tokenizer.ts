/**
 * `para tokenizer train|encode|decode`: train a byte-level BPE tokenizer on text files, and
 * encode / decode text files line by line with any Hugging Face tokenizer.json.
 * stdout carries only the command's output; progress goes to stderr.
 */
import { createReadStream } from 'node:fs';
import { ParaError } from '@para/core/node';
import {
  type BpeTrainProgress,
  loadTokenizer,
  saveTokenizer,
  trainBpeTokenizer,
} from '@para/tokenizer/node';
import { type Command, InvalidArgumentError } from 'commander';

function positiveInt(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < 1)
      throw new InvalidArgumentError(`${flag} must be a positive integer`);
    return n;
  };
}

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

/** Progress lines on stderr: rewritten in place on a terminal, at most one a second otherwise. */
function progressPrinter(quiet: boolean): ((p: BpeTrainProgress) => void) | undefined {
  if (quiet) return undefined;
  const tty = process.stderr.isTTY === true;
  let last = 0;
  return (p) => {
    const now = p.elapsedMs;
    if (!tty && p.phase !== 'done' && now - last < 1000) return;
    last = now;
    const secs = `${(now / 1000).toFixed(1)}s`;
    let line: string;
    if (p.phase === 'count') {
      const pct = p.totalBytes
        ? ` ${((100 * (p.bytes ?? 0)) / p.totalBytes).toFixed(0)}% (${mb(p.bytes ?? 0)} of ${mb(p.totalBytes)})`
        : '';
      line = `counting words:${pct}, ${p.distinctWords ?? 0} distinct, ${secs}`;
    } else if (p.phase === 'merge') {
      line = `merging: ${p.merges}/${p.totalMerges} merges, ${secs}`;
    } else {
      line = `done: ${p.merges} merges in ${secs}`;
    }
    process.stderr.write(tty ? `\r\x1b[K${line}${p.phase === 'done' ? '\n' : ''}` : `${line}\n`);
  };
}

/** Lines of a file ('-' for stdin), streamed; a final line without '\n' counts; '\r' is kept. */
async function* lines(file: string): AsyncGenerator<string> {
  const stream = file === '-' ? process.stdin : createReadStream(file, { highWaterMark: 1 << 20 });
  const decoder = new TextDecoder('utf-8');
  let rest = '';
  try {
    for await (const chunk of stream) {
      rest += typeof chunk === 'string' ? chunk : decoder.decode(chunk as Buffer, { stream: true });
      let nl = rest.indexOf('\n');
      let from = 0;
      while (nl >= 0) {
        yield rest.slice(from, nl);
        from = nl + 1;
        nl = rest.indexOf('\n', from);
      }
      rest = rest.slice(from);
    }
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT')
      throw new ParaError('FILE_NOT_FOUND', 'input file not found', {
        file,
        field: 'file',
        cause: e,
      });
    if (code === 'EISDIR')
      throw new ParaError('INVALID_ARGUMENT', 'input is a directory', {
        file,
        field: 'file',
        expected: 'a text file',
      });
    throw new ParaError('IO_ERROR', `cannot read the input: ${(e as Error).message}`, {
      file,
      cause: e,
    });
  }
  rest += decoder.decode();
  if (rest.length > 0) yield rest;
}

/** Buffered stdout that respects backpressure. */
function output() {
  let buf = '';
  const flush = async () => {
    if (buf.length === 0) return;
    const ok = process.stdout.write(buf);
    buf = '';
    if (!ok) await new Promise<void>((resolve) => process.stdout.once('drain', resolve));
  };
  return {
    async line(s: string) {
      buf += `${s}\n`;
      if (buf.length > 1 << 16) await flush();
    },
    flush,
  };
}

interface TrainOpts {
  input: string[];
  vocabSize: number;
  out: string;
  specialTokens?: string;
  minFrequency?: number;
  maxTokenLength?: number;
  bosToken?: string;
  eosToken?: string;
  padToken?: string;
  unkToken?: string;
  json?: boolean;
  quiet?: boolean;
}

export function registerTokenizerCommand(program: Command): Command {
  const tokenizer = program
    .command('tokenizer')
    .description(
      'train a byte-level BPE tokenizer; encode and decode text with a Hugging Face tokenizer.json',
    );

  tokenizer
    .command('train')
    .description(
      'train a byte-level BPE tokenizer (GPT-2 pre-tokenisation, 256 byte symbols + merges) and write DIR/tokenizer.json + DIR/tokenizer_config.json',
    )
    .requiredOption('-i, --input <files...>', 'UTF-8 text files to train on')
    .requiredOption(
      '--vocab-size <n>',
      'vocabulary size: special tokens + 256 byte symbols + merges',
      positiveInt('--vocab-size'),
    )
    .requiredOption('-o, --out <dir>', 'output directory (created if missing)')
    .option(
      '--special-tokens <list>',
      'comma-separated special tokens, ids 0, 1, … (e.g. "<s>,</s>,<pad>"); bos/eos/pad/unk are recognised by name',
    )
    .option(
      '--bos-token <token>',
      'the special token to use as bos (prepended when encoding with special tokens)',
    )
    .option('--eos-token <token>', 'the special token to use as eos')
    .option('--pad-token <token>', 'the special token to use as pad')
    .option('--unk-token <token>', 'the special token to use as unk')
    .option(
      '--min-frequency <n>',
      'stop when no pair occurs this often (default 2)',
      positiveInt('--min-frequency'),
    )
    .option(
      '--max-token-length <n>',
      'longest token in bytes a merge may create',
      positiveInt('--max-token-length'),
    )
    .option('--json', 'print the training statistics as JSON')
    .option('-q, --quiet', 'no progress on stderr')
    .action(async (opts: TrainOpts) => {
      const specialTokens =
        opts.specialTokens === undefined
          ? []
          : opts.specialTokens
              .split(',')
              .map((s) => s.trim())
              .filter((s) => s.length > 0);
      const trained = await trainBpeTokenizer({
        files: opts.input,
        vocabSize: opts.vocabSize,
        specialTokens,
        ...(opts.bosToken !== undefined ? { bosToken: opts.bosToken } : {}),
        ...(opts.eosToken !== undefined ? { eosToken: opts.eosToken } : {}),
        ...(opts.padToken !== undefined ? { padToken: opts.padToken } : {}),
        ...(opts.unkToken !== undefined ? { unkToken: opts.unkToken } : {}),
        ...(opts.minFrequency !== undefined ? { minFrequency: opts.minFrequency } : {}),
        ...(opts.maxTokenLength !== undefined ? { maxTokenLength: opts.maxTokenLength } : {}),
        onProgress: progressPrinter(opts.quiet === true),
      });
      const saved = await saveTokenizer(opts.out, trained);
      const s = trained.stats;
      if (s.stoppedEarly !== undefined && opts.quiet !== true) {
        process.stderr.write(
          `para: warning: vocabulary ${s.vocabSize} < ${opts.vocabSize} requested: ${s.stoppedEarly}\n`,
        );
      }
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ ...saved, ...s }, null, 2)}\n`);
      } else {
        process.stdout.write(
          `wrote ${saved.tokenizerFile} and ${saved.configFile}: vocabulary ${s.vocabSize} (${specialTokens.length} special, 256 bytes, ${s.merges} merges) from ${s.words} words (${s.distinctWords} distinct) in ${((s.countMs + s.mergeMs) / 1000).toFixed(2)} s\n`,
        );
      }
    });

  tokenizer
    .command('encode')
    .description('encode a text file line by line: one JSON array of token ids per input line')
    .requiredOption(
      '-t, --tokenizer <path>',
      'a directory with tokenizer.json (+ tokenizer_config.json), or a tokenizer.json file',
    )
    .requiredOption('-f, --file <file>', "text file to encode ('-' for stdin)")
    .option('--add-special-tokens', "add the tokenizer's special tokens (e.g. bos) to every line")
    .action(async (opts: { tokenizer: string; file: string; addSpecialTokens?: boolean }) => {
      const tok = await loadTokenizer(opts.tokenizer);
      const out = output();
      for await (const line of lines(opts.file)) {
        await out.line(
          JSON.stringify(tok.encode(line, { addSpecialTokens: opts.addSpecialTokens === true })),
        );
      }
      await out.flush();
    });

  tokenizer
    .command('decode')
    .description(
      'decode lines of JSON arrays of token ids (as `encode` prints them): one line of text per array',
    )
    .requiredOption(
      '-t, --tokenizer <path>',
      'a directory with tokenizer.json (+ tokenizer_config.json), or a tokenizer.json file',
    )
    .requiredOption('-f, --file <file>', "file of JSON arrays, one per line ('-' for stdin)")
    .option('--skip-special-tokens', 'leave special tokens out of the text')
    .action(async (opts: { tokenizer: string; file: string; skipSpecialTokens?: boolean }) => {
      const tok = await loadTokenizer(opts.tokenizer);
      const out = output();
      let n = 0;
      for await (const raw of lines(opts.file)) {
        n++;
        const line = raw.trim();
        let ids: unknown;
        try {
          ids = JSON.parse(line);
        } catch {
          ids = undefined;
        }
        if (!Array.isArray(ids) || !ids.every((x) => Number.isInteger(x))) {
          throw new ParaError('INVALID_ARGUMENT', 'not a JSON array of token ids', {
            file: opts.file,
            field: `line ${n}`,
            expected: 'a JSON array of integers, e.g. [1, 2, 3]',
            actual: JSON.stringify(line.slice(0, 40)),
          });
        }
        try {
          await out.line(
            tok.decode(ids as number[], { skipSpecialTokens: opts.skipSpecialTokens === true }),
          );
        } catch (e) {
          if (e instanceof ParaError)
            throw new ParaError(e.code, `line ${n}: ${e.message}`, { file: opts.file, cause: e });
          throw e;
        }
      }
      await out.flush();
    });

  return tokenizer;
}
