"""The valence force field behaves as the fixtures in tests/fixtures recorded (made by golden.py):
the same seeds give the same frames, and a checkpoint of a model with ``model.bond_prior`` loads
with the same state-dict keys (but the Urey-Bradley tables it predates) and gives the same scores."""
from __future__ import annotations

import numpy as np
import torch

from golden import FRAMES, RUN, SCORES, ethanol, golden_frames, run_scores

from diffmd_fast.training.checkpoint import load_latest
from diffmd_fast.training.run import load_run


def test_the_same_seeds_give_the_same_frames():
    torch.set_num_threads(1)
    want = np.load(FRAMES)["positions"]
    got = golden_frames()
    assert got.shape == want.shape == (20, 27, 3) and np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


def test_a_saved_prior_checkpoint_loads_with_the_same_scores():
    torch.set_num_threads(1)
    state, _ = load_latest(RUN)
    prior_keys = sorted(k for k in state["model"] if k.startswith("bond_prior."))
    run = load_run(RUN)
    now = sorted(k for k in run.model.state_dict() if k.startswith("bond_prior."))
    assert sorted(set(now) - set(prior_keys)) == ["bond_prior.alpha", "bond_prior.ub_k", "bond_prior.ub_r0"]
    assert set(prior_keys) <= set(now)
    assert float(run.model.bond_prior.ub_k.abs().sum()) == 0.0  # loaded without springs
    assert not run.model.bond_prior.anharmonic  # nor Morse bonds
    assert float(run.model.bond_prior.torsions.abs().sum()) > 0 and float(run.model.bond_prior.frame_fs) == 1.0
    np.testing.assert_allclose(run_scores(run.model, ethanol().slice(0, 60)), np.load(SCORES)["score"],
                               rtol=0, atol=1e-10)
