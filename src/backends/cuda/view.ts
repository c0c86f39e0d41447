import { profileHash } from '../../device/profile.js';
import { InternalError, KgenError } from '../../errors.js';
import type { Plan } from '../../plan/types.js';
import type { TemplateSet } from '../../render/templates.js';
import { HARNESS_EXIT } from '../harness.js';
import type { RenderContext } from '../types.js';

/** A CUDA plan of any op: every CUDA family's params name the arch its code is for and its run kit's flush (`CudaFlush`). */
type CudaPlan = Plan & { params: { arch: string; flushBytes: number; flushL2Multiple: number } };

/** nvcc's flags for an emitted kernel: optimised C++17 for its plan's arch. */
export function nvccFlags(plan: CudaPlan): string[] {
  return ['-O3', '-std=c++17', `-arch=${plan.params.arch}`];
}

/** nvcc command that compiles an emitted kernel for its plan's arch. */
export function nvccCommand(plan: CudaPlan): string {
  return `nvcc ${nvccFlags(plan).join(' ')} -c kernel.cu`;
}

/**
 * The view fields every CUDA kernel's files print whatever the op: symbol names, the build line,
 * and what the run kit (kgen_run.cu, run.sh) records about the kernel it ran (docs/cuda.md, "Run
 * results"), quoted for C and for the shell.
 */
export function cudaKitView(plan: CudaPlan, ctx: RenderContext, templateHash: string) {
  const fn = ctx.symbol ?? `kgen_${plan.op.name}`;
  // The profile's figures go with the kit, so its imported result is filed under the figures it was planned on.
  const kernelInfo = JSON.stringify({
    kgen: ctx.version, op: plan.op, irHash: ctx.irHash, device: plan.device, profileHash: profileHash(plan.profile), target: plan.target, arch: plan.params.arch, shape: plan.shape,
    variant: plan.variant, config: plan.config, templateHash, traffic: plan.traffic,
  });
  if (/'/.test(kernelInfo)) throw new InternalError('kernel info must not contain a single quote (it is quoted for run.sh)');
  return {
    fn,
    FN: fn.toUpperCase(),
    guard: `${fn.toUpperCase()}_H`,
    kernelName: `${fn}_${plan.variant}`,
    arch: plan.params.arch,
    buildHint: `${nvccCommand(plan)}  (sh run.sh builds kgen_run.cu with it and runs it)`,
    harnessExit: HARNESS_EXIT,
    gridExprText: plan.launch.gridExpr!.join(', '),
    smemKind: plan.launch.dynamicShared ? 'dynamic' : 'static',
    // Over the static limit the launch goes through templates/cuda/launch_opt_in.hbs (same arguments).
    launchKernel: plan.launch.dynamicShared ? 'kg_launch_opted_in' : 'cudaLaunchKernel',
    dynamicBytes: plan.launch.dynamicShared ? dynamicSharedBytes(plan) : 0,
    tolNmse: plan.tolerance.nmse,
    tolMaxRel: plan.tolerance.maxRelToPeak,
    kernelJson: JSON.stringify(kernelInfo),
    kernelJsonShell: kernelInfo,
    flushBytes: plan.params.flushBytes,
    flushL2Multiple: plan.params.flushL2Multiple,
  };
}

/** A dynamic-shared launch's bytes: the plan's shared memory, which such a plan always states. */
function dynamicSharedBytes(plan: Plan): number {
  const bytes = plan.launch.sharedBytes;
  if (bytes === undefined) throw new InternalError('a CUDA plan with dynamic shared memory states no sharedBytes');
  return bytes;
}

/**
 * The files of a CUDA kernel: kernel.cu, kernel.h and kgen_run.cu from the op's templates (under
 * `dir`: '' for matmul, 'attention/'), run.sh from the one every op shares. The partials the view
 * names (`partials`) must exist: a plan variant without its template is a KgenError, not a crash.
 */
export function renderCudaFiles(templates: TemplateSet, dir: string, v: object, partials: string[], variant: string): Record<string, string> {
  for (const name of partials) {
    if (!templates.has(name)) {
      throw new KgenError({ field: '--config', problem: `the CUDA backend has no template ${name} for variant ${variant}`, expected: 'a variant of `kgen plan --target cuda`' });
    }
  }
  return {
    'kernel.cu': templates.render(`${dir}kernel.cu`, v),
    'kernel.h': templates.render(`${dir}kernel.h`, v),
    'kgen_run.cu': templates.render(`${dir}run.cu`, v),
    'run.sh': templates.render('run.sh', v),
  };
}
