"""A tiny trained run shared by the streaming-generation and ASE-integrator tests."""
from __future__ import annotations

import pytest

from diffmd_fast.config import Config
from diffmd_fast.data import bundled, load_trajectory, save_npz
from diffmd_fast.training.loop import train

TINY = ["model.num_layers=1", "model.hidden=8", "model.heads=2", "model.ffn=16", "model.dropout=0.0",
        "model.max_z=10", "model.num_fourier=4", "train.epochs=1", "train.max_steps=5", "train.batch_size=16",
        "train.dtype=float64", "train.device=cpu", "train.val_rollout_frames=0",
        "sampler.method=euler", "sampler.eps=0.1"]  # one Euler step from s = 1 to 0.1: 1 score evaluation a frame


@pytest.fixture(scope="session")
def ethanol60(tmp_path_factory):
    """The first 60 frames of the bundled ethanol (0.5 fs apart), as an npz."""
    path = tmp_path_factory.mktemp("data") / "eth60.npz"
    save_npz(load_trajectory(bundled("ethanol")).slice(0, 60), path)
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, ethanol60):
    """A run directory holding a 5-step tiny model trained on ``ethanol60``."""
    out = tmp_path_factory.mktemp("tiny") / "run"
    train(Config.from_toml(None, TINY), load_trajectory(ethanol60), None, out)
    return out


@pytest.fixture(scope="session")
def tiny_phase_run(tmp_path_factory, ethanol60):
    """The same tiny model as a phase-space one (model.prior_substeps = 2, 1 fs frames)."""
    out = tmp_path_factory.mktemp("tiny_phase") / "run"
    train(Config.from_toml(None, TINY + ["model.bond_prior=true", "model.sigma_data=0.01", "model.prior_substeps=2",
                                         "train.stride=2"]), load_trajectory(ethanol60), None, out)
    return out
