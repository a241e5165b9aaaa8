/**
 * Adapters on disk: a root directory whose sub-directories are PEFT adapter directories
 * (adapter_config.json + adapter_model.safetensors), each addressed by its directory name.
 *
 * A name never reaches outside the root: it must match `ADAPTER_NAME_PATTERN` (no `/`, no
 * `..`), and the resolved path — symbolic links followed — must still lie inside the root's own
 * real path; anything else is INVALID_ARGUMENT (HTTP 400), a valid name with no directory
 * FILE_NOT_FOUND (HTTP 404).
 */

import { lstat, readdir, readFile, realpath, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { ADAPTER_CONFIG_FILE, type AnyAdapter } from '@para/adapters';
import { loadAdapter, saveAdapter } from '@para/adapters/node';
import { ParaError } from '@para/core';
import type { CausalLM } from '@para/model';
import { ADAPTER_NAME_PATTERN, type AdapterSource, checkAdapterName } from '../registry';

export interface DirectorySourceOptions {
  /**
   * The backbone's name (e.g. its directory): an adapter whose `base_model_name_or_path` names
   * another model is refused (INVALID_CONFIG), or only warned about with `baseModelMismatch:
   * 'warn'` (the default: shapes are always checked; names of copies and renames differ).
   */
  baseModelName?: string;
  baseModelMismatch?: 'error' | 'warn';
  warn?: (message: string) => void;
}

/** adapter_config.json is read for its peft_type only up to this size. */
const MAX_CONFIG_BYTES = 1 << 20;

function inside(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

/**
 * The adapter directory of `name` under `root`, checked to stay inside it (symlinks resolved).
 * Throws INVALID_ARGUMENT for a bad or escaping name, FILE_NOT_FOUND when it does not exist.
 */
export async function resolveAdapterDir(root: string, name: string): Promise<string> {
  checkAdapterName(name);
  const absRoot = path.resolve(root);
  const dir = path.resolve(absRoot, name);
  if (!inside(absRoot, dir)) {
    throw new ParaError('INVALID_ARGUMENT', 'the adapter name points outside the adapters root', {
      field: 'model',
      actual: JSON.stringify(name),
    });
  }
  let real: string;
  let realRoot: string;
  try {
    realRoot = await realpath(absRoot);
  } catch (cause) {
    throw new ParaError('FILE_NOT_FOUND', 'the adapters root does not exist', {
      file: absRoot,
      cause,
    });
  }
  try {
    real = await realpath(dir);
  } catch (cause) {
    throw new ParaError('FILE_NOT_FOUND', `no adapter named ${JSON.stringify(name)}`, {
      field: 'model',
      expected: 'a base model or adapter name listed by GET /v1/models',
      cause,
    });
  }
  if (!inside(realRoot, real)) {
    throw new ParaError('INVALID_ARGUMENT', 'the adapter name points outside the adapters root', {
      field: 'model',
      actual: JSON.stringify(name),
    });
  }
  return real;
}

export function directorySource(root: string, options: DirectorySourceOptions = {}): AdapterSource {
  const absRoot = path.resolve(root);
  return {
    async list() {
      let entries: string[];
      try {
        entries = await readdir(absRoot);
      } catch {
        return [];
      }
      const out: string[] = [];
      for (const name of entries.sort()) {
        if (!ADAPTER_NAME_PATTERN.test(name) || name.includes('..')) continue;
        try {
          const dir = await resolveAdapterDir(absRoot, name);
          if ((await stat(path.join(dir, ADAPTER_CONFIG_FILE))).isFile()) out.push(name);
        } catch {
          // not an adapter directory (a README, a file, a link outside the root)
        }
      }
      return out;
    },
    async peftType(name) {
      try {
        const dir = await resolveAdapterDir(absRoot, name);
        const file = path.join(dir, ADAPTER_CONFIG_FILE);
        if ((await stat(file)).size > MAX_CONFIG_BYTES) return null;
        const json = JSON.parse(await readFile(file, 'utf8')) as { peft_type?: unknown };
        return typeof json.peft_type === 'string' ? json.peft_type : null;
      } catch {
        return null;
      }
    },
    async load(name: string, model: CausalLM): Promise<AnyAdapter> {
      const dir = await resolveAdapterDir(absRoot, name);
      return loadAdapter(dir, model, {
        ...(options.baseModelName !== undefined ? { baseModelName: options.baseModelName } : {}),
        baseModelMismatch: options.baseModelMismatch ?? 'warn',
        warn: options.warn ?? (() => undefined),
      });
    },
    async save(name: string, adapter: AnyAdapter): Promise<void> {
      checkAdapterName(name, 'name');
      const dir = path.join(absRoot, name);
      if (!inside(absRoot, dir)) {
        throw new ParaError(
          'INVALID_ARGUMENT',
          'the adapter name points outside the adapters root',
          {
            field: 'name',
          },
        );
      }
      const exists = await lstat(dir).then(
        () => true,
        () => false,
      );
      if (exists) {
        throw new ParaError('INVALID_ARGUMENT', `an adapter named ${JSON.stringify(name)} exists`, {
          field: 'name',
          file: dir,
        });
      }
      await saveAdapter(adapter, dir); // atomic: a temp directory renamed into place
    },
  };
}
