#!/usr/bin/env bash
# The GPU machine's checks, one step per command (docs/gpu.md):
#
#   bash benchmarks/gpu_check.sh STEP [STEP ...]
#
#   wheel     build an intcore wheel with the CUDA backend into $OUT, with its sources'
#             fingerprint and architectures (<wheel>.sources), without installing it: run where you prepare the
#             carry (OUT=.gpu, PYTHON of the GPU machine's version, INTCORE_CUDA_ARCHS=90a)
#   build     install intcore with its CUDA backend, offline: a carried intcore wheel for this
#             Python if its fingerprint matches this tree's sources and its architectures
#             include the GPU's, else from source with the carried nvidia-cutlass wheel; a wheel
#             built here is left in $OUT (with its .sources) for later commands to carry
#   doctor    python -m intcore (the build report and native-vs-portable self-check)
#   test      the GPU tests (tests/python/test_cuda.py) with INTCORE_REQUIRE_CUDA=1, so an
#             unavailable CUDA backend fails instead of skipping
#   sanitize  compute-sanitizer memcheck and racecheck over the tests marked `sanitize`
#   bench     benchmarks/gemm.py (which checks samples against the CPU engine),
#             benchmarks/int4_linear.py and benchmarks/finetune_step.py on the GPU
#   all       all of the above, in that order (longer than one 10-minute device command)
#
# Each step writes $OUT/<step>.log; $OUT/summary.md (the environment, one row per step, the
# failures and the benchmark tables) is rewritten after every step. The exit status is 1 if
# any step failed. Settings (environment):
#   OUT                  where logs and summary go (default ./gpu-check-out)
#   PYTHON               the interpreter that holds the machine's PyTorch (default python3)
#   INTCORE_CARRY        folder of carried wheels (default .gpu): intcore-*-cpXY-*.whl and/or
#                        nvidia_cutlass-4.2.0.0-py3-none-any.whl
#   INTCORE_CUTLASS_WHEEL, CUTLASS_DIR   CUTLASS headers for a source build (instead of the carry)
#   INTCORE_CUDA_ARCHS   CMake CUDA architectures (default: the GPU's own, e.g. 90a on Hopper)
#   GPU_CHECK_TIMEOUT    seconds for each long command (default 480; sanitize gives each tool half,
#                        bench gives gemm.py and int4_linear.py 30% each, finetune_step.py 40%)
set -uo pipefail

cd "$(dirname "$0")/.."
OUT="${OUT:-./gpu-check-out}"
PYTHON="${PYTHON:-python3}"
CARRY="${INTCORE_CARRY:-.gpu}"
LIMIT="${GPU_CHECK_TIMEOUT:-480}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
export PYTHONUNBUFFERED=1
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then export PATH="/usr/local/cuda/bin:$PATH"; fi

ROWS=()      # "| step | result | seconds | log | note |" lines of the summary
DETAILS=()   # markdown sections after the table
FAILED=0

note() { echo "[gpu_check $(date -u +%H:%M:%S)] $*"; }

# Runs a command with a time limit, its output appended to a log; returns its status (124: timed out).
run_logged() {
  local log="$1" seconds="$2"
  shift 2
  echo "\$ $*" >>"$log"
  timeout --kill-after=10 "$seconds" "$@" >>"$log" 2>&1
}

environment() {
  local gpu
  if command -v nvidia-smi >/dev/null 2>&1; then
    gpu="$(nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv,noheader 2>&1 | head -4 | paste -sd ';' -)"
  else
    gpu="no nvidia-smi on this machine"
  fi
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), host $(hostname), $(nproc) CPU cores"
  echo "- GPU: ${gpu}"
  echo "- nvcc: $(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*' || echo 'not found')"
  echo "- compute-sanitizer: $(command -v compute-sanitizer || echo 'not found')"
  "$PYTHON" - <<'EOF' 2>&1 | sed 's/^/- /'
import platform
try:
    import torch
    print(f"Python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
          f"torch sees a GPU: {torch.cuda.is_available()}")
