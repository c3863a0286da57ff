#!/usr/bin/env bash
# Runs every test: the engine's GoogleTest suite (built here with CMake) and the Python suite
# against the installed intcore package (`pip install .` first).
set -euo pipefail
cd "$(dirname "$0")/.."

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B build/cpp-tests "${generator[@]}" -DINTCORE_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=Release
cmake --build build/cpp-tests --parallel
ctest --test-dir build/cpp-tests --output-on-failure --parallel 2

python -m pytest tests/python -q "$@"
