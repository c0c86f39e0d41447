#!/usr/bin/env bash
# Attention on an NVIDIA GPU (called by scripts/gpu-session.sh, which puts node and the CUDA tools
# on PATH): `kgen verify --target cuda` of every KV format on ragged shapes (decode with GQA, prefill
# on tensor cores and SIMT at D = 256; and kernels with a run-time KV length), each through the kernel's run kit built by nvcc; then each
# format's decode kernel at B=1, Hq=32, Hkv=8, Sq=1, Skv=32768, D=128 emitted with --data and timed
# by its own run.sh (the L2 flushed between runs, next to a device-to-device copy of K and V).
#
#   bash scripts/gpu-attention.sh LOG [DEVICE]
# DEVICE: the kgen profile to plan for; default the CUDA profile `kgen devices` finds present here.
set -uo pipefail
cd "$(dirname "$0")/.."
log=$1
device=${2:-$(node bin/kgen devices --json | node -e 'const d = JSON.parse(require("fs").readFileSync(0, "utf8")).find((p) => p.present && p.kind === "gpu" && p.targets.includes("cuda")); if (d) console.log(d.name)')}
if [ -z "$device" ]; then
  echo "gpu-attention: no kgen CUDA profile matches a GPU here (kgen devices); pass one as DEVICE" | tee "$log" >&2
  exit 2
fi
# The kits with their data (~70 MB a format at Skv = 32768) are removed on exit.
work=$(mktemp -d /tmp/kgen-gpu-attention.XXXXXX)
trap 'rm -rf "$work"' EXIT
trap 'exit 143' TERM INT
formats="f16 q8kv q8_0kv q4_0kv"
: > "$log"
# op and shape, a case a line; each at its default plan: decode (GQA 5, two batches; Sq = 5), prefill
# on tensor cores (causal, GQA 4) and SIMT prefill at D = 256
cases=""
for f in $formats; do
  cases+="attention_$f B=2,Hq=20,Hkv=4,Sq=1,Skv=333,D=128
attention_$f B=1,Hq=8,Hkv=8,Sq=5,Skv=200,D=64
attention_$f B=1,Hq=8,Hkv=2,Sq=77,Skv=77,D=64
attention_$f B=1,Hq=4,Hkv=4,Sq=40,Skv=200,D=256
"
done
echo "## kgen verify --target cuda --device $device" | tee -a "$log"
printf '%s' "$cases" | xargs -P 8 -L 1 sh -c 'r=$(node bin/kgen verify --target cuda --device "$0" --op "$1" --shape "$2" 2>&1 | tail -n 3 | tr "\n" " "); echo "$1 $2: $r"' "$device" 2>&1 | tee -a "$log"
# A run-time KV length ("kvLength": "runtime"): verify runs each kernel at three lengths (the
# capacity, a ragged one, the shortest), decode in splits and prefill on tensor cores.
echo "## kgen verify --target cuda --device $device, run-time KV length" | tee -a "$log"
rt_cases=""
for kv in f16 q8 q8_0 q4_0; do
  printf '{"kind":"attention","name":"attention_%s_kvlen","q":"f16","kvCache":"%s","o":"f16","causal":true,"kvLength":"runtime"}\n' "$kv" "$kv" > "$work/kvlen_$kv.json"
  rt_cases+="$work/kvlen_$kv.json B=1,Hq=32,Hkv=8,Sq=1,Skv=1000,D=128
$work/kvlen_$kv.json B=1,Hq=8,Hkv=2,Sq=64,Skv=300,D=64
"
done
printf '%s' "$rt_cases" | xargs -P 8 -L 1 sh -c 'r=$(node bin/kgen verify --target cuda --device "$0" --ir "$1" --shape "$2" 2>&1 | tail -n 3 | tr "\n" " "); echo "$(basename "$1" .json) $2: $r"' "$device" 2>&1 | tee -a "$log"
echo "## decode at Skv = 32768: run.sh timing (RUNS=50)" | tee -a "$log"
for f in $formats; do
  ( node bin/kgen emit --target cuda --device "$device" --op "attention_$f" --shape B=1,Hq=32,Hkv=8,Sq=1,Skv=32768,D=128 --no-ptxas -o "$work/$f" --data > "$work/$f.emit" 2>&1 ) &
done
wait
for f in $formats; do
  if [ ! -f "$work/$f/run.sh" ]; then echo "attention_$f: emit failed: $(tail -n 2 "$work/$f.emit")" | tee -a "$log"; continue; fi
  RUNS=50 WARMUP=10 sh "$work/$f/run.sh" > "$work/$f.run" 2>&1
  echo "attention_$f: $(cat "$work/$f/result.json" 2>/dev/null || tail -n 3 "$work/$f.run")" | tee -a "$log"
done
