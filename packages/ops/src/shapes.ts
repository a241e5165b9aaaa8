import { ParaError } from '@para/core';
import type * as tf from '@tensorflow/tfjs-core';

/**
 * Shape checks for the public ops: a wrong rank or dimension becomes a ParaError
 * (`SHAPE_MISMATCH`, naming the argument, what was expected and what came) before tfjs fails
 * somewhere deep inside a kernel with a message that names neither.
 */

/** One expected dimension: a number (exact), a name (any size, shown in messages), or `null`. */
export type Dim = number | string | null;

export function describeShape(shape: readonly Dim[]): string {
  return `[${shape.map((d) => (d === null ? '?' : String(d))).join(', ')}]`;
}

function shapeError(
  field: string,
  expected: string,
  actual: readonly number[],
  why?: string,
): ParaError {
  return new ParaError('SHAPE_MISMATCH', why ?? 'tensor has the wrong shape', {
    field,
    expected,
    actual: describeShape(actual),
  });
}

/** Throw unless `t` is a tfjs tensor. */
export function assertTensor(t: unknown, field: string): asserts t is tf.Tensor {
  const shape = (t as { shape?: unknown } | null | undefined)?.shape;
  if (t === null || typeof t !== 'object' || !Array.isArray(shape)) {
    throw new ParaError('INVALID_ARGUMENT', 'expected a tensor', {
      field,
      expected: 'a tf.Tensor',
      actual: t === null ? 'null' : typeof t,
    });
  }
  if ((t as tf.Tensor).isDisposed) {
    throw new ParaError('INVALID_ARGUMENT', 'tensor was already disposed', { field });
  }
}

/**
 * Check `t.shape` against `expected`: numbers must match exactly, names and `null` match any
 * size. Returns the actual shape. Use `bind` to collect named sizes across several tensors.
 */
export function checkShape(
  t: unknown,
  field: string,
  expected: readonly Dim[],
  bind?: Map<string, number>,
): number[] {
  assertTensor(t, field);
  const actual = t.shape;
  const want = describeShape(expected);
  if (actual.length !== expected.length) {
    throw shapeError(
      field,
      want,
      actual,
      `tensor has rank ${actual.length}, expected rank ${expected.length}`,
    );
  }
  expected.forEach((d, i) => {
    const a = actual[i] as number;
    if (typeof d === 'number' && a !== d)
      throw shapeError(field, want, actual, `dimension ${i} is ${a}, expected ${d}`);
    if (typeof d === 'string' && bind !== undefined) {
      const seen = bind.get(d);
      if (seen === undefined) bind.set(d, a);
      else if (seen !== a) {
        throw shapeError(
          field,
          describeShape(
            expected.map((e) =>
              typeof e === 'string' && bind.has(e) ? (bind.get(e) as number) : e,
            ),
          ),
          actual,
          `dimension ${i} (${d}) is ${a}, expected ${seen}`,
        );
      }
    }
  });
  return actual.slice();
}

/** Throw unless `t` has rank ≥ `minRank`. */
export function checkMinRank(
  t: unknown,
  field: string,
  minRank: number,
  expected: string,
): number[] {
  assertTensor(t, field);
  if (t.rank < minRank)
    throw shapeError(
      field,
      expected,
      t.shape,
      `tensor has rank ${t.rank}, expected at least ${minRank}`,
    );
  return t.shape.slice();
}

/** Throw unless `a` and `b` have identical shapes. */
export function checkSameShape(a: tf.Tensor, b: unknown, field: string, aField: string): void {
  assertTensor(b, field);
  const same = a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i]);
  if (!same)
    throw shapeError(
      field,
      `the shape of ${aField}, ${describeShape(a.shape)}`,
      b.shape,
      `${field} and ${aField} differ in shape`,
    );
}

/** Throw unless a dimension is a positive integer. */
export function checkPositiveInt(
  value: unknown,
  field: string,
  code: 'INVALID_ARGUMENT' | 'INVALID_CONFIG' = 'INVALID_ARGUMENT',
): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    throw new ParaError(code, 'expected a positive integer', {
      field,
      expected: 'a positive integer',
      actual: String(value),
    });
  }
  return value;
}

/** Throw unless `rows` is a rectangular `number[][]` (B rows of equal length); returns [B, L]. */
export function checkMatrix(rows: unknown, field: string): [number, number] {
  if (!Array.isArray(rows) || rows.length === 0 || !rows.every((r) => Array.isArray(r))) {
    throw new ParaError('SHAPE_MISMATCH', 'expected a non-empty array of rows', {
      field,
      expected: 'number[][] [B, L]',
      actual: Array.isArray(rows) ? `an array of ${rows.length}` : typeof rows,
    });
  }
  const len = (rows[0] as unknown[]).length;
  rows.forEach((r: unknown[], b) => {
    if (r.length !== len) {
      throw new ParaError('SHAPE_MISMATCH', `row ${b} has length ${r.length}, row 0 has ${len}`, {
        field,
        expected: `every row of length ${len}`,
        actual: String(r.length),
      });
    }
  });
  return [rows.length, len];
}
