#!/usr/bin/env bash
# Runs every test: the engine's GoogleTest suite (built here with CMake) and the Python suite
# against the installed intcore package (`pip install ".[test]"` first; the README's set-up).
set -euo pipefail
cd "$(dirname "$0")/.."

# Say what is missing before the engine's build, not after it.
python -c "import pytest" 2>/dev/null ||
  { echo "tests/run.sh: pytest is missing: pip install 'pytest>=8' (what pip install '.[test]' adds)" >&2; exit 1; }
python -c "import intcore" 2>/dev/null ||
  { echo "tests/run.sh: intcore is not installed in $(command -v python): pip install '.[test]' first" >&2; exit 1; }

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
# The engine alone, CPU backend (the CUDA code is compiled by `pip install .`; its tests need a GPU).
cmake -S . -B build/cpp-tests "${generator[@]}" -DINTCORE_BUILD_TESTS=ON -DINTCORE_CUDA=OFF -DCMAKE_BUILD_TYPE=Release
cmake --build build/cpp-tests --parallel
ctest --test-dir build/cpp-tests --output-on-failure --parallel 2

python -m pytest tests/python -q "$@"
