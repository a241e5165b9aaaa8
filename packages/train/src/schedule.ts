/**
 * Learning-rate schedules: linear warm-up from 0 to the peak, then a linear or cosine decay to
 * `minLrRatio · peak` at the last step (or a constant rate).
 *
 *     step < warmup:   lr = peak · (step + 1) / warmup
 *     after:           p = (step − warmup) / max(1, total − 1 − warmup)   (0 → 1 at the last update)
 *                      linear: lr = peak · (1 − (1 − min)·p)
 *                      cosine: lr = peak · (min + (1 − min)·(1 + cos πp) / 2)
 *
 * `step` is the 0-based index of the update being made.
 */

import { ParaError } from '@para/core';

export type DecayKind = 'linear' | 'cosine' | 'constant';
export const DECAY_KINDS: readonly DecayKind[] = ['linear', 'cosine', 'constant'];

export interface ScheduleOptions {
  /** Peak learning rate. */
  lr: number;
  /** Updates in all. */
  totalSteps: number;
  /** Warm-up updates (default 0). */
  warmupSteps?: number;
  /** Default 'linear'. */
  decay?: DecayKind;
  /** Final rate as a fraction of the peak (default 0). */
  minLrRatio?: number;
}

export type Schedule = (step: number) => number;

export function makeSchedule(o: ScheduleOptions): Schedule {
  const warmup = o.warmupSteps ?? 0;
  const decay = o.decay ?? 'linear';
  const min = o.minLrRatio ?? 0;
  const bad = (field: string, expected: string, actual: unknown) =>
    new ParaError('INVALID_ARGUMENT', `bad learning-rate schedule: ${field}`, {
      field,
      expected,
      actual: String(actual),
    });
  if (!(Number.isFinite(o.lr) && o.lr > 0)) throw bad('lr', 'a positive number', o.lr);
  if (!Number.isInteger(o.totalSteps) || o.totalSteps < 1)
    throw bad('totalSteps', 'an integer ≥ 1', o.totalSteps);
  if (!Number.isInteger(warmup) || warmup < 0) throw bad('warmupSteps', 'an integer ≥ 0', warmup);
  if (!DECAY_KINDS.includes(decay)) throw bad('decay', DECAY_KINDS.join(' | '), decay);
  if (!(min >= 0 && min <= 1)) throw bad('minLrRatio', 'a number in [0, 1]', min);
  const peak = o.lr;
  const total = o.totalSteps;
  return (step: number) => {
    if (step < warmup) return (peak * (step + 1)) / warmup;
    if (decay === 'constant') return peak;
    const p = Math.min(1, Math.max(0, (step - warmup) / Math.max(1, total - 1 - warmup)));
    if (decay === 'linear') return peak * (1 - (1 - min) * p);
    return peak * (min + ((1 - min) * (1 + Math.cos(Math.PI * p))) / 2);
  };
}
