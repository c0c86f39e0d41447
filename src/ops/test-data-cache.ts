import { canonicalHash } from '../hash.js';
import type { Op, Shape } from '../ir/types.js';
import { opKit } from './index.js';
import type { TestData } from './types.js';

/**
 * Full test data (the op kit's `testData`) kept by op, shape and seed, for a caller that verifies
 * one op at one shape several times (on several ISAs or targets): the inputs are drawn and the f64
 * reference computed once. TestData's invariant (the same op, shape and seed give the same bytes)
 * makes a kept one what a fresh draw would be. Holders read the inputs and never write into them,
 * as the runners do; the data lives as long as the cache.
 */
export class TestDataCache {
  private readonly kept = new Map<string, TestData>();

  testData(op: Op, shape: Shape, seed: number): TestData {
    const key = canonicalHash({ op, shape, seed });
    let data = this.kept.get(key);
    if (!data) {
      data = opKit(op.kind).testData(op, shape, seed);
      this.kept.set(key, data);
    }
    return data;
  }
}
