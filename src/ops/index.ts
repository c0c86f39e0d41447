import type { Op, OpKind, OpOf, Shape, ShapeOf } from '../ir/types.js';
import { attentionKit } from './attention.js';
import { matmulKit } from './matmul.js';
import type { OpKit } from './types.js';

export type { KernelInputs, OpKit, RunBuffer, TensorInfo, TestData, WeightsInfo } from './types.js';

/** Every op kind's run-time kit, by kind: one line per op. */
const OP_KITS: { [K in OpKind]: OpKit<OpOf<K>, ShapeOf<K>> } = {
  matmul: matmulKit,
  attention: attentionKit,
};

/**
 * The kit of an op's kind, typed for any op: the one place where an op of the union meets its
 * kind's kit (the registry guarantees they match).
 */
export function opKit(kind: OpKind): OpKit<Op, Shape> {
  return OP_KITS[kind] as unknown as OpKit<Op, Shape>;
}
