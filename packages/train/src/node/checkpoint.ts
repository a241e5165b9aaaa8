/**
 * Checkpoints on disk, crash-safe:
 *
 *   OUT/checkpoints/step-000200/trainer_state.json    step, RNG, best, ... (TrainerStateJson)
 *   OUT/checkpoints/step-000200/state.safetensors     param.<name>, m.<name>, v.<name> (F32)
 *   OUT/checkpoints/latest.json                       {"dir": "step-000200", "step": 200}
 *
 * A checkpoint is written into `step-000200.tmp/` (each file atomically: temp file + fsync +
 * rename) and renamed to `step-000200/` only when both files are complete; `latest.json` moves
 * to it after that, and older directories are removed last. A failed write (a full disk)
 * removes its `.tmp` directory; one left by a crash is ignored by `latestCheckpoint` and removed
 * by the next save. A crash at any moment leaves `latest.json` naming a complete checkpoint (or,
 * should it name one that is gone, the newest complete `step-*` directory is used).
 *
 * `loadCheckpoint` checks `trainer_state.json` field by field (types, `0 ≤ step ≤ totalSteps`,
 * the RNG state, `meta` an object): a tampered or damaged state is INVALID_CONFIG naming the
 * file and the field, never a TypeError or a resumed run that is "done" with the wrong weights.
 */

import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import * as path from 'node:path';
import {
  openSafetensorsFile,
  ParaError,
  readAllFinite,
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

const STEP_DIR = /^step-\d+$/;
const TMP_SUFFIX = '.tmp';

/** Test hooks (internal): called inside `saveCheckpoint`, a throw simulates a failed write. */
export const checkpointTestHooks: { beforeRename?: (tmpDir: string) => void | Promise<void> } = {};

function ioError(e: unknown, file: string, what: string): ParaError {
  if (e instanceof ParaError) return e;
  return new ParaError('IO_ERROR', `${what}: ${(e as Error)?.message ?? String(e)}`, {
    file,
    cause: e,
  });
}

/**
 * Writes a checkpoint under `out/checkpoints/` (into `step-N.tmp/`, renamed to `step-N/` when
 * complete), points `latest.json` at it, prunes older ones and stale `.tmp` directories.
 * Returns its directory. On failure the partial directory is removed and the previous
 * checkpoint stays the latest.
 */
export async function saveCheckpoint(out: string, data: CheckpointData): Promise<string> {
  const root = path.join(out, CHECKPOINT_DIR);
  const name = stepDir(data.state.step);
  const dir = path.join(root, name);
  const tmp = `${dir}${TMP_SUFFIX}`;
  try {
    await mkdir(root, { recursive: true });
    // Leftovers of a crashed save (this step's included) go first.
    for (const entry of await readdir(root)) {
      if (entry.endsWith(TMP_SUFFIX) && STEP_DIR.test(entry.slice(0, -TMP_SUFFIX.length)))
        await rm(path.join(root, entry), { recursive: true, force: true });
    }
    await mkdir(tmp);
  } catch (cause) {
    throw ioError(cause, tmp, 'cannot create the checkpoint directory');
  }
  try {
    await writeSafetensorsFile(path.join(tmp, STATE_TENSORS), data.tensors, {
      metadata: { format: 'para-trainer-state' },
    });
    await writeFileAtomic(path.join(tmp, STATE_JSON), `${JSON.stringify(data.state, null, 2)}\n`);
    await checkpointTestHooks.beforeRename?.(tmp);
    await rm(dir, { recursive: true, force: true });
    await rename(tmp, dir);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    throw ioError(e, tmp, 'cannot write the checkpoint');
  }
  await writeFileAtomic(
    path.join(root, LATEST),
    `${JSON.stringify({ dir: name, step: data.state.step })}\n`,
  );
  for (const entry of await readdir(root)) {
    if (entry !== name && STEP_DIR.test(entry))
      await rm(path.join(root, entry), { recursive: true, force: true });
  }
  return dir;
}

async function isCompleteCheckpoint(dir: string): Promise<boolean> {
  for (const f of [STATE_JSON, STATE_TENSORS]) {
    try {
      if (!(await stat(path.join(dir, f))).isFile()) return false;
    } catch {
      return false;
    }
  }
  return true;
}

/** The newest complete `step-N` directory under `root` (`.tmp` ones are never complete). */
async function newestCompleteCheckpoint(root: string): Promise<string | null> {
  let entries: string[];
  try {
    entries = await readdir(root);
  } catch {
    return null;
  }
  const steps = entries.filter((e) => STEP_DIR.test(e)).sort();
  for (let i = steps.length - 1; i >= 0; i--) {
    const dir = path.join(root, steps[i] as string);
    if (await isCompleteCheckpoint(dir)) return dir;
  }
  return null;
}

/**
 * The latest checkpoint's directory under `out`, or null when there is none. Stale `.tmp`
 * directories (an interrupted save) are not checkpoints; a pointer naming a directory that is
 * gone falls back to the newest complete one.
 */
export async function latestCheckpoint(out: string): Promise<string | null> {
  const root = path.join(out, CHECKPOINT_DIR);
  const file = path.join(root, LATEST);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return newestCompleteCheckpoint(root);
  }
  let parsed: { dir?: unknown } | null;
  try {
    parsed = JSON.parse(text) as { dir?: unknown } | null;
  } catch (cause) {
    throw new ParaError('INVALID_JSON', 'checkpoint pointer is not valid JSON', { file, cause });
  }
  const dir = typeof parsed === 'object' && parsed !== null ? parsed.dir : undefined;
  if (typeof dir !== 'string' || !STEP_DIR.test(dir)) {
    throw new ParaError('INVALID_CONFIG', 'bad checkpoint pointer', {
      file,
      field: 'dir',
      expected: 'a "step-NNNNNN" directory name',
      actual: JSON.stringify(dir),
    });
  }
  const named = path.join(root, dir);
  if (await isCompleteCheckpoint(named)) return named;
  return (await newestCompleteCheckpoint(root)) ?? named;
}

