#!/usr/bin/env node
/**
 * The fuzz suite (issue 13): seeded random mutations of valid files fed to para's loaders.
 * Every outcome must be success or a typed ParaError; no case may leak tensors, pollute
 * Object.prototype, or exceed the per-case time and memory bounds.
 *
 *   node packages/para/test/fuzz/run.mjs [--target all|safetensors|checkpoint|adapter|jsonl|tokenizer]
 *        [--seconds N (per target, default 10)] [--seed S (default 20261201)] [--last FILE]
 *
 * Prints one JSON line per target ({target, cases, typed, ok, maxCaseMs, maxRssMB, failure})
 * and exits 1 if any target failed. `--last FILE` keeps the case being run in FILE, so a case
 * that hangs (the caller kills the process) can still be named. Run by test/fuzz.test.ts in CI
 * with a fixed seed and budget; run it longer by hand with a larger --seconds or other seeds.
 * A child process rather than a test body, so that a case that never returns can be killed.
 */
import { writeFileSync } from 'node:fs';
import { adapterFromBytes, createAdapter, serializeAdapter } from '@para/adapters';
import {
  ArrayBufferSource,
  initBackend,
  isParaError,
  ParaError,
  readFiniteTensor,
  SafetensorsReader,
  serializeSafetensors,
} from '@para/core/node';
import { CausalLM, checkpointFiles, createConfig, loadPretrainedFrom } from '@para/model';
import { ParaTokenizer, trainBpe } from '@para/tokenizer';
import * as train from '@para/train';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import {
  describeInput,
  mutatedBytes,
  mutatedJson,
  mutatedJsonText,
  mutatedSafetensors,
} from './mutate.mjs';

const args = process.argv.slice(2);
const flag = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : def;
};
const SEED = Number(flag('seed', process.env.PARA_FUZZ_SEED ?? '20261201'));
const SECONDS = Number(flag('seconds', process.env.PARA_FUZZ_SECONDS ?? '10'));
const TARGET = flag('target', 'all');
const LAST = flag('last', null);
/** Per-case bounds: far above what any case needs on a loaded 2-core machine. */
const CASE_MS = 15_000;
const RSS_MB = 2_048;

const CHATML =
  "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

await initBackend({ backend: 'cpu' });

// ---- valid inputs every target mutates ------------------------------------------------------
const corpus = [
  'Opposite of hot: cold',
  'Opposite of big: small',
  'Part of speech of gaily: adverb',
  'the quick brown fox jumps over the lazy dog',
];
const trained = trainBpe(corpus, {
  vocabSize: 300,
  specialTokens: ['<unk>', '<s>', '</s>', '<pad>', '<|im_start|>', '<|im_end|>'],
});
const tokenizerJson = structuredClone(trained.tokenizerJson);
const tokenizerConfig = { ...structuredClone(trained.tokenizerConfig), chat_template: CHATML };
const tokenizer = ParaTokenizer.fromJSON(tokenizerJson, tokenizerConfig);
const vocab = Math.max(...Object.values(tokenizerJson.model.vocab)) + 1;
const modelConfig = createConfig({
  vocabSize: vocab,
  hiddenSize: 16,
  intermediateSize: 32,
  numLayers: 2,
  numHeads: 2,
  numKvHeads: 1,
});
const model = CausalLM.random(modelConfig, 1);
const ckpt = checkpointFiles(model.config, model.weights);
const configObj = JSON.parse(ckpt.configJson);
const weightsBytes = await serializeSafetensors(ckpt.tensors, { metadata: ckpt.metadata });
const enc = new TextEncoder();
const smallTensors = {
  a: { dtype: 'F32', shape: [2, 3], data: [1, 2, 3, 4, 5, 6] },
  b: { dtype: 'I64', shape: [4], data: [1, -2, 3, 4] },
  c: { dtype: 'BF16', shape: [3], data: [0.5, -1, 2] },
  d: { dtype: 'U8', shape: [5], data: [1, 2, 3, 4, 5] },
};
const smallFile = await serializeSafetensors(smallTensors, { metadata: { format: 'pt' } });
const adapters = {};
for (const [name, cfg] of [
  ['PARA', { peft_type: 'PARA', r: 4 }],
  ['LORA', { peft_type: 'LORA', r: 4, target_modules: ['q_proj', 'v_proj'] }],
  ['IA3', { peft_type: 'IA3' }],
]) {
  const a = createAdapter(model.config, cfg, { seed: 1 });
  const { config, weights } = await serializeAdapter(a);
  a.dispose();
  adapters[name] = { config: JSON.parse(config), weights };
}
const jsonlRecords = [
  { prompt: 'Opposite of hot:', completion: ' cold' },
  { prompt: 'Opposite of big:', completion: ' small' },
  {
    messages: [
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: 'hello' },
    ],
  },
];

