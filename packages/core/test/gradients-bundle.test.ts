import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { gradientRegistration } from '../src/backend/gradients';

const pkgDir = join(dirname(fileURLToPath(import.meta.url)), '..');

describe('bundled tfjs gradients', () => {
  it('are generated from the installed tfjs-core and the committed file is up to date', async () => {
    // @ts-expect-error -- plain .mjs build script without types
    const { bundleTfjsGradients } = await import('../scripts/bundle-tfjs-gradients.mjs');
    const committed = readFileSync(join(pkgDir, 'src/backend/tfjs-gradients.generated.js'), 'utf8');
    expect(committed === (await bundleTfjsGradients())).toBe(true);
    const reg = gradientRegistration();
    expect(reg.bundledVersion).toBe(tf.version_core);
  });

  it('register the gradients training needs', () => {
    for (const k of [
      'BatchMatMul',
      'GatherV2',
      'Softmax',
      'Sum',
      'Multiply',
      'Rsqrt',
      'Erf',
      'Sigmoid',
      'Reshape',
      'Transpose',
      'Slice',
      'Concat',
      'Max',
      'Exp',
      'Log',
    ]) {
      expect(tf.getGradient(k), k).toBeDefined();
    }
  });
});
