#!/usr/bin/env node
// Packaging check (part of `pnpm test`): every publishable package under packages/ packs with
// `pnpm pack`; the tarballs install into a plain npm project; every entry in each `exports` map
// loads there with `import` and with `require`, and type-checks from both an ES module and a
// CommonJS module under TypeScript's `nodenext` resolution; and the README's ten-line program
// (examples/node/quickstart.mjs: load the bundled backbone, train PARA on 20 in-memory records,
// save, reload, generate) runs there against the installed `para` package.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const work = mkdtempSync(join(tmpdir(), 'para-pack-'));
const run = (cmd, args, cwd) =>
  execFileSync(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
let failures = 0;
let checks = 0;
const check = (label, fn) => {
  checks++;
  try {
    fn();
    console.log(`  ok   ${label}`);
  } catch (e) {
    failures++;
    console.log(
      `  FAIL ${label}\n${String(e.stdout ?? '')}${String(e.stderr ?? '')}${e.stdout || e.stderr ? '' : e.message}`,
    );
  }
};

try {
  const pkgs = readdirSync(join(root, 'packages'))
    .map((d) => join(root, 'packages', d))
    .filter((d) => existsSync(join(d, 'package.json')))
    .map((dir) => ({ dir, json: JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) }))
    .filter((p) => !p.json.private);

  console.log(`packing ${pkgs.map((p) => p.json.name).join(', ')}`);
  const tarballs = [];
  for (const p of pkgs) {
    const out = run('pnpm', ['pack', '--pack-destination', work], p.dir).trim().split('\n').pop();
    tarballs.push(out.startsWith('/') ? out : join(work, out));
  }

  const project = join(work, 'consumer');
  run('mkdir', ['-p', project]);
  writeFileSync(
    join(project, 'package.json'),
    JSON.stringify({ name: 'consumer', private: true, version: '0.0.0' }),
  );
  const tfjsVersion = JSON.parse(readFileSync(join(root, 'packages/core/package.json'), 'utf8'))
    .dependencies['@tensorflow/tfjs-core'];
  console.log('installing the tarballs into a plain npm project');
  run(
    'npm',
    [
      'install',
      '--no-audit',
      '--no-fund',
      '--loglevel=error',
      ...tarballs,
      `@tensorflow/tfjs-backend-cpu@${tfjsVersion}`,
      '@types/node@20',
      'typescript@5.9.3',
      // tfjs-core's own .d.ts files use the global `Long` type of @types/long 4.
      '@types/long@4',
    ],
    project,
  );

  const esmLines = [];
  const cjsLines = [];
  const tsEsm = [];
  const tsCjs = [];
  for (const p of pkgs) {
    const subpaths = Object.keys(p.json.exports ?? { '.': {} }).filter(
      (s) => s !== './package.json',
    );
    subpaths.forEach((sub, i) => {
      const spec = sub === '.' ? p.json.name : `${p.json.name}/${sub.slice(2)}`;
      const id = `m${esmLines.length}_${i}`;
      esmLines.push(
        `import * as ${id} from '${spec}'; if (Object.keys(${id}).length === 0) throw new Error('${spec}: no exports (import)');`,
      );
      cjsLines.push(
        `{ const m = require('${spec}'); if (Object.keys(m).length === 0) throw new Error('${spec}: no exports (require)'); }`,
      );
      tsEsm.push(
        `import * as ${id} from '${spec}'; export const ${id}_keys: string[] = Object.keys(${id});`,
      );
      tsCjs.push(
        `import ${id} = require('${spec}'); export const ${id}_keys: string[] = Object.keys(${id});`,
      );
    });
  }
  // A real call through the installed package, both ways.
  esmLines.push(
    `import { initBackend, Rng } from '@para/core/node'; const r = await initBackend({ backend: 'cpu' }); if (r.active !== 'cpu' || new Rng(1).next() !== new Rng(1).next()) throw new Error('bad');`,
  );
  cjsLines.push(
    `require('@para/core/node').initBackend({ backend: 'cpu' }).then((r) => { if (r.active !== 'cpu') { console.error('bad'); process.exit(1); } });`,
  );
  writeFileSync(join(project, 'check.mjs'), esmLines.join('\n'));
  writeFileSync(join(project, 'check.cjs'), cjsLines.join('\n'));
  writeFileSync(join(project, 'check-esm.mts'), tsEsm.join('\n'));
  writeFileSync(join(project, 'check-cjs.cts'), tsCjs.join('\n'));
  writeFileSync(
    join(project, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        module: 'nodenext',
        moduleResolution: 'nodenext',
        target: 'es2022',
        strict: true,
        noEmit: true,
        skipLibCheck: false,
        types: ['node', 'long'],
        lib: ['es2022', 'dom'],
      },
      files: ['check-esm.mts', 'check-cjs.cts'],
    }),
  );

  check('every export loads with import', () => run('node', ['check.mjs'], project));
  check('every export loads with require', () => run('node', ['check.cjs'], project));
  check('types resolve from ESM and CJS (tsc, nodenext, skipLibCheck off)', () =>
    run('node', [join(project, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], project),
  );
  check(
    'examples/node/quickstart.mjs runs from the installed tarballs (train, save, reload, generate)',
    () => {
      writeFileSync(
        join(project, 'quickstart.mjs'),
        readFileSync(join(root, 'examples', 'node', 'quickstart.mjs'), 'utf8'),
      );
      const out = run(
        'node',
        [
          'quickstart.mjs',
          join(root, 'assets', 'backbone'),
          join(project, 'adapters', 'quickstart'),
        ],
        project,
      );
      process.stdout.write(`${out.trimEnd().replace(/^/gm, '       ')}\n`);
      if (!/trained \d+ updates .*saved to/.test(out))
        throw new Error(`unexpected output:\n${out}`);
      const config = JSON.parse(
        readFileSync(join(project, 'adapters', 'quickstart', 'adapter_config.json'), 'utf8'),
      );
      if (config.peft_type !== 'PARA' || typeof config.base_model_name_or_path !== 'string')
        throw new Error(`bad adapter_config.json: ${JSON.stringify(config)}`);
    },
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}
console.log(`packages: ${checks - failures} passed, ${failures} failed`);
process.exit(failures === 0 ? 0 : 1);
