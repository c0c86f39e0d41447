import { CPU_CACHE_LINE_BYTES } from '../../device/profile.js';
import { GGML_KV_BLOCK, KV_FORMAT_NAMES, kvRowsText } from '../../ir/attention.js';
import type { AttentionOp } from '../../ir/types.js';
import { kvLenText, splitPartialsText, taskUnitsText } from '../../plan/cpu-attention.js';
import { ATTENTION_ABI_VERSION, unusedScalesText } from '../../ops/attention.js';
import type { PlanOf } from '../../plan/types.js';
import { codecOf } from '../../quant/index.js';
import { templateSet } from '../../render/templates.js';
import { C_WORKSPACE_ALIGNMENT } from '../c-family.js';
import { HARNESS_EXIT, MAX_TIMED_THREADS } from '../harness.js';
import { attentionHeaderView } from '../kernel-header.js';
import type { RenderContext, RenderedKernel } from '../types.js';
import { READ_PROBE } from './bandwidth.js';
import { C_TOOLCHAINS } from './toolchain.js';
import { EXP2_COEFFICIENTS, EXP2_MIN, F32_BIAS, F32_MANT_BITS, f32Digits } from '../exp2-poly.js';

type CpuAttentionPlan = PlanOf<'cpu-attention'>;

/** How the C kernel and header name each KV format. */

/** The C spelling of the shared 2^x polynomial (src/backends/exp2-poly.ts). */
const EXP2 = {
  ...Object.fromEntries(EXP2_COEFFICIENTS.map((c, k) => [`c${k + 1}`, cFloat(c)])),
  min: cFloat(EXP2_MIN),
};

/** A float as a C literal's digits (always with a point or exponent, so an `f` suffix makes a float). */
function cFloat(x: number): string {
  return f32Digits(x);
}


/**
 * __builtin_prefetch's locality for the K and V prefetches: 1 (prefetcht2) fills L2, not L1. A
 * prefetch to L1 holds an L1 miss buffer, and a burst of them (a tile's V rows) stalls the loads
 * behind it; through L2 the data still arrives before the tile reads it.
 */
const PREFETCH_LOCALITY = 1;

/**
 * __builtin_prefetch's locality for the keys-across-lanes scores' near prefetch (3: prefetcht0, to
 * L1): the next block of keys' K lines, which the tile-ahead prefetch has mostly brought to L2 by
 * then, so each holds an L1 miss buffer only for an L2 hit's time.
 */
const NEAR_PREFETCH_LOCALITY = 3;

/**
 * The page primer on heads x positions rows (kg_prime_pages): each tile prefetches a line in every
 * 4 KiB page `PRIME_AHEAD_BYTES` past its K and V rows, so that the pages' translations are walked
 * ahead of the tile-ahead prefetches and the loads. Measured (Skv=32768, two threads, 4 KiB pages):
 * q8 and f16 about 10% less time a call; 8-64 KiB ahead alike; on 2 MiB pages no change
 * (docs/PERFORMANCE.md, "Twentieth session").
 */
const PAGE_BYTES = 4096;
const PRIME_AHEAD_BYTES = 16384;

/** The huge page (2 MiB on x86-64 and arm64 with 4 KiB pages) the harness aligns each cache copy to when asked (`TimingOptions.hugePages`). */
const HUGE_PAGE_BYTES = 2 * 1024 * 1024;

/**
 * 1.5 * 2^23: added to an f32 of magnitude below 2^22 and taken off again, it leaves the value
 * rounded to an integer, nearest even (as lrintf in the default mode); prepare rounds Q's int8 codes
 * so, in a loop the compiler vectorizes.
 */
const ROUND_MAGIC = 1.5 * 2 ** F32_MANT_BITS;