except Exception as e:  # noqa: BLE001
    print(f"Python {platform.python_version()}, torch not importable: {e}")
try:
    import intcore
    from intcore import _C
    where = f"intcore {intcore.__version__} at {intcore.__file__}, _C at {_C.__file__}"
    info = _C.build_info() if hasattr(_C, "build_info") else {}
    print(f"{where}; built with CUDA: {_C.built_with_cuda} {info}")
    reason = intcore.cuda_unavailable_reason()
    print("intcore CUDA kernels: available" if intcore.cuda_available() else f"intcore CUDA kernels: unavailable ({reason})")
except Exception as e:  # noqa: BLE001
    print(f"intcore not importable: {e}")
EOF
}

write_summary() {
  {
    echo "# intcore GPU check"
    echo
    echo "Steps run: ${STEPS[*]} (benchmarks/gpu_check.sh). Logs beside this file."
    echo
    echo "## Environment"
    echo
    environment
    echo
    echo "## Steps"
    echo
    echo "| step | result | seconds | log | note |"
    echo "|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
    for section in "${DETAILS[@]}"; do
      echo
      printf '%s\n' "$section"
    done
  } >"$OUT/summary.md"
}

# record STEP RESULT NOTE: a row of the summary (seconds since the step began), rewritten at once.
record() {
  local seconds=$(( $(date +%s) - STEP_BEGIN ))
  ROWS+=("| $1 | $2 | $seconds | $1.log | ${3//|/\\|} |")
  if [ "$2" = "FAIL" ]; then FAILED=1; fi
  note "$1: $2 ($seconds s) $3"
  write_summary
}

# Its arguments joined with "; ".
joined() {
  local out="" item
  for item in "$@"; do out="${out:+$out; }$item"; done
  echo "$out"
}

# The last lines of a log, as a fenced block for the summary.
excerpt() {
  local title="$1" log="$2" lines="$3"
  printf '### %s\n\n```\n%s\n```' "$title" "$(tail -n "$lines" "$log" | cut -c1-300)"
}

