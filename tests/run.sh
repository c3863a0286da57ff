#!/usr/bin/env bash
# Runs every test: the engine's GoogleTest suite (built here with CMake) and the Python suite
# against the installed intcore package (`pip install .` first).
set -euo pipefail
cd "$(dirname "$0")/.."

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
# The engine alone, CPU backend (the CUDA code is compiled by `pip install .`; its tests need a GPU).
cmake -S . -B build/cpp-tests "${generator[@]}" -DINTCORE_BUILD_TESTS=ON -DINTCORE_CUDA=OFF -DCMAKE_BUILD_TYPE=Release
cmake --build build/cpp-tests --parallel
ctest --test-dir build/cpp-tests --output-on-failure --parallel 2

python -m pytest tests/python -q "$@"
