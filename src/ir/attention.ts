import { ACT_DTYPES, bool, fail, identifier, noUnknownKeys, oneOf, positiveInt, positiveNumber, type Json } from './fields.js';
import type { AttentionOp, AttentionShape, OpIr } from './types.js';
import { ATTENTION_DIMS } from './types.js';

function validateAttention(obj: Json, path: string): AttentionOp {
  noUnknownKeys(obj, path, ['kind', 'name', 'q', 'kvCache', 'kvGroupSize', 'o', 'causal', 'scale']);
  const name = identifier(obj, path);
  const q = oneOf(obj, 'q', path, ACT_DTYPES, 'f16');
  const o = oneOf(obj, 'o', path, ACT_DTYPES, 'f16');
  const kvCache = oneOf(obj, 'kvCache', path, ['f16', 'q8'] as const, 'f16');
  const causal = bool(obj, 'causal', path, true);
  const op: AttentionOp = { kind: 'attention', name, q, kvCache, o, causal };
  if (kvCache === 'q8') {
    op.kvGroupSize = obj.kvGroupSize === undefined ? 32 : positiveInt(obj.kvGroupSize, `${path}.kvGroupSize`, 1024);
  } else if (obj.kvGroupSize !== undefined) {
    fail(`${path}.kvGroupSize`, 'only a q8 KV cache has scale groups', 'no kvGroupSize with kvCache "f16"');
  }
  if (obj.scale !== undefined) op.scale = positiveNumber(obj.scale, `${path}.scale`);
  return op;
}

/** The attention op's IR: grouped-query attention over a KV cache. */
export const attentionIr: OpIr<AttentionOp, AttentionShape> = {
  kind: 'attention',
  dims: ATTENTION_DIMS,
  exampleShape: 'B=1,Hq=32,Hkv=8,Sq=1,Skv=4096,D=128',
  validate: validateAttention,
  checkShape(op, shape, field, shapeFail) {
    if (shape.Hq % shape.Hkv !== 0) shapeFail(`${field} Hq`, `Hq=${shape.Hq} is not a multiple of Hkv=${shape.Hkv}`, 'Hq divisible by Hkv (grouped-query attention)');
    if (op.kvCache === 'q8' && shape.D % op.kvGroupSize! !== 0) {
      shapeFail(`${field} D`, `D=${shape.D} is not a multiple of the KV group size ${op.kvGroupSize}`, `D divisible by ${op.kvGroupSize}`);
    }
    if (op.causal && shape.Sq > shape.Skv) shapeFail(`${field} Sq`, `Sq=${shape.Sq} exceeds Skv=${shape.Skv}`, 'Sq <= Skv for causal attention');
  },
};
