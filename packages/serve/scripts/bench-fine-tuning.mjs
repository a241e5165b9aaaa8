/**
 * Serving latency while a fine-tuning job trains (issue 18, BENCHMARKS.md):
 *
 *   pnpm --filter @para/serve build
 *   node packages/serve/scripts/bench-fine-tuning.mjs [--clients 8] [--requests 4] [--tokens 48] [--rounds 3]
 *
 * One server (the built @para/serve/node, as `para serve` runs it) on the bundled backbone with
 * the four bundled PARA adapters, wasm backend (+ OpenBLAS when it loads). A load generator in a
 * child process (its own event loop and core share, so reading the streams does not wait on the
 * server's decode steps) runs C closed-loop clients, each sending R streamed chat requests one
 * after another (`max_tokens` N, `ignore_eos`, greedy; client i uses bundled adapter i mod 4).
 * Per phase: inter-token latency (gaps between a request's streamed content chunks) p50 / p99,
 * time to first token p50 / p99, and output tokens/s. Phases, every round in turn:
 *
 *   idle      no fine-tuning job
 *   yield     a job training (PARA, batch 8, the 32-line pos slice) in its worker with the
 *             defaults: nice 10, and yielding while requests run (servingShare 0.25)
 *   no yield  the same job at nice 10 that never yields (servingShare 1: only the OS priority)
 *   nice 0    the same job at nice 0, never yielding (what neither buys)
 *
 * The job's own speed in each phase (updates/s from its step events) is reported too. Best
 * round per phase (lowest ITL p99) and the median round are printed; `--json` prints all.
 */

import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.join(here, '..', '..', '..');
const args = process.argv.slice(2);
const flag = (name, d) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : d;
};

// ------------------------------------------------------------------------------------------
// Client mode: C closed-loop streaming clients against URL; prints one JSON line of samples.
// ------------------------------------------------------------------------------------------
if (args[0] === '--client') {
  const [, url, c, r, n] = args;
  const { default: OpenAI } = await import('openai');
  const client = new OpenAI({
    baseURL: `${url}/v1`,
    apiKey: 'none',
    maxRetries: 0,
    timeout: 300_000,
  });
  const tenants = ['pos', 'antonym', 'category', 'arithmetic'];
  const itl = [];
  const ttft = [];
  let tokens = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: Number(c) }, async (_, i) => {
      for (let k = 0; k < Number(r); k++) {
        const sent = performance.now();
        let last = null;
        const s = await client.chat.completions.create({
          model: tenants[i % tenants.length],
          messages: [{ role: 'user', content: `Part of speech of word${i}x${k}?` }],
          max_tokens: Number(n),
          temperature: 0,
          stream: true,
          stream_options: { include_usage: true },
          ignore_eos: true,
        });
        for await (const chunk of s) {
          if (chunk.usage) tokens += chunk.usage.completion_tokens;
          const content = chunk.choices[0]?.delta?.content;
          if (!content) continue;
          const t = performance.now();
          if (last === null) ttft.push(t - sent);
          else itl.push(t - last);
          last = t;
        }
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  process.stdout.write(`${JSON.stringify({ itl, ttft, tokens, seconds })}\n`);
  process.exit(0);
}

// ------------------------------------------------------------------------------------------
// Server mode.
// ------------------------------------------------------------------------------------------
const clients = flag('clients', 8);
const requests = flag('requests', 4);
const newTokens = flag('tokens', 48);
const rounds = flag('rounds', 3);
const json = args.includes('--json');

const { initBackend } = await import('@para/core/node');
const { loadPretrained } = await import('@para/model/node');
const { AdapterRegistry, createServer, directorySource, unionSource, fineTunedAdaptersDir } =
  await import('@para/serve/node');
const { default: OpenAI, toFile } = await import('openai');

const report = await initBackend({ backend: process.env.PARA_BACKEND ?? 'wasm', probe: false });
const BACKBONE = path.join(repo, 'assets', 'backbone');
const { model, tokenizer } = await loadPretrained(BACKBONE);
const slice = readFileSync(path.join(repo, 'data', 'tasks', 'pos', 'train.jsonl'), 'utf8')
  .split('\n')
  .slice(0, 32)
  .join('\n');

const pct = (xs, p) => {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

function load(url) {
  return new Promise((resolve, reject) => {
    const child = fork(
      fileURLToPath(import.meta.url),
      ['--client', url, clients, requests, newTokens],
      {
        stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
      },
    );
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.on('exit', (code) =>
      code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`client exited ${code}`)),
    );
  });
}

