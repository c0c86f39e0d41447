/**
 * How each C variant is compiled and run: compiler, flags, and the emulator needed to run it on
 * this machine (NEON under qemu-user). Data, so a new ISA is one entry.
 */
export interface CToolchain {
  compiler: string;
  flags: string[];
  /** Command prefix that runs the binary, e.g. qemu-aarch64 for NEON on x86. */
  runner?: string[];
  /** CPU features the running machine needs (kgen names, from /proc/cpuinfo); empty for scalar. */
  needs: string[];
  /** Architecture the binary is for. */
  arch: 'x86_64' | 'aarch64' | 'any';
}

export const C_TOOLCHAINS: Record<string, CToolchain> = {
  scalar: { compiler: 'gcc', flags: ['-O2', '-std=c11'], needs: [], arch: 'any' },
  avx2: { compiler: 'gcc', flags: ['-O3', '-std=c11', '-mavx2', '-mfma', '-mf16c'], needs: ['avx2', 'fma', 'f16c'], arch: 'x86_64' },
  avx512: {
    compiler: 'gcc',
    flags: ['-O3', '-std=c11', '-mavx2', '-mfma', '-mf16c', '-mavx512f', '-mavx512bw', '-mavx512vl', '-mavx512vnni'],
    needs: ['avx512f', 'avx512bw', 'avx512vl', 'avx512vnni'],
    arch: 'x86_64',
  },
  neon: {
    compiler: 'aarch64-linux-gnu-gcc',
    flags: ['-O3', '-std=c11', '-march=armv8.2-a+dotprod+fp16', '-static'],
    runner: ['qemu-aarch64'],
    needs: [],
    arch: 'aarch64',
  },
};

/** Warnings every emitted source must compile cleanly under (tests add -Werror). */
export const C_WARNINGS = ['-Wall', '-Wextra', '-Wno-unused-function', '-Wno-unused-parameter'];
