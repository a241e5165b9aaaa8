/**
 * The architectures beyond Llama/Mistral/Qwen2 (Qwen3, Gemma 2, Gemma 3 text) and sliding-window
 * attention, on the transformers fixtures of goldens/make_goldens_arch.py: cached decoding
 * equals teacher forcing over sequences longer than the window, rows joining a running batch
 * decode as alone, save → load is exact, seeded init, and the adapter sites (q, v, the up half
 * of Gemma's GeGLU) act where they should.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isParaError } from '@para/core/node';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CausalLM,
  CausalLM as CausalLMClass,
  checkpointTensorSpecs,
  createConfig,
  type LayerWeights,
  type ModelAdapter,
  namedWeights,
  parseHfConfig,
  rotaryDim,
  toHfConfig,
} from '../src/index';
import { loadModel, saveModel } from '../src/node';
import { caught, expectClose, take, testBackends, useBackend } from './helpers/backends';
import { FIXTURES, SLIDING_MODELS } from './helpers/models';

const ARCH_MODELS = ['qwen3-bf16', 'qwen3-yarn', 'olmo2-bf16', ...SLIDING_MODELS] as const;

/** Prompts and responses: every row's prompt + response (up to 18 slots) exceeds every window (4 or 5). */
const PROMPTS = [
  [1, 5, 9, 13, 44, 90, 7, 8, 100],
  [1, 7, 3],
  [1, 3, 4, 8, 20, 30, 31],
];
const RESPONSES = [
  [11, 12, 40, 41, 2, 9, 10, 3, 77],
  [63, 0, 17, 17, 5, 120, 6, 33, 4],
  [22, 23, 24, 25, 26, 27, 28, 29, 30],
];

function leftPad(rows: number[][]): { ids: number[][]; mask: number[][] } {
  const L = Math.max(...rows.map((r) => r.length));
  return {
    ids: rows.map((r) => [...new Array(L - r.length).fill(0), ...r]),
    mask: rows.map((r) => [...new Array(L - r.length).fill(0), ...new Array(r.length).fill(1)]),
  };
}

function at(buf: Float32Array, T: number, V: number, b: number, t: number): Float32Array {
  return buf.subarray((b * T + t) * V, (b * T + t + 1) * V);
}

