"""Autoregressive trajectory generation: sample x(t+1) from the reverse process conditioned on the
last frames, append it, shift the window (FrameBatch.advance), repeat.

All molecules of the start batch advance together, so one score evaluation serves every molecule
and trajectory in it (the graph is built once: the topology of a complete graph never changes).

Guards (guards.py) check every generated frame per molecule. A molecule that fails is *stopped*:
its frames from the failing one on stay NaN in ``positions`` (never presented as valid), it is cut
out of the batch, and the failing frame is sampled again for the others. The re-sampling matters
because a sampler couples molecules only through shared machinery (the adaptive ODE step size,
the order of random draws); without the bad molecule the survivors get exactly the frame a run
without it would give (for deterministic samplers; the PC sampler restarts the frame from the same
generator state). Non-finite scores are zeroed inside the sampler, so one NaN cannot poison the
shared step-size control, and flag their molecule when they occur at a finite point of the
integration interval [eps, 1] (solver probes outside it are not the molecule's fault).
``strict=True`` raises instead of stopping.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data import start_batch
from ..data.batch import FrameBatch
from ..ops.graph import Graph, complete_graph
from .guards import GuardConfig, RolloutGuard, StopReport
from ..evaluation.metrics import armse
from ..diffusion.samplers import Sampler
from ..diffusion.sde import SDE


class RolloutStopped(FloatingPointError):
    """A strict rollout hit a failing molecule; ``report`` says where and why."""

    def __init__(self, report: StopReport) -> None:
        super().__init__(report.message())
        self.report = report


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


def _subgraph(graph: Graph, keep: torch.Tensor) -> Graph:
    """The graph on the atoms ``keep`` (N,) bool, renumbered; edges must not leave kept molecules."""
    counts = graph.row_ptr[1:] - graph.row_ptr[:-1]  # (N,)
    edge_keep = torch.repeat_interleave(keep, counts)  # (E,)
    senders = graph.col[edge_keep]
    if not bool(keep[senders].all()):
        raise ValueError("rollout graph has edges between different molecules; cannot drop a stopped molecule")
    new_index = torch.cumsum(keep.to(torch.int64), 0) - 1
    row_ptr = torch.cat([counts.new_zeros(1), torch.cumsum(counts[keep], 0)])
    return Graph(row_ptr, new_index[senders])


def _select(frame: FrameBatch, keep: torch.Tensor) -> FrameBatch:
    """The sub-batch of the molecules ``keep`` (B,) bool, molecule indices renumbered 0..B'-1."""
    atoms = keep[frame.batch]  # (N,)
    new_id = torch.cumsum(keep.to(torch.int64), 0) - 1
    return FrameBatch(z=frame.z[atoms], x_prev2=frame.x_prev2[atoms], x_prev=frame.x_prev[atoms], x=frame.x[atoms],
                      x_next=frame.x_next[atoms], batch=new_id[frame.batch[atoms]], num_graphs=int(keep.sum()))