# A fingerprint of the sources a wheel is built from (native code, the package, the build
# files), stored beside every wheel this script builds (<wheel>.sources): a carried wheel whose
# fingerprint differs from the tree's was built from other code and is not installed.
source_fingerprint() {
  command -v sha256sum >/dev/null 2>&1 || { echo "no-sha256sum"; return; }
  find cpp cuda bindings python CMakeLists.txt pyproject.toml -type f \
      \( -name '*.py' -o -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' -o -name '*.cmake' \
         -o -name '*.txt' -o -name '*.toml' \) \
      -not -path '*/__pycache__/*' -not -path '*.egg-info/*' -print0 \
    | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16
}

# The CUDA architecture to build for this machine's GPU ("" where there is none or it is another
# one: the CMake default list 80;86;89;90a).
gpu_arch() {
  local cc
  command -v nvidia-smi >/dev/null 2>&1 || return 0
  cc="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')"
  case "$cc" in
    90) echo "90a" ;;       # wgmma and TMA need the arch-specific target
    80|86|89) echo "$cc" ;;
  esac
}

# Builds an intcore wheel with the CUDA backend into $OUT (and its .sources fingerprint), for the
# GPU this machine has (or INTCORE_CUDA_ARCHS). Sets `wheel` and `how`; returns pip's status.
build_wheel() {
  local log="$1" cutlass archs status=0 tag
  cutlass="${INTCORE_CUTLASS_WHEEL:-$(ls "$CARRY"/nvidia_cutlass-4.2.0.0-py3-none-any.whl 2>/dev/null | head -1)}"
  if [ -z "$cutlass" ] && [ -z "${CUTLASS_DIR:-}" ]; then
    echo "no CUTLASS headers: neither $CARRY/nvidia_cutlass-4.2.0.0-py3-none-any.whl, INTCORE_CUTLASS_WHEEL nor" \
         "CUTLASS_DIR; a machine without network cannot download them (docs/gpu.md)" | tee -a "$log"
    how="nothing to build from: carry the nvidia-cutlass wheel (or an intcore wheel for this tree)"
    return 1
  fi
  archs="${INTCORE_CUDA_ARCHS:-$(gpu_arch)}"
  # Always passed (the kept build folder's CMake cache would otherwise hold an earlier list),
  # so that .whl.sources records what the wheel holds.
  archs="${archs:-80;86;89;90a}"
  # Its own build folder (kept between commands while the machine stays warm), apart from
  # the one a developer's pip install uses.
  local args=(-Ccmake.define.INTCORE_CUDA=ON "-Cbuild-dir=build/gpu-check-{wheel_tag}")
  [ -n "$cutlass" ] && args+=("-Ccmake.define.INTCORE_CUTLASS_WHEEL=$(cd "$(dirname "$cutlass")" && pwd)/$(basename "$cutlass")")
  [ -n "${CUTLASS_DIR:-}" ] && args+=("-Ccmake.define.CUTLASS_DIR=$CUTLASS_DIR")
  args+=("-Ccmake.define.CMAKE_CUDA_ARCHITECTURES=$archs")
  how="from source, CUDA architectures $archs, CUTLASS ${cutlass:-$CUTLASS_DIR}"
  tag="$("$PYTHON" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
  rm -f "$OUT"/intcore-*-"$tag"-*.whl "$OUT"/intcore-*-"$tag"-*.whl.sources
  # --no-build-isolation --no-deps: build with the machine's scikit-build-core and pybind11 and
  # never let pip replace its torch.
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" run_logged "$log" "$LIMIT" \
    "$PYTHON" -m pip wheel --no-build-isolation --no-deps --no-index -v -w "$OUT" . "${args[@]}" || status=$?
  wheel="$(ls "$OUT"/intcore-*-"$tag"-*.whl 2>/dev/null | head -1)"
  # Line 1: the sources' fingerprint; line 2: the CUDA architectures it holds.
  [ -n "$wheel" ] && printf '%s\n%s\n' "$(source_fingerprint)" "$archs" >"$wheel.sources"
  return "$status"
}

step_wheel() {
  local log="$OUT/wheel.log" wheel how status=0
  : >"$log"
  build_wheel "$log" || status=$?
  if [ "$status" -eq 0 ] && [ -n "$wheel" ]; then
    record wheel pass "$how: $(basename "$wheel"), sources $(sed -n 1p "$wheel.sources")"
  else
    record wheel FAIL "$how (status $status)"
    DETAILS+=("$(excerpt "wheel: end of wheel.log" "$log" 40)")
  fi
}

step_build() {
  local log="$OUT/build.log" tag wheel how status=0 fingerprint carried
  : >"$log"
  tag="$("$PYTHON" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
  fingerprint="$(source_fingerprint)"
  carried="$(ls "$CARRY"/intcore-*-"$tag"-*.whl 2>/dev/null | head -1)"
  local built_from built_for needed
  built_from="$(sed -n 1p "$carried.sources" 2>/dev/null)"
  built_for="$(sed -n 2p "$carried.sources" 2>/dev/null)"
  needed="$(gpu_arch)"
  if [ -n "$carried" ] && [ "$fingerprint" != "no-sha256sum" ] && [ "$built_from" = "$fingerprint" ] &&
     { [ -z "$needed" ] || [[ ";$built_for;" == *";$needed;"* ]]; }; then
    wheel="$carried"
    how="from carried wheel $wheel"
  else
    [ -n "$carried" ] && echo "$carried does not fit (built from sources ${built_from:-unknown} for architectures" \
      "${built_for:-unknown}; this tree: $fingerprint, this GPU: ${needed:-unknown}): building from source" | tee -a "$log"
    build_wheel "$log" || status=$?
  fi
  if [ "$status" -eq 0 ] && [ -n "$wheel" ]; then
    run_logged "$log" 300 "$PYTHON" -m pip install --no-deps --no-index --force-reinstall "$wheel" || status=$?
  elif [ "$status" -eq 0 ]; then
    status=1
  fi
  local where
  where="$(cd /tmp && "$PYTHON" -c 'import intcore, intcore._C as C
print(f"{intcore.__file__} (_C: {C.__file__}), built with CUDA: {C.built_with_cuda}, kernels: " +
      ("available" if intcore.cuda_available() else "unavailable: " + intcore.cuda_unavailable_reason()))' 2>&1 | tail -1)"
  echo "installed: $where" | tee -a "$log"
  # The intcore that imports must be the one pip just installed (not an editable install or a
  # copy elsewhere on the path), and must have its CUDA backend.
  local location
  location="$("$PYTHON" -m pip show intcore 2>/dev/null | sed -n 's/^Location: //p')"
  if [ "$status" -eq 0 ] && [ -n "$location" ] && [ "${where#"$location"/intcore/}" = "$where" ]; then
    where="pip installed intcore into $location, but Python imports another one: $where"
    echo "$where" | tee -a "$log"
    status=1
  fi
  if [ "$status" -ne 0 ] || ! (cd /tmp && "$PYTHON" -c 'import intcore._C as C, sys; sys.exit(0 if C.built_with_cuda else 1)') >/dev/null 2>&1; then
    record build FAIL "$how (status $status): $where"
    DETAILS+=("$(excerpt "build: end of build.log" "$log" 40)")
  else
    record build pass "$how; installed $where${wheel:+; wheel $(basename "$wheel")}"
  fi
}

step_doctor() {
  local log="$OUT/doctor.log" status=0
  : >"$log"
  run_logged "$log" 300 "$PYTHON" -m intcore || status=$?
  if [ "$status" -ne 0 ] && grep -q "No module named intcore.__main__" "$log"; then
    record doctor skipped "this version of intcore has no python -m intcore"
    return
  fi
  DETAILS+=("$(excerpt "doctor: python -m intcore" "$log" 60)")
  if [ "$status" -eq 0 ]; then record doctor pass ""; else record doctor FAIL "status $status"; fi
}

pytest_timeout_args() {
  # pytest-timeout (where installed): a test that hangs (a kernel waiting forever) ends the run
  # after $1 s with every thread's stack in the log, instead of taking the whole step's time.
  if "$PYTHON" -c 'import pytest_timeout' >/dev/null 2>&1; then echo "-p pytest_timeout --timeout=$1 --timeout-method=thread"; fi
}

step_test() {
  local log="$OUT/test.log" status=0 line failures
  : >"$log"
  # shellcheck disable=SC2046
  INTCORE_REQUIRE_CUDA=1 COLUMNS=200 run_logged "$log" "$LIMIT" "$PYTHON" -m pytest tests/python/test_cuda.py -v -rfE \
    -p no:cacheprovider $(pytest_timeout_args 180) || status=$?
  line="$(grep -E '^=+ .*(passed|failed|error|skipped|no tests).* =+$' "$log" | tail -1 | tr -d '=' | sed 's/^ *//;s/ *$//')"
  [ "$status" -eq 124 ] && line="timed out after $LIMIT s; ${line:-see test.log}"
  failures="$(grep -E '^(FAILED|ERROR) ' "$log" | head -25 | cut -c1-300)"
  if [ -n "$failures" ]; then
    # The header line says whether the CUDA backend is available, and why not.
    DETAILS+=("$(printf '### test: failures (first 25)\n\n```\n%s\n\n%s\n```' \
      "$(grep -m1 '^intcore CUDA:' "$log")" "$failures")")
  fi
  if [ -z "$line" ]; then  # no pytest summary: it crashed, hung or was stopped; show where
    DETAILS+=("$(excerpt "test: end of test.log" "$log" 40)")
  fi
  if [ "$status" -eq 0 ]; then
    record test pass "$line"
  else
    record test FAIL "${line:-status $status}; $(grep -m1 '^intcore CUDA:' "$log")"
  fi
}

step_sanitize() {
  local log="$OUT/sanitize.log" status=0 tool tool_status summary notes=() sanitizer
  : >"$log"
  sanitizer="$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)"
  if [ -z "$sanitizer" ]; then
    record sanitize skipped "compute-sanitizer not found"
    return
  fi
  for tool in memcheck racecheck; do
    tool_status=0
    echo "===== $tool =====" >>"$log"
    # shellcheck disable=SC2046
    # API errors are not reported: PyTorch's probes return some by design, and intcore raises on its own.
    INTCORE_REQUIRE_CUDA=1 run_logged "$log" $((LIMIT / 2)) "$sanitizer" --tool "$tool" --error-exitcode 86 \
      --report-api-errors no --print-limit 50 "$PYTHON" -m pytest tests/python/test_cuda.py -m sanitize -q -rfE -p no:cacheprovider \
      || tool_status=$?
    summary="$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$log" | tail -1)"
    case "$tool_status" in
      0) notes+=("$tool: clean${summary:+ ($summary)}") ;;
      86) notes+=("$tool: ERRORS${summary:+ ($summary)}") ;;
      124) notes+=("$tool: timed out after $((LIMIT / 2)) s") ;;
      *) notes+=("$tool: status $tool_status (tests failed or the sanitizer refused the device; see sanitize.log)") ;;
    esac
    [ "$tool_status" -ne 0 ] && status=1
  done
  if [ "$status" -ne 0 ]; then DETAILS+=("$(excerpt "sanitize: end of sanitize.log" "$log" 60)"); fi
  if [ "$status" -eq 0 ]; then record sanitize pass "$(joined "${notes[@]}")"; else record sanitize FAIL "$(joined "${notes[@]}")"; fi
}