/** An in-memory checkpoint directory. */
function memoryAccess(files) {
  return {
    location: 'mem://fuzz',
    exists: async (f) => Object.hasOwn(files, f),
    open: async (f) => new ArrayBufferSource(files[f], `mem://fuzz/${f}`),
  };
}

// ---- targets --------------------------------------------------------------------------------
const targets = {
  safetensors: {
    arb: fc.oneof(mutatedSafetensors(smallFile), mutatedSafetensors(weightsBytes)),
    async run(bytes) {
      const r = await SafetensorsReader.open(new ArrayBufferSource(bytes, 'fuzz.safetensors'));
      try {
        for (const name of r.names()) {
          r.info(name);
          (await readFiniteTensor(r, name)).dispose();
        }
        tf.dispose(Object.values(await r.readAll()));
      } finally {
        await r.close();
      }
    },
  },
  checkpoint: {
    arb: fc.oneof(
      mutatedJson(configObj).map((c) => ({ config: c, weights: weightsBytes })),
      mutatedSafetensors(weightsBytes).map((w) => ({ config: ckpt.configJson, weights: w })),
    ),
    async run({ config, weights }) {
      const { model: m } = await loadPretrainedFrom(
        memoryAccess({
          'config.json': enc.encode(config),
          'model.safetensors': weights,
          'tokenizer.json': enc.encode(JSON.stringify(tokenizerJson)),
          'tokenizer_config.json': enc.encode(JSON.stringify(tokenizerConfig)),
        }),
      );
      try {
        const logits = m.forward([[1, 2, 3]]);
        logits.dispose();
      } finally {
        m.dispose();
      }
    },
  },
  adapter: {
    arb: fc.oneof(
      ...Object.values(adapters).flatMap(({ config, weights }) => [
        mutatedJson(config).map((c) => ({ config: c, weights })),
        mutatedSafetensors(weights).map((w) => ({ config: JSON.stringify(config), weights: w })),
      ]),
    ),
    async run({ config, weights }) {
      const a = await adapterFromBytes(config, weights, model, { name: 'fuzz' });
      a.dispose();
    },
  },
  jsonl: {
    arb: (() => {
      const text = jsonlRecords.map((r) => JSON.stringify(r)).join('\n');
      return fc.oneof(
        mutatedBytes(enc.encode(text)),
        fc
          .tuple(fc.nat(jsonlRecords.length - 1), fc.nat())
          .chain(([i]) =>
            mutatedJson(jsonlRecords[i]).map((line) =>
              enc.encode(
                jsonlRecords.map((r, k) => (k === i ? line : JSON.stringify(r))).join('\n'),
              ),
            ),
          ),
        mutatedJsonText(text).map((t) => enc.encode(t)),
      );
    })(),
    async run(bytes) {
      // Bytes, as `para train` and the web demo read them (strict UTF-8).
      const records = train.parseJsonlBytes(bytes, 'fuzz.jsonl');
      train.tokenizeRecords(tokenizer, records, 'fuzz.jsonl', { maxLength: 64, strict: false });
    },
  },
  tokenizer: {
    arb: fc.oneof(
      mutatedJson(tokenizerJson).map((t) => ({ tj: t, tc: JSON.stringify(tokenizerConfig) })),
      mutatedJson(tokenizerConfig).map((c) => ({ tj: JSON.stringify(tokenizerJson), tc: c })),
    ),
    async run({ tj, tc }) {
      const t = ParaTokenizer.fromJSON(tj, tc);
      const ids = t.encode('Opposite of hot: cold <s> the lazy dog', { addSpecialTokens: true });
      t.decode(ids);
      t.decode(ids, { skipSpecialTokens: true });
      try {
        t.applyChatTemplate([{ role: 'user', content: 'hi' }], { addGenerationPrompt: true });
      } catch (e) {
        // A tokenizer_config without a template is a typed error too; anything else is rethrown.
        if (!isParaError(e)) throw e;
      }
    },
  },
};

