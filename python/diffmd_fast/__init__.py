"""diffmd_fast: DiffMD (score-based diffusion for molecular dynamics) with fused EGL kernels.

The compiled extension ``diffmd_fast._C`` registers the ``diffmd_fast::egl_attention`` torch ops
(CPU, and CUDA when built with it). Without it, the pure-PyTorch reference runs instead and
one warning says so.
"""
from __future__ import annotations

import warnings

import torch  # noqa: F401  (loads libtorch before the extension that links it)

try:  # the compiled extension registers the torch ops on import
    from . import _C  # noqa: F401

    HAS_EXTENSION = True
except ImportError as _err:  # pragma: no cover - exercised only on broken installs
    HAS_EXTENSION = False
    warnings.warn(
        f"diffmd_fast: compiled extension not found ({_err}); the pure-PyTorch reference "
        "backend runs instead (slow, memory-hungry). Reinstall with "
        "`pip install --no-build-isolation .` to build it.",
        RuntimeWarning,
        stacklevel=2,
    )

from .basis import sbf_dim  # noqa: E402
from . import graph, ops, reference  # noqa: E402
from .graph import Graph  # noqa: E402
from .egl import EGL  # noqa: E402

__all__ = ["EGL", "Graph", "HAS_EXTENSION", "graph", "ops", "reference", "sbf_dim"]
__version__ = "0.1.0"
