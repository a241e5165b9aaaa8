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
import { openSafetensorsFile } from '@para/core/node';
import { type CausalLM, loadModel } from '@para/model/node';
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
      // A hostile pattern runs in linear time (RE2).
      const slow = createAdapter(llama.config, {
        peft_type: 'LORA',
        rank_pattern: { '(.*.*)*X': 4 },
      }) as LoraAdapter;
      expect(slow.allModules().every((m) => m.r === 8)).toBe(true);
      slow.dispose();
    });
  });
});
