import { attentionIr } from './attention.js';
import { matmulIr } from './matmul.js';
import type { Op, OpIr, OpKind, OpOf, Shape, ShapeOf } from './types.js';

/** Every op kind's IR (validation, dimensions, shape rules), by kind: one line per op. */
const IR_OPS: { [K in OpKind]: OpIr<OpOf<K>, ShapeOf<K>> } = {
  matmul: matmulIr,
  attention: attentionIr,
};

export const OP_KINDS = Object.keys(IR_OPS) as OpKind[];

/**
 * The IR of an op's kind, typed for any op: the one place where an op of the union meets its
 * kind's IR (the registry guarantees they match).
 */
export function irOf(kind: OpKind): OpIr<Op, Shape> {
  return IR_OPS[kind] as unknown as OpIr<Op, Shape>;
}

/** The op kind whose dimensions a shape binds (shapes carry no kind of their own). */
export function kindOfShape(shape: Shape): OpKind | undefined {
  return OP_KINDS.find((k) => IR_OPS[k].dims.every((d) => d in shape) && Object.keys(shape).length === IR_OPS[k].dims.length);
}
