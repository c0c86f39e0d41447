import { describe, expect, it } from 'vitest';
import { Rng } from '../src/numeric/random.js';
import { FORMATS, quantizeMatrix } from '../src/quant/index.js';
import { benchPeer } from '../bench/ort-peer.js';

/** The onnxruntime-node MatMulNBits peer rows check their own output on the timed shape before a time counts. */
describe('bench: onnxruntime MatMulNBits rows', () => {
  const shape = { M: 2, N: 96, K: 512 };
  const rng = new Rng(3);
  const q40 = quantizeMatrix(FORMATS.q4_0.codec(32), rng.fillNormal(new Float32Array(shape.N * shape.K), 0.02), shape.N, shape.K);
  const x = rng.fillNormal(new Float32Array(shape.M * shape.K));
  for (const accuracyLevel of [0, 4]) {
    it(`accuracy_level ${accuracyLevel}: Y of W's node passes the check and the row is timed`, async () => {
      const rows = await benchPeer({ shape, q40, x, threads: [1], accuracyLevel, warmup: 0, runs: 1, copies: 2 }, 'test');
      expect(rows).toHaveLength(1);
      expect(rows[0]!.case).toBe('test');
      expect(rows[0]!.ms).toBeGreaterThan(0);
      expect(rows[0]!.note).toMatch(/nmse .* \(limit /);
    });
  }
});
