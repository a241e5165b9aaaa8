/**
 * Node-only safetensors helpers: a positional-read file source, opening files and checkpoint
 * directories, and atomic writes (temp file in the same directory, fsync, rename).
 */

import { randomUUID } from 'node:crypto';
import { constants, type FileHandle, open, rename, stat, unlink } from 'node:fs/promises';
import * as path from 'node:path';
import { ParaError } from '../errors';
import { SafetensorsReader } from '../safetensors/reader';
import { type CheckpointOptions, openSafetensorsCheckpoint } from '../safetensors/sharded';
import type { ByteSource } from '../safetensors/source';
import { checkRange } from '../safetensors/source';
import type { TensorStore } from '../safetensors/types';
import { planSafetensors, type SerializeOptions, type WritableTensor } from '../safetensors/writer';

/** A file read with positional reads; only the requested ranges are ever in memory. */
export class FileSource implements ByteSource {
  readonly name: string;
  private handle: FileHandle | undefined;
  private readonly fileSize: number;

  private constructor(name: string, handle: FileHandle, fileSize: number) {
    this.name = name;
    this.handle = handle;
    this.fileSize = fileSize;
  }

  /** Opens `file` for reading: FILE_NOT_FOUND when missing, IO_ERROR otherwise. */
  static async open(file: string): Promise<FileSource> {
    let handle: FileHandle;
    try {
      handle = await open(file, 'r');
    } catch (cause) {
      throw fsError(cause, file, 'cannot open file');
    }
    try {
      const st = await handle.stat();
      if (!st.isFile()) {
        throw new ParaError('IO_ERROR', 'not a regular file', {
          file,
          expected: 'a file',
          actual: st.isDirectory() ? 'a directory' : 'something else',
        });
      }
      return new FileSource(file, handle, st.size);
    } catch (e) {
      await handle.close().catch(() => undefined);
      throw e instanceof ParaError ? e : fsError(e, file, 'cannot stat file');
    }
  }

  async size(): Promise<number> {
    return this.fileSize;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const handle = this.handle;
    if (handle === undefined)
      throw new ParaError('IO_ERROR', 'file is closed', { file: this.name });
    checkRange(this.name, offset, length, this.fileSize);
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      let n: number;
      try {
        ({ bytesRead: n } = await handle.read(out, done, length - done, offset + done));
      } catch (cause) {
        throw fsError(cause, this.name, 'read failed');
      }
      if (n === 0) {
        throw new ParaError('FILE_TRUNCATED', 'file ended early (changed while reading?)', {
          file: this.name,
          expected: `${length} bytes from offset ${offset}`,
          actual: `${done} bytes`,
        });
      }
      done += n;
    }
    return out;
  }

  async close(): Promise<void> {
    const h = this.handle;
    this.handle = undefined;
    await h?.close();
  }
}

/** Opens one safetensors file, reading only its header. */
export async function openSafetensorsFile(file: string): Promise<SafetensorsReader> {
  return SafetensorsReader.open(await FileSource.open(file));
}

/**
 * Opens a checkpoint directory (`model.safetensors`, else `model.safetensors.index.json` and its
 * shards; see `CheckpointOptions` for other names). A path to a file opens that file.
 */
export async function openCheckpoint(
  dir: string,
  opts: CheckpointOptions = {},
): Promise<TensorStore> {
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(dir);
  } catch (cause) {
    throw fsError(cause, dir, 'cannot open checkpoint');
  }
  if (st.isFile()) return openSafetensorsFile(dir);
  return openSafetensorsCheckpoint(
    {
      location: dir,
      open: (file) => FileSource.open(path.join(dir, file)),
      exists: async (file) => {
        try {
          return (await stat(path.join(dir, file))).isFile();
        } catch {
          return false;
        }
      },
    },
    opts,
  );
}

/**
 * Writes `tensors` as a safetensors file atomically: tensor by tensor into a temp file next to
 * `file`, fsync, rename. A failure leaves `file` as it was and no temp file behind.
 */
export async function writeSafetensorsFile(
  file: string,
  tensors: Readonly<Record<string, WritableTensor>>,
  opts: SerializeOptions = {},
): Promise<void> {
  const plan = planSafetensors(tensors, opts); // validates before any file is touched
  await withAtomicFile(file, async (handle) => {
    await writeAll(handle, plan.header);
    for (const t of plan.tensors) {
      const bytes = new Uint8Array(t.byteLength);
      await t.write(bytes);
      await writeAll(handle, bytes);
    }
  });
}

/** Writes `data` to `file` atomically (temp file in the same directory, fsync, rename). */
export async function writeFileAtomic(file: string, data: Uint8Array | string): Promise<void> {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  await withAtomicFile(file, (handle) => writeAll(handle, bytes));
}

/**
 * Runs `fill` on a fresh temp file beside `file`, then fsyncs and renames it over `file`.
 * Any failure removes the temp file; fs failures become IO_ERROR naming `file`.
 */
async function withAtomicFile(
  file: string,
  fill: (handle: FileHandle) => Promise<void>,
): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${randomUUID()}.tmp`);
  let handle: FileHandle | undefined;
  try {
    handle = await open(tmp, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o644);
    await fill(handle);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await rename(tmp, file);
  } catch (e) {
    await handle?.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw e instanceof ParaError ? e : ioError(e, file, 'atomic write failed');
  }
  await syncDir(dir);
}

/** Makes the rename durable; some platforms cannot fsync a directory, which is fine. */
async function syncDir(dir: string): Promise<void> {
  let h: FileHandle | undefined;
  try {
    h = await open(dir, 'r');
    await h.sync();
  } catch {
    // best effort
  } finally {
    await h?.close().catch(() => undefined);
  }
}

async function writeAll(handle: FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.byteLength - done);
    done += bytesWritten;
  }
}

/** Maps a Node fs error to FILE_NOT_FOUND (ENOENT) or IO_ERROR, naming the path. */
function fsError(cause: unknown, file: string, message: string): ParaError {
  if ((cause as { code?: unknown } | null)?.code === 'ENOENT') {
    return new ParaError('FILE_NOT_FOUND', 'no such file or directory', {
      file,
      actual: errorText(cause),
      cause,
    });
  }
  return ioError(cause, file, message);
}

/** An IO_ERROR naming the path and wrapping `cause`. */
function ioError(cause: unknown, file: string, message: string): ParaError {
  return new ParaError('IO_ERROR', message, { file, actual: errorText(cause), cause });
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
