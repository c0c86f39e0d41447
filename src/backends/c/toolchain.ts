import type { CpuVariants } from '../../plan/cpu-matmul.js';

/**
 * How each C variant is compiled and run: compiler, flags, the CPU features it needs, and the
 * emulator needed to run it on this machine (NEON under qemu-user). Data, so a new ISA is one
 * entry; the entries' order is the order of preference (the default takes the first a device has).
 */
export interface CToolchain {
  compiler: string;
  flags: string[];
  /** Command prefix that runs the binary, e.g. qemu-aarch64 for NEON on x86. */
  runner?: string[];
  /**
   * CPU features (kgen names, as profiles and /proc/cpuinfo give them) the variant's code uses: a
   * device profile offers the variant only when it lists them all, and this machine runs it
   * natively only when it has them (another architecture's variant runs under `runner`).
   */
  needs: string[];
  /** Architecture the binary is for. */
  arch: 'x86_64' | 'aarch64' | 'any';
  /** How one value converts between f16 and f32 (the partial f16/<this>): F16C, AArch64's __fp16, or software. */
  f16: 'f16c' | 'neon' | 'software';
  /**
   * A build that runs the variant's code, for verification, on a CPU that lacks `needs` but has
   * `standIn.needs`: `flags` in place of the variant's (defines that name other encodings of the
   * same instructions, which the variant's includes take when given). The kernel source also
   * compiles with the variant's own flags first, so what ships is still checked. Its times are not
   * the variant's (other encodings, more registers): the runner says so (`timesAreReal` false), and
   * the tuner records none.
   */
  standIn?: { needs: string[]; flags: string[]; label: string };
}

export const C_TOOLCHAINS: Record<string, CToolchain> = {
  avx512: {
    compiler: 'gcc',
    flags: ['-O3', '-std=c11', '-mavx2', '-mfma', '-mf16c', '-mavx512f', '-mavx512bw', '-mavx512vl', '-mavx512vnni'],
    needs: ['avx512f', 'avx512bw', 'avx512vl', 'avx512vnni', 'fma', 'f16c'],
    arch: 'x86_64',
    f16: 'f16c',
  },
  // AVX2 code whose int8 dot products are 256-bit vpdpbusd in its VEX encoding (AVX-VNNI: Intel
  // since Alder Lake, AMD since Zen 5), one instruction where AVX2 takes maddubs, madd and an add.
  avxvnni: {
    compiler: 'gcc',
    flags: ['-O3', '-std=c11', '-mavx2', '-mfma', '-mf16c', '-mavxvnni'],
    needs: ['avx2', 'fma', 'f16c', 'avxvnni'],
    arch: 'x86_64',
    f16: 'f16c',
    // AVX-512 VL + VNNI has the same 256-bit vpdpbusd / vpdpwssd in EVEX form: CPUs with AVX-512
    // but no AVX-VNNI (Zen 4, Intel server before Sapphire Rapids' clients) verify AVX-VNNI's code.
    standIn: {
      needs: ['avx2', 'fma', 'f16c', 'avx512f', 'avx512vl', 'avx512vnni'],
      flags: ['-O3', '-std=c11', '-mavx2', '-mfma', '-mf16c', '-mavx512f', '-mavx512vl', '-mavx512vnni', '-DKG_DPBUSD256=_mm256_dpbusd_epi32', '-DKG_DPWSSD256=_mm256_dpwssd_epi32'],
      label: 'AVX-512 VNNI stand-in',
    },
  },
  avx2: { compiler: 'gcc', flags: ['-O3', '-std=c11', '-mavx2', '-mfma', '-mf16c'], needs: ['avx2', 'fma', 'f16c'], arch: 'x86_64', f16: 'f16c' },
  neon: {
    compiler: 'aarch64-linux-gnu-gcc',
    flags: ['-O3', '-std=c11', '-march=armv8.2-a+dotprod+fp16', '-static'],
    runner: ['qemu-aarch64'],
    needs: ['neon', 'dotprod'],
    arch: 'aarch64',
    f16: 'neon',
  },
  scalar: { compiler: 'gcc', flags: ['-O2', '-std=c11'], needs: [], arch: 'any', f16: 'software' },
};

