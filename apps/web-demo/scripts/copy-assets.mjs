#!/usr/bin/env node
/**
 * Copies what the web demo serves as static files into public/static/ (git-ignored), and
 * writes public/static/manifest.json listing them (and `bytes`: the checkpoint bytes the page
 * loads, for its progress bar):
 *   backbone/      the bundled default backbone (assets/backbone: config, weights, tokenizer)
 *   adapters/<t>/  the bundled tenant adapters (assets/adapters/<t>)
 *   tasks/<t>/     the bundled tenant datasets (data/tasks/<t>/{train,test}.jsonl)
 *   tfjs-wasm/     tfjs-backend-wasm's binaries (the wasm backend fetches them at run time)
 */
import { copyFile, mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const app = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const repo = path.resolve(app, '..', '..');
const out = path.join(app, 'public', 'static');

async function exists(p) {
  return stat(p).then(
    () => true,
    () => false,
  );
}

async function copy(from, to) {
  await mkdir(path.dirname(to), { recursive: true });
  await copyFile(from, to);
}

await rm(out, { recursive: true, force: true });
const manifest = { backbone: 'backbone', adapters: [], tasks: [], bytes: 0 };

for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) {
  const from = path.join(repo, 'assets', 'backbone', f);
  if (!(await exists(from))) throw new Error(`copy-assets: missing ${from} (the bundled backbone)`);
  await copy(from, path.join(out, 'backbone', f));
  if (f.endsWith('.safetensors')) manifest.bytes += (await stat(from)).size;
}

const adapterRoot = path.join(repo, 'assets', 'adapters');
for (const name of (await exists(adapterRoot)) ? (await readdir(adapterRoot)).sort() : []) {
  const dir = path.join(adapterRoot, name);
  if (!(await exists(path.join(dir, 'adapter_config.json')))) continue;
  for (const f of ['adapter_config.json', 'adapter_model.safetensors'])
    await copy(path.join(dir, f), path.join(out, 'adapters', name, f));
  manifest.bytes += (await stat(path.join(dir, 'adapter_model.safetensors'))).size;
  manifest.adapters.push({ name, dir: `adapters/${name}`, task: name });
}

const taskRoot = path.join(repo, 'data', 'tasks');
for (const name of (await readdir(taskRoot)).sort()) {
  if (!(await exists(path.join(taskRoot, name, 'train.jsonl')))) continue;
  for (const split of ['train', 'test'])
    await copy(
      path.join(taskRoot, name, `${split}.jsonl`),
      path.join(out, 'tasks', name, `${split}.jsonl`),
    );
  manifest.tasks.push({
    name,
    train: `tasks/${name}/train.jsonl`,
    test: `tasks/${name}/test.jsonl`,
  });
}

const require = createRequire(import.meta.url);
const wasmDir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'));
for (const f of [
  'tfjs-backend-wasm.wasm',
  'tfjs-backend-wasm-simd.wasm',
  'tfjs-backend-wasm-threaded-simd.wasm',
]) {
  await copy(path.join(wasmDir, 'dist', f), path.join(out, 'tfjs-wasm', f));
}

await writeFile(path.join(out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
process.stderr.write(
  `copy-assets: backbone, ${manifest.adapters.length} adapters, ${manifest.tasks.length} tasks → ${path.relative(repo, out)}\n`,
);
