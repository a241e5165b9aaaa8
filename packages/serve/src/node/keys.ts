/**
 * API keys: one `--api-key` (allowed everything), and/or a keys file mapping each key to the
 * models (base model and adapters) it may use — per-tenant isolation, as LoRAX's private
 * adapters. A key sees only its models in GET /v1/models, gets 403 for any other, and manages
 * adapters (POST/DELETE /v1/adapters) only with `"admin": true`.
 *
 *   { "keys": [
 *       { "key": "sk-tenant-a", "models": ["pos"] },
 *       { "key": "sk-ops", "models": "*", "admin": true } ] }
 */

import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { ParaError, parseJsonText } from '@para/core';

export interface KeyGrant {
  /** Models this key may name ("*": all). */
  models: readonly string[] | '*';
  /** May load, upload and unload adapters. */
  admin: boolean;
}

export interface ApiKeys {
  /** The grant of a presented key, or null when it is not a key of this server. */
  check(key: string): KeyGrant | null;
  readonly size: number;
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

/** The keys of `apiKey` (admin, every model) and of the parsed keys file. */
export function apiKeys(entries: { key: string; grant: KeyGrant }[]): ApiKeys {
  const table = entries.map((e) => ({ hash: digest(e.key), grant: e.grant }));
  return {
    size: table.length,
    check(key: string) {
      const h = digest(key);
      let found: KeyGrant | null = null;
      for (const e of table) if (timingSafeEqual(e.hash, h)) found = e.grant;
      return found;
    },
  };
}

/** Parses a keys file's text; INVALID_CONFIG naming the file and the field otherwise. */
export function parseKeys(text: string, file: string): { key: string; grant: KeyGrant }[] {
  const json = parseJsonText(text, file) as { keys?: unknown };
  const bad = (field: string, expected: string): never => {
    throw new ParaError('INVALID_CONFIG', 'bad keys file', { file, field, expected });
  };
  if (json === null || typeof json !== 'object' || !Array.isArray(json.keys))
    bad('keys', 'an object {"keys": [{"key", "models", "admin"?}, …]}');
  const out: { key: string; grant: KeyGrant }[] = [];
  const seen = new Set<string>();
  (json.keys as unknown[]).forEach((k, i) => {
    const e = k as { key?: unknown; models?: unknown; admin?: unknown };
    if (e === null || typeof e !== 'object') bad(`keys[${i}]`, 'an object');
    if (typeof e.key !== 'string' || e.key.length < 8 || /\s/.test(e.key))
      bad(`keys[${i}].key`, 'a string of at least 8 characters without spaces');
    if (seen.has(e.key as string)) bad(`keys[${i}].key`, 'a key listed once');
    seen.add(e.key as string);
    const models = e.models;
    if (
      models !== '*' &&
      !(Array.isArray(models) && models.every((m) => typeof m === 'string' && m.length > 0))
    )
      bad(`keys[${i}].models`, '"*" or a list of model names');
    if (e.admin !== undefined && typeof e.admin !== 'boolean') bad(`keys[${i}].admin`, 'a boolean');
    out.push({
      key: e.key as string,
      grant: { models: models === '*' ? '*' : [...(models as string[])], admin: e.admin === true },
    });
  });
  return out;
}

/** Reads and parses a keys file (FILE_NOT_FOUND, INVALID_JSON, INVALID_CONFIG). */
export async function loadKeysFile(file: string): Promise<{ key: string; grant: KeyGrant }[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    throw new ParaError('FILE_NOT_FOUND', 'keys file not found', { file, cause });
  }
  return parseKeys(text, file);
}