describe.each(testBackends())('architectures on %s', (backend) => {
  const models = new Map<string, CausalLM>();
  beforeAll(async () => {
    await useBackend(backend);
    for (const name of ARCH_MODELS) models.set(name, await loadModel(join(FIXTURES, name)));
  });
  afterAll(() => {
    for (const m of models.values()) m.dispose();
  });

  it('the fixtures are the architectures they claim', () => {
    const g2 = (models.get('gemma2-f16') as CausalLM).config;
    expect(g2.layerTypes).toEqual(['sliding_attention', 'full_attention', 'sliding_attention']);
    expect([g2.attnLogitSoftcapping, g2.finalLogitSoftcapping, g2.queryPreAttnScalar]).toEqual([
      2, 3, 24,
    ]);
    expect([g2.normUnitOffset, g2.normLayout, g2.embedScale, g2.hiddenAct]).toEqual([
      true,
      'sandwich',
      true,
      'gelu_pytorch_tanh',
    ]);
    const g3 = (models.get('gemma3-bf16') as CausalLM).config;
    expect(g3.layerTypes).toEqual([
      'sliding_attention',
      'sliding_attention',
      'full_attention',
      'sliding_attention',
    ]);
    expect(g3.localRope).toEqual({ theta: 10000, scaling: null });
    expect([g3.ropeTheta, g3.ropeScaling]).toEqual([1e6, { rope_type: 'linear', factor: 2 }]);
    expect([g3.qkNorm, g3.attnLogitSoftcapping, g3.finalLogitSoftcapping]).toEqual([
      'head',
      null,
      4,
    ]);
    const q3 = (models.get('qwen3-bf16') as CausalLM).config;
    expect([q3.qkNorm, q3.headDim, q3.bias.o, q3.slidingWindow]).toEqual(['head', 32, true, null]);
    // v4 config without layer_types: max_window_layers = 1 decides.
    expect((models.get('qwen3-sliding') as CausalLM).config.layerTypes).toEqual([
      'full_attention',
      'sliding_attention',
      'sliding_attention',
    ]);
    expect((models.get('mistral-sliding') as CausalLM).config.layerTypes).toEqual([
      'sliding_attention',
      'sliding_attention',
    ]);
    const yarn = models.get('qwen3-yarn') as CausalLM;
    expect(yarn.config.ropeScaling).toEqual({
      rope_type: 'yarn',
      factor: 4,
      original_max_position_embeddings: 64,
      beta_fast: 16,
    });
    expect(yarn.ropeScale).toBeCloseTo(0.1 * Math.log(4) + 1, 12);
    const smol = (models.get('smollm3') as CausalLM).config;
    expect([smol.noRopeLayers, smol.layerTypes, smol.bias.mlp, smol.bias.o]).toEqual([
      [1, 3],
      ['full_attention', 'sliding_attention', 'full_attention', 'sliding_attention'],
      true,
      true,
    ]);
    const phi = models.get('phi3') as CausalLM;
    expect([phi.config.fusedProjections, rotaryDim(phi.config), phi.config.headDim]).toEqual([
      true,
      8,
      16,
    ]);
    expect(phi.config.layerTypes).toEqual(['sliding_attention', 'sliding_attention']);
    const fileNames = checkpointTensorSpecs(phi.config).map((t) => t.name);
    expect(fileNames).toContain('model.layers.1.self_attn.qkv_proj.weight');
    expect(fileNames).toContain('model.layers.1.mlp.gate_up_proj.weight');
    expect(
      fileNames.some((n) => n.endsWith('.q_proj.weight') || n.endsWith('.up_proj.weight')),
    ).toBe(false);
    // In memory the projections are separate (the adapter sites exist as on Llama).
    expect(phi.weights.layers[0]?.q_proj.weight.shape).toEqual([64, 64]);
    expect(phi.weights.layers[0]?.v_proj.weight.shape).toEqual([32, 64]);
    expect(phi.weights.layers[0]?.up_proj.weight.shape).toEqual([96, 64]);
    const olmo = models.get('olmo2-bf16') as CausalLM;
    expect([olmo.config.normLayout, olmo.config.qkNorm, olmo.config.rmsNormEps]).toEqual([
      'post',
      'projection',
      1e-5,
    ]);
    expect(olmo.weights.layers[0]?.inputLayernorm).toBeNull();
    expect(olmo.weights.layers[0]?.qNorm?.shape).toEqual([4 * 16]);
    expect(olmo.weights.layers[0]?.kNorm?.shape).toEqual([2 * 16]);
    expect(tf.getBackend()).toBe(backend);
  });

  it.each(ARCH_MODELS)(
    '%s: teacher forcing equals prefill + cached decode past the sliding window',
    async (name) => {
      const model = models.get(name) as CausalLM;
      const V = model.config.vocabSize;
      const full = PROMPTS.map((p, b) => [...p, ...(RESPONSES[b] as number[])]);
      const { ids, mask } = leftPad(full);
      const Tf = (ids[0] as number[]).length;
      const teacher = await take(model.forward(ids, { attentionMask: mask })); // [B, Tf, V]
      const { logits: prefillLogits, state } = model.prefill(PROMPTS, { allLogits: true });
      const Tp = Math.max(...PROMPTS.map((p) => p.length));
      const pre = await take(prefillLogits); // [B, Tp, V]
      const R = (RESPONSES[0] as number[]).length;
      const steps: Float32Array[] = [];
      for (let r = 0; r < R - 1; r++)
        steps.push(
          await take(
            model.decodeStep(
              RESPONSES.map((x) => x[r] as number),
              state,
            ),
          ),
        );
      state.dispose();
      PROMPTS.forEach((p, b) => {
        const offF = Tf - p.length - R;
        const offP = Tp - p.length;
        for (let j = 0; j < p.length; j++)
          expectClose(
            at(pre, Tp, V, b, offP + j),
            at(teacher, Tf, V, b, offF + j),
            1e-4,
            0,
            `${name} row ${b} prompt ${j}`,
          );
        steps.forEach((s, r) => {
          expectClose(
            s.subarray(b * V, (b + 1) * V),
            at(teacher, Tf, V, b, offF + p.length + r),
            1e-4,
            0,
            `${name} row ${b} step ${r}`,
          );
        });
      });
    },
  );

  it.each(SLIDING_MODELS)(
    '%s: a row inserted into a running batch decodes as it does alone',
    async (name) => {
      const model = models.get(name) as CausalLM;
      const V = model.config.vocabSize;
      const prompt = PROMPTS[0] as number[];
      const next = RESPONSES[0] as number[];
      // Alone.
      const alone = model.prefill([prompt], { capacity: 32 });
      alone.logits.dispose();
      const want: Float32Array[] = [];
      for (const t of next.slice(0, 6)) want.push(await take(model.decodeStep([t], alone.state)));
      alone.state.dispose();
      // A batch whose row 1 runs ahead, then row 0 is released and the prompt joins there.
      const batch = model.prefill([PROMPTS[1] as number[], PROMPTS[2] as number[]], {
        capacity: 32,
      });
      batch.logits.dispose();
      for (let i = 0; i < 3; i++) (await take(model.decodeStep([5, 6], batch.state))).fill(0);
      batch.state.releaseRow(0);
      const joiner = model.prefill([prompt]);
      joiner.logits.dispose();
      batch.state.insertRows(joiner.state, { into: [0] });
      joiner.state.dispose();
      for (let i = 0; i < 6; i++) {
        const got = await take(model.decodeStep([next[i] as number, 7], batch.state));
        expectClose(got.subarray(0, V), want[i] as Float32Array, 1e-4, 0, `${name} step ${i}`);
      }
      batch.state.dispose();
    },
  );

  it('dynamic RoPE: no position limit, default frequencies within max_position_embeddings, a tensor mask past it is a typed error', async () => {
    const model = await loadModel(join(FIXTURES, 'llama-dynamic'));
    try {
      expect(model.config.ropeScaling).toEqual({ rope_type: 'dynamic', factor: 2 });
      expect(model.config.maxPositionEmbeddings).toBe(8);
      expect(model.maxPositions).toBe(Number.POSITIVE_INFINITY);
      // Within 8 positions: exactly the unscaled model.
      const plain = new CausalLMClass(
        { ...model.config, ropeScaling: null, maxPositionEmbeddings: 64 },
        model.weights,
      );
      const short = [[1, 5, 9, 13, 44, 90, 7, 8]];
      expect(await take(model.forward(short))).toEqual(await take(plain.forward(short)));
      const long = [[1, 5, 9, 13, 44, 90, 7, 8, 100, 3, 4]];
      const a = await take(model.forward(long));
      const b = await take(plain.forward(long));
      expect(Math.max(...a.map((x, i) => Math.abs(x - (b[i] as number))))).toBeGreaterThan(1e-3);
      // 11 positions > 8: generation and cached decoding go on.
      const out = await model.generate([long[0] as number[]], { maxNewTokens: 4 });
      expect(out.tokens[0]?.length).toBe(4);
      const e = await caught(() =>
        model.forward(long, { attentionMask: tf.ones([1, 11], 'int32') }),
      );
      expect(isParaError(e, 'INVALID_ARGUMENT')).toBe(true);
      expect((e as Error).message).toContain('number[][]');
    } finally {
      model.dispose();
    }
  });

  it('Phi-3 longrope: short factors up to original_max_position_embeddings, generate recomputes the cache at the switch, an adapter across it is refused', async () => {
    const model = await loadModel(join(FIXTURES, 'phi3-longrope'));
    try {
      expect(model.longropeSwitchAt).toBe(12);
      expect(model.ropeScale).toBeCloseTo(Math.sqrt(1 + Math.log(48 / 12) / Math.log(12)), 12);
      // A prompt of 13 slots is computed with the long factors from the start: prefill's last
      // logits equal the teacher-forced forward's.
      const p = [1, 5, 9, 13, 44, 90, 7, 8, 100, 3, 4, 6, 2];
      const { logits, state } = model.prefill([p]);
      state.dispose();
      const f = await take(model.forward([p]));
      const V = model.config.vocabSize;
      expectClose(await take(logits), f.subarray((p.length - 1) * V), 1e-4, 0, 'prefill = forward');
      const adapter: ModelAdapter = { sites: [] };
      const e = await caught(() =>
        model.generate([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]], { maxNewTokens: 8, adapter }),
      );
      expect(isParaError(e, 'UNSUPPORTED')).toBe(true);
      expect((e as Error).message).toContain('original_max_position_embeddings');
      // Within the original length (or starting past it) an adapter is fine.
      const ok = await model.generate([[1, 2, 3]], { maxNewTokens: 4, adapter });
      expect(ok.tokens[0]?.length).toBe(4);
    } finally {
      model.dispose();
    }
  });

  it.each(['gemma2-f16', 'gemma3-bf16', 'olmo2-bf16', 'phi3', 'smollm3', 'qwen3-yarn'])(
    '%s: gradients of q, v and up scales (PARA-like) match finite differences',
    async (name) => {
      const model = models.get(name) as CausalLM;
      const c = model.config;
      const dims = {
        q_proj: c.numHeads * c.headDim,
        v_proj: c.numKvHeads * c.headDim,
        up_proj: c.intermediateSize,
      };
      const vars = Object.fromEntries(
        Object.entries(dims).map(([site, d]) => [
          site,
          tf.variable(tf.linspace(0.8, 1.2, d), true, `${name}_${site}_${backend}`),
        ]),
      ) as Record<keyof typeof dims, tf.Variable>;
      const adapter: ModelAdapter = {
        sites: [],
        layerInput(ctx) {
          for (const [site, v] of Object.entries(vars))
            ctx.state.setScale(site as keyof typeof dims, tf.reshape(v, [1, 1, -1]));
        },
      };
      const ids = [[1, 9, 4, 33, 70, 2, 5, 8]]; // longer than the windows (4, 5)
      const T = 8;
      const probe = tf.reshape(tf.linspace(-1, 1, T * c.vocabSize), [1, T, c.vocabSize]); // [1, T, V]
      const loss = () => tf.sum(tf.mul(model.forward(ids, { adapter }), probe)) as tf.Scalar;
      const { grads, value } = tf.variableGrads(loss, Object.values(vars));
      value.dispose();
      for (const [site, v] of Object.entries(vars)) {
        const g = await take(grads[v.name] as tf.Tensor);
        const base = await v.data();
        const i = Math.floor(base.length / 3);
        const eps = 1e-2;
        const at = async (delta: number) => {
          const x = Float32Array.from(base);
          x[i] = (x[i] as number) + delta;
          const t = tf.tensor1d(x);
          v.assign(t);
          t.dispose();
          return (await take(tf.tidy(loss)))[0] as number;
        };
        const fd = ((await at(eps)) - (await at(-eps))) / (2 * eps);
        const restore = tf.tensor1d(base);
        v.assign(restore);
        restore.dispose();
        expect(
          Math.abs((g[i] as number) - fd),
          `${name} ${site}: grad ${g[i]} vs fd ${fd}`,
        ).toBeLessThan(3e-2 * Math.max(1, Math.abs(fd)));
      }
      tf.dispose([...Object.values(vars), probe]);
    },
  );

  it('a PARA-like identity scale of q, v and up is bit-identical; a scale of up acts on the up half of the GeGLU', async () => {
    const model = models.get('gemma2-f16') as CausalLM;
    const ids = [[1, 5, 9, 13, 44, 90, 7, 8, 100]];
    const base = await take(model.forward(ids));
    const sitesSeen = new Set<string>();
    const ones = (factor: number): ModelAdapter => ({
      sites: [],
      layerInput(ctx) {
        for (const site of ['q_proj', 'v_proj', 'up_proj'] as const) {
          const dim =
            site === 'up_proj'
              ? model.config.intermediateSize
              : (site === 'q_proj' ? model.config.numHeads : model.config.numKvHeads) *
                model.config.headDim;
          sitesSeen.add(site);
          const scale =
            site === 'up_proj' && factor !== 1
              ? tf.reshape(tf.linspace(1, factor, dim), [1, 1, dim])
              : tf.ones([1, 1, dim]);
          ctx.state.setScale(site, scale); // [1, 1, dim]
        }
      },
    });
    expect(await take(model.forward(ids, { adapter: ones(1) }))).toEqual(base);
    expect(sitesSeen).toEqual(new Set(['q_proj', 'v_proj', 'up_proj']));
    // A per-channel scale of up (1 … 2) equals scaling up_proj's rows: it lands on the up half of
    // the GeGLU (a uniform one would vanish in Gemma's post-feed-forward norm).
    const scaled = await take(model.forward(ids, { adapter: ones(2) }));
    const w = model.weights;
    const doubled = new CausalLMClass(model.config, {
      ...w,
      layers: w.layers.map((l) => ({
        ...l,
        up_proj: {
          weight: tf.mul(
            l.up_proj.weight,
            tf.reshape(tf.linspace(1, 2, model.config.intermediateSize), [-1, 1]),
          ),
          bias: l.up_proj.bias,
        },
      })),
    });
    const ref = await take(doubled.forward(ids));
    for (const l of doubled.weights.layers) l.up_proj.weight.dispose();
    expectClose(scaled, ref, 1e-4, 1e-5, 'up scale = doubled up_proj');
    expect(Math.max(...scaled.map((v, i) => Math.abs(v - (base[i] as number))))).toBeGreaterThan(
      1e-3,
    );
  });
});

