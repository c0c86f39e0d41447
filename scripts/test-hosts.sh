#!/usr/bin/env bash
# `npm run test:hosts`: the suite again with `host` forced to fixed CPU profiles (AVX-512, AVX2 only,
# NEON under qemu), so a test that leans on this machine's CPU fails here, not on the next CI machine.
#
# Files whose kernels run only on fixed GPU, WebGPU or dummy devices never see `host`, and are among
# the slowest in the suite (~750 of npm test's ~1730 s of test time, two files at a time): forcing
# `host` cannot change what they do, so they run once, in `npm test`. A file listed here must not
# name `host`; the check below fails the run if one starts to.
set -euo pipefail
cd "$(dirname "$0")/.."

HOST_BLIND=(
  test/cuda.test.ts test/cuda-attention.test.ts test/run-import.test.ts
  test/wgsl.test.ts test/wgsl-attention.test.ts test/wgsl-browser.test.ts
  test/recipe.test.ts test/ir.test.ts test/quant.test.ts test/targets.test.ts test/bench-attention.test.ts
)
named=$(grep -l -E "'host'|\"host\"|KGEN_HOST_PROFILE" "${HOST_BLIND[@]}" || true)
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