/** True when `out` holds a checkpoint of an earlier run (complete or not, `.tmp` aside). */
export async function hasCheckpoint(out: string): Promise<boolean> {
  const root = path.join(out, CHECKPOINT_DIR);
  let entries: string[];
  try {
    entries = await readdir(root);
  } catch {
    return false;
  }
  return entries.some((e) => e === LATEST || STEP_DIR.test(e));
}

export interface LoadCheckpointOptions {
  /** The resuming run's total steps: a saved step past it is INVALID_CONFIG. */
  totalSteps?: number;
  /**
   * The trainer's parameters: each needs `param.<name>`, `m.<name>` and `v.<name>` of its shape
   * in state.safetensors (else INVALID_CONFIG naming the tensor).
   */
  parameters?: ReadonlyMap<string, { readonly shape: readonly number[] }>;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing (the field is missing)';
  const s = JSON.stringify(v);
  return s === undefined ? typeof v : s.length > 60 ? `${s.slice(0, 60)}…` : s;
}

/**
 * Checks a parsed trainer_state.json field by field; every problem is INVALID_CONFIG naming
 * `file` and the field (dotted: `rng.s`, `best.step`).
 */
export function checkTrainerState(
  v: unknown,
  file: string,
  o: LoadCheckpointOptions = {},
): TrainerStateJson {
  const bad = (field: string, expected: string, actual: unknown): never => {
    throw new ParaError('INVALID_CONFIG', 'damaged or edited checkpoint state', {
      file,
      field,
      expected,
      actual: describeValue(actual),
    });
  };
  if (!isObject(v)) return bad('(root)', 'a JSON object', v);
  if (v.format !== 'para-trainer-state') bad('format', '"para-trainer-state"', v.format);
  if (v.version !== 1) bad('version', '1', v.version);
  const nonNegInt = (field: string, x: unknown) => {
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 0) bad(field, 'an integer ≥ 0', x);
    return x as number;
  };
  const nonNeg = (field: string, x: unknown) => {
    if (typeof x !== 'number' || !Number.isFinite(x) || x < 0) bad(field, 'a number ≥ 0', x);
  };
  const totalSteps = nonNegInt('totalSteps', v.totalSteps);
  if (totalSteps < 1) bad('totalSteps', 'an integer ≥ 1', v.totalSteps);
  const step = nonNegInt('step', v.step);
  if (step > totalSteps) bad('step', `at most totalSteps (${totalSteps})`, v.step);
  if (o.totalSteps !== undefined) {
    if (step > o.totalSteps) bad('step', `at most this run's ${o.totalSteps} steps`, v.step);
    if (totalSteps !== o.totalSteps)
      bad('totalSteps', `this run's ${o.totalSteps} steps`, v.totalSteps);
  }
  nonNegInt('seed', v.seed);
  const rng = v.rng;
  if (!isObject(rng)) bad('rng', 'the RNG state {"s": [4 × uint32], "spare": number | null}', rng);
  const s = (rng as Record<string, unknown>).s;
  if (
    !Array.isArray(s) ||
    s.length !== 4 ||
    !s.every((w) => typeof w === 'number' && Number.isInteger(w) && w >= 0 && w < 2 ** 32)
  )
    bad('rng.s', 'four unsigned 32-bit integers', s);
  const spare = (rng as Record<string, unknown>).spare;
  if (
    spare !== undefined &&
    spare !== null &&
    (typeof spare !== 'number' || !Number.isFinite(spare))
  )
    bad('rng.spare', 'a finite number or null', spare);
  nonNeg('tokensSeen', v.tokensSeen);
  nonNeg('elapsedMs', v.elapsedMs);
  nonNegInt('evalsWithoutImprovement', v.evalsWithoutImprovement);
  if (v.lastLoss !== null && (typeof v.lastLoss !== 'number' || !Number.isFinite(v.lastLoss)))
    bad('lastLoss', 'a finite number or null', v.lastLoss);
  if (v.best !== null) {
    const b = v.best;
    if (!isObject(b)) bad('best', '{"step", "value", "metrics"} or null', b);
    const best = b as Record<string, unknown>;
    const bs = nonNegInt('best.step', best.step);
    if (bs > step) bad('best.step', `at most step (${step})`, best.step);
    if (typeof best.value !== 'number' || Number.isNaN(best.value))
      bad('best.value', 'a number', best.value);
    if (!isObject(best.metrics)) bad('best.metrics', 'an object', best.metrics);
  }
  if (!isObject(v.meta)) bad('meta', 'an object', v.meta);
  return v as unknown as TrainerStateJson;
}

