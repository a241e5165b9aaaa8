/** Parsing of numeric CLI flags shared by the commands: a typed error naming the flag. */

import { ParaError } from '@para/core/node';

/** `value` as a positive integer (`fallback` when the flag is absent). */
export function positiveIntFlag(value: string | undefined, flag: string, fallback: number): number {
  return intFlag(value, flag, fallback, 1);
}

/** `value` as an integer ≥ 0 (`fallback` when the flag is absent). */
export function nonNegativeIntFlag(
  value: string | undefined,
  flag: string,
  fallback: number,
): number {
  return intFlag(value, flag, fallback, 0);
}

function intFlag(value: string | undefined, flag: string, fallback: number, min: 0 | 1): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min) {
    throw new ParaError('INVALID_ARGUMENT', `bad value for ${flag}`, {
      field: flag,
      expected: min === 1 ? 'a positive integer' : 'an integer ≥ 0',
      actual: JSON.stringify(value),
    });
  }
  return n;
}

/** A comma-separated list of positive integers (`fallback` when the flag is absent). */
export function positiveIntListFlag(
  value: string | undefined,
  flag: string,
  fallback: number[],
): number[] {
  if (value === undefined) return fallback;
  return value.split(',').map((part) => {
    const n = Number(part);
    if (!/^\d+$/.test(part.trim()) || !Number.isSafeInteger(n) || n < 1) {
      throw new ParaError('INVALID_ARGUMENT', `bad value for ${flag}`, {
        field: flag,
        expected: 'comma-separated positive integers, e.g. 1,8,32',
        actual: JSON.stringify(value),
      });
    }
    return n;
  });
}
