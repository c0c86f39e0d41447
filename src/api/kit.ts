import { opKit } from '../ops/index.js';
import { withManifest, type EmitResult } from './emit.js';
import type { Plan } from '../plan/types.js';
import { checkRunFits } from './run-memory.js';
import { roundingCodesText } from '../reference/compare.js';

/**
 * The files that let an emitted kernel be run and checked where kgen is not installed (CUDA's
 * run.sh on a GPU box): the op kit's seeded inputs as the kernel reads them (x.bin, w.bin, ... for
 * a matmul), ref.bin, the f64 reference output (little-endian) computed from the same inputs, and
 * for a matmul ref_terms.bin, each output's energy of summed products (f64; what `compareOutputs`
 * weighs an output by where its products cancel), and where the plan states an input rounding
 * (int8 activations or Q) ref_rounded.bin, the reference from that input so rounded. Invariant: the
 * same plan and seed always give the same bytes.
 */
export function kernelDataFiles(plan: Plan, seed: number): Record<string, Uint8Array> {
  checkRunFits(plan, 'kgen emit --data');
  const data = opKit(plan.op.kind).testData(plan.op, plan.shape, seed);
  const bytes = (a: Float64Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const rounding = plan.tolerance.inputRounding;
  const rounded: Record<string, Uint8Array> = rounding && data.roundedReference ? { 'ref_rounded.bin': bytes(data.roundedReference(rounding)) } : {};
  return { ...data.inputs, 'ref.bin': bytes(data.reference), ...(data.terms ? { 'ref_terms.bin': bytes(data.terms) } : {}), ...rounded };
}

/**
 * An emitted kernel with its data files (`kernelDataFiles`) in its `dataFiles` and listed in its
 * manifest's `data`: the seed, and for each file what it holds, so a user's own harness knows
 * which bytes are which without reading kgen.
 */
export function withDataFiles(result: EmitResult, seed: number): EmitResult {
  const data = kernelDataFiles(result.plan, seed);
  const tensors = result.manifest.tensors;
  const output = Object.keys(tensors).find((name) => !(`${name}.bin` in data)) ?? 'the output';
  const describe = (file: string): string => {
    if (file === 'ref.bin') {
      return 'kv_len.bin' in data
        ? `the f64 reference of ${output} at each length of kv_len.bin in turn (little-endian, ${output}'s shape each), computed from these inputs`
        : `the f64 reference of ${output} (little-endian, ${output}'s shape), computed from these inputs`;
    }
    if (file === 'kv_len.bin') return 'the KV lengths (int32, little-endian) the kernel is checked at: ref.bin holds the output at each in turn';
    if (file === 'ref_rounded.bin') {
      const r = result.plan.tolerance.inputRounding!;
      return `as ref.bin, from ${r.input} rounded to ${roundingCodesText(r)} per ${r.group} values as the kernel does: the error of that rounding alone (against ref.bin), times ${r.factor}, is added to the manifest's tolerance`;
    }
    if (file === 'ref_terms.bin') return `f64 per output: the energy of its summed products; an output's error is weighed by the larger of its square and this (the manifest's tolerance)`;
    const name = file.replace(/\.bin$/, '');
    const weights = result.manifest.weights;
    if (name === 'w' && weights) return `the weights as \`kgen pack\` writes them (weights: ${weights.totalBytes} bytes, ${weights.layout})`;
    return tensors[name] ? `input ${name} as the kernel reads it (tensors.${name}: ${tensors[name]!.bytes} bytes)` : `input ${name} as the kernel reads it`;
  };
  const manifest = { ...result.manifest, data: { seed, files: Object.fromEntries(Object.keys(data).map((f) => [f, describe(f)])) } };
  return withManifest({ ...result, dataFiles: { ...result.dataFiles, ...data } }, manifest);
}
