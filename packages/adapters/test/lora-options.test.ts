/**
 * LoRA's further PEFT options against PEFT 0.21 (goldens/make_peft_lora_options.py):
 * rank_pattern / alpha_pattern (per-module r and alpha), DoRA (use_dora: magnitude vectors,
 * the weight norm detached in training) and trained biases (bias "all" / "lora_only"). Each:
 * PEFT's adapter files load and give PEFT's logits (and its merged logits after merge), the
 * mixed batch (prefill + cached decode, rows of different tenants) equals each row alone, and
 * save → load is exact in PEFT's names.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '@para/core';
import { openSafetensorsFile } from '@para/core/node';
import { type CausalLM, type LayerWeights, loadModel } from '@para/model/node';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AnyAdapter,
  createAdapter,
  doraWeightNorm,
  type LoraAdapter,
  loadAdapter,
  mixedAdapter,
  ParaAdapter,
  saveAdapter,
} from '../src/node';
import { caught, expectClose, take, testBackends, useBackend } from './helpers/backends';
import { FIXTURES, randomize } from './helpers/models';

interface Goldens {
  ids: number[][];
  t: Record<string, Float32Array>;
  shapes: Record<string, number[]>;
}

async function readGoldens(): Promise<Goldens> {
  const st = await openSafetensorsFile(join(FIXTURES, 'lora-options-goldens.safetensors'));
  const idData = await st.readData('input_ids');
  const [B, T] = idData.shape as [number, number];
  const ids = Array.from({ length: B }, (_, b) =>
    Array.from(idData.data.subarray(b * T, (b + 1) * T)),
  );
  const t: Record<string, Float32Array> = {};
  const shapes: Record<string, number[]> = {};
  for (const n of st.names()) {
    if (n === 'input_ids') continue;
    const d = await st.readData(n);
    t[n] = d.data as Float32Array;
    shapes[n] = [...d.shape];
  }
  await st.close();
  return { ids, t, shapes };
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs((a[i] as number) - (b[i] as number)));
  return d;
}

/** Prefill + 2 decode steps of `rows` (one adapter or null per row) equal each row alone. */
async function expectMixedEqualsAlone(
  model: CausalLM,
  rows: (AnyAdapter | null)[],
  prompts: number[][],
): Promise<void> {
  const V = model.config.vocabSize;
  const steps = prompts.map((_, b) => [20 + b, 40 + b]);
  const { logits, state } = model.prefill(prompts, { adapter: mixedAdapter(model, rows) });
  const pre = await take(logits);
  const dec: Float32Array[] = [];
  for (let i = 0; i < 2; i++)
    dec.push(
      await take(
        model.decodeStep(
          steps.map((s) => s[i] as number),
          state,
        ),
      ),
    );
  state.dispose();
  for (let b = 0; b < rows.length; b++) {
    const own = rows[b] ?? null;
    const alone = model.prefill(
      [prompts[b] as number[]],
      own === null ? {} : { adapter: own.attach(model) },
    );
    expectClose(
      pre.subarray(b * V, (b + 1) * V),
      await take(alone.logits),
      1e-4,
      0,
      `row ${b} prefill`,
    );
    for (let i = 0; i < 2; i++) {
      const s = await take(model.decodeStep([(steps[b] as number[])[i] as number], alone.state));
      expectClose(
        (dec[i] as Float32Array).subarray(b * V, (b + 1) * V),
        s,
        1e-4,
        0,
        `row ${b} step ${i}`,
      );
    }
    alone.state.dispose();
  }
}

async function expectRoundTrip(adapter: AnyAdapter, model: CausalLM, dir: string): Promise<void> {
  await saveAdapter(adapter, dir);
  const back = await loadAdapter(dir, model);
  expect(back.toConfigJson()).toEqual(adapter.toConfigJson());
  const want = adapter.namedParameters();
  const got = back.namedParameters();
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [n, v] of want) {
    const a = (await v.data()) as Float32Array;
    const b = (await (got.get(n) as typeof v).data()) as Float32Array;
    expect(Buffer.from(b.buffer).equals(Buffer.from(a.buffer)), n).toBe(true);
  }
  back.dispose();
}

