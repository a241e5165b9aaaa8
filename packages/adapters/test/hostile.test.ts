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
import { poisonSafetensors } from '@para/test-utils/files';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  createAdapter,
  loadAdapter,
  loraTargets,
  PeftAdapter,
  resolveLoraConfig,
  saveAdapter,
} from '../src/node';
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
    const e = await caught(() =>
      createAdapter(model.config, { peft_type: 'LORA', rank_pattern: { q_proj: 100_000_000 } }),
    );
    expect(params).not.toHaveBeenCalled();
    expect([isParaError(e, 'INVALID_CONFIG'), (e as { field?: string }).field]).toEqual([
      true,
      'rank_pattern',
    ]);
    params.mockRestore();
    expect(tf.memory().numBytes).toBe(before.numBytes);
  });
});

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw');
}
const cfg = () => model.config;

describe('target_modules regexes are matched in linear time (RE2), with re.fullmatch semantics', () => {
  it('a catastrophic pattern such as (.*.*)*X is matched without backtracking: no module matches', () => {
    // With JavaScript's RegExp this pattern backtracks exponentially on every module name.
    const e = thrown(() => loraTargets(resolveLoraConfig({ target_modules: '(.*.*)*X' }), cfg()));
    expect(isParaError(e, 'INVALID_CONFIG')).toBe(true);
    expect((e as Error).message).toMatch(/matches no module/);
    const nested = thrown(() =>
      loraTargets(resolveLoraConfig({ target_modules: '((a+)+)+(b|c*)*\\.X' }), cfg()),
    );
    expect(isParaError(nested, 'INVALID_CONFIG')).toBe(true);
  });

  it('selects what re.fullmatch selects', () => {
    const t = loraTargets(resolveLoraConfig({ target_modules: '.*\\.(q|v)_proj' }), cfg());
    expect(t.map((x) => `${x.layer}.${x.module}`)).toEqual([
      '0.q_proj',
      '0.v_proj',
      '1.q_proj',
      '1.v_proj',
    ]);
    const one = loraTargets(
      resolveLoraConfig({ target_modules: 'model\\.layers\\.1\\..*\\.v_proj' }),
      cfg(),
    );
    expect(one).toEqual([{ layer: 1, module: 'v_proj' }]);
    // A prefix match is not a full match.
    const e = thrown(() =>
      loraTargets(
        resolveLoraConfig({ target_modules: 'model\\.layers\\.0\\.self_attn\\.q' }),
        cfg(),
      ),
    );
    expect(isParaError(e, 'INVALID_CONFIG')).toBe(true);
  });

  it.each([
    ['(?=q)q_proj', 'UNSUPPORTED'],
    ['(q)_proj\\1', 'UNSUPPORTED'],
    ['([a-z', 'INVALID_CONFIG'],
    ['a{100000}', 'INVALID_CONFIG'],
    ['x'.repeat(5000), 'LIMIT_EXCEEDED'],
  ])('pattern %j → typed %s naming target_modules', (pattern, code) => {
    const e = thrown(() => loraTargets(resolveLoraConfig({ target_modules: pattern }), cfg()));
    expect(isParaError(e, code as 'UNSUPPORTED')).toBe(true);
    expect((e as { field?: string }).field).toBe('target_modules');
  });
});

describe('non-finite adapter weights', () => {
  it.each(['PARA', 'LORA', 'IA3'])(
    '%s: NaN in adapter_model.safetensors is refused at load naming the file and tensor',
    async (peftType) => {
      const out = join(dir, `nan-${peftType}`);
      const a = createAdapter(model.config, { peft_type: peftType });
      await saveAdapter(a, out);
      a.dispose();
      const name = await poisonSafetensors(
        join(out, 'adapter_model.safetensors'),
        () => true,
        Number.NaN,
      );
      const before = tf.memory().numTensors;
      const e = await caught(() => loadAdapter(out, model));
      expect(isParaError(e, 'NON_FINITE')).toBe(true);
      expect((e as { field: string }).field).toBe(name);
      expect((e as { file: string }).file).toContain('adapter_model.safetensors');
      expect(tf.memory().numTensors).toBe(before);
    },
  );
});
