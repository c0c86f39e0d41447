#!/usr/bin/env bash
# Packs what `scripts/gpu-session.sh` needs on a GPU machine that has CUDA but no Node and no
# package registry (this project's lent device machines): this machine's node binary and the
# node_modules the GPU suite and bench load, with the built dist/. Run here after `npm ci`.
#
#   bash scripts/gpu-bundle.sh        writes .gpu-bundle/ (git-ignored; ~40 MB)
#
# Then carry `.gpu-bundle` to the GPU machine with the working tree and run there
#   bash scripts/gpu-session.sh [tests|bench|all]
# The node binary must suit the GPU machine (x86-64 Linux, glibc at least this one's).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || { echo "gpu-bundle: run npm ci first" >&2; exit 2; }
npm run --silent build
out=.gpu-bundle
rm -rf "$out.tmp"
mkdir -p "$out.tmp"
node_bin=$(command -v node)
xz -T0 -6 -c "$node_bin" > "$out.tmp/node.xz"
node --version > "$out.tmp/node-version"
# Everything the suite and the bench load; not the bench-only peers (onnxruntime, node-llama-cpp),
# WebGPU (Dawn) and the browser driver, the compiler, type declarations, or better-sqlite3's
# sources and object files (its .node is kept).
tar -cf - \
  --exclude=node_modules/onnxruntime-node --exclude=node_modules/onnxruntime-common \
  --exclude=node_modules/onnxruntime-web --exclude=node_modules/@node-llama-cpp --exclude=node_modules/node-llama-cpp \
  --exclude=node_modules/webgpu --exclude=node_modules/playwright-core --exclude=node_modules/dependency-cruiser \
  --exclude=node_modules/typescript --exclude=node_modules/@types \
  --exclude=node_modules/better-sqlite3/deps --exclude=node_modules/better-sqlite3/src \
  --exclude=node_modules/better-sqlite3/build/Release/obj --exclude=node_modules/better-sqlite3/build/Release/obj.target \
  --exclude=node_modules/better-sqlite3/build/Release/test_extension.node --exclude='node_modules/better-sqlite3/build/Release/*.a' \
  --exclude=node_modules/better-sqlite3/build/deps \
  node_modules dist | xz -T0 -6 > "$out.tmp/modules.tar.xz"
size=$(du -sm "$out.tmp" | cut -f1)
if [ "$size" -gt 60 ]; then
  echo "gpu-bundle: $size MiB is more than a lent GPU machine takes with the working tree (64 MiB in all); exclude the new large module" >&2
  du -sh node_modules/* | sort -h | tail -n 8 >&2
  rm -rf "$out.tmp"
  exit 1
fi
rm -rf "$out"
mv "$out.tmp" "$out"
du -sh "$out"/* | sed 's/^/gpu-bundle: /'
echo "gpu-bundle: carry .gpu-bundle and run: bash scripts/gpu-session.sh all"
