/** Node helpers: JSONL files. */

import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
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
