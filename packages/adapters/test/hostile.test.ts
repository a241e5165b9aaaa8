/**
 * Bounded work before validation (issue 13, first cases): an adapter_config.json whose `r` (or
 * any size) disagrees with its weights file is refused from the header before the adapter is
 * allocated, and a config whose adapter would outgrow its backbone is refused before anything.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isParaError } from '@para/core/node';
import type { CausalLM } from '@para/model';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createAdapter, loadAdapter, PeftAdapter, saveAdapter } from '../src/node';
import { caught, useBackend } from './helpers/backends';
import { tinyModel } from './helpers/models';

let dir: string;
let model: CausalLM;
beforeAll(async () => {
  await useBackend('cpu');
  dir = await mkdtemp(join(tmpdir(), 'para-hostile-adapter-'));
  model = tinyModel({}, 1);
});
afterAll(async () => {
  model.dispose();
  await rm(dir, { recursive: true, force: true });
});

describe('hostile adapter configs', () => {
  it.each([
    ['PARA', { peft_type: 'PARA', r: 4 }, { r: 2_000_000 }],
    ['LORA', { peft_type: 'LORA', r: 4 }, { r: 2_000_000 }],
    ['LORA', { peft_type: 'LORA', r: 4 }, { target_modules: ['q_proj', 'k_proj', 'v_proj'] }],
  ] as const)(
    '%s: a config that disagrees with its weights (%o → %o) is refused before the adapter is allocated',
    async (_m, good, bad) => {
      const out = join(dir, `${good.peft_type}-${Object.keys(bad)[0]}`);
      const a = createAdapter(model.config, good);
      await saveAdapter(a, out);
      a.dispose();
      const cfg = JSON.parse(await readFile(join(out, 'adapter_config.json'), 'utf8'));
      await writeFile(join(out, 'adapter_config.json'), JSON.stringify({ ...cfg, ...bad }));
      const before = tf.memory();
      const e = await caught(() => loadAdapter(out, model));
      expect(isParaError(e)).toBe(true);
      expect(['SHAPE_MISMATCH', 'TENSOR_NOT_FOUND']).toContain((e as { code: string }).code);
      expect(tf.memory().numTensors).toBe(before.numTensors);
      expect(tf.memory().numBytes).toBe(before.numBytes);
    },
  );

  it('an adapter larger than its backbone (r = 1e8) is refused before any allocation, naming r', async () => {
    const before = tf.memory();
    const params = vi.spyOn(
      PeftAdapter.prototype as unknown as { addParam: () => void },
      'addParam',
    );
    for (const peft_type of ['PARA', 'LORA']) {
      const e = await caught(() => createAdapter(model.config, { peft_type, r: 100_000_000 }));
      expect(params).not.toHaveBeenCalled();
      expect(isParaError(e, 'INVALID_CONFIG')).toBe(true);
      expect((e as Error).message).toMatch(/more than the [\d,]+ of its backbone/);
      expect((e as { field?: string }).field).toBe('r');
    }
    params.mockRestore();
    expect(tf.memory().numBytes).toBe(before.numBytes);
  });
});
