"""Frame windows for training and rollout starts: (x(t-2s), x(t-s), x(t), x(t+s)) per molecule.

DiffMD conditions on the last three frames (their velocity and acceleration set the per-atom
noise scale, Eq. 6) and learns the next one. ``stride`` s subsamples the stored frames, so one
model step spans s stored frames (s * dt_fs fs).
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import NamedTuple

import numpy as np
import torch
from ase import units
from torch.utils.data import DataLoader, Dataset, Sampler

from .batch import FrameBatch
from .elements import covalent_pairs, directed_bonds, masses
from .trajectory import Trajectory, TrajectoryError


class Window(NamedTuple):
    """One training example: four frames of one molecule (float64, centred and cast at collate time)."""

    positions: torch.Tensor  # (4 + K, N, 3) Å: t-(2+K)s, ..., t-2s, t-s, t, t+s (K history frames, default 0)
    z: torch.Tensor  # (N,) int64
    velocities: torch.Tensor | None = None  # (4 + K, N, 3) Å/fs at the same frames (phase-space models)
    bonds: np.ndarray | None = None  # (B, 2) int64 its trajectory's covalent bonds (data.elements.covalent_pairs)


def _valid_times(traj: Trajectory, rng: range, stride: int, history: int = 0) -> np.ndarray:
    """Window centres t in ``rng`` whose frames t-(2+history)s .. t+s all lie in [rng.start, rng.stop) and
    are consecutive MD frames (a gap in ``frame_steps``, or unknown spacing, excludes a window)."""
    start, stop = max(rng.start, 0), min(rng.stop, traj.num_frames)
    times = np.arange(rng.start, rng.stop, rng.step, dtype=np.int64)
    first = (2 + history) * stride
    times = times[(times - first >= start) & (times + stride < stop)]
    steps = traj.steps
    if steps is None:
        return times[:0]
    return times[steps[times + stride] - steps[times - first] == first + stride]


def force_continuations(traj: Trajectory, stride: int) -> np.ndarray | None:
    """(T, N, 3) float64 Å: each frame u reached from frames u - s - 1 and u - s (s = ``stride``) by s steps
    of position Verlet at the data's time step with the data's own forces along its path,
    x(k+1) = 2 x(k) - x(k-1) + Δt² F(k) / m; frames without s + 1 consecutive frames before them keep
    their position. None for data without forces or a time step.

    A thermostatted reference's frame is its deterministic continuation plus the random kicks of every
    step between (Langevin: 0.0074 Å RMS per atom over 2 fs for bundled ethanol at 500 K, most of a
    model's one-step error). Moved by the same forces, the continuation keeps the dynamics and drops
    the kicks (to first order: the forces' response to a kick within the frame stays, and so does each
    kick's position jump before the frame): a target with that noise removed, which a network can
    fit without learning noise, and whose friction and fluctuation the rollout's calibrated step and
    thermostat supply."""
    if traj.forces is None or traj.dt_fs is None or traj.num_frames < stride + 2:
        return None
    x = traj.positions
    accel = traj.forces / masses(traj.numbers)[:, None] * (units.fs * traj.dt_fs) ** 2  # (T, N, 3) Å per step²
    out = x.copy()
    u = np.arange(stride + 1, traj.num_frames)
    steps = traj.steps
    u = u[steps[u] - steps[u - stride - 1] == stride + 1]  # s + 1 consecutive steps before u
    prev, cur = x[u - stride - 1], x[u - stride]
    for j in range(stride):
        prev, cur = cur, 2.0 * cur - prev + accel[u - stride + j]
    out[u] = cur
    return out


class FrameWindows(Dataset):
    """All windows of several trajectories (different molecules may have different atom counts).

    ``frames[i]`` (default ``range(T_i)``) bounds the frames trajectory i's windows may touch, and
    its step thins the window centres; e.g. ``range(0, 1000, 10)`` gives every tenth window of the
    first 1000 frames. ``history`` K adds K earlier frames to every window (FrameBatch.history), for
    training on the model's own unrolled frames. ``velocities`` adds each frame's velocity
    (``Trajectory.velocity_estimates``: the engine's, else estimated from the positions) for
    phase-space models. Every window carries its trajectory's covalent bonds at the median over its
    frames (data.elements.covalent_pairs). ``force_targets``: each window's target x(t+s) is the data's
    force continuation (``force_continuations``) where the trajectory has forces, its frame elsewhere.
    """

    def __init__(self, trajs: Sequence[Trajectory], *, stride: int = 1, frames: Sequence[range] | None = None,
                 history: int = 0, velocities: bool = False, force_targets: bool = False):
        if isinstance(trajs, Trajectory):
            trajs = [trajs]
        if not trajs:
            raise ValueError("FrameWindows: no trajectories given")
        if stride < 1:
            raise ValueError(f"FrameWindows: stride must be >= 1, got {stride}")
        if frames is not None and len(frames) != len(trajs):
            raise ValueError(f"FrameWindows: {len(frames)} frame ranges for {len(trajs)} trajectories")
        if history < 0:
            raise ValueError(f"FrameWindows: history must be >= 0, got {history}")
        self.stride, self.history = stride, history
        self.names = [t.name for t in trajs]
        self._pos = [torch.from_numpy(t.positions) for t in trajs]  # (T, N, 3) float64, shared memory
        self._z = [torch.from_numpy(t.numbers) for t in trajs]  # (N,) int64
        self._bonds = [covalent_pairs(t.positions, t.numbers) for t in trajs]  # (B, 2) int64
        continued = [force_continuations(t, stride) if force_targets else None for t in trajs]
        self._targets = [None if c is None else torch.from_numpy(c) for c in continued]  # (T, N, 3) Å
        self.force_targeted = sum(c is not None for c in continued)  # trajectories whose targets are continued
        self._vel = [torch.from_numpy(t.velocity_estimates()) for t in trajs] if velocities else None  # (T, N, 3) Å/fs
        self._times = [
            _valid_times(t, frames[i] if frames is not None else range(t.num_frames), stride, history)
            for i, t in enumerate(trajs)
        ]
        counts = np.array([len(t) for t in self._times], dtype=np.int64)
        if counts.sum() == 0:
            unknown = [t.name for t in trajs if not t.spacing_known]
            raise TrajectoryError(
                f"FrameWindows: no complete window (needs {(3 + history) * stride + 1} consecutive frames at stride "
                f"{stride}) in {self.names}"
                + (f"; which frames of {unknown} are consecutive is not known: pass --dt-fs (Python: dt_fs=) if "
                   "they are evenly spaced" if unknown else "")
            )
        self._offsets = np.concatenate([[0], np.cumsum(counts)])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """(trajectory index, frame t) of dataset item ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"FrameWindows: index {index} out of range for {len(self)} windows")
        k = int(np.searchsorted(self._offsets, index, side="right") - 1)
        return k, int(self._times[k][index - self._offsets[k]])

    def __getitem__(self, index: int) -> Window:
        k, t = self.locate(int(index))
        frames = slice(t - (2 + self.history) * self.stride, t + self.stride + 1, self.stride)
        pos = self._pos[k][frames]
        if self._targets[k] is not None:
            pos = torch.cat([pos[:-1], self._targets[k][t + self.stride].unsqueeze(0)])
        return Window(pos, self._z[k], None if self._vel is None else self._vel[k][frames], self._bonds[k])


def collate_windows(items: Sequence[Window], dtype: torch.dtype = torch.float32, *, centre: bool = True) -> FrameBatch:
    """Concatenate molecules along the atom axis into one ``FrameBatch``.

    Each molecule is centred on the centroid of its x(t) in float64 before the cast to ``dtype``:
    velocities (~1e-2 Å/frame) are differences of positions, and float32 positions far from the
    origin (1e4 Å carries ~1e-3 Å of rounding) would destroy them. The centroids go to
    ``FrameBatch.origin`` (float64), so ``batch.absolute(x)`` gives positions in the file's frame.
    ``centre=False`` keeps the file's frame (origin zero), cast as is. Windows with K history
    frames fill ``FrameBatch.history`` (K, N, 3); windows with velocities fill ``FrameBatch.v`` (at x(t))
    and ``v_history`` (at the frames before it); windows with bonds fill ``FrameBatch.bonds``.
    """
    pos = torch.cat([w.positions for w in items], dim=1).to(torch.float64)  # (4 + K, N_total, 3)
    z = torch.cat([w.z for w in items])
    sizes = torch.tensor([w.z.shape[0] for w in items], dtype=torch.int64)
    batch = torch.repeat_interleave(torch.arange(len(items), dtype=torch.int64), sizes)
    origin = torch.stack([w.positions[-2].to(torch.float64).mean(0) for w in items])  # (B, 3) Å, centroid of x(t)
    if not centre:
        origin = torch.zeros_like(origin)
    pos = (pos - origin[batch]).to(dtype)
    k = pos.shape[0] - 4
    vel = None if items[0].velocities is None else torch.cat([w.velocities for w in items], dim=1).to(dtype)
    bonds = None
    if all(w.bonds is not None for w in items):
        first = torch.cumsum(sizes, 0) - sizes  # (B,) each molecule's first atom
        bonds = torch.cat([directed_bonds(w.bonds, int(o)) for w, o in zip(items, first)], dim=1)  # (2, M)
    return FrameBatch(z=z, x_prev2=pos[k], x_prev=pos[k + 1], x=pos[k + 2], x_next=pos[k + 3], batch=batch,
                      num_graphs=len(items), origin=origin, history=pos[:k] if k > 0 else None,
                      v=None if vel is None else vel[k + 2], v_history=None if vel is None else vel[: k + 2],
                      bonds=bonds)


def make_loader(
    trajs: Sequence[Trajectory] | Trajectory,
    *,
    batch_size: int = 200,
    shuffle: bool = True,
    stride: int = 1,
    frames: Sequence[range] | None = None,
    seed: int = 1,
    sampler: Sampler | None = None,
    dtype: torch.dtype = torch.float32,
    num_workers: int = 0,
    velocities: bool = False,
) -> DataLoader:
    """A DataLoader of ``FrameBatch``; pass ``sampler`` (e.g. DistributedSampler) to override shuffling;
    ``velocities`` for phase-space models (FrameWindows)."""
    dataset = FrameWindows(trajs, stride=stride, frames=frames, velocities=velocities)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        collate_fn=partial(collate_windows, dtype=dtype),
        generator=torch.Generator().manual_seed(seed),
        num_workers=num_workers,
    )


def start_batch(
    trajs_or_traj: Sequence[Trajectory] | Trajectory,
    t: int | Sequence[int],
    *,
    stride: int = 1,
    dtype: torch.dtype = torch.float32,
    centre: bool = True,
    velocities: bool | None = None,
) -> FrameBatch:
    """The window at frame ``t`` (one per trajectory, or one ``t`` each) to start a rollout from.

    ``x_next`` is x(t+s) when the reference has it (to score the first generated frame), else x(t).
    ``centre=True`` centres each molecule in float64 before the cast (see ``collate_windows``), as
    data far from the origin needs: a rollout's frames are then in that frame, and
    ``batch.absolute(x)`` puts them back where the reference is. ``centre=False`` keeps the data's
    frame (only safe near the origin in float32). ``velocities``: each atom's velocity at x(t)
    (``FrameBatch.v``, Trajectory.velocity_estimates), which phase-space models start from; None
    attaches them when every trajectory can give them (a time step and evenly spaced frames), True
    requires them (TrajectoryError otherwise), False leaves them out. Each window carries its
    trajectory's covalent bonds (FrameBatch.bonds), which the rollout holds fixed.
    """
    trajs = [trajs_or_traj] if isinstance(trajs_or_traj, Trajectory) else list(trajs_or_traj)
    times = [int(t)] * len(trajs) if isinstance(t, (int, np.integer)) else [int(v) for v in t]
    if len(times) != len(trajs):
        raise ValueError(f"start_batch: {len(times)} start frames for {len(trajs)} trajectories")
    if velocities is None:
        velocities = all(t.velocities is not None or (t.dt_fs is not None and t.evenly_spaced and t.num_frames >= 3)
                         for t in trajs)
    items, bonds = [], {}  # the bonds of each distinct trajectory, once
    for traj, t0 in zip(trajs, times):
        if not 2 * stride <= t0 < traj.num_frames:
            raise TrajectoryError(
                f"{traj.name}: rollout start frame {t0} needs 2*stride={2 * stride} earlier frames and must be "
                f"< {traj.num_frames}"
            )
        nxt = t0 + stride if t0 + stride < traj.num_frames and traj.consecutive(t0, t0 + stride) else t0
        if not traj.consecutive(t0 - 2 * stride, t0):
            raise TrajectoryError(f"{traj.name}: rollout start frame {t0} needs the {2 * stride} frames before it "
                                  f"to be consecutive MD frames; they are not (or their spacing is not known)")
        picked = [t0 - 2 * stride, t0 - stride, t0, nxt]
        vel = torch.from_numpy(traj.velocity_estimates(picked)) if velocities else None  # (4, N, 3) Å/fs
        items.append(Window(torch.from_numpy(traj.positions[picked]), torch.from_numpy(traj.numbers), vel,
                            bonds.setdefault(id(traj), covalent_pairs(traj.positions, traj.numbers))))
    return collate_windows(items, dtype=dtype, centre=centre)
