/**
 * Typed errors. Every error raised on bad user input is a `ParaError` with a stable `code`
 * and, where known, the file, the field and what was expected — so a CLI can print a precise
 * message and a program can branch on `code` instead of parsing text.
 */

export type ParaErrorCode =
  // input files
  | 'FILE_NOT_FOUND'
  | 'FILE_TRUNCATED'
  | 'INVALID_JSON'
  | 'INVALID_HEADER'
  | 'UNKNOWN_DTYPE'
  | 'BAD_OFFSETS'
  | 'SIZE_MISMATCH'
  | 'TENSOR_NOT_FOUND'
  | 'SHAPE_MISMATCH'
  /** NaN or ±Inf where finite numbers are required (weights, logits). */
  | 'NON_FINITE'
  /** Text that is not valid UTF-8. */
  | 'INVALID_ENCODING'
  // configuration and arguments
  | 'INVALID_CONFIG'
  | 'INVALID_ARGUMENT'
  | 'UNSUPPORTED'
  /** A bound on work or memory was reached (template output, regex, batch memory). */
  | 'LIMIT_EXCEEDED'
  /** Another live process holds this output directory. */
  | 'LOCKED'
  // runtime environment
  | 'BACKEND_UNAVAILABLE'
  | 'IO_ERROR';

export interface ParaErrorDetails {
  /** The file at fault (a path or URL), if any. */
  file?: string;
  /** The field (JSON key, tensor name, CLI flag) at fault, if any. */
  field?: string;
  /** What was expected there, in words. */
  expected?: string;
  /** What was found instead, in words. */
  actual?: string;
  /** The underlying error, if this one wraps another. */
  cause?: unknown;
}

export class ParaError extends Error {
  override readonly name = 'ParaError';
  readonly code: ParaErrorCode;
  readonly file: string | undefined;
  readonly field: string | undefined;
  readonly expected: string | undefined;
  readonly actual: string | undefined;

  constructor(code: ParaErrorCode, message: string, details: ParaErrorDetails = {}) {
    super(
      ParaError.format(message, details),
      details.cause === undefined ? undefined : { cause: details.cause },
    );
    this.code = code;
    this.file = details.file;
    this.field = details.field;
    this.expected = details.expected;
    this.actual = details.actual;
  }

  private static format(message: string, d: ParaErrorDetails): string {
    const parts: string[] = [];
    if (d.file !== undefined) parts.push(d.file);
    if (d.field !== undefined) parts.push(`field "${d.field}"`);
    let text = parts.length > 0 ? `${parts.join(', ')}: ${message}` : message;
    if (d.expected !== undefined) text += ` (expected ${d.expected}`;
    if (d.actual !== undefined)
      text += d.expected !== undefined ? `, got ${d.actual})` : ` (got ${d.actual})`;
    else if (d.expected !== undefined) text += ')';
    return text;
  }
}

/** True when `e` is a ParaError, optionally with the given code. Works across bundle copies. */
export function isParaError(e: unknown, code?: ParaErrorCode): e is ParaError {
  if (typeof e !== 'object' || e === null) return false;
  const err = e as { name?: unknown; code?: unknown };
  return err.name === 'ParaError' && (code === undefined || err.code === code);
}
