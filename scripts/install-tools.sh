#!/usr/bin/env bash
# Installs the native tools kgen's tests use beyond Node: a C compiler, a C++ compiler (CUDA kernels
# run on the CPU through kgen's shim), the aarch64 cross compiler and qemu-user (NEON kernels run
# under qemu-aarch64), make and cmake (the package tests build packages with their Makefile and
# CMakeLists.txt), clang (packages build warning-free under clang as well as gcc) and Debian's chromium: its
# SwiftShader Vulkan ICD and loader (/usr/lib/chromium) run WGSL kernels through Dawn (the npm
# package webgpu) where there is no GPU, and headless it runs the `kgen report` page test through
# playwright-core. nvcc is not a Debian package: the ptxas cross-check runs where it is on PATH.
# Debian/Ubuntu, as root or with sudo.
# Tests that need a missing tool skip with a printed reason, so this is optional for `npm test`.
set -euo pipefail
packages=(gcc g++ clang make cmake libc6-dev gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-tools: all present (${packages[*]})"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-tools: installing ${missing[*]}"
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
