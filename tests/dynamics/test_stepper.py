"""The Stepper: observers at their intervals, corrections applied, exact continuation from state_dict."""
from __future__ import annotations

import torch

from diffmd_fast.config import RolloutConfig
from diffmd_fast.data import bundled, load_trajectory, start_batch
from diffmd_fast.diffusion.samplers import HeunSampler
from diffmd_fast.diffusion.sde import ConditionalVESDE
from diffmd_fast.dynamics.physics import corrections_from_config
from diffmd_fast.dynamics.stepper import Stepper
from model_helpers import make_net


def _stepper(seed=0):
    traj = load_trajectory(bundled("ethanol"))
    start = start_batch([traj] * 3, [10, 300, 600], dtype=torch.float64)
    start = start.__class__(**{**start.__dict__, "z": start.z.clamp(max=10)})
    corrections = corrections_from_config(RolloutConfig(tau_fs=20.0), 0.5, 500.0)
    return Stepper(make_net(), ConditionalVESDE(), HeunSampler(steps=2), start, corrections=corrections,
                   generator=torch.Generator().manual_seed(seed))


def test_observers_see_their_intervals_and_positions_advance():
    st = _stepper()
    seen, every = [], []
    st.attach(lambda s: seen.append(s.t), interval=3)
    st.attach(lambda s: every.append(s.positions.clone()))
    st.run(7)
    assert seen == [3, 6] and len(every) == 7 and st.t == 7 and st.last_nfe == 3 and st.total_nfe == 21
    assert not torch.equal(every[0], every[1]) and torch.isfinite(every[-1]).all()
    assert torch.equal(st.positions, st.frame.x)


def test_state_dict_continues_exactly():
    full = _stepper()
    full.run(6)
    first = _stepper()
    first.run(3)
    state = first.state_dict()
    resumed = _stepper(seed=99)  # a different seed: the saved generator state must win
    resumed.load_state_dict(state)
    resumed.run(3)
    assert resumed.t == 6 and torch.equal(resumed.positions, full.positions)
    assert torch.equal(resumed.frame.x_prev2, full.frame.x_prev2)


class Still(torch.nn.Module):
    """Exact score of a narrow Gaussian around x(t): the model predicts no motion at all."""

    def forward(self, batch, x_noisy, std, graph=None):
        return -(x_noisy - batch.x) / (1e-8 + std**2)


def test_corrections_act_on_the_generated_frames():
    """A model that predicts no motion stays frozen; the thermostat puts thermal motion into it."""
    frozen, thermal = _stepper(), _stepper()
    frozen.model = thermal.model = Still()
    frozen.corrections = ()
    frozen.run(3)
    thermal.run(3)
    step = lambda s: (s.frame.x - s.frame.x_prev).norm(dim=-1).mean()  # noqa: E731
    assert step(frozen) < 1e-9 and step(thermal) > 1e-3  # tau 20 fs: 3 frames give ~20 % of thermal speed


def test_the_start_frame_topology_is_kept_and_follows_a_stopped_molecule():
    """The rollout graph carries the start frame's covalent bonds (what a bond prior holds together);
    stopping a molecule renumbers them onto the survivors; a resumed stepper rebuilds the same."""
    st = _stepper()
    n = st.start.x.shape[0] // 3
    bonds = st.graph.bonds  # (2, M) over 3 ethanols: 8 bonds each, both directions
    assert bonds.shape == (2, 3 * 16)
    assert set(map(tuple, bonds.T.tolist())) == set(map(tuple, bonds.flip(0).T.tolist()))  # both directions
    assert (st.start.batch[bonds[0]] == st.start.batch[bonds[1]]).all()
    x = st.frame.x.clone()
    failed = torch.tensor([False, True, False])
    st._stop(failed, x, torch.zeros(x.shape[0], dtype=torch.bool))
    kept = torch.cat([bonds[:, :16], bonds[:, 32:] - n], dim=1)  # molecule 1's atoms gone, 2's renumbered
    assert torch.equal(st.graph.bonds, kept)
    resumed = _stepper()
    resumed.load_state_dict(st.state_dict())
    assert torch.equal(resumed.graph.bonds, st.graph.bonds)