async function server(job, data) {
  const fineTuning = {
    dataDir: data,
    modelDir: BACKBONE,
    workerNice: job?.nice ?? 10,
    ...(job?.share === undefined ? {} : { servingShare: job.share }),
  };
  const registry = new AdapterRegistry(
    model,
    unionSource([
      directorySource(path.join(repo, 'assets', 'adapters'), { baseModelMismatch: 'warn' }),
      directorySource(fineTunedAdaptersDir(fineTuning), { baseModelMismatch: 'warn' }),
    ]),
  );
  const s = await createServer({
    model,
    tokenizer,
    modelName: 'backbone',
    registry,
    engine: { maxBatch: clients, maxLen: 128 },
    fineTuning,
  });
  const url = await s.listen({ port: 0 });
  return { s, url, client: new OpenAI({ baseURL: `${url}/v1`, apiKey: 'none', maxRetries: 0 }) };
}

/** One measured phase; with `job` ({name, nice, share}), a job trains throughout. */
async function phase(spec) {
  const data = await mkdtemp(path.join(tmpdir(), 'para-bench-ft-'));
  const { s, url, client } = await server(spec, data);
  try {
    await load(url); // warm-up: adapters loaded, state allocated
    let job = null;
    if (spec !== null) {
      const f = await client.files.create({
        file: await toFile(Buffer.from(`${slice}\n`), 'pos.jsonl'),
        purpose: 'fine-tune',
      });
      job = await client.fineTuning.jobs.create({
        model: 'backbone',
        training_file: f.id,
        seed: 1,
        hyperparameters: { batch_size: 8 },
        para: { max_steps: 100000, checkpoint_every: 0 },
      });
      // Measure only once it trains (worker started, backbone loaded, first update done).
      for (;;) {
        const j = await client.fineTuning.jobs.retrieve(job.id);
        if (j.status === 'running' && j.para.step >= 2) break;
        if (j.status !== 'running' && j.status !== 'queued')
          throw new Error(`job ${j.status}: ${JSON.stringify(j.error)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const step0 = job === null ? 0 : (await client.fineTuning.jobs.retrieve(job.id)).para.step;
    const t0 = performance.now();
    const r = await load(url);
    const secs = (performance.now() - t0) / 1000;
    let stepsPerSec = null;
    if (job !== null) {
      const j = await client.fineTuning.jobs.retrieve(job.id);
      stepsPerSec = (j.para.step - step0) / secs;
      await client.fineTuning.jobs.cancel(job.id);
    }
    return {
      phase: spec === null ? 'idle' : spec.name,
      itlP50: pct(r.itl, 50),
      itlP99: pct(r.itl, 99),
      ttftP50: pct(r.ttft, 50),
      ttftP99: pct(r.ttft, 99),
      tokensPerSec: r.tokens / r.seconds,
      jobStepsPerSec: stepsPerSec,
      chunks: r.itl.length,
    };
  } finally {
    await s.close();
    s.registry?.dispose();
    await rm(data, { recursive: true, force: true });
  }
}

const PHASES = [
  { name: 'yield', nice: 10 },
  { name: 'no yield', nice: 10, share: 1 },
  { name: 'nice 0', nice: 0, share: 1 },
];
const all = [];
for (let round = 0; round < rounds; round++) {
  // Rotate the order so machine load hits the phases alike.
  const order = [null, ...PHASES];
  for (let i = 0; i < round % order.length; i++) order.push(order.shift());
  for (const spec of order) {
    const p = { round, ...(await phase(spec)) };
    all.push(p);
    process.stderr.write(`${JSON.stringify(p)}\n`);
  }
}
model.dispose();

const f = (x, d = 1) => (x == null || Number.isNaN(x) ? '—' : x.toFixed(d));
if (json) {
  process.stdout.write(
    `${JSON.stringify({ backend: report.active, clients, requests, newTokens, rounds, phases: all }, null, 2)}\n`,
  );
} else {
  const lines = [
    `serving while fine-tuning — backend ${report.active}; ${clients} streamed chat clients × ${requests} requests, ${newTokens} new tokens each (ignore_eos, greedy), bundled PARA tenants; ${rounds} rounds`,
    '',
    `${'phase'.padEnd(9)}${'round'.padStart(7)}${'ITL p50'.padStart(9)}${'p99'.padStart(8)}${'TTFT p50'.padStart(10)}${'p99'.padStart(8)}${'tok/s'.padStart(8)}${'job upd/s'.padStart(11)}`,
  ];
  for (const name of ['idle', ...PHASES.map((p) => p.name)]) {
    const ps = all.filter((p) => p.phase === name).sort((a, b) => a.itlP99 - b.itlP99);
    for (const [label, p] of [
      ['best', ps[0]],
      ['median', ps[Math.floor(ps.length / 2)]],
    ]) {
      if (p === undefined) continue;
      lines.push(
        `${name.padEnd(9)}${label.padStart(7)}${f(p.itlP50).padStart(9)}${f(p.itlP99).padStart(8)}${f(p.ttftP50, 0).padStart(10)}${f(p.ttftP99, 0).padStart(8)}${f(p.tokensPerSec, 0).padStart(8)}${f(p.jobStepsPerSec, 2).padStart(11)}`,
      );
    }
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}
process.exit(0);