describe('architectures: save → load, config round trips, init', () => {
  let dir: string;
  beforeAll(async () => {
    await useBackend('cpu');
    dir = await mkdtemp(join(tmpdir(), 'para-arch-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it.each(ARCH_MODELS)('%s: save → load is exact and config.json round-trips', async (name) => {
    const model = await loadModel(join(FIXTURES, name));
    const out = join(dir, name);
    await saveModel(model, out);
    const back = await loadModel(out);
    const { extra: _a, ...c1 } = model.config;
    const { extra: _b, ...c2 } = back.config;
    expect(c2).toEqual(c1);
    const { extra: _c, ...c3 } = parseHfConfig(toHfConfig(model.config));
    expect(c3).toEqual(c1);
    const a = namedWeights(model.config, model.weights);
    const b = namedWeights(back.config, back.weights);
    expect(Object.keys(b).sort()).toEqual(Object.keys(a).sort());
    for (const [k, t] of Object.entries(a))
      expect(await (b[k] as tf.Tensor).data(), k).toEqual(await t.data());
    const ids = [[1, 2, 3, 4, 5, 6, 7, 8, 9]];
    expect(await take(back.forward(ids))).toEqual(await take(model.forward(ids)));
    model.dispose();
    back.dispose();
  });

  it.each([
    ['qwen3-bf16', 'BF16'],
    ['gemma3-bf16', 'BF16'],
    ['olmo2-bf16', 'BF16'],
    ['phi3', 'BF16'],
    ['gemma2-f16', 'F16'],
    ['smollm3', 'F16'],
  ] as const)(
    '%s: saved again in its storage dtype (%s) it reloads bit-exact',
    async (name, dtype) => {
      const model = await loadModel(join(FIXTURES, name));
      const out = join(dir, `${name}-${dtype}`);
      await saveModel(model, out, { dtype });
      const back = await loadModel(out);
      const ids = [[1, 2, 3, 4, 5, 6, 7, 8, 9]];
      expect(await take(back.forward(ids))).toEqual(await take(model.forward(ids)));
      model.dispose();
      back.dispose();
    },
  );

  it('random Qwen3 / Gemma / SmolLM3 / OLMo 2 models: the norms each has, (1 + w) norms start at w = 0, they generate', async () => {
    for (const modelType of [
      'qwen3',
      'gemma2',
      'gemma3_text',
      'smollm3',
      'olmo2',
      'phi3',
    ] as const) {
      const config = createConfig({
        modelType,
        vocabSize: 64,
        hiddenSize: 32,
        intermediateSize: 48,
        numLayers: 2,
        numHeads: 4,
        numKvHeads: 2,
        headDim: 16,
        slidingWindow: 3,
        layerTypes: ['sliding_attention', 'full_attention'],
        localRope: modelType === 'gemma3_text' ? { theta: 10000, scaling: null } : null,
      });
      const m = CausalLMClass.random(config, 3);
      const names = Object.keys(namedWeights(config, m.weights));
      const gemma = modelType.startsWith('gemma');
      expect(names.includes('model.layers.0.self_attn.q_norm.weight')).toBe(
        ['qwen3', 'gemma3_text', 'olmo2'].includes(modelType),
      );
      expect(names.includes('model.layers.1.pre_feedforward_layernorm.weight')).toBe(gemma);
      expect(names.includes('model.layers.1.post_feedforward_layernorm.weight')).toBe(
        gemma || modelType === 'olmo2',
      );
      expect(names.includes('model.layers.1.input_layernorm.weight')).toBe(modelType !== 'olmo2');
      const n = await (m.weights.layers[0] as LayerWeights).postAttentionLayernorm.data();
      expect(n[0]).toBe(gemma ? 0 : 1);
      expect(m.numParameters).toBe(
        Object.values(namedWeights(config, m.weights)).reduce((s, t) => s + t.size, 0),
      );
      const r = await m.generate([[1, 2, 3, 4, 5]], { maxNewTokens: 6 });
      expect(r.tokens[0]?.length).toBeGreaterThan(0);
      const logits = await take(m.forward([[1, 2, 3, 4, 5, 6, 7]]));
      expect(logits.every(Number.isFinite)).toBe(true);
      m.dispose();
    }
  });
});
