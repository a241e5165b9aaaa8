/**
 * Uploaded files (OpenAI's Files API, `purpose: "fine-tune"`), stored under `DATA/files/`:
 *
 *   DATA/files/file-<24 hex>.jsonl   the bytes as uploaded
 *   DATA/files/file-<24 hex>.json    { id, bytes, created_at, filename, purpose, owner, records, ... }
 *
 * A file is validated before it is stored: strict UTF-8, then one OpenAI fine-tuning record per
 * line — `{"prompt", "completion"}` or chat `{"messages": [...]}` ending with the assistant's
 * turn — by @para/train's own JSONL parser (what `para train` reads), so the first bad line is
 * named in the 400 (`param: "file"`). Both files are written atomically (temp file, fsync,
 * rename), the content first: an upload is acknowledged only once both are on disk, and a crash
 * in between leaves an orphan content file that the next start removes (it was never
 * acknowledged). Each file belongs to the key that uploaded it: another key gets 404, as if it
 * did not exist.
 */

import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import * as path from 'node:path';
import { isParaError, writeFileAtomic } from '@para/core/node';
import { parseJsonlBytes } from '@para/train';
import { HttpError } from './http-error';
import { type Page, paginate } from './pagination';

export const FILE_ID_PATTERN = /^file-[0-9a-f]{24}$/;

/** OpenAI's file object. */
export interface FileObject {
  id: string;
  object: 'file';
  bytes: number;
  created_at: number;
  filename: string;
  purpose: string;
  status: 'processed';
  status_details: null;
  expires_at: null;
}

/** What is stored of a file: the object, its owner, and what validation found. */
export interface FileRecord extends Omit<FileObject, 'object'> {
  owner: string;
  /** Training records (non-blank lines). */
  records: number;
  /** `prompt_completion`, `chat`, or `mixed`. */
  format: string;
  /** Upload order (ids are random). */
  seq: number;
}

export interface FileStoreOptions {
  /** Largest upload in bytes. */
  maxBytes: number;
}

export function fileObject(r: FileRecord): FileObject {
  return {
    id: r.id,
    object: 'file',
    bytes: r.bytes,
    created_at: r.created_at,
    filename: r.filename,
    purpose: r.purpose,
    status: r.status,
    status_details: null,
    expires_at: null,
  };
}

const notFound = (id: string) =>
  new HttpError(
    404,
    `no file with id ${JSON.stringify(id)}`,
    'not_found_error',
    'file_id',
    'file_not_found',
  );

/** A client's file name, kept as a plain name (no directories, no control characters). */
function cleanName(name: string): string {
  const last = name.split(/[/\\]/).pop() ?? '';
  const base = [...last]
    .filter((c) => c.charCodeAt(0) >= 0x20 && c.charCodeAt(0) !== 0x7f)
    .join('');
  return (base === '' ? 'upload.jsonl' : base).slice(0, 255);
}

export class FileStore {
  private readonly records = new Map<string, FileRecord>();
  private seq = 0;

  private constructor(
    readonly dir: string,
    readonly options: FileStoreOptions,
  ) {}

