/**
 * An HTTP error in OpenAI's error JSON, `{"error": {"message", "type", "param", "code"}}`: what
 * the server's routes (server.ts, fine-tuning.ts) throw and its error handler sends.
 */

export type OpenAIErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'server_error';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: OpenAIErrorType,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export function errorBody(e: HttpError) {
  return { error: { message: e.message, type: e.type, param: e.param, code: e.code } };
}

/** 404 `model_not_found` for a model name (the base model, an adapter or a fine-tuned model). */
export function modelNotFound(name: string): HttpError {
  return new HttpError(
    404,
    `the model ${JSON.stringify(name)} does not exist`,
    'not_found_error',
    'model',
    'model_not_found',
  );
}
