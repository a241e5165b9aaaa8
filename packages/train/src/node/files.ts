/** Node helpers: JSONL files, text files, and the lock on an output directory. */

import { mkdir, open, readdir, readFile, rm, rmdir } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { ParaError } from '@para/core/node';
import {
  type DatasetRecord,
  type DecodeTextOptions,
  decodeUtf8Text,
  parseJsonl,
  type TokenizedDataset,
  type TokenizeOptions,
  type TokenizerLike,
  tokenizeRecords,
} from '../data';

async function readBytes(file: string, what: string, expected: string): Promise<Uint8Array> {
  try {
    return await readFile(file);
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    if (code === 'ENOENT')
      throw new ParaError('FILE_NOT_FOUND', `${what} not found`, { file, expected, cause });
    if (code === 'EISDIR')
      throw new ParaError('INVALID_ARGUMENT', `the ${what} is a directory`, { file, expected });
    throw new ParaError('IO_ERROR', `cannot read the ${what}: ${(cause as Error).message}`, {
      file,
      cause,
    });
  }
}

/**
 * Reads and parses a JSONL dataset (errors name the file and line). Bytes that are not UTF-8 are
 * an INVALID_ENCODING error naming the line and byte offset, unless `allowInvalidUtf8`.
 */
export async function readJsonlFile(
  file: string,
  o: DecodeTextOptions = {},
): Promise<DatasetRecord[]> {
  const bytes = await readBytes(file, 'dataset', 'a JSONL file');
  return parseJsonl(decodeUtf8Text(bytes, file, o), file);
}

/** Reads a UTF-8 text file (INVALID_ENCODING on bad bytes unless `allowInvalidUtf8`). */
export async function readTextFile(
  file: string,
  o: DecodeTextOptions & { field?: string } = {},
): Promise<{ text: string; bytes: number }> {
  const bytes = await readBytes(file, 'input file', 'a UTF-8 text file');
  return { text: decodeUtf8Text(bytes, file, o), bytes: bytes.length };
}

/** Reads, parses and tokenises a JSONL dataset. */
export async function loadDataset(
  file: string,
  tok: TokenizerLike,
  o: TokenizeOptions & DecodeTextOptions,
): Promise<TokenizedDataset> {
  return tokenizeRecords(tok, await readJsonlFile(file, o), file, o);
}

// ---------------------------------------------------------------------------------------------
// the output directory's lock
// ---------------------------------------------------------------------------------------------

/** The lock file a training run holds in its output directory. */
export const LOCK_FILE = '.para.lock';

/** What the lock file holds. */
export interface OutLockInfo {
  pid: number;
  hostname: string;
  startedAt: string;
  command: string;
}

export interface OutLock {
  readonly file: string;
  /** Removes the lock file (if it is still this one); never throws. */
  release(): Promise<void>;
}

function parseLock(text: string): OutLockInfo | null {
  try {
    const v = JSON.parse(text) as Partial<OutLockInfo> | null;
    if (
      typeof v !== 'object' ||
      v === null ||
      !Number.isInteger(v.pid) ||
      (v.pid as number) <= 0 ||
      typeof v.hostname !== 'string'
    )
      return null;
    return {
      pid: v.pid as number,
      hostname: v.hostname,
      startedAt: typeof v.startedAt === 'string' ? v.startedAt : '?',
      command: typeof v.command === 'string' ? v.command : '?',
    };
  } catch {
    return null;
  }
}

/** False only when `pid` surely does not run on this machine (ESRCH). */
function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

function lockedError(file: string, info: OutLockInfo): ParaError {
  return new ParaError(
    'LOCKED',
    `another run is using this output directory: pid ${info.pid} on ${info.hostname}, started ${info.startedAt} (${info.command})`,
    {
      file,
      field: 'out',
      expected: `no other run on this directory: wait for pid ${info.pid} to finish, use another output directory, or delete ${file} if that process is gone`,
      actual: `locked by pid ${info.pid} on ${info.hostname} since ${info.startedAt}`,
    },
  );
}

