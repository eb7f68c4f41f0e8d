"""diffmd_fast: DiffMD (score-based diffusion for molecular dynamics) with fused EGL kernels.

The compiled extension ``diffmd_fast._C`` registers the ``diffmd_fast::`` torch ops (egl_attention,
egt_score, valence_force, radius_graph; CPU, and CUDA when built with it). Without it, the pure-PyTorch reference runs instead and
one warning says so.

Subpackages, lowest first (a lower one never imports a higher one):
    data/         trajectories, readers, writers, windows, splits, reference MD (GFN2-xTB)
    ops/          the fused op (Python face), its reference, the SBF basis (Eqs. 10-11), graphs
    nn/           EGL (Eqs. 12-17) and the EGT score network
    diffusion/    SDEs (Eqs. 6-9), the DSM loss, samplers (Algorithm 1)
    evaluation/   metrics and plots
    dynamics/     rollout and its guards
    training/     training loop, checkpoints, DDP
    baselines/    next-frame baselines (EGNN, RF, GMN, TFN, static)
    experiments/  the comparison harness and Tables 1 and 2
    benchmarks/, cli/   ``diffmd bench`` and the ``diffmd`` command
"""
from __future__ import annotations

import warnings

import torch  # noqa: F401  (loads libtorch before the extension that links it)

try:  # the compiled extension registers the torch ops on import
    from . import _C  # noqa: F401
except ImportError as _err:  # pragma: no cover - exercised only on broken installs
    warnings.warn(
        f"diffmd_fast: the compiled extension is not built here (importing it said: {_err}); the "
        "pure-PyTorch reference backend runs instead (slow, memory-hungry). Build it with "
        "`pip install --no-build-isolation .` (README: `make setup`).",
        RuntimeWarning,
        stacklevel=2,
    )

from . import ops, testing  # noqa: E402
from .ops.fused import HAS_EXTENSION  # noqa: E402  (the one flag: every compiled op registered)
from .nn import EGL, ScoreNet  # noqa: E402
from .ops import graph, reference  # noqa: E402
from .ops.basis import sbf_dim  # noqa: E402
from .ops.graph import Graph  # noqa: E402

__all__ = ["EGL", "Graph", "HAS_EXTENSION", "ScoreNet", "graph", "ops", "reference", "sbf_dim", "testing"]
__version__ = "0.1.0"
