import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type AdapterRequest, loadAdapter } from '@para/adapters/node';
import { initBackend } from '@para/core/node';
import { type GenerateOptions, loadPretrained } from '@para/model/node';
import * as tf from '@tensorflow/tfjs-core';
import { expect, it } from 'vitest';
import { webGpuKernelsInstalled } from '../src/index';
import { listed, useWebGpu } from './helpers';

const ASSETS = fileURLToPath(new URL('../../../assets', import.meta.url));
const ADAPTERS = readdirSync(`${ASSETS}/adapters`, { withFileTypes: true })
  .filter((e) => e.isDirectory())
  .map((e) => e.name)
  .sort();
const PROMPTS = [
  'Part of speech of uneasiness:',
  '24+12=',
  'Antonym of cold:',
  'Category of apple:',
  'Once upon a time',
];

/** Greedy continuations of PROMPTS (one left-padded batch) by the bare backbone and every adapter. */
async function decodeAll(): Promise<Record<string, number[][]>> {
  const { model, tokenizer } = await loadPretrained(`${ASSETS}/backbone`);
  const ids = PROMPTS.map((p) => tokenizer.encode(p));
  const out: Record<string, number[][]> = {};
  try {
    for (const name of ['', ...ADAPTERS]) {
      const adapter = name ? await loadAdapter(`${ASSETS}/adapters/${name}`, model) : undefined;
      try {
        const options: GenerateOptions<AdapterRequest> = { maxNewTokens: 12, stopTokens: [] };
        if (adapter) {
          options.adapter = adapter.attach(model);
          options.request = {};
        }
        const result = await model.generate(ids, options);
        out[name || 'bare'] = result.tokens;
      } finally {
        (adapter as { dispose?: () => void } | undefined)?.dispose?.();
      }
    }
  } finally {
    model.dispose();
  }
  return out;
}

it.skipIf(!listed('webgpu') || !listed('wasm'))(
  'greedy decoding with the fused WGSL kernels equals wasm on the bundled backbone and every bundled adapter',
  async () => {
    expect(ADAPTERS.length).toBeGreaterThanOrEqual(4);
    await initBackend({ backend: 'wasm' });
    expect(tf.getBackend()).toBe('wasm');
    const wasm = await decodeAll();
    await useWebGpu();
    const before = tf.memory().numTensors;
    const webgpu = await decodeAll();
    expect(webGpuKernelsInstalled()).toBe(true);
    expect(tf.memory().numTensors).toBe(before);
    expect(Object.keys(webgpu)).toEqual(['bare', ...ADAPTERS]);
    // The adapters change the continuations (the comparison covers their code paths).
    expect(new Set(Object.values(wasm).map((t) => JSON.stringify(t))).size).toBeGreaterThan(1);
    for (const name of Object.keys(wasm)) {
      expect(webgpu[name], `${name}: webgpu tokens = wasm tokens`).toEqual(wasm[name]);
    }
  },
);
