import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
// @para/ops from source (as @para/blas's tests do): the ops and the dispatch switch of one module
// instance.
import { FUSED_KERNELS, setFusedKernelsEnabled } from '../../ops/src/fused';
import { applyRope, rmsNorm, ropeCosSin, ropeInvFreq, swiglu } from '../../ops/src/index';
import { WEBGPU_KERNEL_NAMES, webGpuKernelsInstalled } from '../src/index';
import { expectNear, listed, seeded, useWebGpu } from './helpers';

/** The kernels `fn` runs (names, in order), its result disposed. */
async function kernelsOf(fn: () => tf.Tensor | tf.Tensor[]): Promise<string[]> {
  const info = await tf.profile(fn);
  tf.dispose(info.result as tf.Tensor | tf.Tensor[]);
  return info.kernelNames;
}

async function read(ts: tf.Tensor | tf.Tensor[]): Promise<Float32Array[]> {
  const list = Array.isArray(ts) ? ts : [ts];
  const out: Float32Array[] = [];
  for (const t of list) out.push((await t.data()) as Float32Array);
  tf.dispose(list);
  return out;
}

/**
 * Run `fn` fused (our kernels) and generic (dispatch off); compare every output within `atol`
 * (+ `rtol`·|expected|); check the fused run used `kernel` and the tensor count stayed flat.
 */
async function compare(
  label: string,
  kernel: string,
  fn: () => tf.Tensor | tf.Tensor[],
  atol = 1e-5,
  rtol = 0,
): Promise<number> {
  const before = tf.memory().numTensors;
  setFusedKernelsEnabled(false);
  let generic: Float32Array[];
  try {
    generic = await read(tf.tidy(fn));
  } finally {
    setFusedKernelsEnabled(true);
  }
  const names = await kernelsOf(fn);
  expect(names, `${label}: ${kernel} ran`).toContain(kernel);
  const fused = await read(tf.tidy(fn));
  expect(fused.length).toBe(generic.length);
  let worst = 0;
  for (let i = 0; i < fused.length; i++) {
    worst = Math.max(
      worst,
      expectNear(
        fused[i] as Float32Array,
        generic[i] as Float32Array,
        `${label} #${i}`,
        atol,
        rtol,
      ),
    );
  }
  expect(tf.memory().numTensors, `${label}: tensors flat`).toBe(before);
  return worst;
}