describe.each(testBackends())('LoRA options vs PEFT on %s', (backend) => {
  let llama: CausalLM;
  let g: Goldens;
  let dir: string;
  beforeAll(async () => {
    await useBackend(backend);
    llama = await loadModel(join(FIXTURES, 'base'));
    g = await readGoldens();
    dir = await mkdtemp(join(tmpdir(), 'para-lora-options-'));
  });
  afterAll(async () => {
    llama.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  describe('rank_pattern / alpha_pattern', () => {
    it('per-module r and alpha as PEFT picks them (first matching key, (.*\\.)?(KEY)$)', async () => {
      const a = (await loadAdapter(join(FIXTURES, 'lora-rank-pattern'), llama)) as LoraAdapter;
      const got: Record<string, [number, number]> = {};
      for (const m of a.allModules()) got[`${m.layer}.${m.module}`] = [m.r, m.scaling];
      for (const l of [0, 1]) {
        expect(got[`${l}.k_proj`]).toEqual([2, 8]); // alpha 16
        expect(got[`${l}.v_proj`]).toEqual([2, 2]);
        expect(got[`${l}.up_proj`]).toEqual([5, 4 / 5]); // a regex key
        expect(got[`${l}.gate_proj`]).toEqual([2, 2]); // "gate" is no whole dotted tail
      }
      expect(got['0.q_proj']).toEqual([4, 1]);
      expect(got['1.q_proj']).toEqual([6, 4 / 6]); // its own key comes first, then "q_proj"
      expect(got['0.o_proj']).toEqual([2, 2]);
      expect(got['1.o_proj']).toEqual([2, 0.5]); // "^model.layers.1.self_attn.o_proj"
      expect(got['0.down_proj']).toEqual([2, 2]);
      expect(got['1.down_proj']).toEqual([3, 4 / 3]);
      const logits = await take(llama.forward(g.ids, { adapter: a.attach(llama) }));
      expectClose(logits, g.t['lora-rank-pattern_logits'] as Float32Array, 1e-4, 0, 'logits');
      a.merge(llama);
      expectClose(
        await take(llama.forward(g.ids)),
        g.t['lora-rank-pattern_merged_logits'] as Float32Array,
        1e-4,
        0,
        'merged',
      );
      a.unmerge(llama);
      await expectRoundTrip(a, llama, join(dir, 'rank-pattern'));
      a.dispose();
    });

    it('in a mixed batch with PARA and plain LoRA tenants; bad patterns are typed errors', async () => {
      const a = (await loadAdapter(join(FIXTURES, 'lora-rank-pattern'), llama)) as LoraAdapter;
      const para = ParaAdapter.create(llama.config, { r: 3 }, { seed: 1 });
      randomize(para, 'para', 0.3);
      const lora = await loadAdapter(join(FIXTURES, 'lora-qv-layer1'), llama);
      await expectMixedEqualsAlone(
        llama,
        [a, para, null, lora, a],
        [
          [1, 5, 9],
          [1, 7, 30, 31],
          [1, 8],
          [1, 40, 41, 42, 43],
          [1, 11, 12],
        ],
      );
      for (const a2 of [a, para, lora]) a2.dispose();
      const bad = async (cfg: Record<string, unknown>) =>
        (await caught(() => createAdapter(llama.config, { peft_type: 'LORA', ...cfg }))) as {
          code?: string;
          field?: string;
        };
      expect((await bad({ rank_pattern: { q_proj: 0 } })).field).toBe('rank_pattern["q_proj"]');
      expect((await bad({ rank_pattern: { q_proj: 2.5 } })).code).toBe('INVALID_CONFIG');
      expect((await bad({ alpha_pattern: { q_proj: 'x' } })).code).toBe('INVALID_CONFIG');
      expect((await bad({ rank_pattern: ['q_proj'] })).field).toBe('rank_pattern');
      const lookaround = await bad({ rank_pattern: { '(?=q)q_proj': 4 } });
      expect(lookaround.code).toBe('UNSUPPORTED');
      expect(lookaround.field).toBe('rank_pattern["(?=q)q_proj"]');
      // rsLoRA with patterns: alpha / √r with each module's own r and alpha (PEFT's update_layer).
      const rs = createAdapter(llama.config, {
        peft_type: 'LORA',
        r: 8,
        lora_alpha: 8,
        use_rslora: true,
        rank_pattern: { q_proj: 4 },
        alpha_pattern: { v_proj: 2 },
      }) as LoraAdapter;
      expect([rs.module(0, 'q_proj')?.scaling, rs.module(0, 'v_proj')?.scaling]).toEqual([
        8 / 2,
        2 / Math.sqrt(8),
      ]);
      rs.dispose();
      // A hostile pattern runs in linear time (RE2).
      const slow = createAdapter(llama.config, {
        peft_type: 'LORA',
        rank_pattern: { '(.*.*)*X': 4 },
      }) as LoraAdapter;
      expect(slow.allModules().every((m) => m.r === 8)).toBe(true);
      slow.dispose();
    });
  });

  describe('DoRA (use_dora)', () => {
    it('PEFT DoRA files give PEFT logits: forward, prefill, merged; save → load is exact', async () => {
      const a = (await loadAdapter(join(FIXTURES, 'lora-dora'), llama)) as LoraAdapter;
      expect(a.config.use_dora).toBe(true);
      const names = [...a.namedParameters().keys()];
      expect(names).toContain(
        'base_model.model.model.layers.1.self_attn.v_proj.lora_magnitude_vector',
      );
      expect(a.module(1, 'v_proj')?.magnitude?.shape).toEqual([16]);
      expect(a.module(1, 'v_proj')?.scaling).toBe(0.5); // alpha_pattern v_proj: 2
      const want = g.t['lora-dora_logits'] as Float32Array;
      expect(maxDiff(want, g.t['lora-rank-pattern_logits'] as Float32Array)).toBeGreaterThan(0.1);
      expectClose(
        await take(llama.forward(g.ids, { adapter: a.attach(llama) })),
        want,
        1e-4,
        0,
        'forward',
      );
      // The inference path (a mixed batch of one tenant): last-position logits of the prefill.
      const V = llama.config.vocabSize;
      const T = (g.ids[0] as number[]).length;
      const { logits, state } = llama.prefill(g.ids, { adapter: a.attach(llama) });
      const pre = await take(logits);
      state.dispose();
      for (let b = 0; b < g.ids.length; b++)
        expectClose(
          pre.subarray(b * V, (b + 1) * V),
          want.subarray((b * T + T - 1) * V, (b * T + T) * V),
          1e-4,
          0,
          `prefill row ${b}`,
        );
      a.merge(llama);
      expectClose(
        await take(llama.forward(g.ids)),
        g.t['lora-dora_merged_logits'] as Float32Array,
        1e-4,
        0,
        'merged',
      );
      a.unmerge(llama);
      const base = await loadModel(join(FIXTURES, 'base'));
      expectClose(
        await take(llama.forward(g.ids)),
        await take(base.forward(g.ids)),
        1e-5,
        0,
        'unmerged',
      );
      base.dispose();
      await expectRoundTrip(a, llama, join(dir, 'dora'));
      a.dispose();
    });

    it("gradients: PEFT's (the norm detached) for A, B and m; finite differences for m", async () => {
      const a = (await loadAdapter(join(FIXTURES, 'lora-dora'), llama)) as LoraAdapter;
      const hooks = a.attach(llama);
      const loss = () => tf.mean(tf.square(llama.forward(g.ids, { adapter: hooks }))) as tf.Scalar;
      const { value, grads } = tf.variableGrads(loss, a.parameters());
      const got: Record<string, Float32Array> = {};
      expect((await take(value))[0]).toBeCloseTo(
        (g.t['lora-dora_loss'] as Float32Array)[0] as number,
        5,
      );
      for (const [name, v] of a.namedParameters()) {
        const key = name.endsWith('lora_magnitude_vector') ? `${name}.weight` : name;
        const want = g.t[`lora-dora_grad.${key}`] as Float32Array;
        expect(want, key).toBeDefined();
        got[v.name] = await take(grads[v.name] as tf.Tensor);
        let scale = 0;
        for (const x of want) scale = Math.max(scale, Math.abs(x));
        expect(scale, key).toBeGreaterThan(0);
        expectClose(got[v.name] as Float32Array, want, 1e-3 * scale + 1e-7, 0, `grad ${key}`);
      }
      // m enters only through m / ‖·‖ (the norm does not depend on m): its gradient is the
      // derivative of the function, so central differences check it directly.
      const rng = new Rng('dora-fd');
      const eps = 1e-2;
      for (const m of a.allModules().slice(0, 4)) {
        const v = m.magnitude as tf.Variable;
        const g0 = got[v.name] as Float32Array;
        const base = (await v.data()) as Float32Array;
        const i = rng.int(base.length);
        const at = async (d: number) => {
          const x = Float32Array.from(base);
          x[i] = (x[i] as number) + d;
          const t = tf.tensor(x, v.shape);
          v.assign(t);
          t.dispose();
          return (await take(tf.tidy(loss)))[0] as number;
        };
        const fd = ((await at(eps)) - (await at(-eps))) / (2 * eps);
        const t = tf.tensor(base, v.shape);
        v.assign(t);
        t.dispose();
        const gi = g0[i] as number;
        expect(Math.abs(gi - fd), `m[${i}] grad ${gi} fd ${fd}`).toBeLessThanOrEqual(
          0.03 * Math.max(Math.abs(gi), Math.abs(fd)) + 5e-5, // + float32 noise of the loss
        );
      }
      a.dispose();
    });

    it('A and B: central differences of the loss with the norm held fixed equal the gradients', async () => {
      // PEFT's gradient for A and B treats ‖W + s·B·A‖ as a constant. Moving A or B by ±ε while
      // rescaling m by ‖·‖_new / ‖·‖_old keeps m / ‖·‖ fixed, so these central differences are
      // exactly the derivative with the norm detached.
      const a = (await loadAdapter(join(FIXTURES, 'lora-dora'), llama)) as LoraAdapter;
      const hooks = a.attach(llama);
      const loss = () => tf.mean(tf.square(llama.forward(g.ids, { adapter: hooks }))) as tf.Scalar;
      const { value, grads } = tf.variableGrads(loss, a.parameters());
      value.dispose();
      const rng = new Rng('dora-fd-ab');
      const eps = 1e-2;
      let checked = 0;
      for (const m of [a.module(0, 'q_proj'), a.module(1, 'down_proj'), a.module(1, 'v_proj')]) {
        if (m === undefined) throw new Error('missing module');
        const W = (llama.weights.layers[m.layer] as LayerWeights)[m.module].weight;
        const mag = m.magnitude as tf.Variable;
        const mag0 = (await mag.data()) as Float32Array;
        const n0 = await take(tf.tidy(() => doraWeightNorm(W, m.A, m.B, m.scaling)));
        for (const v of [m.A, m.B]) {
          const gv = await take(grads[v.name] as tf.Tensor);
          const base = (await v.data()) as Float32Array;
          let imax = 0;
          for (let i = 0; i < gv.length; i++)
            if (Math.abs(gv[i] as number) > Math.abs(gv[imax] as number)) imax = i;
          for (const i of new Set([imax, rng.int(gv.length)])) {
            const at = async (d: number) => {
              const x = Float32Array.from(base);
              x[i] = (x[i] as number) + d;
              const t = tf.tensor(x, v.shape);
              v.assign(t);
              t.dispose();
              const n1 = await take(tf.tidy(() => doraWeightNorm(W, m.A, m.B, m.scaling)));
              const mt = tf.tensor(mag0.map((y, k) => (y * (n1[k] as number)) / (n0[k] as number)));
              mag.assign(mt);
              mt.dispose();
              return (await take(tf.tidy(loss)))[0] as number;
            };
            const fd = ((await at(eps)) - (await at(-eps))) / (2 * eps);
            const gi = gv[i] as number;
            expect(Math.abs(gi - fd), `${v.name}[${i}] grad ${gi} fd ${fd}`).toBeLessThanOrEqual(
              0.03 * Math.max(Math.abs(gi), Math.abs(fd)) + 5e-5,
            );
            checked++;
          }
          const t = tf.tensor(base, v.shape);
          v.assign(t);
          t.dispose();
          const mt = tf.tensor(mag0);
          mag.assign(mt);
          mt.dispose();
        }
      }
      expect(checked).toBeGreaterThanOrEqual(6);
      a.dispose();
    });

    it('a fresh DoRA adapter is initialised from the backbone (m = ‖W‖) and is the identity', async () => {
      const a = createAdapter(llama.config, {
        peft_type: 'LORA',
        use_dora: true,
        r: 2,
        target_modules: ['q_proj', 'down_proj'],
      }) as LoraAdapter;
      expect(a.backboneInitialized).toBe(false);
      const e = (await caught(() => a.stateDict())) as { code?: string; field?: string };
      expect([e.code, e.field]).toEqual(['INVALID_ARGUMENT', 'lora_magnitude_vector']);
      const hooks = a.attach(llama);
      expect(a.backboneInitialized).toBe(true);
      const m = a.module(0, 'q_proj')?.magnitude as tf.Variable;
      const W = llama.weights.layers[0]?.q_proj.weight as tf.Tensor;
      expectClose(
        (await m.data()) as Float32Array,
        await take(tf.tidy(() => tf.norm(W, 'euclidean', 1))),
        1e-5,
        0,
        'm',
      );
      expectClose(
        await take(llama.forward(g.ids, { adapter: hooks })),
        await take(llama.forward(g.ids)),
        1e-5,
        0,
        'identity',
      );
      a.dispose();
    });

    it('DoRA with lora_dropout: dropout acts in training forwards only (PEFT: W·dropout(x) is rescaled)', async () => {
      const a = createAdapter(llama.config, {
        peft_type: 'LORA',
        use_dora: true,
        r: 2,
        lora_dropout: 0.3,
        target_modules: ['v_proj', 'up_proj'],
      }) as LoraAdapter;
      const hooks = a.attach(llama);
      randomize(a, 'dora-dropout', 0.3);
      for (const m of a.allModules()) {
        const t = tf.tidy(() => tf.add(m.magnitude as tf.Variable, 3));
        (m.magnitude as tf.Variable).assign(t);
        t.dispose();
      }
      const evalA = await take(llama.forward(g.ids, { adapter: hooks }));
      const noDrop = createAdapter(llama.config, {
        ...a.toConfigJson(),
        lora_dropout: 0,
      }) as LoraAdapter;
      noDrop.loadStateDict(a.stateDict());
      expectClose(
        evalA,
        await take(llama.forward(g.ids, { adapter: noDrop.attach(llama) })),
        1e-6,
        0,
        'eval',
      );
      a.training = true;
      const t1 = await take(llama.forward(g.ids, { adapter: hooks }));
      const t2 = await take(llama.forward(g.ids, { adapter: hooks }));
      expect(maxDiff(t1, evalA)).toBeGreaterThan(1e-3);
      expect(maxDiff(t1, t2)).toBeGreaterThan(1e-3); // fresh masks each forward
      const { value, grads } = tf.variableGrads(
        () => tf.mean(tf.square(llama.forward(g.ids, { adapter: hooks }))) as tf.Scalar,
        a.parameters(),
      );
      value.dispose();
      for (const v of a.parameters()) {
        const gv = await take(grads[v.name] as tf.Tensor);
        expect(gv.every((x) => Number.isFinite(x))).toBe(true);
      }
      a.training = false;
      a.dispose();
      noDrop.dispose();
    });

    it('in a mixed batch with PARA and plain LoRA tenants (Llama and biased Qwen2)', async () => {
      const dora = (await loadAdapter(join(FIXTURES, 'lora-dora'), llama)) as LoraAdapter;
      const para = ParaAdapter.create(llama.config, { r: 3 }, { seed: 2 });
      randomize(para, 'para2', 0.3);
      const lora = await loadAdapter(join(FIXTURES, 'lora'), llama);
      const prompts = [
        [1, 5, 9],
        [1, 7, 30, 31],
        [1, 8],
        [1, 40, 41, 42, 43],
        [1, 11, 12],
      ];
      await expectMixedEqualsAlone(llama, [dora, para, null, lora, dora], prompts);
      // Decode keeps tf.memory() flat (the norms are computed once per adapter and weights).
      const adapter = mixedAdapter(llama, [dora, lora]);
      tf.dispose(llama.prefill(prompts.slice(0, 2), { adapter }).logits);
      const before = tf.memory().numTensors;
      const run = llama.prefill(prompts.slice(0, 2), { adapter });
      run.logits.dispose();
      tf.dispose(llama.decodeStep([3, 4], run.state));
      const n1 = tf.memory().numTensors;
      tf.dispose(llama.decodeStep([5, 6], run.state));
      expect(tf.memory().numTensors).toBe(n1);
      run.state.dispose();
      expect(tf.memory().numTensors).toBe(before);
      for (const x of [dora, para, lora]) x.dispose();

      const qwen = await loadModel(join(FIXTURES, 'base-qwen2'));
      const qd = (await loadAdapter(join(FIXTURES, 'lora-dora-qwen2'), qwen)) as LoraAdapter;
      const want = g.t['lora-dora-qwen2_logits'] as Float32Array;
      expect(maxDiff(want, g.t['base-qwen2_logits'] as Float32Array)).toBeGreaterThan(0.5);
      expectClose(
        await take(qwen.forward(g.ids, { adapter: qd.attach(qwen) })),
        want,
        1e-4,
        0,
        'qwen2 forward',
      );
      const V = qwen.config.vocabSize;
      const T = (g.ids[0] as number[]).length;
      const { logits, state } = qwen.prefill(g.ids, { adapter: qd.attach(qwen) });
      const pre = await take(logits);
      state.dispose();
      for (let b = 0; b < g.ids.length; b++)
        expectClose(
          pre.subarray(b * V, (b + 1) * V),
          want.subarray((b * T + T - 1) * V, (b * T + T) * V),
          1e-4,
          0,
          `qwen2 prefill ${b}`,
        );
      qd.merge(qwen);
      expectClose(
        await take(qwen.forward(g.ids)),
        g.t['lora-dora-qwen2_merged_logits'] as Float32Array,
        1e-4,
        0,
        'qwen2 merged',
      );
      qd.unmerge(qwen);
      const qpara = ParaAdapter.create(qwen.config, { r: 2 }, { seed: 3 });
      randomize(qpara, 'qpara', 0.3);
      const qlora = createAdapter(qwen.config, {
        peft_type: 'LORA',
        r: 3,
        target_modules: ['k_proj', 'v_proj'],
      });
      randomize(qlora, 'qlora', 0.3);
      await expectMixedEqualsAlone(qwen, [qd, qpara, null, qlora, qd], prompts);
      await expectRoundTrip(qd, qwen, join(dir, 'dora-qwen2'));
      for (const x of [qd, qpara, qlora]) x.dispose();
      qwen.dispose();
    });
  });

  describe('bias "all" / "lora_only"', () => {
    let qwen: CausalLM;
    beforeAll(async () => {
      qwen = await loadModel(join(FIXTURES, 'base-qwen2'));
    });
    afterAll(() => qwen.dispose());

    it.each([
      ['lora-bias-all-qwen2', ['q_proj.base_layer', 'k_proj', 'v_proj']],
      ['lora-bias-dora-qwen2', ['q_proj.base_layer', 'k_proj.base_layer']],
    ] as const)(
      '%s: PEFT names, PEFT logits (forward, prefill, merged), mixed batch, round trip',
      async (name, biased) => {
        const a = (await loadAdapter(join(FIXTURES, name), qwen)) as LoraAdapter;
        const names = [...a.namedParameters().keys()].filter((n) => n.endsWith('bias')).sort();
        expect(names).toEqual(
          [0, 1]
            .flatMap((l) =>
              biased.map((b) => `base_model.model.model.layers.${l}.self_attn.${b}.bias`),
            )
            .sort(),
        );
        const want = g.t[`${name}_logits`] as Float32Array;
        expect(maxDiff(want, g.t['base-qwen2_logits'] as Float32Array)).toBeGreaterThan(0.5);
        expectClose(
          await take(qwen.forward(g.ids, { adapter: a.attach(qwen) })),
          want,
          1e-4,
          0,
          'forward',
        );
        const V = qwen.config.vocabSize;
        const T = (g.ids[0] as number[]).length;
        const { logits, state } = qwen.prefill(g.ids, { adapter: a.attach(qwen) });
        const pre = await take(logits);
        state.dispose();
        for (let b = 0; b < g.ids.length; b++)
          expectClose(
            pre.subarray(b * V, (b + 1) * V),
            want.subarray((b * T + T - 1) * V, (b * T + T) * V),
            1e-4,
            0,
            `prefill ${b}`,
          );
        a.merge(qwen);
        expectClose(
          await take(qwen.forward(g.ids)),
          g.t[`${name}_merged_logits`] as Float32Array,
          1e-4,
          0,
          'merged',
        );
        a.unmerge(qwen);
        expectClose(
          await take(qwen.forward(g.ids)),
          g.t['base-qwen2_logits'] as Float32Array,
          1e-4,
          0,
          'unmerged',
        );
        const para = ParaAdapter.create(qwen.config, { r: 2 }, { seed: 4 });
        randomize(para, 'qpara4', 0.3);
        const dora = await loadAdapter(join(FIXTURES, 'lora-dora-qwen2'), qwen);
        const lora = createAdapter(qwen.config, {
          peft_type: 'LORA',
          r: 3,
          target_modules: ['q_proj', 'v_proj'],
        });
        randomize(lora, 'qlora4', 0.3);
        await expectMixedEqualsAlone(
          qwen,
          [a, para, null, lora, dora, a],
          [
            [1, 5, 9],
            [1, 7, 30, 31],
            [1, 8],
            [1, 40, 41, 42, 43],
            [1, 11, 12],
            [1, 2, 3, 4],
          ],
        );
        for (const x of [para, dora, lora]) x.dispose();
        await expectRoundTrip(a, qwen, join(dir, name));
        a.dispose();
      },
    );

    it('trained biases: gradients match central differences (with and without DoRA)', async () => {
      for (const name of ['lora-bias-all-qwen2', 'lora-bias-dora-qwen2']) {
        const a = (await loadAdapter(join(FIXTURES, name), qwen)) as LoraAdapter;
        const hooks = a.attach(qwen);
        const loss = () => tf.mean(tf.square(qwen.forward(g.ids, { adapter: hooks }))) as tf.Scalar;
        const { value, grads } = tf.variableGrads(loss, a.parameters());
        value.dispose();
        const rng = new Rng(`fd-${name}`);
        const eps = 1e-2;
        let checked = 0;
        for (const [n, v] of a.namedParameters()) {
          // Without DoRA every tensor's gradient is the function's; with DoRA the norm is
          // detached, so only the biases and magnitudes are checked (A and B: vs PEFT above).
          const exact =
            name === 'lora-bias-all-qwen2' || n.endsWith('bias') || n.endsWith('magnitude_vector');
          const gv = await take(grads[v.name] as tf.Tensor);
          if (!exact) continue;
          const base = (await v.data()) as Float32Array;
          let imax = 0;
          for (let i = 0; i < gv.length; i++)
            if (Math.abs(gv[i] as number) > Math.abs(gv[imax] as number)) imax = i;
          expect(Math.abs(gv[imax] as number), `${n}: a gradient reaches it`).toBeGreaterThan(1e-4);
          for (const i of new Set([imax, rng.int(gv.length)])) {
            const at = async (d: number) => {
              const x = Float32Array.from(base);
              x[i] = (x[i] as number) + d;
              const t = tf.tensor(x, v.shape);
              v.assign(t);
              t.dispose();
              return (await take(tf.tidy(loss)))[0] as number;
            };
            const fd = ((await at(eps)) - (await at(-eps))) / (2 * eps);
            const gi = gv[i] as number;
            expect(Math.abs(gi - fd), `${n}[${i}] grad ${gi} fd ${fd}`).toBeLessThanOrEqual(
              0.03 * Math.max(Math.abs(gi), Math.abs(fd)) + 5e-5, // + float32 noise of the loss
            );
            checked++;
          }
          const t = tf.tensor(base, v.shape);
          v.assign(t);
          t.dispose();
        }
        expect(checked).toBeGreaterThanOrEqual(8);
        a.dispose();
      }
    });

    it('a fresh adapter starts from the backbone biases (the identity); no biases on Llama', async () => {
      const a = createAdapter(qwen.config, {
        peft_type: 'LORA',
        bias: 'all',
        r: 2,
        target_modules: ['o_proj'],
        layers_to_transform: [1],
      }) as LoraAdapter;
      expect(a.layers).toEqual([0, 1]); // every layer's biases train with "all"
      expect(((await caught(() => a.stateDict())) as { field?: string }).field).toBe('bias');
      const hooks = a.attach(qwen);
      expect(a.backboneInitialized).toBe(true);
      const qb = a.trainedBias(0, 'q_proj') as tf.Variable;
      expectClose(
        (await qb.data()) as Float32Array,
        (await (
          (qwen.weights.layers[0] as LayerWeights).q_proj.bias as tf.Tensor
        ).data()) as Float32Array,
        0,
        0,
        'init',
      );
      expectClose(
        await take(qwen.forward(g.ids, { adapter: hooks })),
        g.t['base-qwen2_logits'] as Float32Array,
        1e-4,
        0,
        'identity',
      );
      a.dispose();
      const onLlama = createAdapter(llama.config, {
        peft_type: 'LORA',
        bias: 'all',
        r: 2,
      }) as LoraAdapter;
      const plain = createAdapter(llama.config, { peft_type: 'LORA', r: 2 }) as LoraAdapter;
      expect([...onLlama.namedParameters().keys()]).toEqual([...plain.namedParameters().keys()]);
      expect(onLlama.toConfigJson().bias).toBe('all');
      onLlama.dispose();
      plain.dispose();
    });

    it('continuous batching: DoRA and trained-bias rows join and leave a running batch', async () => {
      const biasDora = await loadAdapter(join(FIXTURES, 'lora-bias-dora-qwen2'), qwen);
      const dora = await loadAdapter(join(FIXTURES, 'lora-dora-qwen2'), qwen);
      const para = ParaAdapter.create(qwen.config, { r: 2 }, { seed: 5 });
      randomize(para, 'qpara5', 0.3);
      const V = qwen.config.vocabSize;
      const capacity = 16;
      const prompts = [
        [1, 5, 9, 13],
        [1, 7, 30],
        [1, 8, 8, 3],
      ];
      const rows: (AnyAdapter | null)[] = [para, biasDora, null];
      const run = qwen.prefill(prompts, { adapter: mixedAdapter(qwen, rows), capacity });
      run.logits.dispose();
      const joiners: [number, AnyAdapter | null, number[]][] = [
        [1, dora, [1, 11, 12]], // a DoRA row replaces a DoRA+bias row (the bias rows change)
        [2, biasDora, [1, 40, 41]], // a biased row joins where the batch had none
        [0, null, [1, 2]], // and the bare backbone replaces PARA
      ];
      for (const [row, adapter, prompt] of joiners) {
        run.state.releaseRow(row);
        const n = qwen.prefill([prompt], { adapter: mixedAdapter(qwen, [adapter]), capacity });
        n.logits.dispose();
        run.state.insertRows(n.state, { into: [row] });
        n.state.dispose();
        rows[row] = adapter;
        prompts[row] = prompt;
      }
      const tokens = [3, 4, 5];
      const got = await take(qwen.decodeStep(tokens, run.state));
      run.state.dispose();
      for (let b = 0; b < 3; b++) {
        const a = rows[b] ?? null;
        const alone = qwen.prefill([prompts[b] as number[]], {
          adapter: mixedAdapter(qwen, [a]),
          capacity,
        });
        alone.logits.dispose();
        const want = await take(qwen.decodeStep([tokens[b] as number], alone.state));
        alone.state.dispose();
        expectClose(got.subarray(b * V, (b + 1) * V), want, 1e-4, 0, `row ${b}`);
      }
      for (const x of [biasDora, dora, para]) x.dispose();
    });
  });
});