step_bench() {
  local log="$OUT/bench.log" status=0 script rc notes=() start i
  : >"$log"
  # Each script's share of the step's time: 30%, 30%, 40% (finetune_step runs a subprocess per recipe).
  local cmds=("benchmarks/gemm.py" "benchmarks/int4_linear.py --device cuda") shares=(30 30 40)
  if "$PYTHON" benchmarks/finetune_step.py --help 2>/dev/null | grep -q -- '--device'; then
    cmds+=("benchmarks/finetune_step.py --device cuda")
  else
    notes+=("finetune_step.py has no --device: skipped")
  fi
  for i in "${!cmds[@]}"; do
    script="${cmds[$i]}"
    rc=0
    start=$(date +%s)
    echo "===== $script =====" >>"$log"
    # shellcheck disable=SC2086
    run_logged "$log" $((LIMIT * shares[i] / 100)) "$PYTHON" $script || rc=$?
    notes+=("${script%% *}: $([ "$rc" -eq 0 ] && echo ok || echo "status $rc$([ "$rc" -eq 124 ] && echo ", timed out")") in $(( $(date +%s) - start )) s")
    [ "$rc" -ne 0 ] && status=1
  done
  DETAILS+=("$(printf '### bench: output\n\n```\n%s\n```' "$(grep -v '^\$ ' "$log" | cut -c1-300 | tail -n 150)")")
  if [ "$status" -eq 0 ]; then record bench pass "$(joined "${notes[@]}")"; else record bench FAIL "$(joined "${notes[@]}")"; fi
}

STEPS=("$@")
[ ${#STEPS[@]} -eq 0 ] && { sed -n '2,31p' "$0"; exit 2; }
if [ "${STEPS[*]}" = "all" ]; then STEPS=(build doctor test sanitize bench); fi
for step in "${STEPS[@]}"; do
  case "$step" in
    wheel|build|doctor|test|sanitize|bench) ;;
    *) echo "unknown step '$step' (wheel, build, doctor, test, sanitize, bench, all)" >&2; exit 2 ;;
  esac
done
write_summary
for step in "${STEPS[@]}"; do
  note "$step: start (logs in $OUT)"
  STEP_BEGIN=$(date +%s)
  "step_$step"
done
echo
cat "$OUT/summary.md"
exit "$FAILED"