/** View fields the kernel, its header and the harness all print. */
function sharedView(plan: CpuAttentionPlan, symbol: string | undefined) {
  const op = plan.op;
  const p = plan.params;
  const fn = symbol ?? `kgen_${op.name}`;
  const kvRows = p.B * p.Hkv * p.Skv;
  return {
    ...p,
    fn,
    FN: fn.toUpperCase(),
    qCType: op.q === 'f16' ? 'uint16_t' : 'float',
    oCType: op.o === 'f16' ? 'uint16_t' : 'float',
    hasScales: p.scalesPerRow > 0,
    unusedScalesText: unusedScalesText(op.kvCache),
    abiVersion: ATTENTION_ABI_VERSION,
    kvRows,
    kvBytes: kvRows * p.rowBytes,
    kvScaleBytes: kvRows * p.scalesPerRow * 2,
    kvFormatName: KV_FORMAT_NAMES[p.kvFormat],
    kvLayoutText: kvRowsText(op, plan.shape),
    split: p.splits > 1,
    // A run-time KV length: _tasks and the whole op take kv_len and return 0, or -1 (nothing
    // written) for a length outside [KV_LEN_MIN, SKV].
    taskReturn: p.runtimeKvLength ? 'int' : 'void',
    kvLenParam: p.runtimeKvLength ? ', int64_t kv_len' : '',
    kvLenArg: p.runtimeKvLength ? ', kv_len' : '',
    workspaceAlignment: C_WORKSPACE_ALIGNMENT,
  };
}

/**
 * Variants whose attention kernels are another variant's code (`isa`) with their own integer dot
 * product of Q and K codes (`intDot`: the prefix of attention/isa/<intDot>_idot). AVX-VNNI runs
 * AVX2's kernels with 256-bit vpdpbusd in place of the sign trick's four operations.
 */
const ATTENTION_CODE: Readonly<Record<string, { isa: string; intDot: string }>> = {
  avxvnni: { isa: 'avx2', intDot: 'vnni' },
};

