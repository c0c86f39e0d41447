#!/usr/bin/env bash
# `npm run test:hosts`: the suite again with `host` forced to fixed CPU profiles (AVX-512, AVX2 only,
# NEON under qemu), so a test that leans on this machine's CPU fails here, not on the next CI machine.
#
# Only files that resolve `host` can see the forced profile (their `bin/kgen` children read the
# variable; their in-process library calls get it from test/helpers.ts's suiteHost(), since the
# library reads no environment); the others would repeat npm test's work three times (CI passed in 85 min on a Zen 5 machine when the C and WebAssembly kernel files ran
# here too, against a 90 min limit). HOST_BLIND lists the files that never resolve `host`: their
# verify, emit and tune calls name a fixed device (epyc-9654, epyc-7763, apple-m2, wasm-simd128, a
# GPU) or none of kgen's devices at all. How that was established (2026-12-02): a build whose
# `getDevice` logged every lookup that returned a forced `host` ran each file, and its `bin/kgen`
# children, with KGEN_HOST_PROFILE set; these files logged none, while every file that names `host`
# logged some. A file listed here must not name `host`; the check below fails the run if one starts
# to. A new test file is not listed, so it runs under every profile until someone shows it blind.
set -euo pipefail
cd "$(dirname "$0")/.."

HOST_BLIND=(
  # GPU, WebGPU and dummy devices, and pure TypeScript.
  test/cuda.test.ts test/cuda-attention.test.ts test/run-import.test.ts
  test/wgsl.test.ts test/wgsl-attention.test.ts test/wgsl-browser.test.ts
  test/recipe.test.ts test/ir.test.ts test/quant.test.ts test/bench-attention.test.ts test/db-addon.test.ts
  test/library-contract.test.ts
  # CPU and WebAssembly kernels on named profiles (the trace above), and what reads fixed files.
  test/c-backend.test.ts test/c-attention.test.ts test/wasm.test.ts test/wasm-attention.test.ts
  test/wasm-browser.test.ts test/golden.test.ts test/gguf.test.ts test/plan.test.ts test/report.test.ts
  test/package.test.ts test/tune-timing.test.ts
  # Run-time KV length (2026-12-05): every emit and verify names its device, or takes a target's
  # default that is not host (cuda rtx4090, wgsl webgpu, wasm wasm-simd128).
  test/c-attention-kvlen.test.ts test/wasm-attention-kvlen.test.ts test/cuda-attention-kvlen.test.ts test/wgsl-attention-kvlen.test.ts
  # Every draw names its device (epyc-7763, epyc-9654, apple-m2, wasm-simd128, rtx4090, webgpu).
  test/config-fuzz.test.ts
  # kgen's own tarball: its CLI emit names epyc-9654, its library calls take wasm's wasm-simd128.
  test/npm-package.test.ts
  # Attention non-finite contract: C names epyc-9654, epyc-7763 or apple-m2, wasm and wgsl take their defaults.
  test/attention-nonfinite.test.ts
  # (test/targets.test.ts reads getDevice('host')'s targets since 2026-12-05: it runs under every host.)
)
named=$(grep -l -E "'host'|\"host\"|KGEN_HOST_PROFILE|suiteHost" "${HOST_BLIND[@]}" || true)
if [ -n "$named" ]; then
  echo "scripts/test-hosts.sh: $named name(s) host but are skipped under forced hosts; take them off HOST_BLIND" >&2
  exit 1
fi

excludes=()
for f in "${HOST_BLIND[@]}"; do excludes+=(--exclude "$f"); done
for profile in epyc-9654 epyc-7763 apple-m2; do
  echo "== KGEN_HOST_PROFILE=$profile"
  KGEN_HOST_PROFILE=$profile npx vitest run "${excludes[@]}"
done
