#!/usr/bin/env node
// para's peer benchmark: para's own CLI benchmarks and the same workloads through transformers +
// PEFT (bench/peer/peer.py), run ALTERNATELY in one sitting (para then peer in even rounds, peer
// then para in odd ones) so machine load hits both sides alike; prints para ÷ peer per row.
//
//   python3 -m venv .venv-peer && .venv-peer/bin/pip install torch transformers peft safetensors
//   pnpm build
//   node bench/peer/run.mjs --python .venv-peer/bin/python [--rounds 2] [--workloads train,model,multitenant] [--json]
//     [--baseline ../para-base[,DIR…]]   other built checkouts of para (earlier commits) as extra
//                                        sides of every round: para ÷ baseline per row, same run
//
// The para side is `para bench train`, `para bench model` and `para bench multitenant` (the
// built CLI, apps/node-demo/dist/cli.js, --json, on --backend, default wasm); the peer side runs
// the same batches (exported here from para's own data pipeline, so both sides see the same
// token ids), the same config and the same decode loop (see peer.py's docstring). Figures per row
// are medians over the rounds; a ratio is para's median ÷ the peer's. Never part of `pnpm test`.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { values: flags } = parseArgs({
  options: {
    python: { type: 'string', default: 'python3' },
    rounds: { type: 'string', default: '2' },
    workloads: { type: 'string', default: 'train,model,multitenant' },
    backend: { type: 'string', default: 'wasm' },
    baseline: { type: 'string', default: '' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  console.log(
    'usage: node bench/peer/run.mjs [--python PY] [--rounds N] [--workloads train,model,multitenant] [--backend wasm] [--baseline DIR[,DIR]] [--json]',
  );
  process.exit(0);
}
const rounds = Number(flags.rounds);
if (!Number.isInteger(rounds) || rounds < 1)
  fail(`--rounds: expected an integer ≥ 1, got ${flags.rounds}`);
const workloads = flags.workloads.split(',').map((s) => s.trim());
for (const w of workloads)
  if (!['train', 'model', 'multitenant'].includes(w))
    fail(`--workloads: unknown workload "${w}" (expected train, model, multitenant)`);
const say = flags.json ? () => {} : (s) => console.error(s);

function fail(message) {
  console.error(`bench/peer/run.mjs: ${message}`);
  process.exit(2);
}

// --- the peer must be there -------------------------------------------------------------------
const probe = spawnSync(
  flags.python,
  [
    '-c',
    'import torch, transformers, peft; print(torch.__version__, transformers.__version__, peft.__version__)',
  ],
  { encoding: 'utf8' },
);
if (probe.status !== 0)
  fail(
    `${flags.python} cannot import torch, transformers and peft (${(probe.error?.message ?? probe.stderr).trim().split('\n').pop()}).\n` +
      'Set one up from the package registry:\n' +
      '  python3 -m venv .venv-peer && .venv-peer/bin/pip install torch transformers peft safetensors\n' +
      'then pass --python .venv-peer/bin/python',
  );
const cli = join(root, 'apps', 'node-demo', 'dist', 'cli.js');
if (spawnSync(process.execPath, [cli, '--version'], { encoding: 'utf8' }).status !== 0)
  fail(`${cli} does not run: build first (pnpm build)`);
// Baselines: other checkouts of para, each built (e.g. `git worktree add ../para-base <commit>
// && cd ../para-base && pnpm install && pnpm build`); their CLI runs the same commands.
const baselines = flags.baseline
  .split(',')
  .map((d) => d.trim())
  .filter((d) => d !== '')
  .map((dir) => {
    const bcli = join(dir, 'apps', 'node-demo', 'dist', 'cli.js');
    const v = spawnSync(process.execPath, [bcli, '--version'], { encoding: 'utf8' });
    if (v.status !== 0) fail(`--baseline ${dir}: ${bcli} does not run (build that checkout first)`);
    const commit = spawnSync('git', ['-C', dir, 'rev-parse', '--short', 'HEAD'], {
      encoding: 'utf8',
    }).stdout.trim();
    return { dir, cli: bcli, name: `base ${commit || dir}` };
  });

// --- the training batches, from para's own pipeline (as `para bench train` makes them) --------
const app = createRequire(join(root, 'apps', 'node-demo', 'package.json'));
const load = (spec) => import(pathToFileURL(app.resolve(spec)).href);
const [{ initBackend }, train] = await Promise.all([
  load('@para/core/node'),
  load('@para/train/node'),
]);
await initBackend({ backend: 'cpu', probe: false }); // only to tokenize and collate here
const backboneDir = join(root, 'assets', 'backbone');
const work = mkdtempSync(join(tmpdir(), 'para-peer-'));
const batchesFile = join(work, 'batches.json');
{
  const { model, tokenizer } = await train.loadBackbone(backboneDir);
  const data = await train.loadDataset(
    join(root, 'data', 'tasks', 'antonym', 'train.jsonl'),
    tokenizer,
    { maxLength: 256 },
  );
  const V = model.config.vocabSize;
  const task = train.collate(data.examples.slice(0, 16), model.config.padTokenId ?? 0);
  const rng = (i) => (i * 2654435761) % V;
  const windows = Array.from({ length: 8 }, (_, b) =>
    Array.from({ length: 257 }, (_, t) => 4 + (rng(b * 257 + t) % (V - 4))),
  );
  const packed = train.collateWindows(windows);
  model.dispose();
  const wire = (b) => ({
    ids: b.ids,
    attentionMask: b.attentionMask,
    targets: Array.from(b.targets),
    weights: Array.from(b.weights),
    tokens: b.tokens,
    lossTokens: b.lossTokens,
  });
  writeFileSync(
    batchesFile,
    JSON.stringify({ '16 task examples': wire(task), '8 × 256 packed': wire(packed) }),
  );
}

// --- the two sides -----------------------------------------------------------------------------
function runJson(cmd, args, what) {
  const t0 = Date.now();
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, cwd: root });
  if (r.status !== 0) fail(`${what} failed (exit ${r.status}):\n${r.stderr.slice(-2000)}`);
  // Pretty-printed (para's CLI) or one line after log lines (peer.py): the whole output first.
  const candidates = [
    r.stdout,
    r.stdout
      .trim()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .pop(),
  ];
  for (const text of candidates) {
    try {
      const out = JSON.parse(text ?? '');
      say(`  ${what}: ${((Date.now() - t0) / 1000).toFixed(0)} s`);
      return out;
    } catch {
      // the next candidate
    }
  }
  fail(`${what} printed no JSON:\n${r.stdout.slice(-2000)}`);
}
const paraAt = (at, args, name = 'para') =>
  runJson(
    process.execPath,
    [at, 'bench', ...args, '--json', '--backend', flags.backend],
    `${name} bench ${args[0]}`,
  );
