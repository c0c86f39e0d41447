import { kvCacheDims } from '../../ir/attention.js';
import { formatShape } from '../../ir/validate.js';
import { planOfFamilies } from '../../plan/index.js';
import { templateSet } from '../../render/templates.js';
import { KGEN_VERSION } from '../../version.js';
import { cFamilyPackage } from '../c-family.js';
import type { PackageBuild, PackageContext, PackagedKernel } from '../types.js';
import { nvccFlags } from './view.js';

/**
 * The root files of a package of CUDA kernels: a Makefile (libLIBRARY.a through nvcc, each kernel
 * for its planned arch), a CMakeLists.txt (the LIBRARY target with CUDA::cudart, aliased
 * kgen_kernels unless taken), LIBRARY.h including every launcher (and kgen_kernels.h including it),
 * and a usage snippet; LIBRARY is `packageLibraryName` of the package's name. Each kernel's folder
 * keeps its run kit (run.sh).
 */
export function cudaPackageFiles(kernels: readonly PackagedKernel[], pkg: PackageContext): PackageBuild {
  const templates = templateSet('package/cuda');
  const views = kernels.map((k) => {
    const plan = planOfFamilies(k.plan, ['cuda-matmul', 'cuda-attention'], 'a CUDA package');
    const flags = nvccFlags(plan).join(' ');
    return { dir: k.dir, symbol: k.symbol, opName: plan.op.name, shape: formatShape(plan.shape), arch: plan.params.arch, flags };
  });
  const archs = [...new Set(views.map((v) => v.arch.replace(/^sm_/, '')))];
  return cFamilyPackage(templates, kernels, pkg, { version: KGEN_VERSION, kernels: views, cmakeArchs: archs.join(';') }, {
    build: (library) => [`make                    # lib${library}.a (nvcc)`, `nvcc -O2 -c my_program.cu && nvcc my_program.o lib${library}.a -o my_program`],
    ...usageOf(kernels[0]!),
    usageLanguage: 'cuda',
  });
}

/** The README's snippet calls the package's first kernel: a matmul's from the shared view, an attention kernel's here. */
function usageOf(first: PackagedKernel): { usageTemplate: string; usageView?: object } {
  if (first.plan.family !== 'cuda-attention') return { usageTemplate: 'usage.cu' };
  const { op, shape } = first.plan;
  const kv = kvCacheDims(op, shape);
  return {
    usageTemplate: 'usage_attention.cu',
    usageView: {
      symbol: first.symbol,
      symbolUpper: first.symbol.toUpperCase(),
      ...shape,
      qCType: op.q === 'f16' ? 'uint16_t' : 'float',
      oCType: op.o === 'f16' ? 'uint16_t' : 'float',
      kvText: op.kvCache === 'q8' ? `int8 codes with f16 scales (one per ${op.kvGroupSize} values) in k_scales, v_scales` : op.kvCache === 'f16' ? 'f16' : `ggml ${op.kvCache} blocks, as llama.cpp stores them`,
      // The plan's row order: llama.cpp's positions x heads is [B,Skv,Hkv,D].
      kvDims: kv.dims.join(','),
      kvOrder: kv.order,
      hasScales: op.kvCache === 'q8',
      hasWorkspace: (first.plan.launch.workspaceBytes ?? 0) > 0,
      // A run-time KV length: the wrapper passes kv_len on (the launcher refuses one out of range).
      runtimeKvLength: first.plan.params.runtimeKvLength,
      kvLenMin: first.plan.params.kvLenMin,
    },
  };
}
