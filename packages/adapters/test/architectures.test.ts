/**
 * PARA, LoRA and IA3 on every architecture @para/model loads (issue 14), on the transformers
 * fixtures of packages/model/test/goldens (make_goldens_arch.py): Llama, Mistral and Qwen2 with a
 * sliding window, Qwen3 (qk-norm), Gemma 2 (soft-capping, GeGLU) and Gemma 3, SmolLM3 (layers
 * without RoPE), OLMo 2 (post-norms) and Phi-3 (fused qkv / gate_up in the checkpoint). Per
 * architecture: a fresh PARA adapter is the identity, bit for bit (forward, prefill, decode);
 * each method with random parameters saves → loads exactly, its prefill + cached decode equals
 * its teacher-forced forward (sequences longer than the sliding windows), its gradients match
 * central differences (on the real positions: see the note at the probe); and one batch of PARA, LoRA, IA3 and bare rows equals each row alone.
 */

import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Rng } from '@para/core';
import { type CausalLM, loadModel } from '@para/model/node';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AnyAdapter,
  adapterFromBytes,
  Ia3Adapter,
  LoraAdapter,
  mixedAdapter,
  ParaAdapter,
  serializeAdapter,
} from '../src/node';
import { expectClose, take, testBackends, useBackend } from './helpers/backends';
import { at, leftPad, randomize } from './helpers/models';

const MODEL_FIXTURES = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'model',
  'test',
  'goldens',
  'fixtures',
);

/** One fixture per architecture (the sliding-window ones have windows of 4 or 5). */
const ARCHS = [
  'llama',
  'mistral-sliding',
  'qwen2-sliding',
  'qwen3-bf16',
  'gemma2-f16',
  'gemma3-bf16',
  'smollm3',
  'olmo2-bf16',
  'phi3',
] as const;

const PROMPTS = [
  [1, 5, 9, 13, 44, 90],
  [1, 7, 3],
  [1, 3, 4, 8, 20],
  [1, 60, 61, 62],
];
const RESPONSES = [
  [11, 12, 40, 41],
  [63, 0, 17, 17],
  [22, 23, 24, 25],
  [30, 31, 32, 33],
];
const STEPS = 4;
const ALL = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

function same(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  );
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs((a[i] as number) - (b[i] as number)));
  return d;
}

async function paramValues(a: AnyAdapter): Promise<Record<string, Float32Array>> {
  const out: Record<string, Float32Array> = {};
  for (const [n, v] of a.namedParameters()) out[n] = (await v.data()) as Float32Array;
  return out;
}

/** The three methods with random parameters, far from the identity. */
function makeAdapters(model: CausalLM, name: string): Record<'para' | 'lora' | 'ia3', AnyAdapter> {
  const c = model.config;
  const para = ParaAdapter.create(c, { r: 3, use_bias: true, activation: 'tanh' }, { seed: 1 });
  randomize(para, `${name}-para`, 0.3);
  const lora = LoraAdapter.create(c, { r: 2, lora_alpha: 4, target_modules: ALL }, { seed: 2 });
  randomize(lora, `${name}-lora`, 0.2);
  const ia3 = Ia3Adapter.create(c);
  randomize(ia3, `${name}-ia3`, 0.3, 1);
  return { para, lora, ia3 };
}

// cpu and wasm (of PARA_TEST_BACKENDS): the per-backend kernels are covered by the other files,
// and nine architectures on webgpu-in-Node would cost minutes.
const BACKENDS = testBackends().filter((b) => b === 'cpu' || b === 'wasm');

