"""One step of a trained model against the reference, over many test windows: the error of the run's
sampler (no rollout corrections), of its prior alone on the same windows (the network's gain over it,
with a standard error from the paired windows), of the constant-velocity guess, and of the Verlet step
with the reference's own forces (what a force field exact at x(t) gives at this frame time).
``diffmd bench stability`` records it in every cell.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

ONE_STEP_WINDOWS = 512  # test windows: over a rollout's 8 starts a network's gain over the prior is within noise


@dataclass(frozen=True)
class OneStep:
    """One model step from ``windows`` test windows against the reference (Å, RMS per atom); see Cell."""

    windows: int
    model_A: float
    constant_velocity_A: float
    prior_A: float
    gain_A: float
    gain_se_A: float
    reference_force_A: float


def one_step_errors(run, traj, stride: int, windows: int = ONE_STEP_WINDOWS, chunk: int = 128) -> OneStep:
    """The run's sampler (no rollout corrections) and its prior alone (run.prior_alone) one step from up to
    ``windows`` evenly spaced windows of ``traj``, each window's next frame t + stride as reference, beside
    the constant-velocity guess x(t) + v(t) and the Verlet step 2 x(t) - x(t-1) + Δt² F(t) / m with the
    reference's forces (models of positions: a phase-space model's prior substeps, so its comparison would
    need forces between the frames; NaN there); ``chunk`` windows per call bound the memory."""
    from ase import units

    from ..data import start_batch
    from ..data.elements import masses
    from ..dynamics.rollout import evenly_spaced_starts
    from ..dynamics.stepper import sample_frame
    from ..valence.topology import window_graph

    dtype = getattr(torch, run.config.train.dtype)
    prior = run.prior_alone()
    starts = evenly_spaced_starts(traj.num_frames, 1, stride, windows)  # each with a reference next frame
    sq = {"model": [], "prior": [], "cv": []}  # per window: mean over atoms of |error|² (Å²)
    for i in range(0, len(starts), chunk):
        part = starts[i:i + chunk]
        start = start_batch([traj] * len(part), part, stride=stride, dtype=dtype)
        true = torch.as_tensor(np.concatenate([traj.positions[t + stride] for t in part]))  # (N, 3) float64 Å
        graph = window_graph(start)
        for key, r in (("model", run), ("prior", prior)):
            with torch.no_grad():
                x, _, _ = sample_frame(r.model.eval(), r.sde, r.sampler, start, graph, torch.Generator().manual_seed(0))
            sq[key].append(_window_means((start.absolute(x) - true).pow(2).sum(-1), start.batch))
        sq["cv"].append(_window_means((start.absolute(2.0 * start.x - start.x_prev) - true).pow(2).sum(-1), start.batch))
    m, p, cv = (np.concatenate(sq[k]) for k in ("model", "prior", "cv"))  # (W,) Å²
    rms_m, rms_p = float(np.sqrt(m.mean())), float(np.sqrt(p.mean()))
    diff = p - m  # (W,) Å²: RMS_p - RMS_m = mean(diff) / (RMS_p + RMS_m)
    se = float(diff.std(ddof=1) / np.sqrt(len(diff)) / (rms_p + rms_m)) if len(diff) > 1 else float("nan")
    ref_force = float("nan")
    if traj.forces is not None and traj.dt_fs is not None and run.config.model.prior_substeps == 0:
        dt = stride * traj.dt_fs  # fs
        accel = traj.forces / masses(traj.numbers)[:, None] * units.fs ** 2  # (T, n, 3) Å/fs² (ASE's units)
        verlet = np.stack([2 * traj.positions[t] - traj.positions[t - stride] + dt * dt * accel[t] for t in starts])
        true = np.stack([traj.positions[t + stride] for t in starts])
        ref_force = float(np.sqrt(((verlet - true) ** 2).sum(-1).mean()))
    return OneStep(len(starts), rms_m, float(np.sqrt(cv.mean())), rms_p, rms_p - rms_m, se, ref_force)


def _window_means(values: torch.Tensor, batch: torch.Tensor) -> np.ndarray:
    """(W,) float64 mean of per-atom ``values`` (N,) over each window's atoms (``batch`` (N,) window index)."""
    total = torch.zeros(int(batch.max()) + 1, dtype=torch.float64).index_add_(0, batch, values.double())
    return (total / torch.bincount(batch).double()).numpy()
