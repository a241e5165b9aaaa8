/**
 * `loadPretrained(source)`: a backbone and its tokenizer in one call, the same call in Node (a
 * directory path; `@para/model` resolves to its Node build there) and in a browser (a URL, read
 * with HTTP range requests, so only the tensors are fetched, each once). The directory holds a
 * Hugging Face checkpoint: config.json, model.safetensors (or the sharded index) and
 * tokenizer.json (+ tokenizer_config.json).
 */

import {
  type CheckpointAccess,
  MAX_HEADER_BYTES,
  ParaError,
  readWhole,
  urlCheckpointAccess,
} from '@para/core';
import { decodeUtf8File, ParaTokenizer } from '@para/tokenizer';
import { CausalLM } from './model';
import { loadCheckpoint } from './weights/checkpoint';

/** What `loadPretrained` returns; `model.tokenizer` is the same tokenizer. */
export interface Pretrained {
  model: CausalLM;
  tokenizer: ParaTokenizer;
}

/** A directory path (Node), a URL (any platform), or any `CheckpointAccess`. */
export type PretrainedSource = string | URL | CheckpointAccess;

/** The tokenizer files of a checkpoint location. */
export async function loadTokenizerFrom(access: CheckpointAccess): Promise<ParaTokenizer> {
  const read = async (file: string): Promise<string> => {
    const src = await access.open(file);
    try {
      // Strict UTF-8: invalid bytes are INVALID_ENCODING naming the file, not silently replaced.
      return decodeUtf8File(await readWhole(src, 64 * MAX_HEADER_BYTES), src.name);
    } finally {
      await src.close?.();
    }
  };
  if (!(await access.exists('tokenizer.json'))) {
    throw new ParaError('FILE_NOT_FOUND', 'no tokenizer.json beside the checkpoint', {
      file: access.location,
      field: 'tokenizer.json',
      expected: 'a Hugging Face tokenizer.json (and tokenizer_config.json) in the model directory',
    });
  }
  const json = await read('tokenizer.json');
  const config = (await access.exists('tokenizer_config.json'))
    ? await read('tokenizer_config.json')
    : undefined;
  return ParaTokenizer.fromJSON(json, config, {
    tokenizerSource: `${access.location}/tokenizer.json`,
    configSource: `${access.location}/tokenizer_config.json`,
  });
}

/** Model and tokenizer from any checkpoint location; the tokenizer must fit the embeddings. */
export async function loadPretrainedFrom(
  access: CheckpointAccess,
  nameOrPath: string = access.location,
): Promise<Pretrained> {
  const { config, weights } = await loadCheckpoint(access);
  const model = new CausalLM(config, weights);
  try {
    const tokenizer = await loadTokenizerFrom(access);
    if (tokenizer.vocabSize > config.vocabSize) {
      throw new ParaError(
        'SHAPE_MISMATCH',
        'the tokenizer has more tokens than the model has embeddings',
        {
          file: access.location,
          field: 'vocab_size',
          expected: `at most ${config.vocabSize} tokens (config.json)`,
          actual: `${tokenizer.vocabSize} in tokenizer.json`,
        },
      );
    }
    model.tokenizer = tokenizer;
    model.nameOrPath = nameOrPath;
    return { model, tokenizer };
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/** An absolute URL for `source` (relative ones against the page in a browser), or null. */
export function asUrl(source: string | URL): string | null {
  if (source instanceof URL) return source.href;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(source)) return source;
  const page = (globalThis as { location?: { href?: string } }).location?.href;
  return page === undefined ? null : new URL(source, page).href;
}

/**
 * Loads a backbone and its tokenizer from a URL or a `CheckpointAccess` (in Node, `@para/model`
 * also takes a directory path). Errors are typed and name the file: FILE_NOT_FOUND,
 * INVALID_JSON / INVALID_CONFIG (config.json, tokenizer files), SHAPE_MISMATCH (weights vs
 * config).
 */
export async function loadPretrained(source: PretrainedSource): Promise<Pretrained> {
  if (typeof source === 'string' || source instanceof URL) {
    const url = asUrl(source);
    if (url === null) {
      throw new ParaError(
        'INVALID_ARGUMENT',
        'a model path needs the Node build of @para/model; here give a URL',
        {
          field: 'source',
          expected: 'an http(s) URL of a model directory',
          actual: String(source),
        },
      );
    }
    return loadPretrainedFrom(urlCheckpointAccess(url), String(source));
  }
  return loadPretrainedFrom(source);
}
