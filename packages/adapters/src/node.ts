/**
 * @para/adapters for Node: everything in the universal entry, plus adapter directories on disk
 * (adapter_config.json + adapter_model.safetensors, each written atomically).
 */

import { mkdir, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { ParaError, writeFileAtomic, writeSafetensorsFile } from '@para/core/node';
import type { CausalLM, ModelConfig } from '@para/model';
import { directoryAccess } from '@para/model/node';
import type { AnyAdapter } from './any';
import {
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  type AdapterFiles,
  adapterFiles,
  type LoadAdapterOptions,
  loadAdapterFrom,
  type SaveAdapterOptions,
} from './io/peft';

export * from './index';

/**
 * Saves `adapter` to `dir` (created if needed) as PEFT does: adapter_model.safetensors, then
 * adapter_config.json, each atomically.
 */
export async function saveAdapter(
  adapter: AnyAdapter,
  dir: string,
  options: SaveAdapterOptions = {},
): Promise<AdapterFiles> {
  const files = adapterFiles(adapter, options);
  try {
    await mkdir(dir, { recursive: true });
  } catch (cause) {
    throw new ParaError('IO_ERROR', 'cannot create the adapter directory', { file: dir, cause });
  }
  await writeSafetensorsFile(path.join(dir, ADAPTER_WEIGHTS_FILE), files.tensors, {
    metadata: files.metadata,
    dtype: files.dtype,
  });
  await writeFileAtomic(path.join(dir, ADAPTER_CONFIG_FILE), files.configJson);
  return files;
}

/**
 * Loads an adapter directory (ours or Python PEFT's `save_pretrained`) for `model`. A missing
 * directory → FILE_NOT_FOUND; config and tensor problems → typed errors naming them.
 */
export async function loadAdapter(
  dir: string,
  model: CausalLM | ModelConfig,
  options: LoadAdapterOptions = {},
): Promise<AnyAdapter> {
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(dir);
  } catch (cause) {
    throw new ParaError('FILE_NOT_FOUND', 'adapter directory not found', {
      file: dir,
      expected: `a directory with ${ADAPTER_CONFIG_FILE} and ${ADAPTER_WEIGHTS_FILE}`,
      cause,
    });
  }
  if (!st.isDirectory()) {
    throw new ParaError('INVALID_ARGUMENT', 'not an adapter directory', {
      file: dir,
      expected: `a directory with ${ADAPTER_CONFIG_FILE} and ${ADAPTER_WEIGHTS_FILE}`,
      actual: 'a file',
    });
  }
  return loadAdapterFrom(directoryAccess(dir), model, options);
}