describe.each(BACKENDS.length > 0 ? BACKENDS : (['cpu'] as const))(
  'adapters on every architecture, %s',
  (backend) => {
    const models = new Map<string, CausalLM>();
    beforeAll(async () => {
      await useBackend(backend);
      for (const name of ARCHS) models.set(name, await loadModel(join(MODEL_FIXTURES, name)));
    });
    afterAll(() => {
      for (const m of models.values()) m.dispose();
    });

    it.each(ARCHS)('%s: a fresh PARA adapter is the identity, bit for bit', async (name) => {
      const model = models.get(name) as CausalLM;
      const { ids, mask } = leftPad(PROMPTS.map((p, b) => [...p, ...(RESPONSES[b] as number[])]));
      const plain = await take(model.forward(ids, { attentionMask: mask }));
      const pre = model.prefill(PROMPTS);
      const plainPre = await take(pre.logits);
      const plainStep = await take(model.decodeStep([20, 30, 40, 50], pre.state));
      pre.state.dispose();
      const para = ParaAdapter.create(model.config, { use_bias: true }, { seed: 5 });
      const adapter = para.attach(model);
      const fwd = await take(
        model.forward(ids, {
          attentionMask: mask,
          adapter,
          request: { promptLengths: PROMPTS.map((p) => p.length) },
        }),
      );
      expect(same(fwd, plain), 'forward').toBe(true);
      const { logits, state } = model.prefill(PROMPTS, { adapter, request: {} });
      expect(same(await take(logits), plainPre), 'prefill').toBe(true);
      expect(same(await take(model.decodeStep([20, 30, 40, 50], state)), plainStep), 'decode').toBe(
        true,
      );
      state.dispose();
      para.dispose();
    });

    it.each(ARCHS)(
      '%s: PARA, LoRA and IA3 save → load exactly; prefill + cached decode = teacher forcing',
      async (name) => {
        const model = models.get(name) as CausalLM;
        const V = model.config.vocabSize;
        const full = PROMPTS.map((p, b) => [...p, ...(RESPONSES[b] as number[])]);
        const { ids, mask, T } = leftPad(full);
        const promptLengths = PROMPTS.map((p) => p.length);
        const plain = await take(model.forward(ids, { attentionMask: mask }));
        const adapters = makeAdapters(model, name);
        for (const [method, a] of Object.entries(adapters)) {
          const teacher = await take(
            model.forward(ids, {
              attentionMask: mask,
              adapter: a.attach(model),
              request: { promptLengths },
            }),
          );
          expect(maxDiff(teacher, plain), `${method}: far from the bare model`).toBeGreaterThan(
            1e-2,
          );

          const bytes = await serializeAdapter(a);
          const back = await adapterFromBytes(bytes.config, bytes.weights, model);
          expect(back.peftType).toBe(a.peftType);
          expect(await paramValues(back)).toEqual(await paramValues(a));
          const again = await take(
            model.forward(ids, {
              attentionMask: mask,
              adapter: back.attach(model),
              request: { promptLengths },
            }),
          );
          expect(same(again, teacher), `${method}: reloaded logits bit-identical`).toBe(true);
          back.dispose();

          const { logits, state } = model.prefill(PROMPTS, {
            adapter: a.attach(model),
            request: {},
          });
          const pre = await take(logits);
          const steps: Float32Array[] = [];
          for (let i = 0; i < STEPS - 1; i++)
            steps.push(
              await take(
                model.decodeStep(
                  RESPONSES.map((r) => r[i] as number),
                  state,
                ),
              ),
            );
          state.dispose();
          for (let b = 0; b < PROMPTS.length; b++) {
            const p = promptLengths[b] as number;
            const off = T - (full[b] as number[]).length;
            expectClose(
              pre.subarray(b * V, (b + 1) * V),
              at(teacher, b, off + p - 1, T, V),
              1e-4,
              0,
              `${method} row ${b} prefill`,
            );
            for (let i = 0; i < STEPS - 1; i++)
              expectClose(
                (steps[i] as Float32Array).subarray(b * V, (b + 1) * V),
                at(teacher, b, off + p + i, T, V),
                1e-4,
                0,
                `${method} row ${b} step ${i}`,
              );
          }
          a.dispose();
        }
      },
    );

    it.each(ARCHS)(
      '%s: gradients of PARA, LoRA and IA3 match central differences',
      async (name) => {
        const model = models.get(name) as CausalLM;
        const V = model.config.vocabSize;
        const prompts = PROMPTS.slice(0, 2);
        const full = prompts.map((p, b) => [...p, ...(RESPONSES[b] as number[])]);
        const { ids, mask, T } = leftPad(full);
        const promptLengths = prompts.map((p) => p.length);
        const rng = new Rng(`probe-${name}`);
        const w = new Float32Array(2 * T * V);
        // Weights on the real positions only (a training loss never reads the padding). A
        // padded query row attends to no key: its scores plus the additive mask (-1e9, whose float32
        // ulp is 64) round to exactly -1e9, so its output does not depend on q or k, while autodiff
        // still passes the softmax gradient through the add: probes on those rows put layer-0 q/k-side
        // gradients a few % off converged central differences, on every architecture.
        full.forEach((row, b) => {
          for (let t = T - row.length; t < T; t++)
            for (let j = 0; j < V; j++) w[(b * T + t) * V + j] = rng.normal();
        });
        const probe = tf.tensor3d(w, [2, T, V]);
        const adapters = makeAdapters(model, name);
        for (const [method, a] of Object.entries(adapters)) {
          const adapter = a.attach(model);
          const loss = () =>
            tf.sum(
              tf.mul(
                model.forward(ids, { attentionMask: mask, adapter, request: { promptLengths } }),
                probe,
              ),
            ) as tf.Scalar;
          const { value, grads } = tf.variableGrads(loss, a.parameters());
          value.dispose();
          // The first and last tensor of each adapter (layer 0 and the last layer), two coordinates
          // each: the largest gradient and a random one.
          const named = [...a.namedParameters()];
          const picked = [named[0], named[named.length - 1]] as [string, tf.Variable][];
          const eps = 1e-2;
          for (const [pname, v] of picked) {
            const g = await take(grads[v.name] as tf.Tensor);
            const base = (await v.data()) as Float32Array;
            let imax = 0;
            for (let i = 0; i < g.length; i++)
              if (Math.abs(g[i] as number) > Math.abs(g[imax] as number)) imax = i;
            expect(Math.abs(g[imax] as number), `${method} ${pname}: a gradient`).toBeGreaterThan(
              1e-4,
            );
            for (const i of new Set([imax, rng.int(g.length)])) {
              const f = async (delta: number) => {
                const x = Float32Array.from(base);
                x[i] = (x[i] as number) + delta;
                const t = tf.tensor(x, v.shape);
                v.assign(t);
                t.dispose();
                return (await take(tf.tidy(loss)))[0] as number;
              };
              const fd = ((await f(eps)) - (await f(-eps))) / (2 * eps);
              const gi = g[i] as number;
              expect(
                Math.abs(gi - fd),
                `${method} ${pname}[${i}]: grad ${gi}, finite difference ${fd}`,
              ).toBeLessThanOrEqual(0.03 * Math.max(Math.abs(gi), Math.abs(fd)) + 5e-3);
            }
            const t = tf.tensor(base, v.shape);
            v.assign(t);
            t.dispose();
          }
          tf.dispose(Object.values(grads));
          a.dispose();
        }
        probe.dispose();
      },
    );

    it.each(ARCHS)(
      '%s: a batch of PARA, LoRA, IA3 and bare rows equals each row alone',
      async (name) => {
        const model = models.get(name) as CausalLM;
        const V = model.config.vocabSize;
        const { para, lora, ia3 } = makeAdapters(model, name);
        const rows: (AnyAdapter | null)[] = [para, lora, ia3, null];
        const { logits, state } = model.prefill(PROMPTS, {
          adapter: mixedAdapter(model, rows),
          request: {},
        });
        const pre = await take(logits);
        const steps: Float32Array[] = [];
        for (let i = 0; i < STEPS - 1; i++)
          steps.push(
            await take(
              model.decodeStep(
                RESPONSES.map((r) => r[i] as number),
                state,
              ),
            ),
          );
        state.dispose();
        for (let b = 0; b < rows.length; b++) {
          const own = rows[b] ?? null;
          const alone = model.prefill(
            [PROMPTS[b] as number[]],
            own === null ? {} : { adapter: own.attach(model), request: {} },
          );
          const a = await take(alone.logits);
          const row = (buf: Float32Array) => buf.subarray(b * V, (b + 1) * V);
          expectClose(row(pre), a, 1e-4, 0, `${name} row ${b} prefill`);
          for (let i = 0; i < STEPS - 1; i++)
            expectClose(
              row(steps[i] as Float32Array),
              await take(model.decodeStep([(RESPONSES[b] as number[])[i] as number], alone.state)),
              1e-4,
              0,
              `${name} row ${b} step ${i}`,
            );
          alone.state.dispose();
        }
        for (const a of [para, lora, ia3]) a.dispose();
      },
    );
  },
);
