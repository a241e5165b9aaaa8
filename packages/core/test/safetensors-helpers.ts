/** Test helpers for the safetensors tests: hand-built files, fake sources and servers. */

import { expect } from 'vitest';
import { isParaError, type ParaError, type ParaErrorCode } from '../src/errors';
import type { ByteSource } from '../src/safetensors';

/** A file built by hand: u64 length, header text (not padded unless you pad it), data. */
export function buildFile(
  header: unknown,
  data: Uint8Array | number = 0,
  opts: { length?: bigint } = {},
): Uint8Array {
  const text = new TextEncoder().encode(
    typeof header === 'string' ? header : JSON.stringify(header),
  );
  const body = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + text.byteLength + body.byteLength);
  new DataView(out.buffer).setBigUint64(0, opts.length ?? BigInt(text.byteLength), true);
  out.set(text, 8);
  out.set(body, 8 + text.byteLength);
  return out;
}

/** The rejection of `p`, which must reject. */
export async function rejection(p: Promise<unknown>): Promise<ParaError> {
  try {
    await p;
  } catch (e) {
    return e as ParaError;
  }
  throw new Error('expected a rejection');
}

/** Asserts a ParaError with `code`, whose message names `file` and (if given) `field`. */
export function expectParaError(
  e: unknown,
  code: ParaErrorCode,
  file: string,
  field?: string,
): void {
  expect(isParaError(e), String(e)).toBe(true);
  const err = e as ParaError;
  expect(err.code, err.message).toBe(code);
  expect(err.message).toContain(file);
  if (field !== undefined) {
    expect(err.field).toBe(field);
    expect(err.message).toContain(field);
  }
}

/** Wraps a source and counts the reads and bytes that go through it. */
export class CountingSource implements ByteSource {
  reads: [number, number][] = [];
  closed = false;
  constructor(private readonly inner: ByteSource) {}
  get name(): string {
    return this.inner.name;
  }
  get bytesRead(): number {
    return this.reads.reduce((a, [, n]) => a + n, 0);
  }
  size(): Promise<number> {
    return this.inner.size();
  }
  read(offset: number, length: number): Promise<Uint8Array> {
    this.reads.push([offset, length]);
    return this.inner.read(offset, length);
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

export interface FakeServerOptions {
  /** Honour Range requests (else always answer 200 with the whole body). */
  ranges?: boolean;
  /** Answer HEAD (else 405). */
  head?: boolean;
  /** Send Content-Length on HEAD. */
  contentLength?: boolean;
}

/** An in-memory HTTP server behind a fetch function, logging every request. */
export function fakeServer(files: Record<string, Uint8Array>, opts: FakeServerOptions = {}) {
  const { ranges = true, head = true, contentLength = true } = opts;
  const log: { method: string; url: string; range: string | undefined; bytes: number }[] = [];
  const fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const url = String(input);
    const method = init?.method ?? 'GET';
    const range = new Headers(init?.headers).get('range') ?? undefined;
    const body = files[url];
    const entry = { method, url, range, bytes: 0 };
    log.push(entry);
    if (body === undefined) return new Response('not found', { status: 404 });
    if (method === 'HEAD') {
      if (!head) return new Response(null, { status: 405 });
      const headers: Record<string, string> = contentLength
        ? { 'content-length': String(body.byteLength) }
        : {};
      return new Response(null, { status: 200, headers });
    }
    const m = range === undefined ? null : /^bytes=(\d+)-(\d+)$/.exec(range);
    if (ranges && m !== null) {
      const a = Number(m[1]);
      const b = Math.min(Number(m[2]), body.byteLength - 1);
      if (a >= body.byteLength) return new Response(null, { status: 416 });
      const part = body.slice(a, b + 1);
      entry.bytes = part.byteLength;
      return new Response(part, {
        status: 206,
        headers: { 'content-range': `bytes ${a}-${b}/${body.byteLength}` },
      });
    }
    entry.bytes = body.byteLength;
    return new Response(body.slice(), { status: 200 });
  };
  return { fetch: fetch as typeof globalThis.fetch, log };
}
