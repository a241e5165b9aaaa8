// Manual interop check (never run by the tests): adapters that para creates and saves with
// the LoRA options of issue 14 (DoRA, bias "all", rank_pattern / alpha_pattern,
// layers_to_transform) load in Python PEFT 0.21 and give para's logits.
//
//   pnpm --filter @para/adapters build
//   node test/goldens/para_saved_in_peft.mjs /tmp/para-peft      (from packages/adapters)
//   /tmp/venv-peft/bin/python test/goldens/para_saved_in_peft.py /tmp/para-peft
//
// Seen on 2026-12-01 (torch 2.13 CPU, transformers 5.18, PEFT 0.21): max |PEFT − para| 4.5e-7
// (DoRA + bias "all" + patterns on the biased Qwen2) and 6.3e-7 (DoRA on Llama, layer 1 only).
import '@tensorflow/tfjs-backend-cpu';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Rng } from '@para/core';
import { loadModel } from '@para/model/node';
import * as tf from '@tensorflow/tfjs-core';
import { createAdapter, saveAdapter } from '../../dist/node.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');
const OUT = process.argv[2] ?? '/tmp/para-peft';
const IDS = [
  [1, 17, 43, 9, 5, 64, 23, 80, 3],
  [1, 90, 7, 7, 31, 88, 12, 60, 41],
];
const CASES = [
  [
    'dora-bias-qwen2',
    'base-qwen2',
    {
      use_dora: true,
      bias: 'all',
      r: 3,
      lora_alpha: 5,
      target_modules: ['q_proj', 'v_proj', 'down_proj'],
      rank_pattern: { down_proj: 2 },
      alpha_pattern: { 'layers.1.self_attn.q_proj': 9 },
    },
  ],
  [
    'dora-llama',
    'base',
    {
      use_dora: true,
      r: 2,
      target_modules: ['k_proj', 'o_proj', 'gate_proj'],
      layers_to_transform: [1],
    },
  ],
];
const logits = {};
for (const [name, base, cfg] of CASES) {
  const model = await loadModel(join(FIXTURES, base));
  const a = createAdapter(model.config, { peft_type: 'LORA', ...cfg });
  a.attach(model); // DoRA magnitudes and trained biases start from the backbone
  const rng = new Rng(name);
  for (const [n, v] of a.namedParameters()) {
    const t = tf.tidy(() => tf.add(v, rng.fork(n).normalTensor([...v.shape], 0, 0.3)));
    v.assign(t);
    t.dispose();
  }
  await saveAdapter(a, join(OUT, name));
  logits[name] = Array.from(await model.forward(IDS, { adapter: a.attach(model) }).data());
  a.dispose();
  model.dispose();
}
writeFileSync(
  join(OUT, 'para_logits.json'),
  JSON.stringify({ ids: IDS, base: Object.fromEntries(CASES.map((c) => [c[0], c[1]])), logits }),
);
console.log(`wrote ${CASES.length} adapters and para_logits.json to ${OUT}`);
