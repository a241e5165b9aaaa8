/**
 * Errors of the serving layer that are not about bad input: the engine is full, closing, or a
 * request ran out of time. Bad input is a `ParaError` of @para/core (INVALID_ARGUMENT, …), as
 * everywhere in para; the HTTP server maps both to OpenAI's error JSON.
 */

export type ServeErrorCode =
  /** The wait queue is full (HTTP 429 with Retry-After). */
  | 'OVERLOADED'
  /** The engine is closing or closed and admits nothing (HTTP 503). */
  | 'CLOSED'
  /** The request's deadline passed before it produced its first token (HTTP 504). */
  | 'TIMEOUT';

export class ServeError extends Error {
  override readonly name = 'ServeError';
  constructor(
    readonly code: ServeErrorCode,
    message: string,
    /** For OVERLOADED: seconds a client should wait before retrying. */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
  }
}

export function isServeError(e: unknown, code?: ServeErrorCode): e is ServeError {
  return (
    e instanceof Error &&
    (e as { name?: string }).name === 'ServeError' &&
    (code === undefined || (e as ServeError).code === code)
  );
}