describe.skipIf(!listed('webgpu'))(
  'fused WGSL kernels on webgpu (Dawn in Node) equal the generic tfjs path',
  () => {
    beforeAll(async () => {
      await useWebGpu();
    });

    it('installs every kernel @para/ops dispatches to and the forward-only ones', () => {
      expect(webGpuKernelsInstalled()).toBe(true);
      for (const name of WEBGPU_KERNEL_NAMES) expect(tf.getKernel(name, 'webgpu')).toBeDefined();
      // Names of the contract (packages/ops/src/fused.ts), all but the ones webgpu leaves to the
      // generic path (ParaAttentionGrad: attention is forward-only here; newer contract rows).
      const contract = new Set<string>(Object.values(FUSED_KERNELS));
      for (const name of WEBGPU_KERNEL_NAMES) expect(contract.has(name), name).toBe(true);
      expect([...WEBGPU_KERNEL_NAMES].sort()).toEqual([
        'ParaAddRmsNorm',
        'ParaAddRmsNormGrad',
        'ParaAttention',
        'ParaRmsNorm',
        'ParaRmsNormGrad',
        'ParaRope',
        'ParaRopeKvWrite',
        'ParaSwiGlu',
        'ParaSwiGluGrad',
        'ParaSwiGluScaled',
      ]);
    });

    for (const d of [1, 3, 257, 2048]) {
      for (const rows of [1, 7, 300]) {
        it(`ParaRmsNorm and its gradient, rows ${rows}, d ${d}`, async () => {
          const xv = seeded(rows * d, 11 + d + rows, 2);
          const x = tf.tensor2d(xv, [rows, d]);
          // dx = r·g − x·r³·mean(g·x) cancels in float32 where r = rsqrt(mean(x²) + eps) is large
          // (d = 1, small |x|): both paths then round at ~1e-7·r, so the bound scales with max r
          // (≈ 1 for every row here with d ≥ 3).
          let maxR = 1;
          for (let r = 0; r < rows; r++) {
            let ss = 0;
            for (let j = 0; j < d; j++) ss += (xv[r * d + j] as number) ** 2;
            maxR = Math.max(maxR, 1 / Math.sqrt(ss / d + 1e-5));
          }
          const w = tf.tensor1d(seeded(d, 5 + d, 1.5));
          const dy = tf.tensor2d(seeded(rows * d, 3 + rows, 1), [rows, d]);
          for (const unitOffset of [false, true]) {
            await compare(`rmsNorm ${rows}x${d} unit ${unitOffset}`, 'ParaRmsNorm', () =>
              rmsNorm(x, w, 1e-5, { unitOffset }),
            );
            // dweight sums `rows` products: float32 rounding grows with the sum's size.
            await compare(
              `rmsNorm grads ${rows}x${d} unit ${unitOffset}`,
              'ParaRmsNormGrad',
              () =>
                tf.grads((a: tf.Tensor, b: tf.Tensor) =>
                  tf.mul(rmsNorm(a, b, 1e-5, { unitOffset }), dy),
                )([x, w]),
              1e-5 * maxR,
              1e-5,
            );
          }
          tf.dispose([x, w, dy]);
        });
      }
    }

    it('ParaRmsNorm over a rank-3 input', async () => {
      const x = tf.tensor3d(seeded(2 * 5 * 64, 1), [2, 5, 64]);
      const w = tf.tensor1d(seeded(64, 2));
      await compare('rmsNorm [2,5,64]', 'ParaRmsNorm', () => rmsNorm(x, w, 1e-6));
      tf.dispose([x, w]);
    });

    for (const shape of [[1], [3], [7, 257], [300, 688], [2, 3, 2048]] as number[][]) {
      it(`ParaSwiGlu and its gradient, [${shape.join(', ')}]`, async () => {
        const n = shape.reduce((a, b) => a * b, 1);
        const gate = tf.tensor(seeded(n, 21 + n, 6), shape);
        const up = tf.tensor(seeded(n, 7 + n, 2), shape);
        const dy = tf.tensor(seeded(n, 9 + n, 1), shape);
        await compare(`swiglu [${shape}]`, 'ParaSwiGlu', () => swiglu(gate, up));
        await compare(`swiglu grads [${shape}]`, 'ParaSwiGluGrad', () =>
          tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.mul(swiglu(a, b), dy))([gate, up]),
        );
        tf.dispose([gate, up, dy]);
      });
    }

    it('ParaSwiGlu with saturating gates (±100, ±1e4)', async () => {
      const gate = tf.tensor1d([-1e4, -100, -30, 0, 30, 100, 1e4]);
      const up = tf.tensor1d([1, 2, 3, 4, 5, 6, 7]);
      await compare('swiglu saturated', 'ParaSwiGlu', () => swiglu(gate, up));
      tf.dispose([gate, up]);
    });

    for (const hd of [32, 64, 128]) {
      for (const [B, H, T] of [
        [1, 4, 1],
        [2, 3, 7],
        [3, 2, 33],
      ] as [number, number, number][]) {
        for (const perRow of [false, true]) {
          it(`ParaRope forward, inverse (its gradient) — B ${B}, H ${H}, T ${T}, hd ${hd}, ${perRow ? 'per-row' : 'broadcast'} tables`, async () => {
            const x = tf.tensor4d(seeded(B * H * T * hd, B + H + T + hd, 1), [B, H, T, hd]);
            const dy = tf.tensor4d(seeded(B * H * T * hd, 77 + T, 1), [B, H, T, hd]);
            const positions = Array.from({ length: perRow ? B : 1 }, (_, b) =>
              Array.from({ length: T }, (_, t) => 3 * b + t + (perRow ? 5 : 100)),
            );
            const { cos, sin } = ropeCosSin(positions, ropeInvFreq({ headDim: hd, theta: 10000 }));
            await compare(`rope ${B},${H},${T},${hd}`, 'ParaRope', () => applyRope(x, cos, sin));
            await compare(`rope grad ${B},${H},${T},${hd}`, 'ParaRope', () =>
              tf.grad((a: tf.Tensor) => tf.mul(applyRope(a, cos, sin), dy))(x),
            );
            tf.dispose([x, dy, cos, sin]);
          });
        }
      }
    }
  },
);