/** kernel.c and kernel.h of a CPU attention plan, and the harness verify and the tuner build around them. */
export function renderCAttention(plan: CpuAttentionPlan, ctx: RenderContext): RenderedKernel {
  const op = plan.op;
  const p = plan.params;
  const templates = templateSet('c');
  const shared = sharedView(plan, ctx.symbol);
  const { fn, qCType, oCType } = shared;
  const tc = C_TOOLCHAINS[p.isa]!;
  const compileHint = `${tc.compiler} ${tc.flags.filter((f) => f !== '-static').join(' ')} -c kernel.c  (add -fopenmp for the threaded driver)`;
  const ggml = p.kvFormat === 'q8_0' || p.kvFormat === 'q4_0' ? codecOf({ format: p.kvFormat, groupSize: GGML_KV_BLOCK }) : undefined;
  const view = {
    ...shared,
    ...attentionHeaderView(plan, ctx),
    guard: `${shared.FN}_H`,
    compileHint,
    isaIncludes: `isa/${p.isa}_includes`,
    f16Partial: `f16/${tc.f16}`,
    isaPartial: `attention/isa/${ATTENTION_CODE[p.isa]?.isa ?? p.isa}`,
    // Read by AVX2's attention code alone.
    intDotPartial: `attention/isa/${ATTENTION_CODE[p.isa]?.intDot ?? p.isa}_idot`,
    kvPartial: `attention/kv/${p.kvFormat}`,
    blockBytes: ggml?.bytesPerBlock ?? 0,
    // ggml blocks keep their scale first in the block; kgen q8 keeps a row's scales in an array.
    kvScalesInRow: ggml !== undefined,
    scaleBytes: 2,
    halfBlock: GGML_KV_BLOCK / 2,
    nibbleBits: 4,
    nibbleMask: 15,
    nibbleZero: 8,
    causalFlag: p.causal ? 1 : 0,
    keyLanesI16Flag: p.keyLanesI16 ? 1 : 0,
    splitsOuterFlag: p.splitsOuter ? 1 : 0,
    taskUnits: taskUnitsText(p),
    f32Bias: F32_BIAS,
    cacheLine: CPU_CACHE_LINE_BYTES,
    prefetchLocality: PREFETCH_LOCALITY,
    nearPrefetchLocality: NEAR_PREFETCH_LOCALITY,
    pageBytes: PAGE_BYTES,
    primeAheadBytes: PRIME_AHEAD_BYTES,
    f32MantBits: F32_MANT_BITS,
    scaleLog2: cFloat(p.scaleLog2),
    exp2: EXP2,
    qVecLoad: op.q === 'f16' ? 'kg_vload_f16((const uint8_t *)(q + i))' : 'kg_vload(q + i)',
    roundMagic: cFloat(ROUND_MAGIC),
    oPack: op.o === 'f16' ? 'kg_f16_of(v)' : 'v',
  };
  const files = {
    'kernel.c': templates.render('attention/kernel.c', view),
    'kernel.h': templates.render('attention/kernel.h', view),
  };
  const sig = (ret: string, name: string, args: string) => `${ret} ${name}(${args})`;
  const kvArgs = 'const uint8_t *k, const uint16_t *k_scales, const uint8_t *v, const uint16_t *v_scales';
  return {
    files,
    harnessFiles: { 'harness.c': templates.render('attention/harness.c', { ...shared, readProbe: READ_PROBE, hugePageBytes: HUGE_PAGE_BYTES, harnessExit: { ...HARNESS_EXIT, maxThreads: MAX_TIMED_THREADS } }) },
    templateHash: templates.hash,
    workspaceBytes: p.workspaceBytes,
    workspaceAlignment: C_WORKSPACE_ALIGNMENT,
    threadStackBytes: p.taskStackBytes,
    build: compileHint,
    abi: [
      { symbol: `${fn}_workspace_size`, signature: sig('size_t', `${fn}_workspace_size`, 'void'), doc: `bytes of workspace (${p.workspaceBytes}): ${p.qInt8 ? `${4 * p.qWords} of Q as int8 codes (${p.qGroups} f32 scales per row, one per ${p.qGroup} values, then the codes)` : `${4 * p.qFloats} of Q as scaled f32`}, then ${splitPartialsText(p)}` },
      { symbol: `${fn}_prepare`, signature: sig('void', `${fn}_prepare`, `const ${qCType} *q, void *workspace`), doc: p.qInt8 ? `quantizes Q to int8 codes (a scale per ${p.qGroup} values) once per call` : 'converts and scales Q once per call' },
      {
        symbol: `${fn}_tasks`,
        signature: sig(shared.taskReturn, `${fn}_tasks`, `void *workspace, ${kvArgs}, ${oCType} *o, int64_t task_begin, int64_t task_end${shared.kvLenParam}`),
        doc: `tasks [task_begin, task_end) of ${p.tasks} (${taskUnitsText(p)}); disjoint ranges may run on different threads${p.runtimeKvLength ? `; ${kvLenText(p)}` : ''}`,
      },
      { symbol: `${fn}_merge`, signature: sig('void', `${fn}_merge`, `const void *workspace, ${oCType} *o, int64_t row_begin, int64_t row_end`), doc: `output rows [row_begin, row_end) of ${p.outRows}, after every task; merges the split partials by log-sum-exp` },
      { symbol: fn, signature: sig(shared.taskReturn, fn, `const ${qCType} *q, ${kvArgs}, ${oCType} *o, void *workspace${shared.kvLenParam}`), doc: `prepare + tasks + merge; OpenMP-parallel when compiled with -fopenmp${shared.unusedScalesText ? `; k_scales, v_scales: ${shared.unusedScalesText}` : ''}${p.runtimeKvLength ? `; ${kvLenText(p)}` : ''}` },
    ],
  };
}

/** What a package's usage snippet prints about an attention kernel. */
export function attentionUsageView(plan: CpuAttentionPlan, symbol: string) {
  const v = sharedView(plan, symbol);
  return { symbol, B: v.B, Hq: v.Hq, Sq: v.Sq, D: v.D, Skv: v.Skv, qCType: v.qCType, oCType: v.oCType, hasScales: v.hasScales, kvText: `${v.kvFormatName}, ${v.kvLayoutText}`, runtimeKvLength: v.runtimeKvLength, kvLenMin: v.kvLenMin };
}
