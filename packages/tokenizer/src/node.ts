/**
 * @para/tokenizer for Node: everything in the universal entry, plus loading a tokenizer from a
 * directory or file, training on files (streamed, memory-bounded) and saving atomically.
 */
import { createReadStream } from 'node:fs';
import { mkdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { ParaError } from '@para/core';
import { writeFileAtomic } from '@para/core/node';
import { decodeUtf8File } from './json-guard';
import { ParaTokenizer } from './tokenizer';
import {
  type BpeTrainOptions,
  type TrainedBpeTokenizer,
  trainBpeFromCounts,
  validateTrainOptions,
} from './trainer';
import { WordCounter, type WordCounterOptions } from './word-counter';

export * from './index';

function fsError(e: unknown, file: string, what: string): ParaError {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ENOTDIR')
    return new ParaError('FILE_NOT_FOUND', `${what} not found`, { file, cause: e });
  return new ParaError('IO_ERROR', `cannot read ${what}: ${(e as Error).message}`, {
    file,
    cause: e,
  });
}

/**
 * A file's text, which must be valid UTF-8 (INVALID_ENCODING otherwise, see decodeUtf8File):
 * `readFile(file, 'utf8')` would quietly turn invalid bytes into U+FFFD. A leading byte-order
 * mark is dropped (JSON.parse refuses it; the file is fine otherwise).
 */
async function readText(file: string, what: string): Promise<string> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(file);
  } catch (e) {
    throw fsError(e, file, what);
  }
  return decodeUtf8File(bytes, file);
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}

/**
 * Loads a tokenizer from a directory (tokenizer.json + optional tokenizer_config.json) or from a
 * tokenizer.json path (a tokenizer_config.json beside it is used when present).
 */
export async function loadTokenizer(pathOrDir: string): Promise<ParaTokenizer> {
  if (typeof pathOrDir !== 'string' || pathOrDir.length === 0) {
    throw new ParaError('INVALID_ARGUMENT', 'no tokenizer path given', {
      field: 'tokenizer',
      expected: 'a directory or a tokenizer.json path',
    });
  }
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(pathOrDir);
  } catch (e) {
    throw fsError(e, pathOrDir, 'tokenizer (a directory or a tokenizer.json file)');
  }
  const tokenizerFile = info.isDirectory() ? path.join(pathOrDir, 'tokenizer.json') : pathOrDir;
  const configFile = path.join(path.dirname(tokenizerFile), 'tokenizer_config.json');
  const json = await readText(tokenizerFile, 'tokenizer.json');
  const config = (await exists(configFile))
    ? await readText(configFile, 'tokenizer_config.json')
    : undefined;
  return ParaTokenizer.fromJSON(json, config, {
    tokenizerSource: tokenizerFile,
    configSource: configFile,
  });
}

/** Files written by {@link saveTokenizer}. */
export interface SavedTokenizer {
  tokenizerFile: string;
  configFile: string;
}

/**
 * Writes DIR/tokenizer.json and DIR/tokenizer_config.json atomically (creating DIR).
 * Accepts a trained tokenizer or the two objects.
 */
export async function saveTokenizer(
  dir: string,
  tokenizer: TrainedBpeTokenizer | { tokenizerJson: object; tokenizerConfig?: object },
): Promise<SavedTokenizer> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (e) {
    throw new ParaError('IO_ERROR', `cannot create the output directory: ${(e as Error).message}`, {
      file: dir,
      cause: e,
    });
  }
  const tokenizerFile = path.join(dir, 'tokenizer.json');
  const configFile = path.join(dir, 'tokenizer_config.json');
  await writeFileAtomic(tokenizerFile, `${JSON.stringify(tokenizer.tokenizerJson, null, 2)}\n`);
  await writeFileAtomic(
    configFile,
    `${JSON.stringify(tokenizer.tokenizerConfig ?? {}, null, 2)}\n`,
  );
  return { tokenizerFile, configFile };
}

export interface TrainFilesOptions extends BpeTrainOptions, WordCounterOptions {
  /** UTF-8 text files; each is streamed, so a corpus far larger than memory can be counted. */
  files?: string[];
  /** In-memory texts, each a separate document (sync or async iterable). */
  texts?: Iterable<string> | AsyncIterable<string>;
}

/**
 * Trains a byte-level BPE tokenizer on files and/or texts. Word counting streams the files in
 * 1 MiB chunks and keeps only distinct pre-tokenised words; then merges are learned (see
 * trainer.ts). Typed errors: FILE_NOT_FOUND / IO_ERROR for files, INVALID_ARGUMENT for an empty
 * corpus or a vocabulary smaller than 256 + special tokens.
 */
export async function trainBpeTokenizer(opts: TrainFilesOptions): Promise<TrainedBpeTokenizer> {
  validateTrainOptions(opts);
  const files = opts.files ?? [];
  if (!Array.isArray(files) || files.some((f) => typeof f !== 'string')) {
    throw new ParaError('INVALID_ARGUMENT', 'files must be a list of paths', {
      field: 'files',
      expected: 'an array of strings',
    });
  }
  if (files.length === 0 && opts.texts === undefined) {
    throw new ParaError('INVALID_ARGUMENT', 'nothing to train on', {
      field: 'files',
      expected: 'at least one input file (or texts)',
    });
  }
  const started = performance.now();
  // Check every file before reading any, so a typo fails at once.
  let totalBytes = 0;
  for (const f of files) {
    try {
      const s = await stat(f);
      if (!s.isFile())
        throw new ParaError('INVALID_ARGUMENT', 'not a regular file', {
          file: f,
          field: 'files',
          expected: 'a text file',
        });
      totalBytes += s.size;
    } catch (e) {
      throw e instanceof ParaError ? e : fsError(e, f, 'training file');
    }
  }
  const counter = new WordCounter({ maxDistinctWords: opts.maxDistinctWords });
  const onProgress = opts.onProgress;
  let bytes = 0;
  let lastReport = 0;
  const report = () => {
    const now = performance.now();
    if (onProgress !== undefined && now - lastReport > 200) {
      lastReport = now;
      onProgress({
        phase: 'count',
        bytes,
        totalBytes,
        chars: counter.chars,
        distinctWords: counter.counts.size,
        elapsedMs: now - started,
      });
    }
  };
  for (const f of files) {
    const decoder = new TextDecoder('utf-8');
    try {
      for await (const chunk of createReadStream(f, { highWaterMark: 1 << 20 })) {
        const buf = chunk as Buffer;
        bytes += buf.length;
        counter.push(decoder.decode(buf, { stream: true }));
        report();
      }
    } catch (e) {
      throw fsError(e, f, 'training file');
    }
    counter.push(decoder.decode());
    counter.end();
  }
  if (opts.texts !== undefined) {
    for await (const t of opts.texts as AsyncIterable<string>) {
      if (typeof t !== 'string') {
        throw new ParaError('INVALID_ARGUMENT', 'training texts must be strings', {
          field: 'texts',
          expected: 'strings',
          actual: typeof t,
        });
      }
      counter.addText(t);
      report();
    }
  }
  const source = files.length > 0 ? files.join(', ') : undefined;
  return trainBpeFromCounts(counter, opts, {
    started,
    countMs: performance.now() - started,
    ...(source !== undefined ? { source } : {}),
  });
}
