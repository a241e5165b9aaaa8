/**
 * `para demo` (`pnpm demo`): the main job end to end, offline, on a laptop CPU.
 *
 *   1. load the bundled default backbone (assets/backbone)
 *   2. for each of two tenants (bundled tasks): fine-tune a PARA adapter on its train split
 *      with visible progress, evaluate it and the bare backbone on its test split, save it
 *   3. decode ONE mixed batch whose rows alternate between the tenants, each row with its own
 *      tenant's adapter (@para/adapters' MixedBatch: one backbone pass for the whole batch,
 *      per-row PARA vectors computed at prefill), and print the outputs and per-tenant accuracy
 */
import { availableParallelism } from 'node:os';
import * as path from 'node:path';
import { type AnyAdapter, loadAdapter, MixedBatch } from '@para/adapters/node';
import { type BackendReport, ParaError } from '@para/core/node';
import {
  BUNDLED_BACKBONE_NAME,
  evaluateDataset,
  formatDuration,
  loadBackbone,
  loadDataset,
  outputText,
  stopTokenIds,
  type TokenizedDataset,
  type TokenizerLike,
  trainAdapterFromFiles,
} from '@para/train/node';
import type { Command } from 'commander';
import { defaultBackboneDir } from '../backbone';
import { commandPrefix, shellQuote } from '../shell';
import { parseNumber, startBackend } from './train';

interface DemoFlags {
  tasks?: string;
  steps?: string;
  r?: string;
  lr?: string;
  batchSize?: string;
  evalLimit?: string;
  rows?: string;
  out?: string;
  model?: string;
  seed?: string;
  plain?: boolean;
  backend?: string;
}

/** Defaults sized for about 5 minutes on 2 CPU cores (see BENCHMARKS.md "Training"). */
export const DEMO_DEFAULTS = {
  tasks: ['pos', 'antonym'],
  steps: 300,
  r: 8,
  lr: 1e-2,
  batchSize: 16,
  evalLimit: 100,
  rows: 8,
};

/** What a well-formed answer of each bundled task looks like (the "format" column). */
const ANSWER_FORMAT: Record<string, RegExp> = {
  arithmetic: /^\d+$/,
  category: /^(yes|no)$/,
  antonym: /^[a-z][a-z-]*$/,
  pos: /^(noun|verb|adjective|adverb)$/,
};

function formatRate(task: string, outputs: readonly string[]): number | undefined {
  const re = ANSWER_FORMAT[task];
  if (re === undefined || outputs.length === 0) return undefined;
  return outputs.filter((o) => re.test(o)).length / outputs.length;
}

function pct(x: number | undefined): string {
  return x === undefined ? '-' : `${(100 * x).toFixed(1)}%`;
}

/**
 * Seconds per unit of the demo's work on each backend, measured on 2 cores: one training
 * example in a PARA update (the task batches are ~20 tokens a row), one greedy test example in
 * the evaluation (bare and adapted both count), fixed costs (loading, the mixed batch).
 * wasm + OpenBLAS: BENCHMARKS.md "Training" (PARA r=8, 16×19: 111–121 ms per update); the
 * others measured with `para demo --steps 40 --eval-limit 40`.
 */
const DEMO_COSTS: Record<string, { example: number; evalExample: number; fixed: number }> = {
  'wasm+openblas': { example: 0.0075, evalExample: 0.03, fixed: 4 },
  wasm: { example: 0.022, evalExample: 0.04, fixed: 4 },
  tensorflow: { example: 0.0075, evalExample: 0.03, fixed: 6 },
  cpu: { example: 0.6, evalExample: 0.6, fixed: 6 },
  webgpu: { example: 0.15, evalExample: 1.5, fixed: 15 },
};

/** How long the demo's workload takes here, in seconds (an estimate, from DEMO_COSTS). */
export function estimateDemoSeconds(
  w: { tasks: number; steps: number; batchSize: number; evalLimit: number; rows: number },
  report: BackendReport,
): number {
  const active = report.backends.find((b) => b.name === report.active);
  const key =
    report.active === 'wasm' && /via @para\/blas/.test(active?.detail ?? '')
      ? 'wasm+openblas'
      : report.active;
  const c =
    DEMO_COSTS[key] ?? (DEMO_COSTS.wasm as { example: number; evalExample: number; fixed: number });
  // The timings are from 2 cores; OpenBLAS and tfjs-node use more where there are more.
  const cores = Math.max(1, availableParallelism());
  const speedup = key === 'wasm+openblas' || key === 'tensorflow' ? Math.min(4, cores / 2) : 1;
  const work = w.tasks * (w.steps * w.batchSize * c.example + 2 * w.evalLimit * c.evalExample);
  return c.fixed + work / Math.max(1, speedup) + w.tasks * w.rows * c.evalExample * 2;
}

