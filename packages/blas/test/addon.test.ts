import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { blasAddon, loadAddonFrom, packageRoot, packSpec } from '../src/addon';
import { heapMatMul, loadBlas, OPENBLAS_THREAD_TIMEOUT, sgemm } from '../src/index';
import { expectAddonLoaded, seeded, status } from './helpers';

it('the addon loads (required with PARA_BLAS_REQUIRED=1; otherwise the rest skip where it cannot)', () => {
  expectAddonLoaded();
});

it('loadBlas reports OpenBLAS, its thread count and the binary', () => {
  const s = loadBlas();
  expect(s).toEqual(status);
  if (s.available) {
    expect(s.openblas).toMatch(/OpenBLAS \d+\.\d+/);
    expect(s.threads).toBeGreaterThanOrEqual(1);
    expect(s.binary).toMatch(/\.node$/);
    expect(s.reason).toBeUndefined();
  } else {
    expect(s.reason).toBeTruthy();
  }
});

it("OpenBLAS loads with para's OPENBLAS_THREAD_TIMEOUT unless the environment sets one; the environment is left as it was", () => {
  if (!status.available) return;
  const before = process.env.OPENBLAS_THREAD_TIMEOUT;
  expect(status.threadTimeout).toEqual(
    before === undefined
      ? { value: OPENBLAS_THREAD_TIMEOUT, source: 'para' }
      : { value: before, source: 'environment' },
  );
  try {
    delete process.env.OPENBLAS_THREAD_TIMEOUT;
    expect(loadAddonFrom(packageRoot).status.threadTimeout).toEqual({
      value: '20',
      source: 'para',
    });
    expect(process.env.OPENBLAS_THREAD_TIMEOUT).toBeUndefined();
    process.env.OPENBLAS_THREAD_TIMEOUT = '12';
    expect(loadAddonFrom(packageRoot).status.threadTimeout).toEqual({
      value: '12',
      source: 'environment',
    });
    expect(process.env.OPENBLAS_THREAD_TIMEOUT).toBe('12');
  } finally {
    if (before === undefined) delete process.env.OPENBLAS_THREAD_TIMEOUT;
    else process.env.OPENBLAS_THREAD_TIMEOUT = before;
  }
});

it.runIf(`${process.platform}-${process.arch}` === 'linux-x64')(
  'the committed linux-x64 prebuild was built from these sources',
  () => {
    const r = spawnSync(
      process.execPath,
      [join(packageRoot, 'scripts/build-native.cjs'), '--check'],
      { encoding: 'utf8' },
    );
    expect(r.status, `${r.stdout}${r.stderr}`).toBe(0);
  },
);

