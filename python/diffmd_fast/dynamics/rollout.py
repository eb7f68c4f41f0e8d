"""In-memory rollouts: run a ``Stepper`` (stepper.py, the one rollout loop) for a number of frames
and keep every frame, for evaluation, validation and the comparison harness. Long runs stream to
disk instead (``diffmd generate``).
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..data import start_batch
from ..data.batch import FrameBatch
from ..ops.graph import Graph
from .guards import GuardConfig, StopReport
from .correction import FrameCorrection
from .stepper import RolloutStopped, Stepper
from ..evaluation.metrics import armse
from ..diffusion.samplers import Sampler
from ..diffusion.sde import SDE

__all__ = ["RolloutResult", "RolloutScore", "RolloutStopped", "evenly_spaced_starts", "rollout", "rollout_armse"]


@dataclass(frozen=True)
class RolloutResult:
    positions: torch.Tensor  # (T, N, 3) Å, generated frames t0+1 .. t0+T; NaN after a molecule stopped
    nfe_per_frame: torch.Tensor  # (T,) int64 score evaluations spent on each frame (re-samples included)
    batch: torch.Tensor  # (N,) molecule index of every atom
    wall_s: float
    stopped: tuple[StopReport | None, ...]  # (B,) why molecule b stopped, None if it ran to the end
    valid_frames: tuple[int, ...]  # (B,) frames 1 .. valid_frames[b] of molecule b are valid

    @property
    def frames_per_s(self) -> float:
        return self.frames_run / self.wall_s if self.wall_s > 0 else float("inf")

    @property
    def frames_run(self) -> int:
        """Frames actually sampled: fewer than requested when every molecule stopped early."""
        return int((self.nfe_per_frame > 0).sum())

    @property
    def mean_nfe(self) -> float:
        """Score evaluations per sampled frame."""
        return float(self.nfe_per_frame[: max(self.frames_run, 1)].double().mean())

    @property
    def reports(self) -> list[StopReport]:
        """Stop reports of the molecules that stopped, in molecule order."""
        return [r for r in self.stopped if r is not None]

    def molecule(self, b: int) -> np.ndarray:
        """(T, n_b, 3) float64 numpy positions of molecule ``b`` (NaN from its stop frame on)."""
        return self.positions[:, self.batch == b].double().cpu().numpy()

    def valid_molecule(self, b: int) -> np.ndarray:
        """(valid_frames[b], n_b, 3) float64 numpy positions of molecule ``b``: only its valid frames."""
        return self.molecule(b)[: self.valid_frames[b]]


def rollout(model: torch.nn.Module, sde: SDE, sampler: Sampler, start: FrameBatch, frames: int, *,
            generator: torch.Generator | None = None, progress: bool = False, graph: Graph | None = None,
            guard: GuardConfig = GuardConfig(), strict: bool = False,
            corrections: Sequence[FrameCorrection] = ()) -> RolloutResult:
    """Generate ``frames`` frames after ``start`` (whose x_prev2, x_prev, x are the last three known
    frames) and keep them all. The model runs in eval mode (no dropout).

    Each frame gets the ``corrections`` (physics.py) and is checked with ``guard``; a failing
    molecule stops (stepper.py) and ``RolloutResult.stopped`` says why. With ``strict`` the first
    failure raises RolloutStopped (a FloatingPointError) instead. When every molecule has stopped
    the loop ends early; the remaining frames are NaN with 0 NFE."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    stepper = Stepper(model, sde, sampler, start, corrections=corrections, guard=guard, generator=generator,
                      graph=graph, strict=strict)
    positions = torch.full((frames, start.x.shape[0], 3), math.nan, dtype=start.x.dtype, device=start.x.device)
    nfes = torch.zeros(frames, dtype=torch.int64)

    def record(s: Stepper) -> None:
        positions[s.t - 1], nfes[s.t - 1] = s.positions, s.last_nfe

    stepper.attach(record)
    t0 = time.perf_counter()
    stepper.run(frames, progress=progress)
    if start.x.is_cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    valid = tuple(frames if r is None else r.frame - 1 for r in stepper.stopped)
    return RolloutResult(positions, nfes, start.batch, wall, tuple(stepper.stopped), valid)


@dataclass(frozen=True)
class RolloutScore:
    armse: float  # Å, generated vs reference, mean over rollouts
    armse_static: float  # Å, the static frame x(t0) vs reference (the trivial baseline)
    frames_per_s: float
    mean_nfe: float


def evenly_spaced_starts(num_frames: int, frames: int, stride: int, count: int) -> list[int]:
    """Up to ``count`` start frames t0 with 2·stride history and frames·stride reference frames after."""
    lo, hi = 2 * stride, num_frames - 1 - frames * stride
    if hi < lo:
        return []
    return sorted({int(t) for t in np.linspace(lo, hi, max(count, 1)).round()})


def rollout_armse(model: torch.nn.Module, sde: SDE, sampler: Sampler, trajs, frames: int, *, stride: int = 1,
                  starts_per_traj: int = 4, dtype: torch.dtype = torch.float32,
                  device: torch.device | str = "cpu", generator: torch.Generator | None = None) -> RolloutScore | None:
    """Roll out ``frames`` frames from evenly spaced starts of every trajectory (all at once) and
    score them against the reference with ARMSE (metrics.armse). None if no trajectory is long enough.
    Raises RolloutStopped (a FloatingPointError) if a rollout turns non-finite."""
    items = [(traj, t0) for traj in trajs for t0 in evenly_spaced_starts(traj.num_frames, frames, stride,
                                                                         starts_per_traj)]
    if not items:
        return None
    start = start_batch([tr for tr, _ in items], [t0 for _, t0 in items], stride=stride, dtype=dtype,
                        centre=True).to(device)
    res = rollout(model, sde, sampler, start, frames, generator=generator, guard=GuardConfig.finite_only(),
                  strict=True)  # validation keeps failing loudly on NaN, as before guards existed
    pos = start.absolute(res.positions).cpu().numpy()  # (F, N, 3) float64 Å in the data's frame
    atom_batch = start.batch.cpu().numpy()
    gen_err, static_err = [], []
    for b, (traj, t0) in enumerate(items):
        ref = traj.positions[t0 + stride: t0 + (frames + 1) * stride: stride]  # (F, n, 3)
        gen_err.append(armse(pos[:, atom_batch == b], ref))
        static_err.append(armse(np.broadcast_to(traj.positions[t0], ref.shape), ref))
    return RolloutScore(float(np.mean(gen_err)), float(np.mean(static_err)), res.frames_per_s, res.mean_nfe)