/** "about 3 minutes on 2 cores". */
export function formatEstimate(seconds: number): string {
  const cores = availableParallelism();
  const where = `on ${cores} core${cores === 1 ? '' : 's'}`;
  if (seconds < 90) return `about ${Math.max(10, Math.round(seconds / 10) * 10)} seconds ${where}`;
  return `about ${Math.round(seconds / 60)} minutes ${where}`;
}

/**
 * What to run next, as commands that work when pasted in the directory the demo ran in: the
 * prefix is how para was started (PARA_COMMAND_PREFIX, set by `pnpm para` / `npm run demo`).
 */
export function nextCommands(
  tasks: string[],
  outRoot: string,
  dataDir: string,
  prompt: string | undefined,
): string[] {
  const p = commandPrefix();
  const rel = (f: string) => {
    const r = path.relative(process.cwd(), f);
    return r.startsWith('..') || path.isAbsolute(r) ? f : r;
  };
  const [a, b] = tasks as [string, string];
  return [
    `${p} generate --adapter ${shellQuote(rel(path.join(outRoot, a)))} --prompt ${shellQuote(prompt ?? 'Hello')}`,
    `${p} eval --data ${shellQuote(rel(path.join(dataDir, a, 'test.jsonl')))} --adapter ${shellQuote(rel(path.join(outRoot, a)))} --limit 20`,
    `${p} train --method lora --data ${shellQuote(rel(path.join(dataDir, b, 'train.jsonl')))} --out ${shellQuote(rel(path.join(outRoot, `${b}-lora`)))} --steps 100 --force`,
  ];
}

