"""StepFluctuation: the noise that balances a conditional-mean step's friction, per element and per X-H stretch."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from diffmd_fast.data.batch import FrameBatch
from diffmd_fast.dynamics.correction import kick_amplitude
from diffmd_fast.dynamics.fluctuation import StepFluctuation, hydrogen_partners
from diffmd_fast.dynamics.physics import masses_of
from correction_helpers import NoiseMemory, ethanol_frames


@pytest.mark.parametrize("omega_dt", [0.3, 1.14])
def test_step_fluctuation_balances_a_damped_step_at_its_temperature(omega_dt):
    """A model frame that is the Verlet step of a harmonic well with its velocity damped at γ per fs
    (what a conditional mean trained on Langevin data returns), kicked by StepFluctuation of that γ:
    the positions sample k_B T / (m ω²) and the velocities T, soft and stiff (C-H at 2 fs) wells alike.
    Without the fluctuation the same step freezes."""
    from ase import units

    n, dt, temp, gamma = 2000, 2.0, 500.0, 0.02  # atoms, fs, K, 1/fs
    omega, c = omega_dt / dt, math.exp(-gamma * dt)
    z = torch.ones(n, dtype=torch.int64)
    batch = torch.zeros(n, dtype=torch.int64)
    fluct = StepFluctuation(temp, {1: gamma}, dt)
    for kicked in (True, False):
        gen = torch.Generator().manual_seed(0)
        x_prev = x = 0.05 * torch.randn(n, 3, generator=gen, dtype=torch.float64)
        feed, sq, kinetic = NoiseMemory(), [], []
        for t in range(3000):
            frame = FrameBatch(z=z, x_prev2=x_prev, x_prev=x_prev, x=x, x_next=x, batch=batch, num_graphs=1)
            x_new = x + c * (x - x_prev) - omega_dt**2 * x  # the damped Verlet frame of the well
            if kicked:
                x_new = fluct(frame, x_new, feed(0, fluct, fluct.noise(frame, gen)))
            x_prev, x = x, x_new
            if t >= 1000:
                sq.append(float((x * x).mean()))
                kinetic.append(float(((x - x_prev) ** 2).mean()))
        mass = float(masses_of(z[:1]))
        expected = units.kB * temp / (mass * (omega / units.fs) ** 2)  # Å², k_B T / (m ω²)
        if kicked:
            assert abs(np.mean(sq) / expected - 1) < 0.07, np.mean(sq) / expected
        else:
            assert np.mean(sq) < 1e-3 * expected


def test_hydrogen_partners_from_the_window_bonds_or_perceived():
    frame = ethanol_frames()
    partner = hydrogen_partners(frame)
    h = frame.z == 1
    assert bool((partner[~h] == -1).all()) and bool((partner[h] >= 0).all())
    assert set(frame.z[partner[h]].tolist()) == {6, 8}  # ethanol: C-H and O-H
    assert bool((frame.batch[partner[h]] == frame.batch[h]).all())  # within the molecule
    assert torch.equal(hydrogen_partners(dataclasses.replace(frame, bonds=None)), partner)


def test_step_fluctuation_kicks_a_hydrogen_along_its_bond_with_the_stretch_amplitude():
    """With a stretch table, noise along a hydrogen's X-H bond kicks with the amplitude of the stretch's
    γ and noise across it with the element's; atoms without such a bond keep the element's."""
    frame, dt = ethanol_frames(1), 2.0
    fluct = StepFluctuation(500.0, {1: 0.01, 6: 0.01, 8: 0.01}, dt, {6: 0.09})
    partner = hydrogen_partners(frame)
    bond = frame.x - frame.x[partner.clamp_min(0)]
    e = bond / bond.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    fixed = torch.tensor([[0.3, 0.5, 0.8]], dtype=torch.float64).expand_as(e)
    across = torch.where((partner >= 0).unsqueeze(-1), torch.linalg.cross(e, fixed, dim=-1), fixed)  # heavy atoms: any
    across = across / across.norm(dim=-1, keepdim=True)
    a = kick_amplitude(frame.z, math.exp(-0.01 * dt), 500.0)
    a_s = kick_amplitude(frame.z, math.exp(-0.09 * dt), 500.0)
    ch = (frame.z == 1) & (partner >= 0) & (frame.z[partner.clamp_min(0)] == 6)
    oh = (frame.z == 1) & (frame.z[partner.clamp_min(0)] == 8)
    kick_along = (fluct(frame, frame.x, e) - frame.x) / dt
    kick_across = (fluct(frame, frame.x, across) - frame.x) / dt
    torch.testing.assert_close(kick_along[ch], (a_s * e)[ch])
    torch.testing.assert_close(kick_along[oh], (a * e)[oh])  # no O-H entry: the element's amplitude
    torch.testing.assert_close(kick_across, a * across)
    with pytest.raises(ValueError, match="frictions >= 0"):
        StepFluctuation(500.0, {1: 0.01}, dt, {6: -0.1})
