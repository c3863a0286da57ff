#!/usr/bin/env bash
# Runs every test: the engine's GoogleTest suite (built here with CMake) and the Python suite
# against the installed intcore package (`pip install ".[test]"` first; the README's set-up).
set -euo pipefail
cd "$(dirname "$0")/.."

# Say what is missing before the engine's build, not after it.
python -c "import pytest" 2>/dev/null ||
  { echo "tests/run.sh: pytest is missing: pip install 'pytest>=8' (what pip install '.[test]' adds)" >&2; exit 1; }
python -c "import bitsandbytes" 2>/dev/null ||
  { echo "tests/run.sh: bitsandbytes is missing (the NF4 parity tests need it): pip install 'bitsandbytes==0.50.2' (what pip install '.[test]' adds)" >&2; exit 1; }
python -c "import intcore" 2>/dev/null ||
  { echo "tests/run.sh: intcore is not installed in $(command -v python): pip install '.[test]' first" >&2; exit 1; }

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
# The engine alone, CPU backend (the CUDA code is compiled by `pip install .`; its tests need a GPU).
cmake -S . -B build/cpp-tests "${generator[@]}" -DINTCORE_BUILD_TESTS=ON -DINTCORE_CUDA=OFF -DCMAKE_BUILD_TYPE=Release
cmake --build build/cpp-tests --parallel
ctest --test-dir build/cpp-tests --output-on-failure --parallel 2

# The engine on aarch64 under qemu-user (about 90 s), where the cross compiler and qemu are
# installed (.ci/run installs them; INTCORE_SKIP_AARCH64=1 skips it).
if [ "${INTCORE_SKIP_AARCH64:-0}" != 1 ] && command -v aarch64-linux-gnu-g++ >/dev/null && command -v qemu-aarch64 >/dev/null; then
  tests/cross_aarch64.sh
else
  echo "tests/run.sh: skipping the aarch64 engine tests (needs g++-aarch64-linux-gnu and qemu-user, or INTCORE_SKIP_AARCH64=1 is set)"
fi

python -m pytest tests/python -q "$@"
