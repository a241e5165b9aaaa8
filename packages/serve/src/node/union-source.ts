/**
 * Several adapter sources as one (the registry takes one): the first source that has a name
 * serves it. `para serve` uses it to serve the adapters root (`--adapters`) and the fine-tuned
 * adapters of its data directory (`DATA/adapters`) side by side; uploads (`save`) go to the
 * first source that can store them.
 */

import { isParaError, ParaError } from '@para/core';
import type { AdapterSource } from '../registry';

export function unionSource(sources: readonly AdapterSource[]): AdapterSource {
  const owner = async (name: string): Promise<AdapterSource | undefined> => {
    for (const s of sources) if ((await s.list()).includes(name)) return s;
    return undefined;
  };
  const writable = sources.find((s) => s.save !== undefined);
  return {
    async list() {
      const names = new Set<string>();
      for (const s of sources) for (const n of await s.list()) names.add(n);
      return [...names].sort();
    },
    async peftType(name) {
      return (await (await owner(name))?.peftType(name)) ?? null;
    },
    async load(name, model) {
      const s = await owner(name);
      if (s !== undefined) return s.load(name, model);
      // None lists it: the first source's own FILE_NOT_FOUND (or INVALID_ARGUMENT for a bad name).
      let first: unknown;
      for (const src of sources) {
        try {
          return await src.load(name, model);
        } catch (e) {
          if (!isParaError(e, 'FILE_NOT_FOUND')) throw e;
          first ??= e;
        }
      }
      throw (
        first ??
        new ParaError('FILE_NOT_FOUND', `no adapter named ${JSON.stringify(name)}`, {
          field: 'model',
        })
      );
    },
    ...(writable?.save === undefined
      ? {}
      : {
          save: (name, adapter) =>
            (writable.save as NonNullable<AdapterSource['save']>)(name, adapter),
        }),
  };
}
