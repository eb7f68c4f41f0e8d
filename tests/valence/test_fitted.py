"""fit_prior: the prior as training fits it, Boltzmann-inverted or force-matched by the model config."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from diffmd_fast.config import Config
from diffmd_fast.data import load_data
from diffmd_fast.valence import BondPrior
from diffmd_fast.valence.fitted import fit_prior


def test_fit_prior_follows_the_model_config():
    traj = load_data("ethanol").slice(0, 600)
    model = Config.from_toml(None).model
    inverted, matched = BondPrior(model.max_z), BondPrior(model.max_z)
    assert fit_prior(inverted, [traj], replace(model, prior_force_matching=False), 2.0)[1] is False
    summary, fitted = fit_prior(matched, [traj], replace(model, prior_force_matching=True), 2.0)
    assert fitted and summary.startswith("force-matched")
    without_forces = replace(traj, forces=None)
    assert fit_prior(BondPrior(model.max_z), [without_forces], replace(model, prior_force_matching=True), 2.0) == (
        "no reference forces: Boltzmann-inverted constants kept", False)
    with pytest.raises(ValueError, match=r"model.max_z = 6 is below the data's heaviest element \(Z = 8\)"):
        fit_prior(BondPrior(6), [traj], replace(model, max_z=6), 2.0)
    assert matched.frame_fs.item() == inverted.frame_fs.item() == 2.0
    # same rest lengths (force matching keeps them), other force constants; Urey-Bradley springs only from forces
    torch.testing.assert_close(matched.r0, inverted.r0)
    assert not torch.allclose(matched.k, inverted.k)
    assert inverted.ub_k.abs().sum() == 0 < matched.ub_k.abs().sum()
    # a frame time no Verlet step of these bonds survives, even with their element pairs' pooled constants
    with pytest.raises(ValueError, match="unstable"), pytest.warns(UserWarning, match="pooled constants"):
        fit_prior(BondPrior(model.max_z), [traj], replace(model, prior_force_matching=False), 20.0)