/**
 * The live lock on `out`, if another process (or this one) holds it; null when there is none or
 * it is stale (its process is gone, or the file is unreadable).
 */
export async function readOutLock(out: string): Promise<OutLockInfo | null> {
  let text: string;
  try {
    text = await readFile(path.join(out, LOCK_FILE), 'utf8');
  } catch {
    return null;
  }
  const info = parseLock(text);
  if (info === null) return null;
  if (info.hostname === os.hostname() && !processAlive(info.pid)) return null;
  return info;
}

/** LOCKED when another live run holds `out` (a check only; `acquireOutLock` takes it). */
export async function checkOutLock(out: string): Promise<void> {
  const info = await readOutLock(out);
  if (info !== null) throw lockedError(path.join(out, LOCK_FILE), info);
}

/**
 * Takes `out/.para.lock` (created exclusively) for this process. Another live holder → LOCKED
 * naming the file, its pid and start time; a stale lock (same host and its pid is gone, or a
 * file that is not a lock) is taken over with a log line. A lock on another host is never
 * taken over. Release it in a `finally`.
 */
export async function acquireOutLock(
  out: string,
  o: { command?: string; log?: (s: string) => void } = {},
): Promise<OutLock> {
  const file = path.join(out, LOCK_FILE);
  const mine: OutLockInfo = {
    pid: process.pid,
    hostname: os.hostname(),
    startedAt: new Date().toISOString(),
    command: o.command ?? process.argv.slice(1).join(' '),
  };
  const text = `${JSON.stringify(mine)}\n`;
  for (let attempt = 0; attempt < 5; attempt++) {
    let handle: Awaited<ReturnType<typeof open>> | undefined;
    try {
      handle = await open(file, 'wx');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST')
        throw new ParaError('IO_ERROR', 'cannot create the lock file', { file, cause: e });
    }
    if (handle !== undefined) {
      try {
        await handle.writeFile(text);
      } finally {
        await handle.close();
      }
      return {
        file,
        release: async () => {
          try {
            if ((await readFile(file, 'utf8')) === text) await rm(file, { force: true });
          } catch {
            // gone already
          }
        },
      };
    }
    let held: string;
    try {
      held = await readFile(file, 'utf8');
    } catch {
      continue; // released meanwhile: try again
    }
    const info = parseLock(held);
    if (info !== null && (info.hostname !== os.hostname() || processAlive(info.pid)))
      throw lockedError(file, info);
    (o.log ?? ((s: string) => process.stderr.write(`${s}\n`)))(
      info === null
        ? `${file}: not a valid lock file; taking it over`
        : `${file}: taking over a stale lock of pid ${info.pid} (started ${info.startedAt}), which is no longer running`,
    );
    await rm(file, { force: true });
  }
  throw new ParaError('LOCKED', 'cannot take the lock on the output directory', {
    file,
    field: 'out',
    expected: 'no other run starting on this directory at the same time',
  });
}

/**
 * Runs `fn` holding the lock on `out` (created if needed). The lock is released however `fn`
 * ends; a directory this call created and that is still empty afterwards is removed again.
 */
export async function withOutLock<T>(
  out: string,
  o: { command?: string; log?: (s: string) => void },
  fn: () => Promise<T>,
): Promise<T> {
  let created: string | undefined;
  try {
    created = await mkdir(out, { recursive: true });
  } catch (cause) {
    throw new ParaError('IO_ERROR', 'cannot create the output directory', {
      file: out,
      field: 'out',
      cause,
    });
  }
  let lock: OutLock;
  try {
    lock = await acquireOutLock(out, o);
  } catch (e) {
    if (created !== undefined) await removeIfEmpty(out);
    throw e;
  }
  try {
    return await fn();
  } finally {
    await lock.release();
    if (created !== undefined) await removeIfEmpty(out);
  }
}

async function removeIfEmpty(dir: string): Promise<void> {
  try {
    if ((await readdir(dir)).length === 0) await rmdir(dir);
  } catch {
    // not ours to worry about
  }
}
