#!/usr/bin/env bash
# CI check: the CUDA kernels compile (sm_90 only, to keep CI short) against the CUDA torch wheel and
# register for the CUDA dispatch key. No GPU is needed: nothing is launched. Fails loudly (non-zero)
# when nvcc, the wheel or any kernel registration is missing, so it cannot pass by silently building
# the CPU-only extension.
#
# Env: DIFFMD_CUDA_VENV   venv outside the repo, created once and reused (default ~/.cache/diffmd_fast/cuda-venv)
#      DIFFMD_TORCH_WHEEL the CUDA torch wheel (default /opt/pypi-more/files/torch-2.14.1-*.whl)
#      DIFFMD_FAST_CUDA_ARCHS architectures (default 90)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
VENV="${DIFFMD_CUDA_VENV:-$HOME/.cache/diffmd_fast/cuda-venv}"
WHEEL_GLOB="${DIFFMD_TORCH_WHEEL:-/opt/pypi-more/files/torch-2.14.1-*.whl}"
export DIFFMD_FAST_CUDA=on DIFFMD_FAST_CUDA_ARCHS="${DIFFMD_FAST_CUDA_ARCHS:-90}"

fail() { echo "ci_cuda_build: FAIL: $*" >&2; exit 1; }

NVCC="$(command -v nvcc || true)"
[[ -z "$NVCC" && -x /usr/local/cuda/bin/nvcc ]] && NVCC=/usr/local/cuda/bin/nvcc
[[ -n "$NVCC" ]] || fail "nvcc not found (PATH or /usr/local/cuda/bin)"
"$NVCC" --version | tail -n 2

if [[ ! -x "$VENV/bin/python" ]]; then
  # shellcheck disable=SC2206
  wheels=($WHEEL_GLOB)
  [[ -f "${wheels[0]}" ]] || fail "CUDA torch wheel not found: $WHEEL_GLOB"
  echo "creating $VENV with ${wheels[0]}"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "${wheels[0]}" numpy scipy pybind11 scikit-build-core ninja cmake
fi
# what `import diffmd_fast` itself needs besides torch (the package's data layer reads with ASE);
# checked every time so that a venv cached by an older version of this script is topped up
"$VENV/bin/python" -c "import ase, tqdm" 2>/dev/null || "$VENV/bin/pip" install -q ase tqdm
"$VENV/bin/python" -c "import torch, sys; sys.exit(torch.version.cuda is None)" ||
  fail "torch in $VENV is not a CUDA build"

echo "building diffmd_fast with CUDA archs $DIFFMD_FAST_CUDA_ARCHS"
build_start=$(date +%s)
"$VENV/bin/pip" install -q --no-build-isolation --no-deps -Cbuild-dir=build/cuda . ||
  fail "build with DIFFMD_FAST_CUDA=on failed"
echo "build: $(( $(date +%s) - build_start )) s"

# Run outside the repo so the installed package (with _C) is imported, not python/diffmd_fast.
(cd /tmp && "$VENV/bin/python" - <<'PY') || fail "CUDA kernels are not registered"
import warnings
import torch
warnings.simplefilter("error", RuntimeWarning)  # a missing _C falls back with a warning: make it fatal
import diffmd_fast
from diffmd_fast import _C

missing = [op for op in ("egl_attention", "egl_attention_backward", "radius_graph", "valence_force")
           if not torch._C._dispatch_has_kernel_for_dispatch_key(f"diffmd_fast::{op}", "CUDA")]
# egt_score is device-generic ATen code (CompositeExplicitAutograd): it reaches CUDA through the
# computed dispatch table, and calls egl_attention's CUDA kernel inside
if not torch._C._dispatch_has_computed_kernel_for_dispatch_key("diffmd_fast::egt_score", "CUDA"):
    missing.append("egt_score")
assert _C.cuda_built is True, "diffmd_fast._C.cuda_built is False"
assert not missing, f"no CUDA kernel registered for {missing}"
print(f"ok: CUDA kernels registered for egl_attention, egl_attention_backward, radius_graph, valence_force, egt_score "
      f"(torch {torch.__version__}, CUDA {torch.version.cuda})")
PY
echo "ci_cuda_build: OK in $(( $(date +%s) - start )) s"