  /** Opens `dir` (created on the first upload), dropping what a crash left half-written. */
  static async open(dir: string, options: FileStoreOptions): Promise<FileStore> {
    const store = new FileStore(path.resolve(dir), options);
    let names: string[] = [];
    try {
      names = await readdir(store.dir);
    } catch {
      return store;
    }
    const meta = new Set(names.filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -5)));
    const content = new Set(names.filter((n) => n.endsWith('.jsonl')).map((n) => n.slice(0, -6)));
    for (const n of names) {
      // writeFileAtomic's temp files (".<name>.<uuid>.tmp") of an interrupted write.
      if (n.startsWith('.') && n.endsWith('.tmp'))
        await rm(path.join(store.dir, n), { force: true });
    }
    for (const id of content) {
      if (FILE_ID_PATTERN.test(id) && !meta.has(id)) {
        // Its upload never completed (the metadata is written last): never acknowledged.
        await rm(store.contentPath(id), { force: true });
      }
    }
    for (const id of meta) {
      if (!FILE_ID_PATTERN.test(id)) continue;
      const file = path.join(store.dir, `${id}.json`);
      if (!content.has(id)) {
        await rm(file, { force: true }); // a delete that stopped half-way
        continue;
      }
      try {
        const r = JSON.parse(await readFile(file, 'utf8')) as FileRecord;
        if (r.id !== id || typeof r.owner !== 'string') continue;
        store.records.set(id, r);
        store.seq = Math.max(store.seq, r.seq ?? 0);
      } catch {
        // unreadable metadata: not listed (the bytes stay on disk for an operator)
      }
    }
    return store;
  }

  contentPath(id: string): string {
    return path.join(this.dir, `${id}.jsonl`);
  }

  /**
   * Validates and stores an upload. 400 naming the first bad line (`param: "file"`), or the
   * purpose; 413 past the size limit.
   */
  async create(
    owner: string,
    filename: string,
    purpose: string,
    bytes: Buffer,
  ): Promise<FileRecord> {
    if (purpose !== 'fine-tune') {
      throw new HttpError(
        400,
        `purpose ${JSON.stringify(purpose)} is not supported here: this server stores fine-tuning data only`,
        'invalid_request_error',
        'purpose',
        'invalid_value',
      );
    }
    if (bytes.length > this.options.maxBytes) {
      throw new HttpError(
        413,
        `the file is ${bytes.length} bytes, more than this server's limit of ${this.options.maxBytes}`,
        'invalid_request_error',
        'file',
        'file_too_large',
      );
    }
    const name = cleanName(filename);
    let records: ReturnType<typeof parseJsonlBytes>;
    try {
      records = parseJsonlBytes(bytes, name);
    } catch (e) {
      if (!isParaError(e)) throw e;
      throw new HttpError(
        400,
        `invalid fine-tuning file: ${e.message}`,
        'invalid_request_error',
        'file',
        'invalid_file_format',
      );
    }
    const chat = records.filter((r) => 'messages' in r).length;
    const format = chat === 0 ? 'prompt_completion' : chat === records.length ? 'chat' : 'mixed';
    const id = `file-${randomBytes(12).toString('hex')}`;
    const record: FileRecord = {
      id,
      bytes: bytes.length,
      created_at: Math.floor(Date.now() / 1000),
      filename: name,
      purpose,
      status: 'processed',
      status_details: null,
      expires_at: null,
      owner,
      records: records.length,
      format,
      seq: ++this.seq,
    };
    await mkdir(this.dir, { recursive: true });
    await writeFileAtomic(this.contentPath(id), bytes);
    await writeFileAtomic(
      path.join(this.dir, `${id}.json`),
      `${JSON.stringify(record, null, 2)}\n`,
    );
    this.records.set(id, record);
    return record;
  }

  /** The owner's file (404 for another owner's or an unknown id). */
  get(owner: string, id: string): FileRecord {
    const r = FILE_ID_PATTERN.test(id) ? this.records.get(id) : undefined;
    if (r === undefined || r.owner !== owner) throw notFound(id);
    return r;
  }

  /** The owner's files, newest first (`order: "asc"`: oldest first). */
  list(
    owner: string,
    o: { after?: string; limit: number; order: 'asc' | 'desc'; purpose?: string },
  ): Page<FileObject> {
    const mine = [...this.records.values()]
      .filter((r) => r.owner === owner && (o.purpose === undefined || r.purpose === o.purpose))
      .sort((a, b) => (o.order === 'asc' ? a.seq - b.seq : b.seq - a.seq))
      .map(fileObject);
    return paginate(mine, o.after, o.limit);
  }

  async delete(owner: string, id: string): Promise<void> {
    this.get(owner, id);
    this.records.delete(id);
    await rm(path.join(this.dir, `${id}.json`), { force: true });
    await rm(this.contentPath(id), { force: true });
  }
}