/**
 * Reads a checkpoint directory (the caller disposes `tensors` after restoring). The state is
 * checked (`checkTrainerState`); missing tensors are found when the trainer restores it.
 */
export async function loadCheckpoint(
  dir: string,
  o: LoadCheckpointOptions = {},
): Promise<CheckpointData> {
  const jsonFile = path.join(dir, STATE_JSON);
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(jsonFile, 'utf8'));
  } catch (cause) {
    const missing = (cause as NodeJS.ErrnoException).code === 'ENOENT';
    throw new ParaError(
      missing ? 'FILE_NOT_FOUND' : 'INVALID_JSON',
      missing ? 'checkpoint state not found' : 'checkpoint state is not valid JSON',
      { file: jsonFile, cause },
    );
  }
  const state = checkTrainerState(raw, jsonFile, o);
  const tensorFile = path.join(dir, STATE_TENSORS);
  const reader = await openSafetensorsFile(tensorFile);
  // NaN/Inf in the saved parameters or moments can only mean a damaged file (a diverged run
  // stops before it writes one): refused naming the tensor, not resumed into a NaN loss.
  let tensors: Record<string, tf.Tensor>;
  try {
    tensors = await readAllFinite(reader);
  } finally {
    await reader.close();
  }
  try {
    for (const [name, p] of o.parameters ?? []) {
      for (const k of ['param', 'm', 'v']) {
        const t = tensors[`${k}.${name}`];
        const want = `[${p.shape.join(', ')}]`;
        if (t === undefined || t.shape.join() !== p.shape.join())
          throw new ParaError(
            'INVALID_CONFIG',
            "the checkpoint does not hold what this run trains (damaged, or another run's)",
            {
              file: tensorFile,
              field: `${k}.${name}`,
              expected: `a tensor ${want}`,
              actual: t === undefined ? 'no such tensor' : `[${t.shape.join(', ')}]`,
            },
          );
      }
    }
  } catch (e) {
    for (const t of Object.values(tensors)) t.dispose();
    throw e;
  }
  return { state, tensors };
}
