"""Autoregressive trajectory generation: sample x(t+1) from the reverse process conditioned on the
last frames, append it, shift the window (FrameBatch.advance), repeat.

All molecules of the start batch advance together, so one score evaluation serves every molecule
and trajectory in it (the graph is built once: the topology of a complete graph never changes).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import start_batch
from .data.batch import FrameBatch
from .graph import Graph, complete_graph
from .metrics import armse
from .samplers import Sampler
from .sde import SDE


@dataclass(frozen=True)
class RolloutResult:
    positions: torch.Tensor  # (T, N, 3) Å, generated frames t0+1 .. t0+T of every molecule
    nfe_per_frame: torch.Tensor  # (T,) int64 score evaluations spent on each frame
    batch: torch.Tensor  # (N,) molecule index of every atom
    wall_s: float

    @property
    def frames_per_s(self) -> float:
        return self.positions.shape[0] / self.wall_s if self.wall_s > 0 else float("inf")

    @property
    def mean_nfe(self) -> float:
        return float(self.nfe_per_frame.double().mean())

    def molecule(self, b: int) -> np.ndarray:
        """(T, n_b, 3) float64 numpy positions of molecule ``b``."""
        return self.positions[:, self.batch == b].double().cpu().numpy()


@torch.no_grad()
def rollout(model: torch.nn.Module, sde: SDE, sampler: Sampler, start: FrameBatch, frames: int, *,
            generator: torch.Generator | None = None, progress: bool = False,
            graph: Graph | None = None) -> RolloutResult:
    """Generate ``frames`` frames after ``start`` (whose x_prev2, x_prev, x are the last three known
    frames). The model runs in eval mode (no dropout) and is put back in its previous mode after."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    was_training = model.training
    model.eval()
    graph = complete_graph(start.batch) if graph is None else graph
    current = start
    out, nfes = [], []
    t0 = time.perf_counter()
    bar = tqdm(range(frames), unit="frame", disable=not progress, desc="rollout")
    try:
        for t in bar:
            cond = sde.condition(current)  # (N, 1)
            frame = current

            def score_fn(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
                return model(frame, x, sde.marginal_std(s, cond), graph)

            res = sampler.sample(score_fn, sde, cond, sampler.start(current), current.batch, generator)
            if not bool(torch.isfinite(res.x).all()):
                raise FloatingPointError(f"rollout produced non-finite positions at generated frame {t + 1}")
            out.append(res.x)
            nfes.append(res.nfe)
            bar.set_postfix(nfe=res.nfe)
            current = current.advance(res.x)
    finally:
        model.train(was_training)
        bar.close()
    if start.x.is_cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    return RolloutResult(torch.stack(out), torch.tensor(nfes, dtype=torch.int64), start.batch, wall)


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
    score them against the reference with ARMSE (metrics.armse). None if no trajectory is long enough."""
    items = [(traj, t0) for traj in trajs for t0 in evenly_spaced_starts(traj.num_frames, frames, stride,
                                                                         starts_per_traj)]
    if not items:
        return None
    start = start_batch([tr for tr, _ in items], [t0 for _, t0 in items], stride=stride, dtype=dtype).to(device)
    res = rollout(model, sde, sampler, start, frames, generator=generator)
    gen_err, static_err = [], []
    for b, (traj, t0) in enumerate(items):
        ref = traj.positions[t0 + stride: t0 + (frames + 1) * stride: stride]  # (F, n, 3)
        gen_err.append(armse(res.molecule(b), ref))
        static_err.append(armse(np.broadcast_to(traj.positions[t0], ref.shape), ref))
    return RolloutScore(float(np.mean(gen_err)), float(np.mean(static_err)), res.frames_per_s, res.mean_nfe)