// The runner's own check (test/fuzz.test.ts): a loader that sometimes throws untyped must fail.
targets['self-check'] = {
  arb: mutatedBytes(smallFile),
  async run(bytes) {
    if (bytes.length % 3 === 0) throw new TypeError('an untyped error, as a buggy loader throws');
    if (bytes.length % 3 === 1) throw new ParaError('INVALID_HEADER', 'typed', { file: 'x' });
  },
};

// ---- runner ---------------------------------------------------------------------------------
const selected =
  TARGET === 'all' ? Object.keys(targets).filter((t) => t !== 'self-check') : TARGET.split(',');
let failed = false;
for (const name of selected) {
  const target = targets[name];
  if (target === undefined) {
    process.stderr.write(`unknown target ${name} (have: ${Object.keys(targets).join(', ')})\n`);
    process.exit(2);
  }
  const report = {
    target: name,
    seed: SEED,
    cases: 0,
    typed: 0,
    ok: 0,
    maxCaseMs: 0,
    maxRssMB: 0,
    failure: null,
  };
  const baseline = tf.memory().numTensors;
  await fc
    .assert(
      fc.asyncProperty(target.arb, async (input) => {
        report.cases++;
        if (LAST !== null)
          writeFileSync(LAST, `${name} case ${report.cases}: ${describeInput(input)}`);
        const t0 = performance.now();
        let problem = null;
        try {
          await target.run(input);
          report.ok++;
        } catch (e) {
          if (isParaError(e)) report.typed++;
          else
            problem = `untyped ${e?.constructor?.name ?? typeof e}: ${e?.message ?? e}\n${e?.stack ?? ''}`;
        }
        const ms = performance.now() - t0;
        const rss = process.memoryUsage().rss / 2 ** 20;
        report.maxCaseMs = Math.max(report.maxCaseMs, Math.round(ms));
        report.maxRssMB = Math.max(report.maxRssMB, Math.round(rss));
        if (problem === null && tf.memory().numTensors !== baseline)
          problem = `leaked ${tf.memory().numTensors - baseline} tensors`;
        if (problem === null && Object.prototype.polluted !== undefined)
          problem = 'Object.prototype polluted';
        if (problem === null && ms > CASE_MS)
          problem = `took ${Math.round(ms)} ms (bound ${CASE_MS})`;
        if (problem === null && rss > RSS_MB)
          problem = `rss ${Math.round(rss)} MB (bound ${RSS_MB})`;
        if (problem !== null) {
          report.failure = { case: report.cases, input: describeInput(input, 20_000), problem };
          return false;
        }
        return true;
      }),
      {
        seed: SEED,
        numRuns: Number.MAX_SAFE_INTEGER,
        interruptAfterTimeLimit: SECONDS * 1000,
        markInterruptAsFailure: false,
        endOnFailure: true,
      },
    )
    .catch((e) => {
      if (report.failure === null)
        report.failure = { problem: String(e?.message ?? e).slice(0, 2000) };
    });
  if (report.failure !== null) failed = true;
  process.stdout.write(`${JSON.stringify(report)}\n`);
}
model.dispose();
process.exit(failed ? 1 : 0);