describe('the addon-missing path', () => {
  it('a package root without a binary: available false with a reason, no throw', () => {
    const dir = mkdtempSync(join(tmpdir(), 'para-blas-missing-'));
    try {
      const r = loadAddonFrom(dir);
      expect(r.addon).toBeUndefined();
      expect(r.status.available).toBe(false);
      expect(r.status.reason).toMatch(/No native build|no native build/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a binary that cannot load (as when libopenblas is missing): available false, the loader error as reason', () => {
    const dir = mkdtempSync(join(tmpdir(), 'para-blas-broken-'));
    try {
      mkdirSync(join(dir, 'prebuilds', `${process.platform}-${process.arch}`), { recursive: true });
      writeFileSync(
        join(dir, 'prebuilds', `${process.platform}-${process.arch}`, 'broken.node'),
        'not a shared object',
      );
      const r = loadAddonFrom(dir);
      expect(r.status.available).toBe(false);
      expect(r.status.reason).toMatch(/broken\.node/);
      expect(r.status.reason).toMatch(/libopenblas0/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** Row-major reference: c[m,n] = op(a) · op(b) in float64. */
function naive(
  a: Float32Array,
  b: Float32Array,
  m: number,
  n: number,
  k: number,
  tA: boolean,
  tB: boolean,
): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) {
        const av = tA ? (a[p * m + i] as number) : (a[i * k + p] as number);
        const bv = tB ? (b[j * k + p] as number) : (b[p * n + j] as number);
        s += av * bv;
      }
      c[i * n + j] = s;
    }
  }
  return c;
}

function maxDiff(x: ArrayLike<number>, y: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < x.length; i++) d = Math.max(d, Math.abs((x[i] as number) - (y[i] as number)));
  return d;
}

describe.runIf(status.available)('raw sgemm', () => {
  const shapes: Array<[number, number, number]> = [
    [7, 5, 3],
    [1, 9, 4],
    [6, 1, 5],
    [1, 1, 1],
    [33, 17, 65],
    [64, 64, 64],
  ];
  for (const [m, n, k] of shapes) {
    for (const [tA, tB] of [
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ] as const) {
      it(`equals a naive triple loop: m=${m} n=${n} k=${k} tA=${tA} tB=${tB}`, () => {
        const a = seeded(m * k, m + 3 * k);
        const b = seeded(k * n, n + 5 * k);
        const c = new Float32Array(m * n).fill(Number.NaN);
        sgemm(a, b, c, m, n, k, tA, tB);
        expect(maxDiff(c, naive(a, b, m, n, k, tA, tB))).toBeLessThan(2 ** -20 * (k + 2));
      });
    }
  }

  it('k = 0 gives zeros; m = 0 or n = 0 writes nothing', () => {
    const c = new Float32Array(6).fill(7);
    sgemm(new Float32Array(0), new Float32Array(0), c, 2, 3, 0);
    expect(Array.from(c)).toEqual([0, 0, 0, 0, 0, 0]);
    const d = new Float32Array(2).fill(7);
    sgemm(new Float32Array(0), new Float32Array(8), d, 0, 2, 4);
    expect(Array.from(d)).toEqual([7, 7]);
  });

  it('rejects arrays shorter than the shapes, and non-Float32Arrays', () => {
    expect(() =>
      sgemm(new Float32Array(5), new Float32Array(6), new Float32Array(4), 2, 2, 3),
    ).toThrow(RangeError);
    expect(() =>
      sgemm(new Float32Array(6), new Float32Array(6), new Float32Array(3), 2, 2, 3),
    ).toThrow(RangeError);
    expect(() =>
      sgemm(
        new Float64Array(6) as unknown as Float32Array,
        new Float32Array(6),
        new Float32Array(4),
        2,
        2,
        3,
      ),
    ).toThrow(TypeError);
    expect(() =>
      sgemm(new Float32Array(6), new Float32Array(6), new Float32Array(4), -2, 2, 3),
    ).toThrow(RangeError);
  });
});

describe.runIf(status.available)('heapMatMul bounds checks', () => {
  const SIZE = 4096;
  /** A heap with A (2x3) at 0, B (3x2) at 64, C (2x2) at 128. */
  function heap(): ArrayBuffer {
    const buf = new ArrayBuffer(SIZE);
    new Float32Array(buf, 0, 6).set([1, 2, 3, 4, 5, 6]);
    new Float32Array(buf, 64, 6).set([1, 0, 0, 1, 1, 1]);
    return buf;
  }
  const ok = { a: 0, b: 64, c: 128, m: 2, n: 2, k: 3 };

  it('computes in place on a plain ArrayBuffer', () => {
    const buf = heap();
    heapMatMul(buf, ok);
    expect(Array.from(new Float32Array(buf, 128, 4))).toEqual([4, 5, 10, 11]);
    heapMatMul(buf, {
      ...ok,
      bias: { offset: 256, length: 2, strides: [0, 0, 1] },
      activation: 'relu',
    });
    expect(Array.from(new Float32Array(buf, 128, 4))).toEqual([4, 5, 10, 11]); // zero bias
  });

  const bad: Array<[string, Record<string, unknown>, RegExp | (new () => Error)]> = [
    ['output offset past the end', { c: SIZE }, RangeError],
    ['output running past the end', { c: SIZE - 8 }, RangeError],
    ['A past the end', { a: SIZE - 12 }, RangeError],
    ['B far past the end', { b: 2 ** 40 }, RangeError],
    ['a misaligned offset', { a: 2 }, RangeError],
    ['a negative offset', { a: -4 }, RangeError],
    ['a fractional offset', { b: 64.5 }, RangeError],
    ['a NaN dimension', { m: Number.NaN }, RangeError],
    [
      'a batch whose last A lies past the end',
      { batchShape: [3], aStrides: [SIZE / 4], bStrides: [0] },
      RangeError,
    ],
    [
      'an overflowing batch stride',
      { batchShape: [2 ** 30], aStrides: [2 ** 49], bStrides: [0] },
      RangeError,
    ],
    [
      'a bias shorter than its strides address',
      { bias: { offset: 256, length: 1, strides: [0, 0, 1] } },
      RangeError,
    ],
    ['a bias past the end', { bias: { offset: SIZE, length: 2, strides: [0, 0, 1] } }, RangeError],
    ['PReLU without weights', { activation: 'prelu' }, TypeError],
    ['an output overlapping A', { c: 8 }, RangeError],
  ];
  for (const [label, patch, error] of bad) {
    it(`throws, writing nothing, on ${label}`, () => {
      const buf = heap();
      const before = new Uint8Array(buf).slice();
      expect(() => heapMatMul(buf, { ...ok, ...patch } as typeof ok)).toThrow(error as RegExp);
      expect(new Uint8Array(buf)).toEqual(before);
    });
  }

  it('throws on a detached buffer, a SharedArrayBuffer and a short parameter block', () => {
    const buf = heap();
    structuredClone(buf, { transfer: [buf] });
    expect(buf.byteLength).toBe(0);
    expect(() => heapMatMul(buf, ok)).toThrow(RangeError);
    expect(() => heapMatMul(new SharedArrayBuffer(SIZE) as unknown as ArrayBuffer, ok)).toThrow(
      TypeError,
    );
    const addon = blasAddon();
    expect(() => addon?.matmulHeap(heap(), new Float64Array(5))).toThrow(TypeError);
    expect(() => addon?.matmulHeap(heap(), packSpec(ok).subarray(0, 20))).toThrow(TypeError);
    expect(() =>
      addon?.matmulHeap(heap(), Array.from(packSpec(ok)) as unknown as Float64Array),
    ).toThrow(TypeError);
  });

  it('throws on an offset past the end of the real wasm heap', async () => {
    await import('@tensorflow/tfjs-backend-wasm');
    await tf.setBackend('wasm');
    const backend = tf.engine().backend as unknown as {
      wasm: { HEAPU8: Uint8Array };
      dataIdMap: { get(id: object): { memoryOffset: number } };
    };
    const a = tf.tensor2d([1, 2, 3, 4], [2, 2]);
    const off = backend.dataIdMap.get(a.dataId).memoryOffset;
    const wasmHeap = backend.wasm.HEAPU8.buffer as ArrayBuffer;
    expect(() =>
      heapMatMul(wasmHeap, { a: off, b: off, c: wasmHeap.byteLength, m: 2, n: 2, k: 2 }),
    ).toThrow(/outside the heap/);
    expect(() =>
      heapMatMul(wasmHeap, { a: wasmHeap.byteLength - 8, b: off, c: off + 1024, m: 2, n: 2, k: 2 }),
    ).toThrow(/A outside the heap/);
    expect(Array.from(a.dataSync())).toEqual([1, 2, 3, 4]);
    a.dispose();
  });
});
