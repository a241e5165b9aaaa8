/**
 * OpenAI's cursor pagination (`after` = the id of the last item of the previous page, `limit`,
 * `has_more`), as the `openai` client's CursorPage follows it, over a list already in order.
 */

import { HttpError } from './http-error';

export interface Page<T> {
  object: 'list';
  data: T[];
  has_more: boolean;
  first_id: string | null;
  last_id: string | null;
}

/** The page after the item `after` (absent: from the start); an unknown `after` is a 400. */
export function paginate<T extends { id: string }>(
  items: readonly T[],
  after: string | undefined,
  limit: number,
): Page<T> {
  let start = 0;
  if (after !== undefined) {
    const i = items.findIndex((x) => x.id === after);
    if (i < 0) {
      throw new HttpError(
        400,
        `no item ${JSON.stringify(after)} to list after`,
        'invalid_request_error',
        'after',
        'invalid_value',
      );
    }
    start = i + 1;
  }
  const data = items.slice(start, start + limit);
  return {
    object: 'list',
    data,
    has_more: start + data.length < items.length,
    first_id: data[0]?.id ?? null,
    last_id: data[data.length - 1]?.id ?? null,
  };
}