const para = (args) => paraAt(cli, args);
const peer = (args) =>
  runJson(flags.python, [join(root, 'bench', 'peer', 'peer.py'), ...args], `peer ${args[0]}`);

/** Rows of one side's output: label → tokens/s. */
const byKey = (key) => (o) =>
  Object.fromEntries(o.rows.map((r) => [key(r), r.tokensPerSec ?? r.tokensPerSecond]));
const trainRows = byKey((r) => `${r.method} | ${r.workload}`);
const modelRows = byKey((r) => `${r.phase} | batch ${r.batch}`);
const rowsOf = {
  train: { para: trainRows, peer: trainRows },
  model: { para: modelRows, peer: modelRows },
  multitenant: {
    para: (o) => ({ base: o.base, para: o.para, lora: o.lora }),
    peer: (o) => ({ base: o.base, lora: o.lora }),
  },
};
/** The table: [label, para key, peer key]. */
const PAIRS = {
  train: ['16 task examples', '8 × 256 packed'].flatMap((w) => [
    [`LoRA r=8 (q,v) update, ${w}`, `LoRA r=8 (q,v) | ${w}`, `PEFT LoRA r=8 (q,v) | ${w}`],
    [
      `PARA r=8 update (peer: PEFT LoRA r=8), ${w}`,
      `PARA r=8 | ${w}`,
      `PEFT LoRA r=8 (q,v) | ${w}`,
    ],
    [`full fine-tuning, ${w}`, `full fine-tuning | ${w}`, `full fine-tuning | ${w}`],
  ]),
  model: [1, 32].flatMap((b) => [
    [`prefill 64 tokens, batch ${b}`, `prefill | batch ${b}`, `prefill | batch ${b}`],
    [`decode, batch ${b} (peer: greedy loop)`, `decode | batch ${b}`, `decode | batch ${b}`],
    [
      `decode, batch ${b} (peer: generate)`,
      `decode | batch ${b}`,
      `decode (generate) | batch ${b}`,
    ],
  ]),
  multitenant: [
    ['32 tenants decode: PARA (peer: PEFT mixed LoRA)', 'para', 'lora'],
    ['32 tenants decode: LoRA (peer: PEFT mixed LoRA)', 'lora', 'lora'],
    ['32 rows decode, bare backbone', 'base', 'base'],
  ],
};

