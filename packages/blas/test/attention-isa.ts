import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fusedAttentionIsa, installBlasKernels, uninstallBlasKernels } from '../src/index';
import { CASES, run } from './attention-cases';
import { cpuHas, expectAddonLoaded, expectNear, status } from './helpers';

/**
 * Fused attention's tile path (rows ≥ 16) under PARA_FUSED_ISA=`isa`, against the generic path:
 * the suite runs on the CPU's widest instruction set, so each narrower build of the products
 * (para_tile.h) gets a file of its own that sets the variable before the addon's first
 * attention (the choice is made once per process; vitest runs each file in its own process).
 */
export function tilePathSuite(isa: 'avx2' | 'baseline'): void {
  it('the addon loads (required with PARA_BLAS_REQUIRED=1; otherwise the rest skip where it cannot)', () => {
    expectAddonLoaded();
  });

  describe.runIf(status.available)(`fused attention's tile path on ${isa}`, () => {
    beforeAll(async () => {
      await tf.setBackend('wasm');
      installBlasKernels();
    });
    afterAll(() => uninstallBlasKernels());

    it(`runs the ${isa} products`, () => {
      const expected =
        isa === 'baseline' || process.arch !== 'x64' || !cpuHas('avx2', 'fma') ? 'baseline' : isa;
      expect(fusedAttentionIsa()).toBe(expected);
    });

    for (const c of CASES.filter((k) => (k.Hq / k.Hkv) * k.T >= 16)) {
      it(`B${c.B} Hq${c.Hq}/Hkv${c.Hkv} T${c.T} S${c.S} hd${c.hd} mask ${c.mask}: forward and gradients equal the generic path`, () => {
        const fused = run(c, true);
        const generic = run(c, false);
        ['out', 'dq', 'dk', 'dv'].forEach((name, i) => {
          expectNear(fused[i] as Float32Array, generic[i] as Float32Array, 1e-5, name);
        });
      });
    }
  });
}
