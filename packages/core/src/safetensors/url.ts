/**
 * Checkpoint access over HTTP(S), for the browser (or any runtime with fetch): files are
 * resolved against a base URL and read with range requests.
 */

import { ParaError } from '../errors';
import type { CheckpointAccess } from './sharded';
import { FetchRangeSource, type FetchRangeSourceOptions } from './source';

/** A `CheckpointAccess` for the directory at `baseUrl` (a trailing `/` is added if missing). */
export function urlCheckpointAccess(
  baseUrl: string,
  opts: FetchRangeSourceOptions = {},
): CheckpointAccess {
  const base = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`;
  const resolve = (file: string): string => {
    try {
      return new URL(file, base).href;
    } catch (cause) {
      throw new ParaError('INVALID_ARGUMENT', 'cannot resolve URL', {
        file: base,
        field: file,
        expected: 'an absolute base URL',
        cause,
      });
    }
  };
  return {
    location: base,
    open: async (file) => new FetchRangeSource(resolve(file), opts),
    exists: async (file) => {
      const url = resolve(file);
      const doFetch = opts.fetch ?? globalThis.fetch;
      let res: Response;
      try {
        res = await doFetch(url, { method: 'HEAD', headers: { ...opts.headers } });
        if (res.status === 405 || res.status === 501) {
          res = await doFetch(url, {
            method: 'GET',
            headers: { ...opts.headers, Range: 'bytes=0-0' },
          });
          await res.body?.cancel();
        }
      } catch (cause) {
        throw new ParaError('IO_ERROR', 'request failed', { file: url, cause });
      }
      if (res.ok || res.status === 416) return true; // 416: an empty file cannot serve bytes 0-0
      if (res.status === 404 || res.status === 410) return false;
      throw new ParaError('IO_ERROR', `HTTP ${res.status}`, {
        file: url,
        expected: 'a 2xx or 404 response',
        actual: `status ${res.status}`,
      });
    },
  };
}
