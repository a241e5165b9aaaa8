/**
 * LoRA on the embedding and the output head, and modules_to_save, against PEFT 0.21
 * (goldens/make_peft_lora_edges.py): PEFT's files load and give PEFT's logits (forward and
 * prefill), also on a tied backbone; mixed batches with a PARA tenant and a bare row equal each
 * row alone; rows join a running batch; save → load is exact in PEFT's names; gradients of the
 * new parameters match central differences; a fresh adapter is the identity (bit-identical), and
 * a model run without them computes what it computed before (the edge state stays empty).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '@para/core';
import { openSafetensorsFile } from '@para/core/node';
import { type CausalLM, loadModel } from '@para/model/node';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AnyAdapter,
  createAdapter,
  type LoraAdapter,
  loadAdapter,
  mixedAdapter,
  ParaAdapter,
  saveAdapter,
} from '../src/node';
import {
  caught,
  expectClose,
  maxAbsDiff,
  take,
  testBackends,
  useBackend,
} from './helpers/backends';
import { FIXTURES, randomize } from './helpers/models';

const GEMMA3 = join(
  FIXTURES,
  '..',
  '..',
  '..',
  '..',
  'model',
  'test',
  'goldens',
  'fixtures',
  'gemma3-bf16',
);

interface Goldens {
  ids: number[][];
  gemmaIds: number[][];
  t: Record<string, Float32Array>;
}

async function readGoldens(): Promise<Goldens> {
  const st = await openSafetensorsFile(join(FIXTURES, 'lora-edges-goldens.safetensors'));
  const rows = async (name: string) => {
    const idData = await st.readData(name);
    const [B, T] = idData.shape as [number, number];
    return Array.from({ length: B }, (_, b) =>
      Array.from(idData.data.subarray(b * T, (b + 1) * T)),
    );
  };
  const ids = await rows('input_ids');
  const gemmaIds = await rows('gemma3_input_ids');
  const t: Record<string, Float32Array> = {};
  for (const n of st.names())
    if (!n.endsWith('input_ids')) t[n] = (await st.readData(n)).data as Float32Array;
  await st.close();
  return { ids, gemmaIds, t };
}

function bits(a: Float32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

/** Prefill + 2 decode steps of `rows` (one adapter or null per row) equal each row alone. */
async function expectMixedEqualsAlone(
  model: CausalLM,
  rows: (AnyAdapter | null)[],
  prompts: number[][],
  tol = 1e-4,
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
      tol,
      0,
      `row ${b} prefill`,
    );
    for (let i = 0; i < 2; i++) {
      const s = await take(model.decodeStep([(steps[b] as number[])[i] as number], alone.state));
      expectClose(
        (dec[i] as Float32Array).subarray(b * V, (b + 1) * V),
        s,
        tol,
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
  const want = adapter.stateDict();
  const got = back.stateDict();
  expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
  for (const [n, v] of Object.entries(want)) {
    const a = (await v.data()) as Float32Array;
    const b = (await (got[n] as tf.Tensor).data()) as Float32Array;
    expect(bits(b).equals(bits(a)), n).toBe(true);
  }
  back.dispose();
}

describe.each(testBackends())(
  'LoRA on embed_tokens / lm_head and modules_to_save on %s',
  (backend) => {
    let llama: CausalLM;
    let tied: CausalLM;
    let gemma: CausalLM;
    let g: Goldens;
    let dir: string;
    beforeAll(async () => {
      await useBackend(backend);
      llama = await loadModel(join(FIXTURES, 'base'));
      tied = await loadModel(join(FIXTURES, 'base-tied'));
      gemma = await loadModel(GEMMA3);
      g = await readGoldens();
      dir = await mkdtemp(join(tmpdir(), 'para-lora-edges-'));
    });
    afterAll(async () => {
      llama.dispose();
      tied.dispose();
      gemma.dispose();
      await rm(dir, { recursive: true, force: true });
    });

    it('the tied backbone loads as transformers runs it', async () => {
      expect(tied.config.tieWordEmbeddings).toBe(true);
      expectClose(await take(tied.forward(g.ids)), g.t['base-tied_logits'] as Float32Array, 1e-4);
    });

    for (const [name, base] of [
      ['lora-embed-head', 'base'],
      ['lora-mts', 'base'],
      ['lora-embed-head-tied', 'base-tied'],
      ['lora-mts-head-tied', 'base-tied'],
      ['lora-embed-head-gemma3', 'gemma3'],
      ['lora-mts-gemma3', 'gemma3'],
    ] as const) {
      it(`${name}: PEFT's logits (forward and prefill), a mixed batch with PARA and a bare row, save → load exact`, async () => {
        const model = base === 'base' ? llama : base === 'gemma3' ? gemma : tied;
        const ids = base === 'gemma3' ? g.gemmaIds : g.ids;
        const a = await loadAdapter(join(FIXTURES, name), model);
        const want = g.t[`${name}_logits`] as Float32Array;
        expectClose(
          await take(model.forward(ids, { adapter: a.attach(model) })),
          want,
          1e-4,
          0,
          'forward',
        );
        const pre = model.prefill(ids, { adapter: a.attach(model), allLogits: true });
        expectClose(await take(pre.logits), want, 1e-4, 0, 'prefill');
        pre.state.dispose();
        const para = ParaAdapter.create(model.config, { r: 3 }, { seed: 1 });
        randomize(para, 'para', 0.3);
        await expectMixedEqualsAlone(
          model,
          [a, para, null, a],
          [
            [1, 5, 9],
            [1, 7, 30, 31],
            [1, 8],
            [1, 40, 41],
          ],
        );
        await expectRoundTrip(a, model, join(dir, name));
        para.dispose();
        a.dispose();
      });
    }

    it('PEFT saves the base layers beside LoRA on embed_tokens / lm_head: kept and saved back, used only if they differ', async () => {
      let a = (await loadAdapter(join(FIXTURES, 'lora-embed-head'), llama)) as LoraAdapter;
      expect(
        Object.keys(a.stateDict())
          .filter((n) => n.includes('base_layer'))
          .sort(),
      ).toEqual([
        'base_model.model.lm_head.base_layer.weight',
        'base_model.model.model.embed_tokens.base_layer.weight',
      ]);
      // loadAdapter with the model compared them: equal to the backbone's, so no replacement.
      expect(a.replacement('embed_tokens')).toBeUndefined();
      expect(a.replacement('lm_head')).toBeUndefined();
      // ...and not kept twice: the backbone's own tensor is what is saved back.
      expect(a.stateDict()['base_model.model.model.embed_tokens.base_layer.weight']).toBe(
        llama.weights.embedTokens,
      );
      // Loaded for a model config only: the saved layers are used, as PEFT's load would.
      const b = (await loadAdapter(join(FIXTURES, 'lora-embed-head'), llama.config)) as LoraAdapter;
      expect(b.replacement('lm_head')).toBeDefined();
      expectClose(
        await take(llama.forward(g.ids, { adapter: b.attach(llama) })),
        g.t['lora-embed-head_logits'] as Float32Array,
        1e-4,
      );
      const mixed = llama.prefill(g.ids, { adapter: mixedAdapter(llama, [b, a]), allLogits: true });
      expectClose(await take(mixed.logits), g.t['lora-embed-head_logits'] as Float32Array, 1e-4);
      mixed.state.dispose();
      b.dispose();
      a.dispose();
      expect(llama.weights.embedTokens.isDisposed).toBe(false);
      a = (await loadAdapter(join(FIXTURES, 'lora-embed-head'), llama)) as LoraAdapter;
      expect(a.edge('embed_tokens')?.r).toBe(4);
      expect(a.edge('lm_head')?.r).toBe(2); // rank_pattern {"lm_head": 2}
      expect(a.edge('lm_head')?.scaling).toBe(4);
      // A para-made adapter has no base layers (PEFT loads it all the same); it saves none.
      const fresh = createAdapter(llama.config, {
        peft_type: 'LORA',
        r: 2,
        target_modules: ['embed_tokens', 'lm_head'],
      }) as LoraAdapter;
      expect(Object.keys(fresh.stateDict()).some((n) => n.includes('base_layer'))).toBe(false);
      await saveAdapter(fresh, join(dir, 'fresh-edges'));
      (await loadAdapter(join(dir, 'fresh-edges'), llama)).dispose();
      fresh.dispose();
      a.dispose();
    });

    it('merge folds the embedding / head parts into an untied backbone; unmerge restores it', async () => {
      const plain = await take(llama.forward(g.ids));
      const embed = llama.weights.embedTokens;
      const head = llama.weights.lmHead;
      for (const name of ['lora-embed-head', 'lora-mts']) {
        const a = (await loadAdapter(join(FIXTURES, name), llama)) as LoraAdapter;
        const want = g.t[`${name}_logits`] as Float32Array;
        a.merge(llama);
        expect(llama.weights.embedTokens).not.toBe(embed);
        expect(llama.weights.lmHead).not.toBe(head);
        expectClose(await take(llama.forward(g.ids)), want, 1e-4, 0, `${name} merged`);
        a.unmerge(llama);
        expect(llama.weights.embedTokens).toBe(embed); // the originals, exactly
        expect(llama.weights.lmHead).toBe(head);
        expectClose(await take(llama.forward(g.ids)), plain, 1e-5, 0, `${name} unmerged`);
        expectClose(
          await take(llama.forward(g.ids, { adapter: a.attach(llama) })),
          want,
          1e-4,
          0,
          `${name} again`,
        );
        a.dispose();
      }
    });

    it('a fresh adapter is the identity, bit for bit; without one (or with bare rows) nothing changes', async () => {
      const plain = await take(llama.forward(g.ids));
      const bare = await take(llama.forward(g.ids, { adapter: mixedAdapter(llama, [null, null]) }));
      expect(bits(bare).equals(bits(plain))).toBe(true);
      const fresh = createAdapter(llama.config, {
        peft_type: 'LORA',
        r: 2,
        target_modules: ['embed_tokens', 'lm_head'],
        modules_to_save: null,
      });
      const saved = createAdapter(llama.config, {
        peft_type: 'LORA',
        r: 2,
        target_modules: ['q_proj'],
        modules_to_save: ['lm_head', 'embed_tokens'],
      });
      for (const a of [fresh, saved]) {
        const got = await take(llama.forward(g.ids, { adapter: a.attach(llama) }));
        expect(bits(got).equals(bits(plain))).toBe(true);
        const pre = llama.prefill(g.ids, { adapter: a.attach(llama), allLogits: true });
        const prePlain = llama.prefill(g.ids, { allLogits: true });
        expect(bits(await take(pre.logits)).equals(bits(await take(prePlain.logits)))).toBe(true);
        const s1 = await take(llama.decodeStep([3, 4], pre.state));
        const s0 = await take(llama.decodeStep([3, 4], prePlain.state));
        expect(bits(s1).equals(bits(s0))).toBe(true);
        pre.state.dispose();
        prePlain.state.dispose();
        a.dispose();
      }
    });

    it('gradients of lora_embedding_A/B, lm_head lora_A/B and the saved copies match central differences', async () => {
      const cases = [
        { target_modules: ['q_proj', 'embed_tokens', 'lm_head'], r: 3, lora_alpha: 6 },
        { target_modules: ['v_proj'], modules_to_save: ['embed_tokens', 'lm_head'], r: 2 },
      ];
      for (const [ci, cfg] of cases.entries()) {
        const a = createAdapter(llama.config, { peft_type: 'LORA', ...cfg }) as LoraAdapter;
        a.bindModel(llama);
        if (ci === 0) randomize(a, 'fd-edges', 0.3);
        else
          for (const [n, v] of a.namedParameters()) {
            const t = tf.tidy(() => tf.add(v, new Rng(n).normalTensor([...v.shape], 0, 0.1)));
            v.assign(t);
            t.dispose();
          }
        const hooks = a.attach(llama);
        const loss = () =>
          tf.mean(tf.square(llama.forward(g.ids, { adapter: hooks }))) as tf.Scalar;
        const { value, grads } = tf.variableGrads(loss, a.parameters());
        value.dispose();
        const rng = new Rng(`fd-${ci}`);
        const eps = 1e-2;
        let checked = 0;
        for (const [n, v] of a.namedParameters()) {
          const gv = await take(grads[v.name] as tf.Tensor);
          if (n.includes('layers.')) continue;
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
              0.03 * Math.max(Math.abs(gi), Math.abs(fd)) + 5e-5,
            );
            checked++;
          }
          const t = tf.tensor(base, v.shape);
          v.assign(t);
          t.dispose();
        }
        expect(checked).toBeGreaterThanOrEqual(4);
        a.dispose();
      }
    });

    it('rows join a running batch: edge tenants into a batch without them and the other way round', async () => {
      const c = llama.config;
      const edges = createAdapter(c, {
        peft_type: 'LORA',
        r: 3,
        target_modules: ['q_proj', 'embed_tokens', 'lm_head'],
      }) as LoraAdapter;
      const saved = createAdapter(c, {
        peft_type: 'LORA',
        r: 2,
        target_modules: ['v_proj'],
        modules_to_save: ['embed_tokens', 'lm_head'],
      }) as LoraAdapter;
      const headOnly = createAdapter(c, { peft_type: 'LORA', r: 5, target_modules: ['lm_head'] });
      const para = ParaAdapter.create(c, { r: 3 }, { seed: 2 });
      for (const [i, a] of [edges, saved, headOnly, para].entries()) {
        a.bindModel(llama);
        for (const [n, v] of a.namedParameters()) {
          const t = tf.tidy(() =>
            n.endsWith('.weight') && !n.includes('lora_')
              ? tf.add(v, new Rng(`${i}${n}`).normalTensor([...v.shape], 0, 0.2))
              : new Rng(`${i}${n}`).normalTensor([...v.shape], 0, 0.3),
          );
          v.assign(t);
          t.dispose();
        }
      }
      const STEPS = 6;
      const capacity = 16;
      const run = async (a: AnyAdapter | null, prompt: number[], n: number) => {
        const { logits, state } = llama.prefill([prompt], {
          adapter: mixedAdapter(llama, [a]),
          capacity,
        });
        const out: Float32Array[] = [await take(logits)];
        for (let s = 1; s < n; s++) out.push(await take(llama.decodeStep([10 + s], state)));
        state.dispose();
        return out;
      };
      // Running: PARA, a bare row, the head-only LoRA; at step 2 row 1 gets `edges`, at step 4
      // row 2 gets `saved` (after the head-only tenant left) and row 0 gets a bare row.
      const start: (AnyAdapter | null)[] = [para, null, headOnly];
      const prompts = [
        [1, 5, 9],
        [1, 7],
        [1, 8, 8, 3],
      ];
      const { logits, state } = llama.prefill(prompts, {
        adapter: mixedAdapter(llama, start),
        capacity,
      });
      const V = c.vocabSize;
      const got: Float32Array[][] = [[], [], []];
      let rows = await take(logits);
      const joins = [
        { at: 2, row: 1, adapter: edges as AnyAdapter | null, prompt: [1, 30, 31] },
        { at: 4, row: 2, adapter: saved as AnyAdapter | null, prompt: [1, 40] },
        { at: 4, row: 0, adapter: null, prompt: [1, 50, 51, 52] },
      ];
      const segments: {
        row: number;
        adapter: AnyAdapter | null;
        prompt: number[];
        from: number;
        to: number;
      }[] = start.map((a, b) => ({
        row: b,
        adapter: a,
        prompt: prompts[b] as number[],
        from: 0,
        to: STEPS,
      }));
      for (let step = 0; step < STEPS; step++) {
        for (const j of joins.filter((x) => x.at === step)) {
          state.releaseRow(j.row);
          const n = llama.prefill([j.prompt], {
            adapter: mixedAdapter(llama, [j.adapter]),
            capacity,
          });
          const first = await take(n.logits);
          state.insertRows(n.state, { into: [j.row] });
          n.state.dispose();
          rows.set(first, j.row * V);
          const seg = segments.find(
            (s) => s.row === j.row && s.to === STEPS,
          ) as (typeof segments)[number];
          seg.to = step;
          segments.push({
            row: j.row,
            adapter: j.adapter,
            prompt: j.prompt,
            from: step,
            to: STEPS,
          });
        }
        for (let b = 0; b < 3; b++) (got[b] as Float32Array[]).push(rows.slice(b * V, (b + 1) * V));
        if (step < STEPS - 1)
          rows = await take(
            llama.decodeStep(
              [0, 1, 2].map(
                (b) =>
                  10 +
                  step +
                  1 -
                  (segments.find((s) => s.row === b && s.from <= step && s.to > step)?.from ?? 0),
              ),
              state,
            ),
          );
      }
      state.dispose();
      for (const seg of segments) {
        const ref = await run(seg.adapter, seg.prompt, seg.to - seg.from);
        ref.forEach((l, k) => {
          expectClose(
            (got[seg.row] as Float32Array[])[seg.from + k] as Float32Array,
            l,
            1e-4,
            0,
            `row ${seg.row} from ${seg.from} step ${k}`,
          );
        });
      }
      // The comparison can fail: each edge tenant computes something else than the bare model.
      const bare = (await run(null, [1, 30, 31], 1))[0] as Float32Array;
      for (const a of [edges, saved, headOnly])
        expect(maxAbsDiff((await run(a, [1, 30, 31], 1))[0] as Float32Array, bare)).toBeGreaterThan(
          0.05,
        );
      for (const a of [edges, saved, headOnly, para]) a.dispose();
    });

    it('no tensor leaks: prefill, decode, rows leaving and joining, dispose', async () => {
      const a = createAdapter(llama.config, {
        peft_type: 'LORA',
        r: 2,
        target_modules: ['q_proj', 'embed_tokens', 'lm_head'],
      });
      const s = createAdapter(llama.config, {
        peft_type: 'LORA',
        r: 3,
        target_modules: ['v_proj'],
        modules_to_save: ['lm_head', 'embed_tokens'],
      });
      a.bindModel(llama);
      s.bindModel(llama);
      const cycle = () => {
        const run = llama.prefill(
          [
            [1, 2, 3],
            [1, 4],
          ],
          {
            adapter: mixedAdapter(llama, [a, null]),
            capacity: 12,
          },
        );
        run.logits.dispose();
        for (let i = 0; i < 3; i++) llama.decodeStep([5, 6], run.state).dispose();
        run.state.releaseRow(1);
        const n = llama.prefill([[1, 9]], { adapter: mixedAdapter(llama, [s]), capacity: 12 });
        n.logits.dispose();
        run.state.insertRows(n.state, { into: [1] });
        n.state.dispose();
        for (let i = 0; i < 3; i++) llama.decodeStep([5, 6], run.state).dispose();
        run.state.releaseRow(0);
        const m = llama.prefill([[1, 7, 7]], {
          adapter: mixedAdapter(llama, [null]),
          capacity: 12,
        });
        m.logits.dispose();
        run.state.insertRows(m.state, { into: [0] });
        m.state.dispose();
        llama.decodeStep([5, 6], run.state).dispose();
        run.state.dispose();
      };
      cycle(); // warm-up (kernel caches, the DoRA-like lazy state)
      const before = tf.memory().numTensors;
      cycle();
      cycle();
      expect(tf.memory().numTensors).toBe(before);
      a.dispose();
      s.dispose();
    });

    it('refused clearly: copies of other modules, DoRA on the edges, a module both adapted and saved, ensure_weight_tying, merge', async () => {
      const bad = async (cfg: Record<string, unknown>) =>
        (await caught(() => createAdapter(llama.config, { peft_type: 'LORA', ...cfg }))) as {
          code?: string;
          field?: string;
        };
      expect(await bad({ modules_to_save: ['norm'] })).toMatchObject({
        code: 'UNSUPPORTED',
        field: 'modules_to_save[0]',
      });
      expect(await bad({ modules_to_save: ['score'] })).toMatchObject({
        code: 'INVALID_CONFIG',
        field: 'modules_to_save[0]',
      });
      expect(await bad({ modules_to_save: 'lm_head' })).toMatchObject({
        code: 'INVALID_CONFIG',
        field: 'modules_to_save',
      });
      expect(
        await bad({ target_modules: ['lm_head'], modules_to_save: ['lm_head'] }),
      ).toMatchObject({
        code: 'UNSUPPORTED',
        field: 'modules_to_save',
      });
      expect(
        await bad({ target_modules: ['q_proj', 'embed_tokens'], use_dora: true }),
      ).toMatchObject({
        code: 'UNSUPPORTED',
        field: 'use_dora',
      });
      expect(await bad({ ensure_weight_tying: true })).toMatchObject({
        code: 'UNSUPPORTED',
        field: 'ensure_weight_tying',
      });
      expect(await bad({ trainable_token_indices: [1, 2] })).toMatchObject({
        code: 'UNSUPPORTED',
        field: 'trainable_token_indices',
      });
      expect(await bad({ target_modules: ['model.norm'] })).toMatchObject({
        code: 'UNSUPPORTED',
        field: 'target_modules',
      });
      // Only edges is fine; a regex can name them; all-linear leaves lm_head out (as PEFT).
      const only = createAdapter(llama.config, {
        peft_type: 'LORA',
        target_modules: ['lm_head'],
      }) as LoraAdapter;
      expect(only.edge('lm_head')).toBeDefined();
      expect(only.allModules()).toEqual([]);
      only.dispose();
      // On a tied backbone one tensor is both modules: merging is refused.
      const onTied = createAdapter(tied.config, {
        peft_type: 'LORA',
        target_modules: ['lm_head'],
      }) as LoraAdapter;
      expect(await caught(() => onTied.merge(tied))).toMatchObject({
        code: 'UNSUPPORTED',
        field: 'target_modules',
      });
      onTied.dispose();
      const re = createAdapter(llama.config, {
        peft_type: 'LORA',
        target_modules: '.*(q_proj|embed_tokens)',
      }) as LoraAdapter;
      expect(re.edge('embed_tokens')).toBeDefined();
      expect(re.edge('lm_head')).toBeUndefined();
      re.dispose();
      const all = createAdapter(llama.config, {
        peft_type: 'LORA',
        target_modules: 'all-linear',
      }) as LoraAdapter;
      expect(all.edge('lm_head')).toBeUndefined();
      all.dispose();
      // With layers_to_transform, "embed_tokens" (a suffix) matches nothing; "lm_head" (the key) does.
      const layered = createAdapter(llama.config, {
        peft_type: 'LORA',
        target_modules: ['q_proj', 'embed_tokens', 'lm_head'],
        layers_to_transform: [1],
      }) as LoraAdapter;
      expect([layered.edge('embed_tokens'), layered.edge('lm_head') !== undefined]).toEqual([
        undefined,
        true,
      ]);
      layered.dispose();
      // modules_to_save copies come from the backbone: saving before attaching says so.
      const s = createAdapter(llama.config, { peft_type: 'LORA', modules_to_save: ['lm_head'] });
      expect(((await caught(() => s.stateDict())) as { field?: string }).field).toBe(
        'modules_to_save',
      );
      s.dispose();
    });
  },
);
