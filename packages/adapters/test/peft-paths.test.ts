/**
 * `target_modules` as dotted module paths, with PEFT's semantics (PEFT 0.21
 * tuners_utils.check_target_module_exists): a list entry matches a module whose full name
 * (`model.layers.1.self_attn.q_proj`, its name in the transformers model) equals it, or ends with
 * "." + it; only the suffix matches are limited by layers_to_transform; a string is a regex
 * matched against the whole name. PEFT writes the full names for "all-linear" on small models.
 * The fixtures are PEFT's own (goldens/make_peft_paths.py); the selection cases below were
 * checked with get_peft_model on a tiny LlamaForCausalLM (the expected lists are PEFT's).
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSafetensorsFile, type ParaError } from '@para/core/node';
import { type CausalLM, loadModel } from '@para/model/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AnyAdapter,
  createAdapter,
  Ia3Adapter,
  LoraAdapter,
  loadAdapter,
  loraTargets,
  resolveLoraConfig,
  saveAdapter,
} from '../src/node';
import { caught, expectClose, take, testBackends, useBackend } from './helpers/backends';
import { FIXTURES, tinyConfig } from './helpers/models';

async function values(a: AnyAdapter): Promise<Record<string, Float32Array>> {
  const out: Record<string, Float32Array> = {};
  for (const [n, v] of a.namedParameters()) out[n] = (await v.data()) as Float32Array;
  return out;
}

async function fileJson(path: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(path, 'utf8'));
}

describe.each(testBackends())('PEFT adapters with module-path target_modules on %s', (backend) => {
  let model: CausalLM;
  let ids: number[][];
  let dir: string;
  const golden: Record<string, Float32Array> = {};
  beforeAll(async () => {
    await useBackend(backend);
    model = await loadModel(join(FIXTURES, 'base'));
    const st = await openSafetensorsFile(join(FIXTURES, 'goldens.safetensors'));
    const idData = await st.readData('input_ids');
    const [B, T] = idData.shape as [number, number];
    ids = Array.from({ length: B }, (_, b) => Array.from(idData.data.subarray(b * T, (b + 1) * T)));
    golden.base = (await st.readData('base_logits')).data as Float32Array;
    await st.close();
    const pg = await openSafetensorsFile(join(FIXTURES, 'paths-goldens.safetensors'));
    for (const n of pg.names())
      golden[n.replace(/_logits$/, '')] = (await pg.readData(n)).data as Float32Array;
    await pg.close();
    dir = await mkdtemp(join(tmpdir(), 'para-peft-paths-'));
  });
  afterAll(async () => {
    model.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  it.each([
    ['lora-all-linear', LoraAdapter],
    ['lora-paths', LoraAdapter],
    ['ia3-paths', Ia3Adapter],
  ] as const)(
    '%s: loads, has exactly the file tensors, gives PEFT logits, saves back the same target_modules',
    async (name, kind) => {
      const src = join(FIXTURES, name);
      const adapter = await loadAdapter(src, model);
      expect(adapter).toBeInstanceOf(kind);
      const st = await openSafetensorsFile(join(src, 'adapter_model.safetensors'));
      const fileNames = st.names();
      await st.close();
      expect([...adapter.namedParameters()].map(([n]) => n).sort()).toEqual([...fileNames].sort());
      if (name === 'lora-paths') {
        // ["model.layers.1.self_attn.q_proj", "model.layers.0.mlp.down_proj"]: those two only.
        expect(fileNames).toEqual([
          'base_model.model.model.layers.0.mlp.down_proj.lora_A.weight',
          'base_model.model.model.layers.0.mlp.down_proj.lora_B.weight',
          'base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight',
          'base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight',
        ]);
        const lora = adapter as LoraAdapter;
        expect(lora.allModules().map((m) => `${m.layer}.${m.module}`)).toEqual([
          '0.down_proj',
          '1.q_proj',
        ]);
      }
      if (name === 'lora-all-linear')
        expect((adapter as LoraAdapter).allModules()).toHaveLength(14);
      const got = await take(model.forward(ids, { adapter: adapter.attach(model) }));
      expectClose(got, golden[name] as Float32Array, 1e-4, 0, name);
      let diff = 0;
      for (let i = 0; i < got.length; i++)
        diff = Math.max(
          diff,
          Math.abs((got[i] as number) - ((golden.base as Float32Array)[i] as number)),
        );
      expect(diff).toBeGreaterThan(0.5);

      const out = join(dir, name);
      await saveAdapter(adapter, out);
      const read = await fileJson(join(src, 'adapter_config.json'));
      const written = await fileJson(join(out, 'adapter_config.json'));
      expect(written.target_modules).toEqual(read.target_modules);
      if (name === 'ia3-paths')
        expect(written.feedforward_modules).toEqual(read.feedforward_modules);
      const back = await loadAdapter(out, model);
      expect(await values(back)).toEqual(await values(adapter));
      back.dispose();
      adapter.dispose();
    },
  );
});

describe('target_modules list entries select modules as PEFT does', () => {
  const m = tinyConfig(); // 2 layers
  const pairs = (cfg: Record<string, unknown>) =>
    loraTargets(resolveLoraConfig(cfg), m).map((t) => `${t.layer}.${t.module}`);

  it('full paths, suffixes, layers_to_transform, unknown entries', () => {
    expect(
      pairs({
        target_modules: ['model.layers.1.self_attn.q_proj', 'model.layers.0.mlp.down_proj'],
      }),
    ).toEqual(['0.down_proj', '1.q_proj']);
    // PEFT: layers.1.self_attn.q_proj, 1.mlp.down_proj and self_attn.v_proj are suffixes of the names.
    expect(
      pairs({
        target_modules: ['layers.1.self_attn.q_proj', '1.mlp.down_proj', 'self_attn.v_proj'],
      }),
    ).toEqual(['0.v_proj', '1.q_proj', '1.down_proj', '1.v_proj']);
    // An exact name is adapted whatever layers_to_transform says; a suffix match only in those layers.
    expect(
      pairs({
        target_modules: ['model.layers.1.self_attn.q_proj', 'v_proj'],
        layers_to_transform: [0],
      }),
    ).toEqual(['0.v_proj', '1.q_proj']);
    // Entries that match nothing are ignored, as PEFT ignores them, so long as something matches.
    expect(pairs({ target_modules: ['q_proj', 'qkv'] })).toEqual(['0.q_proj', '1.q_proj']);
    expect(
      pairs({ target_modules: ['base_model.model.model.layers.1.mlp.up_proj', 'q_proj'] }),
    ).toEqual(['0.q_proj', '1.q_proj']);
    expect(pairs({ target_modules: 'ALL-LINEAR' })).toHaveLength(14);
    expect(pairs({ target_modules: 'model\\.layers\\.1\\.self_attn\\.(q|v)_proj' })).toEqual([
      '1.q_proj',
      '1.v_proj',
    ]);
    // A layer the model does not have matches nothing.
    expect(
      pairs({
        target_modules: ['model.layers.5.self_attn.q_proj', 'model.layers.0.self_attn.k_proj'],
      }),
    ).toEqual(['0.k_proj']);
  });

  it('what PEFT refuses, or what para does not implement, is a typed error naming the key', async () => {
    const bad: [Record<string, unknown>, string, string][] = [
      // PEFT: "Target modules {...} not found in the base model" (it matches module names, not tensor names).
      [
        { peft_type: 'LORA', target_modules: ['base_model.model.model.layers.1.mlp.up_proj'] },
        'INVALID_CONFIG',
        'target_modules',
      ],
      [{ peft_type: 'LORA', target_modules: ['proj'] }, 'INVALID_CONFIG', 'target_modules'],
      [
        { peft_type: 'LORA', target_modules: ['model.layers.5.self_attn.q_proj'] },
        'INVALID_CONFIG',
        'target_modules',
      ],
      [{ peft_type: 'LORA', target_modules: [''] }, 'INVALID_CONFIG', 'target_modules'],
      [
        { peft_type: 'LORA', target_modules: ['q_proj', 'q_proj'] },
        'INVALID_CONFIG',
        'target_modules',
      ],
      // PEFT adapts these (or refuses the containers); para implements the projections,
      // embed_tokens and lm_head only (lora-edges.test.ts).
      [
        { peft_type: 'LORA', target_modules: ['q_proj', 'model.norm'] },
        'UNSUPPORTED',
        'target_modules',
      ],
      [{ peft_type: 'LORA', target_modules: ['rotary_emb'] }, 'UNSUPPORTED', 'target_modules'],
      [{ peft_type: 'LORA', target_modules: ['self_attn'] }, 'UNSUPPORTED', 'target_modules'],
      [{ peft_type: 'LORA', target_modules: '.*' }, 'UNSUPPORTED', 'target_modules'],
      // PEFT: "`layers_to_transform` cannot be used when `target_modules` is a str."
      [
        { peft_type: 'LORA', target_modules: 'all-linear', layers_to_transform: [1] },
        'INVALID_CONFIG',
        'layers_to_transform',
      ],
      // IA3 scales a projection in every layer or none.
      [
        {
          peft_type: 'IA3',
          target_modules: ['model.layers.1.self_attn.k_proj'],
          feedforward_modules: [],
        },
        'UNSUPPORTED',
        'target_modules',
      ],
      // PEFT: "`feedforward_modules` should be a subset of `target_modules`" (as strings).
      [
        {
          peft_type: 'IA3',
          target_modules: ['model.layers.0.mlp.down_proj', 'model.layers.1.mlp.down_proj'],
          feedforward_modules: ['down_proj'],
        },
        'INVALID_CONFIG',
        'feedforward_modules',
      ],
    ];
    for (const [cfg, code, field] of bad) {
      const e = (await caught(() => createAdapter(m, cfg as never))) as ParaError;
      expect(e?.name, JSON.stringify(cfg)).toBe('ParaError');
      expect([e.code, e.field], JSON.stringify(cfg)).toEqual([code, field]);
    }
  });

  it('IA3 with paths covering every layer is the plain IA3', () => {
    const paths = [0, 1].flatMap((i) => [
      `model.layers.${i}.self_attn.k_proj`,
      `model.layers.${i}.mlp.down_proj`,
    ]);
    const a = Ia3Adapter.create(m, {
      target_modules: paths,
      feedforward_modules: paths.filter((p) => p.endsWith('down_proj')),
    } as never);
    expect(a.config.target_modules).toEqual(['k_proj', 'down_proj']);
    expect(a.config.feedforward_modules).toEqual(['down_proj']);
    expect(a.sites).toEqual(['k_proj', 'down_proj.input']);
    expect([...a.namedParameters()].map(([n]) => n)).toEqual([
      'base_model.model.model.layers.0.self_attn.k_proj.ia3_l',
      'base_model.model.model.layers.0.mlp.down_proj.ia3_l',
      'base_model.model.model.layers.1.self_attn.k_proj.ia3_l',
      'base_model.model.model.layers.1.mlp.down_proj.ia3_l',
    ]);
    expect(a.toConfigJson()).toMatchObject({
      target_modules: paths,
      feedforward_modules: paths.filter((p) => p.endsWith('down_proj')),
    });
    a.dispose();
  });
});
