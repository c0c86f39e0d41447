import { valueText } from '../io/message-text.js';
import { ACT_DTYPES, bool, fail, identifier, isObject, noUnknownKeys, oneOf, positiveInt, type Json } from './fields.js';
import type { Epilogue, MatmulOp, MatmulShape, Op, OpIr, WeightFormatName } from './types.js';
import { MATMUL_DIMS } from './types.js';

/** Whether `op` is a matmul: the one place outside a target's files that tells an op's kind by name. */
export function isMatmulOp(op: Op): op is MatmulOp {
  return op.kind === 'matmul';
}

const WEIGHT_FORMATS: readonly WeightFormatName[] = ['q35', 'q4', 'q8', 'q4_0', 'q8_0', 'f16'];
/** Formats whose scale group is fixed by their block layout (ggml's 32); the others take any multiple of 32. */
const FIXED_GROUP_FORMATS: readonly WeightFormatName[] = ['q4_0', 'q8_0'];
/** Weights a kernel consumes at a time: every group size, and K, is a multiple of it. */
const K_STEP = 32;

function validateMatmul(obj: Json, path: string): MatmulOp {
  noUnknownKeys(obj, path, ['kind', 'name', 'x', 'weight', 'y', 'epilogue']);
  const name = identifier(obj, path);
  const x = oneOf(obj, 'x', path, ACT_DTYPES, 'f32');
  const y = oneOf(obj, 'y', path, ACT_DTYPES, 'f32');
  const w = obj.weight;
  if (!isObject(w)) fail(`${path}.weight`, `got ${valueText(w)}`, 'an object like {"format": "q4", "groupSize": 64}');
  noUnknownKeys(w, `${path}.weight`, ['format', 'groupSize']);
  const format = oneOf(w, 'format', `${path}.weight`, WEIGHT_FORMATS);
  let groupSize: number | undefined;
  if (FIXED_GROUP_FORMATS.includes(format)) {
    if (w.groupSize !== undefined && w.groupSize !== 32) {
      fail(`${path}.weight.groupSize`, `got ${valueText(w.groupSize)}`, '32 (fixed by the ggml block layout) or no value');
    }
    groupSize = 32;
  } else if (format === 'f16') {
    if (w.groupSize !== undefined) fail(`${path}.weight.groupSize`, 'f16 weights have no scale groups', 'no groupSize');
  } else {
    groupSize = w.groupSize === undefined ? 64 : positiveInt(w.groupSize, `${path}.weight.groupSize`, 4096);
    if (groupSize % 32 !== 0) {
      fail(`${path}.weight.groupSize`, `got ${groupSize}`, 'a multiple of 32 (kernels consume 32 weights at a time)');
    }
  }
  const e = obj.epilogue ?? {};
  if (!isObject(e)) fail(`${path}.epilogue`, `got ${valueText(e)}`, 'an object like {"bias": true, "activation": "silu"}');
  noUnknownKeys(e, `${path}.epilogue`, ['bias', 'activation', 'residual']);
  const epilogue: Epilogue = {
    bias: bool(e, 'bias', `${path}.epilogue`, false),
    activation: oneOf(e, 'activation', `${path}.epilogue`, ['none', 'silu', 'gelu'] as const, 'none'),
    residual: bool(e, 'residual', `${path}.epilogue`, false),
  };
  return { kind: 'matmul', name, x, weight: groupSize === undefined ? { format } : { format, groupSize }, y, epilogue };
}

/**
 * The other remedy when K is not a whole number of groups: a format whose group size is free takes
 * the largest multiple of 32 below `group` that divides K, which only an IR file can set (the
 * catalog's ops have 64); no format has groups under 32, so a K that 32 does not divide is padded.
 */
function groupHint(format: WeightFormatName, group: number, K: number): string {
  if (FIXED_GROUP_FORMATS.includes(format)) return '';
  let fits: number | undefined;
  for (let g = group - K_STEP; g >= K_STEP && fits === undefined; g -= K_STEP) if (K % g === 0) fits = g;
  return fits === undefined
    ? ''
    : `, or write the op as an IR file with "weight": {"format": "${format}", "groupSize": ${fits}} (it divides K=${K}) and pass it with --ir (docs/ir.md)`;
}

/** The matmul op's IR: Y[M,N] = X[M,K] . W[N,K]^T, K a whole number of weight groups. */
export const matmulIr: OpIr<MatmulOp, MatmulShape> = {
  kind: 'matmul',
  dims: MATMUL_DIMS,
  exampleShape: 'M=1,N=4096,K=4096',
  validate: validateMatmul,
  checkShape(op, shape, field, shapeFail) {
    const g = op.weight.groupSize;
    if (g !== undefined && shape.K % g !== 0) {
      shapeFail(`${field} K`, `K=${shape.K} is not a multiple of the ${op.weight.format} group size ${g}`,
        `K divisible by ${g}`, `pad K to ${Math.ceil(shape.K / g) * g} with zero weights${groupHint(op.weight.format, g, shape.K)}`);
    }
    if (op.weight.format === 'f16' && shape.K % 32 !== 0) {
      shapeFail(`${field} K`, `K=${shape.K} is not a multiple of 32`, 'K divisible by 32 for f16 weights (kernels consume 32 weights at a time)',
        `pad K to ${Math.ceil(shape.K / 32) * 32} with zero weights`);
    }
  },
};
