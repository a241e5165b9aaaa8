/**
 * @para/adapters for Node: everything in the universal entry, plus adapter directories on disk
 * (adapter_config.json + adapter_model.safetensors, saved so that the two always belong together;
 * see `saveAdapter`).
 */

import { createHash, randomUUID } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
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
import { CONFIG_STAMP_KEY, canonicalConfigJson } from './io/stamp';

export * from './index';
export { CONFIG_STAMP_KEY } from './io/stamp';

/** Test hooks (internal): `afterWeights` runs between the two renames into an existing directory. */
export const saveAdapterTestHooks: { afterWeights?: (dir: string) => void | Promise<void> } = {};

const TEMP_PREFIX = (base: string) => `.${base}.saving-`;

async function syncDir(dir: string): Promise<void> {
  try {
    const h = await open(dir, 'r');
    try {
      await h.sync();
    } finally {
      await h.close();
    }
  } catch {
    // not every filesystem syncs directories
  }
}

function ioError(e: unknown, file: string, what: string): ParaError {
  if (e instanceof ParaError) return e;
  return new ParaError('IO_ERROR', `${what}: ${(e as Error)?.message ?? String(e)}`, {
    file,
    cause: e,
  });
}

/**
 * Saves `adapter` to `dir` (created if needed) in PEFT's layout, so that `dir` never holds an
 * adapter_config.json and an adapter_model.safetensors of different saves:
 *
 *   1. both files are written into a fresh temp directory beside `dir` (`.NAME.saving-UUID`,
 *      same filesystem); leftovers of a crashed save are removed first (loaders never look
 *      there);
 *   2. a `dir` that does not exist yet: the temp directory is renamed to it (atomic);
 *   3. an existing `dir` (a training OUT also holds metrics.jsonl, checkpoints, ...): the weights
 *      are renamed in, then the config. The weights record the sha256 of their config
 *      (`para.adapter_config_sha256`, see io/stamp.ts), so a crash between the two renames
 *      leaves a pair `loadAdapter` refuses with a typed error, never a silent mix.
 */
export async function saveAdapter(
  adapter: AnyAdapter,
  dir: string,
  options: SaveAdapterOptions = {},
): Promise<AdapterFiles> {
  const files = adapterFiles(adapter, options);
  const stamp = createHash('sha256')
    .update(canonicalConfigJson(JSON.parse(files.configJson)))
    .digest('hex');
  const metadata = { ...files.metadata, [CONFIG_STAMP_KEY]: stamp };
  const parent = path.dirname(path.resolve(dir));
  const base = path.basename(path.resolve(dir));
  const prefix = TEMP_PREFIX(base);
  const tmp = path.join(parent, `${prefix}${randomUUID()}`);
  try {
    await mkdir(parent, { recursive: true });
    for (const entry of await readdir(parent)) {
      if (entry.startsWith(prefix))
        await rm(path.join(parent, entry), { recursive: true, force: true });
    }
    await mkdir(tmp);
  } catch (cause) {
    throw ioError(cause, dir, 'cannot create the adapter directory');
  }
  try {
    await writeSafetensorsFile(path.join(tmp, ADAPTER_WEIGHTS_FILE), files.tensors, {
      metadata,
      dtype: files.dtype,
    });
    await writeFileAtomic(path.join(tmp, ADAPTER_CONFIG_FILE), files.configJson);
    let exists = true;
    try {
      exists = (await stat(dir)).isDirectory();
      if (!exists)
        throw new ParaError('INVALID_ARGUMENT', 'the adapter path is a file', {
          file: dir,
          expected: 'a directory (or a path that does not exist yet)',
        });
    } catch (e) {
      if (e instanceof ParaError) throw e;
      exists = false;
    }
    if (!exists) {
      try {
        await rename(tmp, dir);
        await syncDir(parent);
        return { ...files, metadata };
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        // Created meanwhile: fall through to the two renames.
        if (code !== 'EEXIST' && code !== 'ENOTEMPTY' && code !== 'EISDIR') throw e;
      }
    }
    await rename(path.join(tmp, ADAPTER_WEIGHTS_FILE), path.join(dir, ADAPTER_WEIGHTS_FILE));
    await saveAdapterTestHooks.afterWeights?.(dir);
    await rename(path.join(tmp, ADAPTER_CONFIG_FILE), path.join(dir, ADAPTER_CONFIG_FILE));
    await syncDir(dir);
  } catch (e) {
    throw ioError(e, dir, 'cannot save the adapter');
  } finally {
    await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
  }
  return { ...files, metadata };
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
