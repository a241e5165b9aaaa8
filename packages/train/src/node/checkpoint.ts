/**
 * Checkpoints on disk, crash-safe:
 *
 *   OUT/checkpoints/step-000200/trainer_state.json    step, RNG, best, ... (TrainerStateJson)
 *   OUT/checkpoints/step-000200/state.safetensors     param.<name>, m.<name>, v.<name> (F32)
 *   OUT/checkpoints/latest.json                       {"dir": "step-000200", "step": 200}
 *
 * Each file is written atomically (temp file + fsync + rename); `latest.json` moves to the new
 * directory only after both files are complete, and older directories are removed after that.
 * A crash at any moment leaves `latest.json` naming a complete checkpoint.
 */

import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import * as path from 'node:path';
import {
  openSafetensorsFile,
  ParaError,
  writeFileAtomic,
  writeSafetensorsFile,
} from '@para/core/node';
import type * as tf from '@tensorflow/tfjs-core';
import type { CheckpointData, TrainerStateJson } from '../trainer';

export const CHECKPOINT_DIR = 'checkpoints';
const LATEST = 'latest.json';
const STATE_JSON = 'trainer_state.json';
const STATE_TENSORS = 'state.safetensors';

function stepDir(step: number): string {
  return `step-${String(step).padStart(6, '0')}`;
}

/** Writes a checkpoint under `out/checkpoints/`, points `latest.json` at it, prunes older ones. Returns its directory. */
export async function saveCheckpoint(out: string, data: CheckpointData): Promise<string> {
  const root = path.join(out, CHECKPOINT_DIR);
  const name = stepDir(data.state.step);
  const dir = path.join(root, name);
  try {
    await mkdir(dir, { recursive: true });
  } catch (cause) {
    throw new ParaError('IO_ERROR', 'cannot create the checkpoint directory', { file: dir, cause });
  }
  await writeSafetensorsFile(path.join(dir, STATE_TENSORS), data.tensors, {
    metadata: { format: 'para-trainer-state' },
  });
  await writeFileAtomic(path.join(dir, STATE_JSON), `${JSON.stringify(data.state, null, 2)}\n`);
  await writeFileAtomic(
    path.join(root, LATEST),
    `${JSON.stringify({ dir: name, step: data.state.step })}\n`,
  );
  for (const entry of await readdir(root)) {
    if (entry !== name && /^step-\d+$/.test(entry))
      await rm(path.join(root, entry), { recursive: true, force: true });
  }
  return dir;
}

/** The latest checkpoint's directory under `out`, or null when there is none. */
export async function latestCheckpoint(out: string): Promise<string | null> {
  const file = path.join(out, CHECKPOINT_DIR, LATEST);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return null;
  }
  let parsed: { dir?: unknown };
  try {
    parsed = JSON.parse(text) as { dir?: unknown };
  } catch (cause) {
    throw new ParaError('INVALID_JSON', 'checkpoint pointer is not valid JSON', { file, cause });
  }
  if (typeof parsed.dir !== 'string' || !/^step-\d+$/.test(parsed.dir)) {
    throw new ParaError('INVALID_CONFIG', 'bad checkpoint pointer', {
      file,
      field: 'dir',
      expected: 'a "step-NNNNNN" directory name',
      actual: JSON.stringify(parsed.dir),
    });
  }
  return path.join(out, CHECKPOINT_DIR, parsed.dir);
}

/** Reads a checkpoint directory (the caller disposes `tensors` after restoring). */
export async function loadCheckpoint(dir: string): Promise<CheckpointData> {
  const jsonFile = path.join(dir, STATE_JSON);
  let state: TrainerStateJson;
  try {
    state = JSON.parse(await readFile(jsonFile, 'utf8')) as TrainerStateJson;
  } catch (cause) {
    const missing = (cause as NodeJS.ErrnoException).code === 'ENOENT';
    throw new ParaError(
      missing ? 'FILE_NOT_FOUND' : 'INVALID_JSON',
      missing ? 'checkpoint state not found' : 'checkpoint state is not valid JSON',
      { file: jsonFile, cause },
    );
  }
  const reader = await openSafetensorsFile(path.join(dir, STATE_TENSORS));
  try {
    const tensors = (await reader.readAll()) as Record<string, tf.Tensor>;
    return { state, tensors };
  } finally {
    await reader.close();
  }
}