def _sample_frame(model, sde: SDE, sampler: Sampler, frame: FrameBatch, graph: Graph,
                  generator: torch.Generator | None) -> tuple[torch.Tensor, int, torch.Tensor]:
    """(x (N, 3) Å, nfe, bad_score (N,) bool): one reverse-process sample after ``frame``."""
    cond = sde.condition(frame)  # (N, 1)
    lowest = sampler.eps * (1.0 - 1e-6)  # exp(log eps) may round below eps
    bad = torch.zeros(frame.x.shape[0], dtype=torch.bool, device=frame.x.device)

    def score_fn(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        std = sde.marginal_std(s, cond)  # (N, 1) Å
        score = model(frame, x, std, graph)  # (N, 3) 1/Å
        # Every non-finite score is zeroed so that no NaN reaches the shared step-size control, but
        # it is the molecule's fault only at a legitimate point: adaptive solvers also probe times
        # outside [eps, 1] (the initial step-size probe can reach s ~ 0, where std underflows) and
        # wild trial steps, and reject those steps themselves.
        nonfinite = ~torch.isfinite(score).all(-1)  # (N,)
        inside = (s.squeeze(-1) >= lowest) & (std.squeeze(-1) > 0)
        bad.logical_or_(nonfinite & torch.isfinite(x).all(-1) & inside)  # no host sync: read once per frame
        return torch.where(nonfinite.unsqueeze(-1), torch.zeros_like(score), score)

    res = sampler.sample(score_fn, sde, cond, sampler.start(frame), frame.batch, generator)
    return res.x, res.nfe, bad


@torch.no_grad()
def rollout(model: torch.nn.Module, sde: SDE, sampler: Sampler, start: FrameBatch, frames: int, *,
            generator: torch.Generator | None = None, progress: bool = False,
            graph: Graph | None = None, guard: GuardConfig = GuardConfig(), strict: bool = False) -> RolloutResult:
    """Generate ``frames`` frames after ``start`` (whose x_prev2, x_prev, x are the last three known
    frames). The model runs in eval mode (no dropout) and is put back in its previous mode after.

    Each frame is checked with ``guard`` (thresholds in guards.GuardConfig); a failing molecule
    stops (see the module docstring) and ``RolloutResult.stopped`` says why. With ``strict`` the
    first failure raises RolloutStopped (a FloatingPointError) instead. When every molecule has
    stopped the loop ends early; the remaining frames are NaN with 0 NFE."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    was_training = model.training
    model.eval()
    num, n_atoms = start.num_graphs, start.x.shape[0]
    current = start
    graph = complete_graph(start.batch) if graph is None else graph
    checker = RolloutGuard(guard, start)
    atom_ids = torch.arange(n_atoms, device=start.x.device)  # (N',) global index of each active atom
    positions = torch.full((frames, n_atoms, 3), math.nan, dtype=start.x.dtype, device=start.x.device)
    nfes = torch.zeros(frames, dtype=torch.int64)
    stopped: list[StopReport | None] = [None] * num
    t0 = time.perf_counter()
    bar = tqdm(range(frames), unit="frame", disable=not progress, desc="rollout")
    try:
        for t in bar:
            rng_state = generator.get_state() if generator is not None else None
            while True:
                x, nfe, bad = _sample_frame(model, sde, sampler, current, graph, generator)
                nfes[t] += nfe
                failed = checker.check(current.x, x, bad)  # (B',)
                if not bool(failed.any()):
                    break
                for report in checker.reports(failed, current.x, x, bad, frame=t + 1):
                    if strict:
                        raise RolloutStopped(report)
                    stopped[report.molecule] = report
                keep = ~failed
                atoms = keep[current.batch]
                current, graph = _select(current, keep), _subgraph(graph, atoms)
                checker, atom_ids = checker.subset(keep, current), atom_ids[atoms]
                if current.num_graphs == 0:
                    break
                if rng_state is not None:
                    generator.set_state(rng_state)
            if current.num_graphs == 0:
                break
            positions[t, atom_ids] = x
            bar.set_postfix(nfe=int(nfes[t]), stopped=sum(r is not None for r in stopped))
            current = current.advance(x)
    finally:
        model.train(was_training)
        bar.close()
    if start.x.is_cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    valid = tuple(frames if r is None else r.frame - 1 for r in stopped)
    return RolloutResult(positions, nfes, start.batch, wall, tuple(stopped), valid)


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
    start = start_batch([tr for tr, _ in items], [t0 for _, t0 in items], stride=stride, dtype=dtype).to(device)
    res = rollout(model, sde, sampler, start, frames, generator=generator, guard=GuardConfig.finite_only(),
                  strict=True)  # validation keeps failing loudly on NaN, as before guards existed
    gen_err, static_err = [], []
    for b, (traj, t0) in enumerate(items):
        ref = traj.positions[t0 + stride: t0 + (frames + 1) * stride: stride]  # (F, n, 3)
        gen_err.append(armse(res.molecule(b), ref))
        static_err.append(armse(np.broadcast_to(traj.positions[t0], ref.shape), ref))
    return RolloutScore(float(np.mean(gen_err)), float(np.mean(static_err)), res.frames_per_s, res.mean_nfe)
