#!/usr/bin/env bash
# The engine on Linux aarch64, from an x86-64 machine: cross-compiles the engine and its
# GoogleTest suite with Debian's aarch64 g++ and runs the suite under qemu-user, once on an
# emulated CPU with every Arm kernel set (-cpu max: DotProd and I8MM, so the tests compare
# neon_dot and neon_i8mm with generic bit for bit) and once on one without DotProd (cortex-a53:
# only generic may be chosen). qemu checks what the kernels compute, not how fast: ARM speed
# is not measured here. Needs: apt-get install g++-aarch64-linux-gnu qemu-user libgtest-dev
# (.ci/run installs them). Usage: tests/cross_aarch64.sh [build dir, default build/aarch64]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/aarch64}
sysroot=/usr/aarch64-linux-gnu

for tool in aarch64-linux-gnu-g++ qemu-aarch64; do
  command -v "$tool" >/dev/null ||
    { echo "tests/cross_aarch64.sh: $tool is missing: apt-get install g++-aarch64-linux-gnu qemu-user" >&2; exit 1; }
done
[ -f /usr/src/googletest/CMakeLists.txt ] ||
  { echo "tests/cross_aarch64.sh: GoogleTest sources are missing: apt-get install libgtest-dev" >&2; exit 1; }

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
  -DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++ \
  -DCMAKE_FIND_ROOT_PATH="$sysroot" -DCMAKE_FIND_ROOT_PATH_MODE_PROGRAM=NEVER \
  -DCMAKE_FIND_ROOT_PATH_MODE_LIBRARY=ONLY -DCMAKE_FIND_ROOT_PATH_MODE_INCLUDE=ONLY \
  -DCMAKE_CROSSCOMPILING_EMULATOR="qemu-aarch64;-L;$sysroot" \
  -DINTCORE_BUILD_TESTS=ON -DINTCORE_CUDA=OFF -DINTCORE_GTEST_SOURCE=/usr/src/googletest
cmake --build "$build" --parallel --target intcore_tests

tests="$build/intcore_tests"
echo "== aarch64, every Arm kernel set (qemu -cpu max)"
INTCORE_EXPECT_CPU_KERNELS=generic,neon_dot,neon_i8mm qemu-aarch64 -L "$sysroot" -cpu max "$tests" --gtest_brief=1
echo "== aarch64 without DotProd (qemu -cpu cortex-a53): generic only"
INTCORE_EXPECT_CPU_KERNELS=generic qemu-aarch64 -L "$sysroot" -cpu cortex-a53 "$tests" --gtest_brief=1 --gtest_filter='CpuKernel.*:GemmExact.*:Philox.*'
