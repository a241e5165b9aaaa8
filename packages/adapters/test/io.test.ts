/**
 * Adapter files: save → load round trip is exact for every method, the PEFT names, shapes and
 * config keys are exactly DESIGN.md's, and bad configs or mismatched adapters are typed errors
 * naming the file, the key or tensor, and both shapes.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSafetensorsFile, type ParaError } from '@para/core/node';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AnyAdapter,
  adapterFromBytes,
  createAdapter,
  Ia3Adapter,
  LoraAdapter,
  loadAdapter,
  ParaAdapter,
  resolveLoraConfig,
  resolveParaConfig,
  saveAdapter,
  serializeAdapter,
} from '../src/node';
import { caught, take, useBackend } from './helpers/backends';
import { randomize, tinyConfig, tinyModel } from './helpers/models';

async function paramValues(a: AnyAdapter): Promise<Record<string, Float32Array>> {
  const out: Record<string, Float32Array> = {};
  for (const [n, v] of a.namedParameters()) out[n] = (await v.data()) as Float32Array;
  return out;
}

describe('adapter files (PEFT layout)', () => {
  let dir: string;
  beforeAll(async () => {
    await useBackend('cpu');
    dir = await mkdtemp(join(tmpdir(), 'para-adapters-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('PARA: exact tensor names, shapes and config keys; save → load is exact', async () => {
    const model = tinyModel();
    const para = ParaAdapter.create(
      model.config,
      {
        r: 5,
        pooler: 'attention',
        activation: 'silu',
        use_bias: true,
        target_modules: ['v_proj', 'q_proj'],
        base_model_name_or_path: 'org/tiny',
      },
      { seed: 1 },
    );
    randomize(para, 'save', 0.5);
    const out = join(dir, 'para');
    await saveAdapter(para, out);
    const cfg = JSON.parse(await readFile(join(out, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({
      peft_type: 'PARA',
      r: 5,
      pooler: 'attention',
      activation: 'silu',
      target_modules: ['v_proj', 'q_proj'],
      use_bias: true,
      base_model_name_or_path: 'org/tiny',
    });
    const st = await openSafetensorsFile(join(out, 'adapter_model.safetensors'));
    const d = model.config.hiddenSize;
    const dq = model.config.numHeads * model.config.headDim;
    const dv = model.config.numKvHeads * model.config.headDim;
    const p0 = 'base_model.model.model.layers.0.para.';
    expect(st.info(`${p0}down.weight`).shape).toEqual([5, d]);
    expect(st.info(`${p0}down.bias`).shape).toEqual([5]);
    expect(st.info(`${p0}up.weight`).shape).toEqual([dv + dq, 5]);
    expect(st.info(`${p0}up.bias`).shape).toEqual([dv + dq]);
    expect(st.info(`${p0}pool.weight`).shape).toEqual([1, d]);
    expect(st.names()).toHaveLength(5 * model.config.numLayers);
    expect(st.metadata).toMatchObject({ format: 'pt' });
    expect(st.metadata['para.adapter_config_sha256']).toMatch(/^[0-9a-f]{64}$/);
    await st.close();

    const back = await loadAdapter(out, model);
    expect(back).toBeInstanceOf(ParaAdapter);
    expect(back.config).toEqual(para.config);
    expect(await paramValues(back)).toEqual(await paramValues(para));
    const ids = [[1, 4, 9, 16, 25]];
    const a = await take(model.forward(ids, { adapter: para.attach(model) }));
    const b = await take(model.forward(ids, { adapter: back.attach(model) }));
    expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
    // The row blocks of para.up.weight follow target_modules: v first here.
    const upFile = (
      await (
        await openSafetensorsFile(join(out, 'adapter_model.safetensors'))
      ).readData(`${p0}up.weight`)
    ).data;
    const vBlock = (await para.layer(0).up.data()).subarray(0, dv * 5);
    expect(Array.from(upFile.subarray(0, dv * 5))).toEqual(Array.from(vBlock));
    tf.dispose([]);
    para.dispose();
    back.dispose();
    model.dispose();
  });

  it('LoRA and IA3: PEFT names and shapes; save → load (also from bytes) is exact', async () => {
    const model = tinyModel();
    const lora = LoraAdapter.create(
      model.config,
      { r: 3, lora_alpha: 6, target_modules: ['q_proj', 'down_proj'], layers_to_transform: [1] },
      { seed: 2 },
    );
    const ia3 = Ia3Adapter.create(model.config);
    randomize(lora, 'l', 0.3);
    randomize(ia3, 'i', 0.3, 1);
    for (const [name, a] of [
      ['lora', lora],
      ['ia3', ia3],
    ] as const) {
      const out = join(dir, name);
      await saveAdapter(a, out);
      const st = await openSafetensorsFile(join(out, 'adapter_model.safetensors'));
      const names = st.names();
      if (name === 'lora') {
        expect(names).toEqual([
          'base_model.model.model.layers.1.mlp.down_proj.lora_A.weight',
          'base_model.model.model.layers.1.mlp.down_proj.lora_B.weight',
          'base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight',
          'base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight',
        ]);
        expect(st.info(names[0] as string).shape).toEqual([3, 48]);
        expect(st.info(names[1] as string).shape).toEqual([32, 3]);
        const cfg = JSON.parse(await readFile(join(out, 'adapter_config.json'), 'utf8'));
        expect(cfg).toMatchObject({
          peft_type: 'LORA',
          r: 3,
          lora_alpha: 6,
          lora_dropout: 0,
          target_modules: ['q_proj', 'down_proj'],
          bias: 'none',
          fan_in_fan_out: false,
          layers_to_transform: [1],
        });
      } else {
        expect(names).toContain('base_model.model.model.layers.0.self_attn.k_proj.ia3_l');
        expect(st.info('base_model.model.model.layers.0.self_attn.k_proj.ia3_l').shape).toEqual([
          16, 1,
        ]);
        expect(st.info('base_model.model.model.layers.1.mlp.down_proj.ia3_l').shape).toEqual([
          1, 48,
        ]);
        const cfg = JSON.parse(await readFile(join(out, 'adapter_config.json'), 'utf8'));
        expect(cfg).toMatchObject({
          peft_type: 'IA3',
          target_modules: ['k_proj', 'v_proj', 'down_proj'],
          feedforward_modules: ['down_proj'],
        });
      }
      await st.close();
      const back = await loadAdapter(out, model);
      expect(back.peftType).toBe(a.peftType);
      expect(await paramValues(back)).toEqual(await paramValues(a));
      const bytes = await serializeAdapter(a);
      const fromBytes = await adapterFromBytes(bytes.config, bytes.weights, model);
      expect(await paramValues(fromBytes)).toEqual(await paramValues(a));
      back.dispose();
      fromBytes.dispose();
    }
    // F16 storage rounds, and loads.
    await saveAdapter(lora, join(dir, 'lora16'), { dtype: 'F16' });
    const half = await loadAdapter(join(dir, 'lora16'), model);
    const hv = await paramValues(half);
    const lv = await paramValues(lora);
    for (const k of Object.keys(lv))
      for (let i = 0; i < (lv[k] as Float32Array).length; i++)
        expect(Math.abs((hv[k]?.[i] as number) - (lv[k]?.[i] as number))).toBeLessThan(1e-3);
    half.dispose();
    lora.dispose();
    ia3.dispose();
    model.dispose();
  });

  it('bad configs are typed errors naming the key', async () => {
    const c = tinyConfig();
    const bad: [Record<string, unknown>, string, string][] = [
      [{ peft_type: 'PARA', r: 0 }, 'INVALID_CONFIG', 'r'],
      [{ peft_type: 'PARA', r: 2.5 }, 'INVALID_CONFIG', 'r'],
      [{ peft_type: 'PARA', pooler: 'median' }, 'INVALID_CONFIG', 'pooler'],
      [{ peft_type: 'PARA', activation: 'swish' }, 'INVALID_CONFIG', 'activation'],
      [{ peft_type: 'PARA', target_modules: [] }, 'INVALID_CONFIG', 'target_modules'],
      [{ peft_type: 'PARA', target_modules: ['k_proj'] }, 'INVALID_CONFIG', 'target_modules'],
      [
        { peft_type: 'PARA', target_modules: ['q_proj', 'q_proj'] },
        'INVALID_CONFIG',
        'target_modules',
      ],
      [{ peft_type: 'PARA', use_bias: 'yes' }, 'INVALID_CONFIG', 'use_bias'],
      [{ peft_type: 'LORA', r: -1 }, 'INVALID_CONFIG', 'r'],
      [{ peft_type: 'LORA', lora_dropout: 1.5 }, 'INVALID_CONFIG', 'lora_dropout'],
      [{ peft_type: 'LORA', target_modules: ['qkv'] }, 'INVALID_CONFIG', 'target_modules'],
      [{ peft_type: 'LORA', target_modules: '.*\\.nothing' }, 'INVALID_CONFIG', 'target_modules'],
      [{ peft_type: 'LORA', bias: 'lora' }, 'INVALID_CONFIG', 'bias'],
      [{ peft_type: 'LORA', modules_to_save: ['norm'] }, 'UNSUPPORTED', 'modules_to_save[0]'],
      [{ peft_type: 'LORA', lora_bias: true }, 'UNSUPPORTED', 'lora_bias'],
      [{ peft_type: 'LORA', init_lora_weights: 'pissa' }, 'UNSUPPORTED', 'init_lora_weights'],
      [{ peft_type: 'LORA', layers_to_transform: [5] }, 'INVALID_CONFIG', 'layers_to_transform'],
      [
        { peft_type: 'IA3', feedforward_modules: ['q_proj'] },
        'INVALID_CONFIG',
        'feedforward_modules',
      ],
      [
        { peft_type: 'IA3', target_modules: ['up_proj'], feedforward_modules: ['up_proj'] },
        'UNSUPPORTED',
        'feedforward_modules',
      ],
      [{ peft_type: 'PREFIX_TUNING' }, 'UNSUPPORTED', 'peft_type'],
      [{ r: 4 }, 'INVALID_CONFIG', 'peft_type'],
    ];
    for (const [cfg, code, field] of bad) {
      const e = (await caught(() => createAdapter(c, cfg as never))) as ParaError;
      expect(e?.name, JSON.stringify(cfg)).toBe('ParaError');
      expect([e.code, e.field], JSON.stringify(cfg)).toEqual([code, field]);
    }
    // From a file: the file is named too.
    const out = join(dir, 'badcfg');
    const ok = ParaAdapter.create(c);
    await saveAdapter(ok, out);
    ok.dispose();
    await writeFile(
      join(out, 'adapter_config.json'),
      JSON.stringify({ peft_type: 'PARA', pooler: 'median' }),
    );
    const e = (await caught(() => loadAdapter(out, c))) as ParaError;
    expect([e.code, e.field, e.file]).toEqual([
      'INVALID_CONFIG',
      'pooler',
      join(out, 'adapter_config.json'),
    ]);
    await writeFile(join(out, 'adapter_config.json'), '{ not json');
    expect(((await caught(() => loadAdapter(out, c))) as ParaError).code).toBe('INVALID_JSON');
    expect(((await caught(() => loadAdapter(join(dir, 'nope'), c))) as ParaError).code).toBe(
      'FILE_NOT_FOUND',
    );
    // Defaults are filled in.
    expect(resolveParaConfig({})).toMatchObject({
      r: 8,
      pooler: 'mean',
      activation: 'gelu',
      target_modules: ['q_proj', 'v_proj', 'up_proj'],
      use_bias: false,
    });
    expect(resolveLoraConfig({ target_modules: 'all-linear' }).target_modules).toBe('all-linear');
  });

  it('an adapter for another base model is a typed error naming the tensor and both shapes', async () => {
    const small = tinyConfig();
    const wide = tinyConfig({ hiddenSize: 64, intermediateSize: 96 });
    const deep = tinyConfig({ numLayers: 3 });
    for (const [i, make] of [
      (cfg: typeof small) => ParaAdapter.create(cfg, { r: 4 }),
      (cfg: typeof small) => LoraAdapter.create(cfg, { r: 2 }),
      (cfg: typeof small) => Ia3Adapter.create(cfg),
    ].entries()) {
      const out = join(dir, `wide${i}`);
      const a = make(wide);
      await saveAdapter(a, out);
      const e = (await caught(() => loadAdapter(out, small))) as ParaError;
      expect(e.code).toBe('SHAPE_MISMATCH');
      expect(e.field).toMatch(/^base_model\.model\.model\.layers\.0\./);
      // Both shapes, the model's and the file's.
      const shapes = [e.expected, e.actual].map((s) => /\[[\d, ]+\]/.exec(s ?? '')?.[0]);
      expect(shapes[0]).toBeDefined();
      expect(shapes[1]).toBeDefined();
      expect(shapes[0]).not.toBe(shapes[1]);
      // attach checks the same way.
      const ae = (await caught(() => a.attach(small))) as ParaError;
      expect([ae.code, ae.field]).toEqual(['SHAPE_MISMATCH', e.field]);
      a.dispose();
      // More layers in the file than in the model.
      const d = make(deep);
      await saveAdapter(d, join(dir, `deep${i}`));
      const de = (await caught(() => loadAdapter(join(dir, `deep${i}`), small))) as ParaError;
      expect(de.code).toBe('SHAPE_MISMATCH');
      expect(de.field).toMatch(/layers\.2\./);
      expect(de.message).toMatch(/layer 2 but the model has 2 layers/);
      d.dispose();
    }
    // A tensor missing from the file.
    const para = ParaAdapter.create(small, { r: 4, use_bias: true });
    const { config, weights } = await serializeAdapter(para);
    const cut = JSON.parse(config);
    cut.pooler = 'attention'; // now pool.weight is expected and absent
    const me = (await caught(() =>
      adapterFromBytes(JSON.stringify(cut), weights, small),
    )) as ParaError;
    expect([me.code, me.field]).toEqual([
      'TENSOR_NOT_FOUND',
      'base_model.model.model.layers.0.para.pool.weight',
    ]);
    // Base model name check, when asked for.
    const named = ParaAdapter.create(small, {
      base_model_name_or_path: 'meta-llama/Llama-2-7b-hf',
    });
    const nb = await serializeAdapter(named);
    expect(
      await caught(() =>
        adapterFromBytes(nb.config, nb.weights, small, { baseModelName: '/models/Llama-2-7b-hf' }),
      ),
    ).toBeUndefined();
    const ne = (await caught(() =>
      adapterFromBytes(nb.config, nb.weights, small, { baseModelName: '/models/tiny' }),
    )) as ParaError;
    expect([ne.code, ne.field]).toEqual(['INVALID_CONFIG', 'base_model_name_or_path']);
    para.dispose();
    named.dispose();
  });
});
