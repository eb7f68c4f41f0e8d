#!/usr/bin/env bash
# Build the CPU extension with AddressSanitizer + UndefinedBehaviorSanitizer (CMake option
# DIFFMD_FAST_SANITIZE=ON) beside the normal build and run the op, graph and fuzz tests against it.
# Python itself is not instrumented, so the ASan runtime is preloaded; leak checking is off because
# CPython and torch keep allocations alive until exit by design.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")"  # absolute, not resolved: keep the venv
build=build/asan
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDIFFMD_FAST_SANITIZE=ON -DDIFFMD_FAST_CUDA=off \
  -DPython_EXECUTABLE="$PYTHON" >/dev/null
cmake --build "$build" -j2
pkg="$build/pkg"
rm -rf "$pkg" && mkdir -p "$pkg"
cp -r python/diffmd_fast "$pkg/"
rm -f "$pkg"/diffmd_fast/_C*.so
cp "$build"/_C*.so "$pkg/diffmd_fast/"
export LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
PYTHONPATH="$pkg" "$PYTHON" -m pytest -q -p no:cacheprovider tests/ops/test_ops.py tests/ops/test_graph.py tests/ops/test_fuzz_ops.py tests/nn/test_egt_score.py tests/ops/test_valence_force.py "$@"
