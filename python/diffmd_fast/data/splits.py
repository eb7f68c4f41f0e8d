"""The paper's two tasks as data splits.

- short-to-long: train on the first part of one trajectory, validate on the next block, test
  (roll out) on the block after it. Blocks are consecutive in time so test frames are never
  seen, nor are frames correlated with them through a shuffled split.
- one-to-others: train on most molecules and test on held-out ones. The held-out ones are the
  isomers with the largest *drift* (see ``drift``), i.e. the ones whose dynamics move furthest
  from their start and so are hardest to extrapolate to.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from .trajectory import Trajectory, TrajectoryError

class Split(NamedTuple):
    """train / val / test: Trajectory slices (short-to-long; val None when val=0) or lists of
    trajectories (one-to-others)."""

    train: Trajectory | list[Trajectory]
    val: Trajectory | list[Trajectory] | None
    test: Trajectory | list[Trajectory]


def short_to_long_split(traj: Trajectory, *, train: int = 20000, val: int = 10000, test: int = 10000) -> Split:
    """Frames [0, train), [train, train+val), [train+val, train+val+test) as three trajectories."""
    if min(train, test) < 1 or val < 0:
        if traj.num_frames < 3:  # the default fractions of a single structure round to nothing
            raise TrajectoryError(f"{traj.name}: {traj.num_frames} frame{'s' if traj.num_frames > 1 else ''}: training "
                                  "needs a trajectory (diffmd simulate makes one from a structure)")
        raise ValueError(f"short_to_long_split: need train, test >= 1 and val >= 0, got {train}, {val}, {test}")
    needed = train + val + test
    if traj.num_frames < needed:
        raise TrajectoryError(
            f"{traj.name}: short_to_long_split needs {needed} frames (train {train} + val {val} + test {test}), "
            f"only {traj.num_frames} available"
        )
    val_traj = traj.slice(train, train + val) if val > 0 else None
    return Split(traj.slice(0, train), val_traj, traj.slice(train + val, needed))


def drift(traj: Trajectory) -> float:
    """Mean per-atom displacement (Å) from the first frame, over all frames, centroid removed.

    drift = mean_t mean_i |(x_i(t) - c(t)) - (x_i(0) - c(0))|, c(t) the atoms' centroid. Removing
    the centroid ignores overall translation (the thermostat's Brownian drift); rotations and
    conformational changes both count, as both are motion a model must generate.
    """
    pos = traj.positions - traj.positions.mean(axis=1, keepdims=True)  # (T, N, 3) Å
    return float(np.linalg.norm(pos - pos[:1], axis=-1).mean())


def one_to_others_split(trajs: Sequence[Trajectory], *, num_test: int = 5, num_val: int = 0) -> Split:
    """Test on the ``num_test`` trajectories with the largest ``drift``, validate on the next
    ``num_val``, train on the rest. Lists keep the input order."""
    trajs = list(trajs)
    if num_test < 1 or num_val < 0:
        raise ValueError(f"one_to_others_split: need num_test >= 1 and num_val >= 0, got {num_test}, {num_val}")
    if len(trajs) < num_test + num_val + 1:
        raise TrajectoryError(
            f"one_to_others_split needs at least {num_test + num_val + 1} trajectories "
            f"(test {num_test} + val {num_val} + 1 to train), got {len(trajs)}"
        )
    order = np.argsort([-drift(t) for t in trajs], kind="stable")
    test_idx = set(order[:num_test].tolist())
    val_idx = set(order[num_test:num_test + num_val].tolist())
    return Split(
        [t for i, t in enumerate(trajs) if i not in test_idx | val_idx],
        [t for i, t in enumerate(trajs) if i in val_idx],
        [t for i, t in enumerate(trajs) if i in test_idx],
    )
