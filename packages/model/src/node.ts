/**
 * @para/model for Node: everything in the universal entry, plus loading a checkpoint directory
 * from disk and saving one (config.json + model.safetensors, each written atomically).
 */

import { mkdir, stat } from 'node:fs/promises';
import * as path from 'node:path';
import {
  type CheckpointAccess,
  FileSource,
  ParaError,
  writeFileAtomic,
  writeSafetensorsFile,
} from '@para/core/node';
import { type CheckpointFiles, checkpointFiles, loadModelFrom, type SaveOptions } from './index';
import type { CausalLM } from './model';
import {
  asUrl,
  loadPretrainedFrom,
  loadPretrained as loadPretrainedUniversal,
  type Pretrained,
  type PretrainedSource,
} from './pretrained';

export * from './index';

/** Files of a directory on disk as a `CheckpointAccess`. */
export function directoryAccess(dir: string): CheckpointAccess {
  return {
    location: dir,
    open: (file) => FileSource.open(path.join(dir, file)),
    exists: async (file) => {
      try {
        return (await stat(path.join(dir, file))).isFile();
      } catch {
        return false;
      }
    },
  };
}

/**
 * Loads a Hugging Face checkpoint directory: config.json and model.safetensors (or the sharded
 * index), F32/F16/BF16. A missing directory → FILE_NOT_FOUND; a config/weights mismatch → one
 * error listing every missing, unexpected and mis-shaped tensor.
 */
export async function loadModel(dir: string): Promise<CausalLM> {
  await checkModelDirectory(dir);
  return loadModelFrom(directoryAccess(dir));
}

/**
 * Loads a backbone and its tokenizer: a model directory (config.json, model.safetensors or
 * its sharded index, tokenizer.json, tokenizer_config.json), a URL, or a `CheckpointAccess`.
 * The same call as in a browser, where the source is a URL.
 */
export async function loadPretrained(source: PretrainedSource): Promise<Pretrained> {
  if (typeof source === 'string' && asUrl(source) === null) {
    await checkModelDirectory(source);
    return loadPretrainedFrom(directoryAccess(source), source);
  }
  return loadPretrainedUniversal(source);
}

async function checkModelDirectory(dir: string): Promise<void> {
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(dir);
  } catch (cause) {
    throw new ParaError('FILE_NOT_FOUND', 'model directory not found', {
      file: dir,
      expected: 'a directory with config.json and model.safetensors',
      cause,
    });
  }
  if (!st.isDirectory()) {
    throw new ParaError('INVALID_ARGUMENT', 'not a model directory', {
      file: dir,
      expected: 'a directory with config.json and model.safetensors',
      actual: 'a file',
    });
  }
}

/**
 * Saves the model to `dir` (created if needed) as transformers does: model.safetensors first,
 * then config.json, each atomically.
 */
export async function saveModel(
  model: CausalLM,
  dir: string,
  options: SaveOptions = {},
): Promise<CheckpointFiles> {
  const files = checkpointFiles(model.config, model.weights, options);
  try {
    try {
      await mkdir(dir, { recursive: true });
    } catch (cause) {
      throw new ParaError('IO_ERROR', 'cannot create the model directory', { file: dir, cause });
    }
    await writeSafetensorsFile(path.join(dir, 'model.safetensors'), files.tensors, {
      metadata: files.metadata,
      dtype: files.dtype,
    });
  } finally {
    for (const t of files.made) t.dispose(); // fused copies (Phi-3), not the model's weights
  }
  await writeFileAtomic(path.join(dir, 'config.json'), files.configJson);
  return files;
}
