import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import { disposeAll, liveTensors, measureTensorLeak, TensorBag } from '../src/tensors';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('tensor lifetime helpers', () => {
  it('disposeAll frees tensors nested in arrays, objects, maps and sets', () => {
    const before = liveTensors();
    const a = tf.zeros([2]);
    const tree = {
      x: [tf.ones([3]), { y: tf.scalar(1) }],
      m: new Map([['k', tf.zeros([1])]]),
      s: new Set([a]),
      again: a,
      n: 3,
    };
    expect(liveTensors()).toBe(before + 4);
    disposeAll(tree);
    expect(liveTensors()).toBe(before);
    expect(a.isDisposed).toBe(true);
  });

  it('TensorBag frees what it tracks, except what was released', () => {
    const before = liveTensors();
    const bag = new TensorBag();
    const kept = bag.track(tf.ones([2]));
    bag.track(tf.zeros([4]));
    bag.release(kept);
    bag.dispose();
    expect(liveTensors()).toBe(before + 1);
    kept.dispose();
    expect(bag.size).toBe(0);
  });

  it('measureTensorLeak sees a leaking loop and a flat one', async () => {
    const held: tf.Tensor[] = [];
    const leaky = await measureTensorLeak(() => {
      held.push(tf.ones([2]));
    }, 4);
    expect(leaky.leaked).toBe(4);
    const flat = await measureTensorLeak(
      () => tf.tidy(() => tf.sum(tf.add(tf.ones([2]), 1))).dispose(),
      4,
    );
    expect(flat.leaked).toBe(0);
    tf.dispose(held);
  });
});
