import { softmaxScale } from '../ir/attention.js';
import { configInUse, type AttentionPlan, type MatmulPlan } from '../plan/index.js';
import { FORMATS } from '../quant/index.js';
import { commentText } from '../render/comment-text.js';
import { FORMAT_NAMES } from './c-family.js';
import type { RenderContext } from './types.js';

/**
 * The view fields every matmul kernel's header comment prints, in every target's templates: who
 * generated it and how to regenerate it, the op, its weight format and layout version, and the
 * config. User text reaches them only through `commentText` (the command and the config JSON).
 */
export function matmulHeaderView(plan: MatmulPlan, ctx: RenderContext) {
  const op = plan.op;
  return {
    version: ctx.version,
    irHash: ctx.irHash,
    command: ctx.command,
    opName: op.name,
    formatName: FORMAT_NAMES[op.weight.format],
    formatVersion: FORMATS[op.weight.format].version,
    configJson: commentText(JSON.stringify(configInUse(plan))),
  };
}

/** What every attention kernel's header comment prints: as `matmulHeaderView`, with no weights. */
export function attentionHeaderView(plan: AttentionPlan, ctx: RenderContext) {
  const op = plan.op;
  const { Sq, Skv, D } = plan.shape;
  return {
    // The softmax's scale and mask, stated where a caller reads the call (also in the manifest).
    // A run-time KV length aligns the last query row with the last of the kv_len keys read.
    softmaxText: `scale = ${softmaxScale(op, D)}${op.scale === undefined ? ' (1/sqrt(D))' : ''}${op.causal ? `; causal: query row i sees keys 0 .. i + ${op.kvLength === 'runtime' ? `kv_len - ${Sq}` : Skv - Sq} (the last query row the last key)` : '; not causal'}`,
    version: ctx.version,
    irHash: ctx.irHash,
    command: ctx.command,
    opName: plan.op.name,
    configJson: commentText(JSON.stringify(configInUse(plan))),
  };
}
