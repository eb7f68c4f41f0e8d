"""Small synthetic trajectories the data tests write to disk in each real format."""
from __future__ import annotations

import numpy as np
import pytest

from diffmd_fast.data import Trajectory

WATER_Z = np.array([8, 1, 1])
WATER_X0 = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])  # Å


def make_traj(frames: int = 12, seed: int = 0, name: str = "water", shift: float = 0.0) -> Trajectory:
    """A vibrating water molecule with energies and forces; deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    pos = WATER_X0 + shift + 0.01 * rng.standard_normal((frames, 3, 3)).cumsum(axis=0)  # (T, 3, 3) Å
    return Trajectory(positions=pos, numbers=WATER_Z, dt_fs=0.5, energies=rng.standard_normal(frames),
                      forces=rng.standard_normal((frames, 3, 3)), name=name, provenance={"test": True})


@pytest.fixture
def traj() -> Trajectory:
    return make_traj()


@pytest.fixture(name="make_traj")
def make_traj_fixture():
    """The ``make_traj`` factory, for tests needing several or custom trajectories."""
    return make_traj