function repoDataDir(backboneDir: string): string {
  // assets/backbone → the repository root → data/tasks
  return path.join(path.dirname(path.dirname(path.resolve(backboneDir))), 'data', 'tasks');
}

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description(
      'fine-tune PARA adapters for two bundled tenants, compare with the bare backbone, then serve both in one mixed batch',
    )
    .option(
      '--tasks <a,b>',
      `two bundled tasks (arithmetic, category, antonym, pos; default ${DEMO_DEFAULTS.tasks.join(',')})`,
    )
    .option('--steps <n>', `training updates per tenant (default ${DEMO_DEFAULTS.steps})`)
    .option('--r <n>', `PARA bottleneck width (default ${DEMO_DEFAULTS.r})`)
    .option('--lr <x>', `peak learning rate (default ${DEMO_DEFAULTS.lr})`)
    .option('--batch-size <n>', `examples per update (default ${DEMO_DEFAULTS.batchSize})`)
    .option('--eval-limit <n>', `test examples per tenant (default ${DEMO_DEFAULTS.evalLimit})`)
    .option('--rows <n>', `rows per tenant in the mixed batch (default ${DEMO_DEFAULTS.rows})`)
    .option('--out <dir>', 'where the adapters go (default adapters/demo)')
    .option('--model <dir>', 'backbone directory (default: the bundled backbone)')
    .option('--seed <n>', 'seed (default 0)')
    .option('--plain', 'plain progress lines even on a terminal')
    .option(
      '-b, --backend <name>',
      'tfjs backend (tensorflow, wasm, cpu, webgpu); overrides PARA_BACKEND',
    )
    .action(async (f: DemoFlags) => {
      const started = performance.now();
      const say = (s = '') => process.stdout.write(`${s}\n`);
      const report = await startBackend(f.backend);
      const tasks =
        f.tasks === undefined
          ? DEMO_DEFAULTS.tasks
          : f.tasks
              .split(',')
              .map((s) => s.trim())
              .filter(Boolean);
      if (tasks.length !== 2 || tasks[0] === tasks[1])
        throw new ParaError('INVALID_ARGUMENT', 'the demo needs two different tasks', {
          field: '--tasks',
          expected: 'two of arithmetic, category, antonym, pos, e.g. "pos,category"',
          actual: f.tasks,
        });
      const steps = parseNumber(f.steps, '--steps', 'int') ?? DEMO_DEFAULTS.steps;
      const r = parseNumber(f.r, '--r', 'int') ?? DEMO_DEFAULTS.r;
      const lr = parseNumber(f.lr, '--lr', 'positive') ?? DEMO_DEFAULTS.lr;
      const batchSize = parseNumber(f.batchSize, '--batch-size', 'int') ?? DEMO_DEFAULTS.batchSize;
      const evalLimit = parseNumber(f.evalLimit, '--eval-limit', 'int') ?? DEMO_DEFAULTS.evalLimit;
      const rowsPerTenant = parseNumber(f.rows, '--rows', 'int') ?? DEMO_DEFAULTS.rows;
      const seed = parseNumber(f.seed, '--seed', 'nonneg-int') ?? 0;
      const outRoot = f.out ?? path.join('adapters', 'demo');

      const backbone = await loadBackbone(f.model ?? defaultBackboneDir());
      const { model, tokenizer } = backbone;
      const tok = tokenizer as TokenizerLike;
      const dataDir = repoDataDir(backbone.dir);
      say(`para demo: PARA adapters for two tenants on one backbone`);
      say(
        `this takes ${formatEstimate(estimateDemoSeconds({ tasks: tasks.length, steps, batchSize, evalLimit, rows: rowsPerTenant }, report))}`,
      );
      say(
        `backbone: ${backbone.dir} (${model.numParameters.toLocaleString('en-US')} parameters, ${model.config.numLayers} layers, d=${model.config.hiddenSize}, vocabulary ${model.config.vocabSize})`,
      );
      say();

      const adapters: AnyAdapter[] = [];
      const tests: TokenizedDataset[] = [];
      const table: {
        task: string;
        params: number;
        steps: number;
        time: number;
        bare: number | undefined;
        adapted: number | undefined;
        bareFormat: number | undefined;
        adaptedFormat: number | undefined;
      }[] = [];
      try {
        for (const task of tasks) {
          const out = path.join(outRoot, task);
          say(
            `[${task}] fine-tuning PARA (r=${r}) on ${path.join(dataDir, task, 'train.jsonl')}: ${steps} steps of ${batchSize} examples`,
          );
          const t = await trainAdapterFromFiles({
            method: 'para',
            ...(f.model === undefined ? { baseModelName: BUNDLED_BACKBONE_NAME } : {}),
            data: path.join(dataDir, task, 'train.jsonl'),
            out,
            steps,
            r,
            lr,
            batchSize,
            seed,
            backbone,
            label: task,
            plain: f.plain === true,
            log: (s) => process.stderr.write(`${s}\n`),
          });
          const test = await loadDataset(path.join(dataDir, task, 'test.jsonl'), tok, {
            maxLength: model.config.maxPositionEmbeddings,
          });
          tests.push(test);
          const adapter = await loadAdapter(out, model);
          adapters.push(adapter);
          const bare = await evaluateDataset(model, tok, test, {
            limit: evalLimit,
            keepPredictions: true,
          });
          const adapted = await evaluateDataset(model, tok, test, {
            limit: evalLimit,
            adapter: adapter.attach(model),
            keepPredictions: true,
          });
          const bareFormat = formatRate(
            task,
            (bare.predictions ?? []).map((p) => p.output),
          );
          const adaptedFormat = formatRate(
            task,
            (adapted.predictions ?? []).map((p) => p.output),
          );
          table.push({
            task,
            params: t.parameters,
            steps: t.result.step,
            time: t.result.elapsedMs,
            bare: bare.exact_match,
            adapted: adapted.exact_match,
            bareFormat,
            adaptedFormat,
          });
          const ex = (adapted.predictions ?? [])[0];
          say(
            `[${task}] saved ${out}; on the first ${adapted.n} test examples: exact match ${pct(bare.exact_match)} bare → ${pct(adapted.exact_match)} with PARA; well-formed answers ${pct(bareFormat)} → ${pct(adaptedFormat)}; completion loss ${bare.loss.toFixed(3)} → ${adapted.loss.toFixed(3)}`,
          );
          if (ex !== undefined)
            say(
              `[${task}]   e.g. ${JSON.stringify(ex.prompt)}: bare ${JSON.stringify((bare.predictions ?? [])[0]?.output ?? '')}, PARA ${JSON.stringify(ex.output)}, reference ${JSON.stringify(ex.reference)}`,
            );
          say();
        }

        // ---- one mixed batch: rows alternate between the tenants -------------------------
        const rows: { tenant: number; prompt: number[]; promptText: string; reference: string }[] =
          [];
        for (let i = 0; i < rowsPerTenant; i++) {
          tasks.forEach((_, k) => {
            const test = tests[k]!;
            const j = i % test.examples.length;
            const ex = test.examples[j]!;
            rows.push({
              tenant: k,
              prompt: ex.ids.slice(0, ex.promptLength),
              promptText: test.texts[j]!.prompt,
              reference: test.texts[j]!.completion.trim(),
            });
          });
        }
        const mixed = new MixedBatch(
          model,
          rows.map((row) => adapters[row.tenant]!),
        );
        const maxNew = Math.min(
          64,
          Math.max(...tests.flatMap((t) => t.examples.map((e) => e.ids.length - e.promptLength))) +
            2,
        );
        const t0 = performance.now();
        const g = await model.generate(
          rows.map((row) => row.prompt),
          {
            adapter: mixed.modelAdapter(),
            request: {},
            maxNewTokens: maxNew,
            stopTokens: stopTokenIds(tok),
          },
        );
        const ms = performance.now() - t0;
        // The same prompts decoded tenant by tenant, each batch with only its own adapter.
        let same = 0;
        for (let k = 0; k < tasks.length; k++) {
          const mine = rows.map((row, b) => ({ row, b })).filter((x) => x.row.tenant === k);
          const alone = await model.generate(
            mine.map((x) => x.row.prompt),
            {
              adapter: adapters[k]!.attach(model),
              request: {},
              maxNewTokens: maxNew,
              stopTokens: stopTokenIds(tok),
            },
          );
          mine.forEach((x, i) => {
            if (JSON.stringify(alone.tokens[i]) === JSON.stringify(g.tokens[x.b])) same++;
          });
        }
        say(
          `one mixed batch: ${rows.length} rows, each decoded with its own tenant's PARA adapter (${tasks.map((t, k) => `${t}: rows ${k}, ${k + 2}, …`).join('; ')}), ${ms.toFixed(0)} ms; ${same}/${rows.length} rows identical to decoding each tenant alone`,
        );
        const correct = tasks.map(() => 0);
        const shown = Math.min(rows.length, 12);
        rows.forEach((row, b) => {
          const output = outputText(tok, g.tokens[b] ?? []);
          const ok = output === row.reference;
          if (ok) correct[row.tenant] = (correct[row.tenant] as number) + 1;
          if (b < shown)
            say(
              `  ${String(b).padStart(2)} ${tasks[row.tenant]!.padEnd(10)} ${ok ? '✓' : '✗'} ${JSON.stringify(row.promptText).padEnd(44)} → ${JSON.stringify(output).padEnd(16)} (expected ${JSON.stringify(row.reference)})`,
            );
        });
        if (shown < rows.length) say(`  … ${rows.length - shown} more rows`);
        say();
        say('per tenant:');
        say(
          `  ${'tenant'.padEnd(12)}${'parameters'.padStart(11)}${'train time'.padStart(12)}${'bare EM'.padStart(10)}${'PARA EM'.padStart(10)}${'bare fmt'.padStart(10)}${'PARA fmt'.padStart(10)}${'mixed batch EM'.padStart(16)}`,
        );
        table.forEach((t, k) => {
          say(
            `  ${t.task.padEnd(12)}${t.params.toLocaleString('en-US').padStart(11)}${formatDuration(t.time).padStart(12)}${pct(t.bare).padStart(10)}${pct(t.adapted).padStart(10)}${pct(t.bareFormat).padStart(10)}${pct(t.adaptedFormat).padStart(10)}${`${correct[k]}/${rowsPerTenant} ${pct((correct[k] as number) / rowsPerTenant)}`.padStart(16)}`,
          );
        });
        say();
        say(
          `EM = exact match, fmt = well-formed answers (a number, yes/no, one word, a part of speech), on the first ${evalLimit} test examples (greedy, stop at EOS or newline).`,
        );
        say(
          `The bundled backbone is a toy (4M parameters, 6M tokens of WordNet): adapters draw out what it knows (parts of speech, some antonyms), not skills it lacks (try --tasks arithmetic,category); see BENCHMARKS.md "Training".`,
        );
        say(`Adapters saved in ${outRoot}/. Total ${formatDuration(performance.now() - started)}.`);
        say();
        say('Next, from this directory:');
        for (const c of nextCommands(tasks, outRoot, dataDir, tests[0]?.texts[0]?.prompt))
          say(`  ${c}`);
      } finally {
        for (const a of adapters) a.dispose();
        model.dispose();
      }
    });
}
