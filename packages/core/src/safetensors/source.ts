/**
 * Random-access byte sources, so a reader fetches only the header and the tensors it needs.
 * Universal code: `ArrayBufferSource` (memory) and `FetchRangeSource` (HTTP range requests via
 * `globalThis.fetch`); the Node file source lives in `node/safetensors-node.ts`.
 */

import { ParaError } from '../errors';

/** Something that can be read at arbitrary offsets: a file, a URL, a buffer. */
export interface ByteSource {
  /** A path or URL, used in error messages. */
  readonly name: string;
  /** Total size in bytes. */
  size(): Promise<number>;
  /**
   * Exactly `length` bytes from `offset` in a fresh array the caller may keep or mutate.
   * A range past the end is FILE_TRUNCATED.
   */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Releases the underlying handle, if any. */
  close?(): Promise<void>;
}

/** Checks a read range against a known size. */
export function checkRange(name: string, offset: number, length: number, size: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new ParaError('INVALID_ARGUMENT', 'bad read range', {
      file: name,
      expected: 'a non-negative integer offset and length',
      actual: `offset ${offset}, length ${length}`,
    });
  }
  if (offset + length > size) {
    throw new ParaError('FILE_TRUNCATED', 'read past the end of the file', {
      file: name,
      expected: `bytes [${offset}, ${offset + length})`,
      actual: `a file of ${size} bytes`,
    });
  }
}

/** A source over bytes already in memory. Reads return copies. */
export class ArrayBufferSource implements ByteSource {
  readonly name: string;
  private readonly bytes: Uint8Array;

  constructor(data: ArrayBuffer | ArrayBufferView, name = '<memory>') {
    this.bytes =
      data instanceof ArrayBuffer
        ? new Uint8Array(data)
        : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    this.name = name;
  }

  async size(): Promise<number> {
    return this.bytes.byteLength;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    checkRange(this.name, offset, length, this.bytes.byteLength);
    return this.bytes.slice(offset, offset + length);
  }
}

/** Options for `FetchRangeSource`. */
export interface FetchRangeSourceOptions {
  /** The fetch to use; defaults to `globalThis.fetch` at call time. */
  fetch?: typeof globalThis.fetch;
  /** Extra request headers (e.g. an Authorization header). */
  headers?: Record<string, string>;
}

/**
 * A source over a URL using HTTP range requests (`Range: bytes=a-b`). The size comes from a HEAD
 * request (or a one-byte range probe when HEAD gives no length). When the server ignores
 * ranges (answers 200 with the whole body), the body is kept and served from memory.
 */
export class FetchRangeSource implements ByteSource {
  readonly name: string;
  private readonly url: string;
  private readonly opts: FetchRangeSourceOptions;
  private knownSize: number | undefined;
  private whole: Uint8Array | undefined;

  constructor(url: string, opts: FetchRangeSourceOptions = {}) {
    this.url = url;
    this.name = url;
    this.opts = opts;
  }

  async size(): Promise<number> {
    if (this.knownSize !== undefined) return this.knownSize;
    const head = await this.request('HEAD');
    const len = head.ok ? parseLength(head.headers.get('content-length')) : undefined;
    if (len !== undefined) {
      this.knownSize = len;
      return len;
    }
    if (!head.ok && head.status !== 405 && head.status !== 501) this.fail(head);
    // No usable HEAD: probe with a one-byte range and read the total from Content-Range.
    const probe = await this.request('GET', 'bytes=0-0');
    if (probe.status === 206) {
      const total = parseContentRangeTotal(probe.headers.get('content-range'));
      await probe.body?.cancel();
      if (total !== undefined) {
        this.knownSize = total;
        return total;
      }
      // Content-Range not exposed (e.g. cross-origin without Expose-Headers): fetch it all.
      return this.keepWhole(await this.request('GET'));
    }
    if (probe.status === 416) {
      await probe.body?.cancel();
      this.knownSize = 0; // an empty file cannot satisfy bytes=0-0
      return 0;
    }
    return this.keepWhole(probe);
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const size = await this.size();
    checkRange(this.name, offset, length, size);
    if (this.whole !== undefined) return this.whole.slice(offset, offset + length);
    if (length === 0) return new Uint8Array(0);
    const res = await this.request('GET', `bytes=${offset}-${offset + length - 1}`);
    if (res.status === 200) {
      // The server ignored the range: keep the whole body and serve from it.
      await this.keepWhole(res);
      checkRange(this.name, offset, length, this.whole!.byteLength);
      return this.whole!.slice(offset, offset + length);
    }
    if (res.status !== 206) this.fail(res);
    const bytes = new Uint8Array(await this.body(res));
    if (bytes.byteLength !== length) {
      throw new ParaError('FILE_TRUNCATED', 'range response has the wrong length', {
        file: this.name,
        expected: `${length} bytes from offset ${offset}`,
        actual: `${bytes.byteLength} bytes`,
      });
    }
    return bytes;
  }

  async close(): Promise<void> {
    this.whole = undefined;
  }

  private async keepWhole(res: Response): Promise<number> {
    if (!res.ok) this.fail(res);
    this.whole = new Uint8Array(await this.body(res));
    this.knownSize = this.whole.byteLength;
    return this.knownSize;
  }

  private async request(method: 'GET' | 'HEAD', range?: string): Promise<Response> {
    const doFetch = this.opts.fetch ?? globalThis.fetch;
    const headers: Record<string, string> = { ...this.opts.headers };
    if (range !== undefined) headers.Range = range;
    try {
      return await doFetch(this.url, { method, headers });
    } catch (cause) {
      throw new ParaError('IO_ERROR', `${method} request failed`, {
        file: this.name,
        actual: cause instanceof Error ? cause.message : String(cause),
        cause,
      });
    }
  }

  private async body(res: Response): Promise<ArrayBuffer> {
    try {
      return await res.arrayBuffer();
    } catch (cause) {
      throw new ParaError('IO_ERROR', 'reading the response body failed', {
        file: this.name,
        cause,
      });
    }
  }

  private fail(res: Response): never {
    const code = res.status === 404 || res.status === 410 ? 'FILE_NOT_FOUND' : 'IO_ERROR';
    throw new ParaError(code, `HTTP ${res.status} ${res.statusText}`.trim(), {
      file: this.name,
      expected: 'a 2xx response',
      actual: `status ${res.status}`,
    });
  }
}

function parseLength(v: string | null): number | undefined {
  if (v === null || !/^\d+$/.test(v.trim())) return undefined;
  const n = Number(v.trim());
  return Number.isSafeInteger(n) ? n : undefined;
}

/** The total from `Content-Range: bytes a-b/total`. */
function parseContentRangeTotal(v: string | null): number | undefined {
  const m = v === null ? null : /\/\s*(\d+)\s*$/.exec(v);
  return m === null ? undefined : parseLength(m[1] ?? null);
}
