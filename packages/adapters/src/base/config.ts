/**
 * What every adapter config shares, and the validation helpers the method configs use.
 *
 * Configs use PEFT's own key names (`r`, `lora_alpha`, `target_modules`, ...), exactly as they
 * appear in `adapter_config.json`, so a config object and its JSON file are the same thing.
 * Every check throws a `ParaError` naming the file (when the config came from one), the key,
 * what was expected and what was found.
 */

import { ParaError } from '@para/core';
import { PROJECTIONS, type ProjectionName } from '@para/model';

/** The methods this package implements (`peft_type` in adapter_config.json). */
export type PeftType = 'PARA' | 'LORA' | 'IA3';
export const PEFT_TYPES: readonly PeftType[] = ['PARA', 'LORA', 'IA3'];

/** Keys every adapter_config.json carries. */
export interface BaseAdapterConfig {
  peft_type: PeftType;
  /** The backbone the adapter was trained on (a path or a hub id); informational, may be null. */
  base_model_name_or_path: string | null;
}

/** The name used in messages when a config did not come from a file. */
export const INLINE_CONFIG = '<adapter config>';

/** Reads and checks the keys of one raw config object, throwing typed errors that name the key. */
export class ConfigReader {
  constructor(
    readonly raw: Readonly<Record<string, unknown>>,
    readonly file: string = INLINE_CONFIG,
  ) {}

  has(key: string): boolean {
    return this.raw[key] !== undefined && this.raw[key] !== null;
  }

  fail(key: string, expected: string, code: 'INVALID_CONFIG' | 'UNSUPPORTED' = 'INVALID_CONFIG', message?: string): never {
    const actual = this.raw[key];
    throw new ParaError(code, message ?? (code === 'UNSUPPORTED' ? 'unsupported adapter setting' : 'invalid adapter setting'), {
      file: this.file,
      field: key,
      expected,
      actual: actual === undefined ? 'nothing' : (JSON.stringify(actual) ?? String(actual)).slice(0, 120),
    });
  }

  /** A positive integer (or `def` when absent). */
  positiveInt(key: string, def?: number): number {
    if (!this.has(key)) {
      if (def === undefined) this.fail(key, 'a positive integer');
      return def;
    }
    const v = this.raw[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) this.fail(key, 'a positive integer');
    return v;
  }

  /** A finite number within [min, max]. */
  number(key: string, def: number, min = Number.NEGATIVE_INFINITY, max = Number.POSITIVE_INFINITY): number {
    if (!this.has(key)) return def;
    const v = this.raw[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
      this.fail(key, `a number in [${min}, ${max}]`);
    }
    return v;
  }

  bool(key: string, def: boolean): boolean {
    if (!this.has(key)) return def;
    const v = this.raw[key];
    if (typeof v !== 'boolean') this.fail(key, 'true or false');
    return v;
  }

  oneOf<T extends string>(key: string, allowed: readonly T[], def: T): T {
    if (!this.has(key)) return def;
    const v = this.raw[key];
    if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
      this.fail(key, `one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`);
    }
    return v as T;
  }

  stringOrNull(key: string): string | null {
    if (!this.has(key)) return null;
    const v = this.raw[key];
    if (typeof v !== 'string') this.fail(key, 'a string or null');
    return v;
  }

  /**
   * A list of module names, each one of `allowed`, without duplicates, non-empty; kept in the
   * order given (PARA's `para.up.weight` rows follow it).
   */
  moduleList<T extends string>(key: string, allowed: readonly T[], def: readonly T[] | null): T[] {
    if (!this.has(key)) {
      if (def === null) this.fail(key, `a non-empty list of ${allowed.join(', ')}`);
      return [...def];
    }
    const v = this.raw[key];
    const expected = `a non-empty list of distinct names from ${allowed.join(', ')}`;
    if (!Array.isArray(v) || v.length === 0) this.fail(key, expected);
    const out: T[] = [];
    for (const m of v) {
      if (typeof m !== 'string' || !(allowed as readonly string[]).includes(m) || out.includes(m as T)) this.fail(key, expected);
      out.push(m as T);
    }
    return out;
  }

  /** `null`, or a non-negative integer, or a list of them (PEFT's `layers_to_transform`). */
  layerList(key: string): number[] | null {
    if (!this.has(key)) return null;
    const v = this.raw[key];
    const list = typeof v === 'number' ? [v] : v;
    if (!Array.isArray(list) || list.length === 0 || !list.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0)) {
      this.fail(key, 'null, a layer index or a non-empty list of layer indices');
    }
    return [...new Set(list as number[])].sort((a, b) => a - b);
  }

  /** The key must be absent, null, or equal to one of `accepted` (values whose meaning we implement). */
  onlyDefault(key: string, accepted: readonly unknown[], what: string): void {
    if (!this.has(key)) return;
    const v = this.raw[key];
    const empty = (Array.isArray(v) && v.length === 0) || (typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 0);
    if (empty || accepted.some((a) => a === v)) return;
    this.fail(key, what, 'UNSUPPORTED');
  }
}

/** The projections of a decoder layer (HF module names), as `target_modules` spells them. */
export type TargetModule = ProjectionName;
export const ALL_PROJECTIONS: readonly TargetModule[] = PROJECTIONS;

/** Parses `adapter_config.json` text (or an already-parsed value) into a plain object. */
export function parseConfigJson(json: string | unknown, file: string): Record<string, unknown> {
  let raw: unknown = json;
  if (typeof json === 'string') {
    try {
      raw = JSON.parse(json);
    } catch (cause) {
      throw new ParaError('INVALID_JSON', 'adapter config is not valid JSON', {
        file,
        expected: 'a JSON object',
        actual: cause instanceof Error ? cause.message : String(cause),
        cause,
      });
    }
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ParaError('INVALID_CONFIG', 'adapter config is not a JSON object', { file, expected: 'a JSON object', actual: JSON.stringify(raw)?.slice(0, 40) });
  }
  return raw as Record<string, unknown>;
}

/** `peft_type` of a raw config, checked. */
export function peftTypeOf(raw: Readonly<Record<string, unknown>>, file: string): PeftType {
  const v = raw.peft_type;
  if (typeof v === 'string' && (PEFT_TYPES as readonly string[]).includes(v)) return v as PeftType;
  throw new ParaError(v === undefined ? 'INVALID_CONFIG' : 'UNSUPPORTED', v === undefined ? 'adapter config has no peft_type' : 'unsupported adapter type', {
    file,
    field: 'peft_type',
    expected: PEFT_TYPES.map((t) => JSON.stringify(t)).join(', '),
    actual: v === undefined ? 'nothing' : JSON.stringify(v),
  });
}
