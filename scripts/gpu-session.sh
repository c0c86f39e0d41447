#!/usr/bin/env bash
# Runs kgen's GPU checks on a machine with an NVIDIA GPU, nvcc and the driver but no Node: unpacks
# what `scripts/gpu-bundle.sh` packed, then runs the GPU suite (test/gpu: every format x variant x
# M on ragged shapes against the reference, compute-sanitizer memcheck/racecheck/synccheck, the
# runner's statuses) and the GPU bench (bench/gpu.ts: GEMV GB/s per format next to a copy probe,
# M = 1, 16, 64, 256 next to torch) and attention (`kgen verify` of every KV format on ragged decode
# and prefill shapes, then each format's decode kernel at Skv = 32768 timed by its run kit, run.sh,
# next to a copy of K and V). Logs go to $OUT (or ./gpu-out), at most 8 files.
#
#   bash scripts/gpu-session.sh [tests|bench|attention|all]     default all
# Environment: TESTS_TIMEOUT (s, default 300), BENCH_TIMEOUT (s, default 240), BENCH_ARGS,
# ATTENTION_TIMEOUT (s, default 120), DEVICE (kgen profile for attention; default the one present).
set -uo pipefail
cd "$(dirname "$0")/.."
stage=${1:-all}
case "$stage" in tests|bench|attention|all) ;; *) echo "usage: gpu-session.sh [tests|bench|attention|all]" >&2; exit 2 ;; esac
bundle=.gpu-bundle
[ -f "$bundle/node.xz" ] && [ -f "$bundle/modules.tar.xz" ] || { echo "gpu-session: no $bundle (make it with scripts/gpu-bundle.sh and carry it)" >&2; exit 2; }
out=${OUT:-$PWD/gpu-out}
mkdir -p "$out"
bin=/tmp/kgen-node
mkdir -p "$bin"
xz -dc "$bundle/node.xz" > "$bin/node" && chmod +x "$bin/node"
tar -xJf "$bundle/modules.tar.xz"
# The CUDA tools where the toolkit puts them, when the image leaves them off PATH.
export PATH="$bin:$PATH:/usr/local/cuda/bin"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "node: $(node --version)"
  echo "kernel: $(uname -r); cpus: $(nproc)"
  nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>&1
  nvcc --version 2>&1 | tail -n 2
  command -v compute-sanitizer || echo "compute-sanitizer: not on PATH"
  python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))' 2>&1 | tail -n 1
} > "$out/machine.txt" 2>&1
cat "$out/machine.txt"
rc=0
if [ "$stage" = tests ] || [ "$stage" = all ]; then
  echo "gpu-session: test suite (timeout ${TESTS_TIMEOUT:-300} s)"
  timeout "${TESTS_TIMEOUT:-300}" node node_modules/vitest/vitest.mjs run --config vitest.gpu.config.ts --reporter=verbose 2>&1 | tee "$out/test-gpu.log"
  rc=${PIPESTATUS[0]}
  echo "gpu-session: test suite exit $rc" | tee -a "$out/test-gpu.log"
fi
if [ "$stage" = bench ] || [ "$stage" = all ]; then
  echo "gpu-session: bench (timeout ${BENCH_TIMEOUT:-240} s)"
  # shellcheck disable=SC2086
  timeout "${BENCH_TIMEOUT:-240}" node dist/bench/gpu.js ${BENCH_ARGS:-} > "$out/bench-gpu.txt" 2> "$out/bench-gpu.err"
  brc=$?
  cat "$out/bench-gpu.txt"
  tail -n 5 "$out/bench-gpu.err"
  echo "gpu-session: bench exit $brc" | tee -a "$out/bench-gpu.err"
  [ "$rc" -eq 0 ] && rc=$brc
fi
if [ "$stage" = attention ] || [ "$stage" = all ]; then
  echo "gpu-session: attention (timeout ${ATTENTION_TIMEOUT:-120} s)"
  timeout "${ATTENTION_TIMEOUT:-120}" bash scripts/gpu-attention.sh "$out/attention.txt" "${DEVICE:-}"
  arc=$?
  echo "gpu-session: attention exit $arc" | tee -a "$out/attention.txt"
  [ "$rc" -eq 0 ] && rc=$arc
fi
exit "$rc"