/** The C variants a device profile offers, best first: those whose features it lists. */
export const C_VARIANTS: CpuVariants = {
  of: (device) => Object.entries(C_TOOLCHAINS).filter(([, tc]) => tc.needs.every((f) => device.cpu?.isa.includes(f))).map(([isa]) => isa),
  doc: 'instruction set of the C variant',
  // AVX2's panel step sums unsigned x signed byte pairs in i16 (maddubs), which fits 4-bit codes;
  // q3.5's table values take the sign trick (panelSignedCodes). VNNI accumulates in i32, so AVX-512
  // and AVX-VNNI take q3.5's table values + 128.
  panel: { avx2: ['q4', 'q4_0', 'q35'], avx512: ['q4', 'q4_0', 'q35'], avxvnni: ['q4', 'q4_0', 'q35'] },
  // AVX-512's panel can also be 16 rows in one zmm, one 512-bit vpdpbusd for 16 rows and 4 weights
  // (isa/avx512_panel): on Zen 5, M=256, N=K=4096, 2 threads, q4 535 -> 974 GFLOPS with mTile 4,
  // 1071 with mTile 8 (docs/PERFORMANCE.md, eleventh session). The default on every AVX-512 CPU:
  // where 512-bit operations are split in two (Zen 4), a zmm vpdpbusd still does two ymm ones' work
  // with half the broadcasts and loads; not measured there.
  // AVX-VNNI takes the 16 rows as two ymm (AVX2's micro-kernel, one vector a slice, one broadcast
  // for both; mTile 4): on Zen 5, M=256, q4 464-499 -> 510-553 GFLOPS, q4_0 422-436 -> 501-526
  // (twelfth session). AVX2 stays at 8 rows: its i16 partial sums of two slices spill (slower).
  panelWide: { avx512: ['q4', 'q4_0', 'q35'], avxvnni: ['q4', 'q4_0', 'q35'] },
  // AVX2's panel step sums maddubs products in i16 (8 steps), then widens them to the block sums.
  panelI16Sums: ['avx2'],
  // AVX2's q3.5 panel: signed table values (|x| times the weight with x's sign), widened every step.
  panelSignedCodes: { avx2: ['q35'] },
  // The block step decodes nibbles and int8 with the AVX2 pair decoders (AVX-512 dots them with
  // 256-bit VNNI): formats with blocks of 32 weights (ggml's, or kgen's at group size 32).
  blockStep: { avx2: ['q4', 'q4_0', 'q8', 'q8_0'], avx512: ['q4', 'q4_0', 'q8', 'q8_0'], avxvnni: ['q4', 'q4_0', 'q8', 'q8_0'] },
  // The row-sums kernel sums 8 rows' dot products into one vector before converting (a conversion,
  // a scale and an FMA per row and block cost as much as a sixth of q3.5's decode). AVX-512 runs
  // it as AVX2 code with 256-bit VNNI dot products (isa/avx512_dot): in L2 on Zen 4, q4 0.90 ns
  // per 64 weights against 1.29 for the 512-bit micro-kernel, q3.5 1.30 against 1.68; q8 1.29
  // against 1.19 (its abs and sign ops cost more than the conversions saved), so q8 keeps it; on
  // Zen 5 with the sign bit flipped instead (decode/int8_vnni) still 1.30 against 1.17.
  // AVX-VNNI has no 512-bit micro-kernel to keep: its q8 takes the row sums as AVX2's does.
  rowSums: { avx2: ['q4', 'q8', 'q35'], avx512: ['q4', 'q35'], avxvnni: ['q4', 'q8', 'q35'] },
  // q3.5's AVX-512 decode can also take a whole 64-weight unit in one zmm (A values in the low
  // half, B values in the high: one nibble shift and mask, one lookup, one vpdpbusd): in L2 on
  // Zen 5, 5% less a row than the two 256-bit halves; Zen 4 splits 512-bit operations in two, so
  // the default stays 256 and the tuner decides (docs/PERFORMANCE.md, ninth session).
  rowSumsWide: { avx512: ['q35'] },
  // The scalar variant computes one value at a time.
  f32Lanes: { avx512: 16, avxvnni: 8, avx2: 8, neon: 4, scalar: 1 },
  // AVX2 (and AVX-VNNI) and scalar x86 code name ymm0-15 / xmm0-15 whatever the CPU has.
  vectorRegisters: { avx512: 32, avxvnni: 16, avx2: 16, neon: 32, scalar: 16 },
  // vpdpbusd multiplies unsigned by signed bytes: Q's codes go up by 128 (K's stay signed, and
  // the kernel takes 128 x sum(K) off); AVX-VNNI's attention is AVX2's code with the 256-bit one.
  // AVX2's sign trick, NEON's sdot and scalar C are signed x signed.
  attentionInt8Q: { avx512: 128, avxvnni: 128, avx2: 0, neon: 0, scalar: 0 },
  // P.V by vpdpwssd: int16 P codes (15 bits: P x V's scale, which may be negative, keeps 2^-15 of
  // its tile's peak) times V's codes widened to int16, two keys a lane. AVX2 by vpmaddwd + vpaddd
  // (AVX-VNNI: its VEX vpdpwssd), half a step (2 accumulators) a row at a time: 16 registers hold
  // 4 rows of it. NEON and scalar: the plan refuses them. AVX2 defaults to it for decode only:
  // Zen 4, one thread, Skv=32768, 0.90-0.95 of f32 P.V's time (q8, q8_0, q4_0); prefill
  // (Sq=Skv=512) with 4 rows 0.995-1.034 of f32 P.V with 8 (docs/PERFORMANCE.md, "AVX2 integer
  // P.V"). AVX-VNNI is AVX2's code, not measured: the same. AVX2 loads each part's 16 codes of a
  // key by themselves (`partLoads`: vpmovsxbw from memory), not the step and its half by
  // vextracti128 (q8, Skv=1024, one thread: 4% of a call; docs/PERFORMANCE.md, "AVX2 P.V by parts").
  // AVX2's P.V is a function of its own for 64-key tiles (`outOfLineKeys`): q8, q8_0, q4_0 0.978-0.988
  // of the inlined one's call at Skv=1024 and q8 0.976 at 32768 (one thread), but q8's 128-key tiles
  // 1.005-1.014 (AVX-512, which GCC inlines, 1.005): docs/PERFORMANCE.md, "AVX2 decode: P.V by rows".
  attentionIntPV: {
    avx512: { laneKeys: 2, codeMax: 32767 },
    avx2: { laneKeys: 2, codeMax: 32767, accumulators: 2, prefill: false, partLoads: true, outOfLineKeys: 64 },
    avxvnni: { laneKeys: 2, codeMax: 32767, accumulators: 2, prefill: false, partLoads: true, outOfLineKeys: 64 },
  },
  // Scores with keys across the lanes: K's codes + 128 are vpdpbusd's unsigned operand and Q's
  // codes stay signed (the kernel takes 128 x sum(Q) off per scale group); AVX-VNNI the same with
  // 256-bit vectors. AVX2 keeps K signed (bias 0) and takes the sign trick per row (vpsignb of the
  // Q broadcast by the keys' codes, vpmaddubsw with their |codes|, vpmaddwd, vpaddd). AVX-512
  // holds a block's transposed step (16 vectors) in its 32 registers; AVX2's and AVX-VNNI's 8
  // vectors stay in L1 (GCC keeps them on the stack), a vector and its |codes| in registers at a
  // time, so that 4 rows' i32 and f32 accumulators fit 16 registers. With q4_0's small codes AVX2
  // adds the pair sums in i16 (vpaddw) over a Q group, one vpmaddwd a group instead of one a step.
  attentionKeyLanes: { avx512: { kBias: 128, stepRegisters: 16 }, avxvnni: { kBias: 128, stepRegisters: 2 }, avx2: { kBias: 0, stepRegisters: 2, i16Sums: true } },
  // f32 scores of a block of keys summed by a tree (kg_vpair): one vector a row a block, no
  // horizontal sum and scalar stores a key. AVX-512 f16 decode (Zen 4, one thread, Skv=1024): 0.96
  // of the time in L3, 0.976 from DRAM. AVX2 (the same tree of 3 levels, tried): its 16 registers
  // hold a row group's pending partials only by spilling, 1.05-1.09 of the time
  // (docs/PERFORMANCE.md, "f16 decode: scores summed by a tree").
  attentionScoreTree: ['avx512'],
  // f32 scores from a transposed K tile: every variant has a lanes x lanes transpose (scalar: one lane).
  attentionKeyTile: ['avx512', 'avxvnni', 'avx2', 'neon', 'scalar'],
  // Decode on a kgen q8 cache takes 128 keys a tile where a task's chunk is long enough: the next
  // tile's prefetches then reach 16 KiB ahead, as f16's 64-key tiles do. AVX-512 (Zen 4, q8, D=128):
  // 0.96 of 64's time at Skv=32768 (one and two threads), 0.98 at 4096, but 1.03 with 1024 keys a
  // task, whose cold first tile is then twice as long (docs/PERFORMANCE.md, "Decode at Skv = 32768,
  // q8: the own read against the probe"). AVX2: 0.97 with chunks of 1024 and 32768 keys; 256-key
  // chunks 1.04, 512 1.01 (docs/PERFORMANCE.md, "AVX2 decode kvBlock 128"). q8_0, q4_0 and f16
  // caches: 1.14-1.20 at Skv=1024 on AVX2, one KV head a task too, so every variant keeps 64 for
  // them. AVX-VNNI is AVX2's code, not measured: the same.
  attentionDecodeKvBlock: {
    avx512: { q8: { keys: 128, minChunkKeys: 4096 } },
    avx2: { q8: { keys: 128, minChunkKeys: 1024 } },
    avxvnni: { q8: { keys: 128, minChunkKeys: 1024 } },
  },
  // Every KV head of a chunk in one task: the template's head loop is the same C for every variant.
  attentionAllHeads: true,
};

/** Warnings every emitted source must compile cleanly under (tests add -Werror). */
export const C_WARNINGS = ['-Wall', '-Wextra', '-Wno-unused-function', '-Wno-unused-parameter'];
