/**
 * The method registry is how a method plugs in: a toy method ("OSCALE": a learned vector scaling
 * o_proj's output, prompt-independent) written here in one class plus one `AdapterMethod` entry
 * is created from a config by `createAdapter`, serves rows of a mixed batch beside PARA and LoRA,
 * and each row equals that row run alone. The built-ins are registered with one set of defaults.
 */

import { isParaError } from '@para/core';
import type {
  AdapterContext,
  AdapterSite,
  CausalLM,
  ModelAdapter,
  ModelConfig,
  TensorSpec,
} from '@para/model';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AdapterMethod,
  type AdapterRequest,
  adapterMethod,
  adapterMethods,
  type BaseAdapterConfig,
  createAdapter,
  LoraAdapter,
  mixedAdapter,
  ParaAdapter,
  PeftAdapter,
  registerAdapterMethod,
} from '../src/index';
import { expectClose, take, testBackends, useBackend } from './helpers/backends';
import { randomize, tinyModel } from './helpers/models';

interface OScaleConfig extends BaseAdapterConfig {
  peft_type: 'OSCALE';
}

const oscaleSpecs = (m: ModelConfig): TensorSpec[] =>
  Array.from({ length: m.numLayers }, (_, i) => ({
    name: `layers.${i}.oscale`,
    shape: [m.hiddenSize],
  }));

const OSCALE_METHOD: AdapterMethod<OScaleConfig, OScaleAdapter> = {
  peftType: 'OSCALE',
  name: 'oscale',
  description: 'a learned vector scales o_proj (a test method)',
  defaults: {},
  training: { lr: 1e-2 },
  rankKey: null,
  resolveConfig: (raw) => ({
    peft_type: 'OSCALE',
    base_model_name_or_path:
      typeof raw.base_model_name_or_path === 'string' ? raw.base_model_name_or_path : null,
  }),
  tensorSpecs: (_config, modelConfig) => oscaleSpecs(modelConfig),
  create: (modelConfig, config) => new OScaleAdapter(config, modelConfig),
  owns: (a: PeftAdapter): a is OScaleAdapter => a instanceof OScaleAdapter,
  mixedLayer(groups, layer) {
    return {
      scales: groups.map(({ adapter, rows }) => ({
        site: 'o_proj' as const,
        rows,
        value: tf.tile(tf.reshape(adapter.vector(layer), [1, -1]), [rows.length, 1]),
      })),
    };
  },
};

class OScaleAdapter extends PeftAdapter<OScaleConfig> {
  readonly peftType = 'OSCALE';
  constructor(config: OScaleConfig, modelConfig: ModelConfig) {
    super(config, modelConfig);
    for (let i = 0; i < modelConfig.numLayers; i++)
      this.addParam(`layers.${i}.oscale`, tf.ones([modelConfig.hiddenSize]));
  }
  vector(layer: number): tf.Tensor {
    return this.param(`layers.${layer}.oscale`);
  }
  get method(): AdapterMethod {
    return OSCALE_METHOD as unknown as AdapterMethod;
  }
  get sites(): readonly AdapterSite[] {
    return ['o_proj'];
  }
  tensorSpecs(m: ModelConfig = this.modelConfig): TensorSpec[] {
    return oscaleSpecs(m);
  }
  toConfigJson(): Record<string, unknown> {
    return { peft_type: 'OSCALE' };
  }
  protected trainingHooks(): ModelAdapter<AdapterRequest> {
    return {
      sites: [],
      layerInput: (ctx: AdapterContext<AdapterRequest>) =>
        ctx.state.setScale('o_proj', tf.reshape(this.vector(ctx.layer), [1, 1, -1])),
    };
  }
}

const PROMPTS = [
  [1, 5, 9, 13, 4],
  [1, 7, 30],
  [1, 8, 8, 3],
];

describe.each(testBackends())('adapter-method registry on %s', (backend) => {
  let model: CausalLM;
  beforeAll(async () => {
    await useBackend(backend);
    model = tinyModel({}, 4);
  });
  afterAll(() => model.dispose());

  it('the built-ins are registered with one set of defaults', () => {
    expect(
      adapterMethods()
        .map((m) => m.peftType)
        .slice(0, 3),
    ).toEqual(['PARA', 'LORA', 'IA3']);
    expect(adapterMethod('PARA').defaults).toMatchObject({ r: 8, pooler: 'mean' });
    expect(adapterMethod('LORA').defaults).toMatchObject({ r: 8, lora_alpha: 8 });
    expect(adapterMethods().every((m) => m.training.lr > 0)).toBe(true);
    expect(adapterMethod('lora', { byName: true }).peftType).toBe('LORA');
    expect(adapterMethod('PARA').merge).toBeUndefined(); // PARA cannot merge
    expect(
      isParaError(
        caughtSync(() => adapterMethod('NOPE')),
        'UNSUPPORTED',
      ),
    ).toBe(true);
    expect(
      isParaError(
        caughtSync(() => registerAdapterMethod(adapterMethod('PARA'))),
        'INVALID_ARGUMENT',
      ),
    ).toBe(true);
  });

  it('a method added in one file serves rows of a mixed batch beside PARA and LoRA, each row = alone', async () => {
    if (!adapterMethods().some((m) => m.peftType === 'OSCALE'))
      registerAdapterMethod(OSCALE_METHOD);
    const c = model.config;
    const oscale = createAdapter(c, { peft_type: 'OSCALE' });
    expect(oscale).toBeInstanceOf(OScaleAdapter);
    randomize(oscale, 'oscale', 0.3, 1);
    const para = ParaAdapter.create(c, { r: 3 }, { seed: 1 });
    randomize(para, 'para', 0.3);
    const lora = LoraAdapter.create(c, { r: 2 }, { seed: 2 });
    randomize(lora, 'lora', 0.3);
    const rows = [oscale, para, lora];
    const { logits, state } = model.prefill(PROMPTS, {
      adapter: mixedAdapter(model, rows),
      request: {},
    });
    const mixed = await take(logits);
    const step = await take(model.decodeStep([3, 4, 5], state));
    state.dispose();
    const V = c.vocabSize;
    for (let b = 0; b < rows.length; b++) {
      const alone = model.prefill([PROMPTS[b] as number[]], {
        adapter: (rows[b] as PeftAdapter).attach(model),
        request: {},
      });
      expectClose(await take(alone.logits), mixed.slice(b * V, (b + 1) * V), 1e-4);
      expectClose(
        await take(model.decodeStep([3 + b], alone.state)),
        step.slice(b * V, (b + 1) * V),
        1e-4,
      );
      alone.state.dispose();
    }
    // And its forward (training) hooks compute the same as inference.
    const f = await take(
      tf.tidy(() =>
        tf.slice(
          model.forward([PROMPTS[0] as number[]], { adapter: oscale.attach(model), request: {} }),
          [0, 4, 0],
          [1, 1, V],
        ),
      ),
    );
    expectClose(f, mixed.slice(0, V), 1e-4);
    for (const a of rows) a.dispose();
  });
});

function caughtSync(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error('expected an error');
}