// What runs each para side's matmuls (`para info`: e.g. "OpenBLAS 0.3.21 via @para/blas (Haswell
// kernels, 2 threads)"): OpenBLAS honours OPENBLAS_CORETYPE from the environment, and the kernel
// set it picks moves the training rows by 1.4x on an AVX-512 CPU (BENCHMARKS.md, issue 16 part 4).
function backendDetail(at) {
  const r = spawnSync(process.execPath, [at, 'info', '--json', '--no-probe', '-b', flags.backend], {
    encoding: 'utf8',
    cwd: root,
  });
  try {
    const b = JSON.parse(r.stdout).backend;
    return b.backends.find((x) => x.name === b.active)?.detail ?? b.active;
  } catch {
    return 'unknown (para info failed)';
  }
}

const results = { para: {}, peer: {} };
for (const b of baselines) results[b.name] = {};
const info = {
  openblasCoretype: process.env.OPENBLAS_CORETYPE ?? null,
  paraBackend: backendDetail(cli),
};
for (const b of baselines) info[`${b.name} backend`] = backendDetail(b.cli);
for (const w of workloads) {
  results.para[w] = [];
  results.peer[w] = [];
  for (const b of baselines) results[b.name][w] = [];
  for (let r = 0; r < rounds; r++) {
    say(`${w}, round ${r + 1} of ${rounds}`);
    const sides = ['para', 'peer', ...baselines.map((b) => b.name)];
    if (r % 2 === 1) sides.reverse();
    for (const side of sides) {
      let out;
      const base = baselines.find((b) => b.name === side);
      if (base !== undefined) {
        out = paraAt(base.cli, [w], base.name);
        results[side][w].push(rowsOf[w].para(out));
        continue;
      }
      if (side === 'para') {
        out = para([w]);
        info.para = { backend: out.backend ?? flags.backend };
        if (w === 'multitenant') info.loraRank = out.loraRank;
      } else if (w === 'train') {
        out = peer(['train', '--backbone', backboneDir, '--batches', batchesFile]);
      } else if (w === 'model') {
        out = peer(['model']);
      } else {
        // The LoRA rank para's multitenant bench matched to PARA r=12's parameter count.
        if (info.loraRank === undefined) info.loraRank = para(['multitenant']).loraRank;
        out = peer(['multitenant', '--lora-rank', String(info.loraRank)]);
      }
      if (side === 'peer') info.peer = out.peer;
      results[side][w].push(rowsOf[w][side](out));
    }
  }
}
rmSync(work, { recursive: true, force: true });

const median = (xs) => {
  const s = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return null;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const table = [];
for (const w of workloads) {
  for (const [label, pk, qk] of PAIRS[w]) {
    const p = median(results.para[w].map((o) => o[pk]));
    const q = median(results.peer[w].map((o) => o[qk]));
    const perRound = results.para[w].map((o, i) => o[pk] / results.peer[w][i][qk]);
    const vsBaseline = Object.fromEntries(
      baselines.map((b) => {
        const v = median(results[b.name][w].map((o) => o[pk]));
        return [b.name, { tokensPerSecond: v, ratio: p !== null && v ? p / v : null }];
      }),
    );
    table.push({
      workload: w,
      label,
      para: p,
      peer: q,
      ratio: p !== null && q ? p / q : null,
      perRound,
      ...(baselines.length > 0 ? { vsBaseline } : {}),
    });
  }
}
if (flags.json) {
  console.log(JSON.stringify({ rounds, backend: flags.backend, info, table, results }, null, 2));
} else {
  const f = (x, d = 0) =>
    x === null
      ? '—'
      : x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
  const pe = info.peer ?? {};
  console.log(
    `para (${flags.backend}) vs torch ${pe.torch} + transformers ${pe.transformers} + peft ${pe.peft} (${pe.threads} threads); ${rounds} rounds alternating; tokens/s, medians`,
  );
  console.log(
    `para's ${flags.backend}: ${info.paraBackend}${info.openblasCoretype ? ` (OPENBLAS_CORETYPE=${info.openblasCoretype} in the environment)` : ''}`,
  );
  const bh = baselines.map((b) => `  ${b.name.padStart(12)}  para÷base`).join('');
  console.log(
    `${'workload'.padEnd(52)} ${'para'.padStart(9)} ${'peer'.padStart(9)}  para÷peer${bh}  (per round)`,
  );
  for (const t of table) {
    const bs = baselines
      .map((b) => {
        const v = t.vsBaseline?.[b.name];
        const tps = v?.tokensPerSecond ?? null;
        return `  ${f(tps, tps !== null && tps < 100 ? 1 : 0).padStart(12)}  ${f(v?.ratio ?? null, 2).padStart(9)}`;
      })
      .join('');
    console.log(
      `${t.label.padEnd(52)} ${f(t.para, t.para < 100 ? 1 : 0).padStart(9)} ${f(t.peer, t.peer < 100 ? 1 : 0).padStart(9)}  ${f(t.ratio, 2).padStart(9)}${bs}  (${t.perRound.map((x) => f(x, 2)).join(', ')})`,
    );
  }
}
