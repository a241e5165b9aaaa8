/** Node helpers: JSONL files, and where the bundled default backbone lives. */

import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ParaError } from '@para/core/node';
import {
  type DatasetRecord,
  parseJsonl,
  type TokenizedDataset,
  type TokenizeOptions,
  type TokenizerLike,
  tokenizeRecords,
} from '../data';

/** Reads and parses a JSONL dataset (errors name the file and line). */
export async function readJsonlFile(file: string): Promise<DatasetRecord[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    if (code === 'ENOENT')
      throw new ParaError('FILE_NOT_FOUND', 'dataset not found', {
        file,
        expected: 'a JSONL file',
        cause,
      });
    if (code === 'EISDIR')
      throw new ParaError('INVALID_ARGUMENT', 'the dataset is a directory', {
        file,
        expected: 'a JSONL file',
      });
    throw new ParaError('IO_ERROR', `cannot read the dataset: ${(cause as Error).message}`, {
      file,
      cause,
    });
  }
  return parseJsonl(text, file);
}

/** Reads, parses and tokenises a JSONL dataset. */
export async function loadDataset(
  file: string,
  tok: TokenizerLike,
  o: TokenizeOptions,
): Promise<TokenizedDataset> {
  return tokenizeRecords(tok, await readJsonlFile(file), file, o);
}

const BACKBONE_MARKER = path.join('assets', 'backbone', 'config.json');

/**
 * The bundled default backbone (`assets/backbone` in the repository: config.json,
 * model.safetensors, tokenizer.json, tokenizer_config.json). `PARA_BACKBONE_DIR` overrides it.
 * Found by walking up from this module (and then from the working directory) to the first
 * directory holding `assets/backbone/config.json`; FILE_NOT_FOUND when there is none.
 */
export function defaultBackboneDir(): string {
  const env = process.env.PARA_BACKBONE_DIR;
  if (env !== undefined && env.trim() !== '') return env;
  const starts: string[] = [];
  try {
    starts.push(path.dirname(fileURLToPath(import.meta.url)));
  } catch {
    // CJS build: import.meta.url is unavailable
  }
  if (typeof __dirname === 'string') starts.push(__dirname);
  starts.push(process.cwd());
  for (const start of starts) {
    let dir = start;
    for (;;) {
      if (existsSync(path.join(dir, BACKBONE_MARKER))) return path.join(dir, 'assets', 'backbone');
      const up = path.dirname(dir);
      if (up === dir) break;
      dir = up;
    }
  }
  throw new ParaError('FILE_NOT_FOUND', 'the default backbone was not found', {
    file: BACKBONE_MARKER,
    field: 'model',
    expected: 'a para checkout with assets/backbone/, PARA_BACKBONE_DIR, or a model directory',
  });
}
