"""A tiny real trajectory for the baselines: the bundled GFN2-xTB ethanol run (500 K, 0.5 fs frames)."""
from __future__ import annotations

import pytest
import torch

from diffmd_fast.data import FrameBatch, Trajectory, bundled, load_trajectory, make_loader, start_batch

TRAIN_FRAMES = range(0, 400)  # windows for training


@pytest.fixture(scope="session")
def ethanol() -> Trajectory:
    full = load_trajectory(bundled("ethanol"))
    return Trajectory(positions=full.positions[:1000], numbers=full.numbers, dt_fs=full.dt_fs, name=full.name)


@pytest.fixture(scope="session")
def train_loader(ethanol):
    return list(make_loader(ethanol, batch_size=25, shuffle=True, frames=[TRAIN_FRAMES], dtype=torch.float64))


@pytest.fixture(scope="session")
def two_molecules(ethanol) -> FrameBatch:
    """Two ethanol windows far apart in time, as one batch of 18 atoms (float64)."""
    return start_batch([ethanol, ethanol], [100, 300], dtype=torch.float64)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on tiny batches run faster on one thread (and suffer less from a busy CI box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
