"""The Stepper: observers at their intervals, corrections applied, exact continuation from state_dict."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from diffmd_fast.config import RolloutConfig
from diffmd_fast.data import bundled, load_trajectory, start_batch
from diffmd_fast.diffusion.samplers import HeunSampler
from diffmd_fast.diffusion.sde import ConditionalVESDE
from diffmd_fast.dynamics.fluctuation import StepFluctuation
from diffmd_fast.dynamics.physics import corrections_from_config
from diffmd_fast.dynamics.guards import GuardConfig
from diffmd_fast.dynamics.stepper import Stepper
from diffmd_fast.nn.score_net import PriorFallback
from model_helpers import TINY, make_net


def _stepper(seed=0):
    traj = load_trajectory(bundled("ethanol"))
    start = start_batch([traj] * 3, [10, 300, 600], dtype=torch.float64)
    start = start.__class__(**{**start.__dict__, "z": start.z.clamp(max=10)})
    corrections = corrections_from_config(RolloutConfig(tau_fs=20.0), 0.5, 500.0)
    # an untrained net: its frames are not chemistry, so only the finiteness checks stay on
    return Stepper(make_net(), ConditionalVESDE(), HeunSampler(steps=2), start, corrections=corrections,
                   generator=torch.Generator().manual_seed(seed), guard=GuardConfig.finite_only())


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


def _long_rollout() -> RolloutConfig:
    from importlib.resources import files

    from diffmd_fast.config import Config

    return Config.from_toml(files("diffmd_fast") / "configs" / "long.toml").rollout


def _with_prior(st: Stepper, compile: bool, shipped: bool = False, substeps: int = 0, energy: bool | None = None) -> Stepper:
    """``st``'s rollout with configs/long.toml's model: EDM preconditioning about the valence prior's Verlet
    step (so the compiled graph holds both fused ops, egt_score and valence_force); ``shipped``: also its
    rollout physics, the prior fallback (some atoms on the prior: every rest length is 1.2 Å) and the
    step's fluctuation, with long.toml's fallback rule (by stretch, or by oscillation amplitude) unless
    ``energy`` names one;
    ``substeps`` > 0: a phase-space model, its velocity carried with the frames."""
    net = make_net(replace(TINY, sigma_data=0.01, bond_prior=True, prior_substeps=substeps))
    net.bond_prior.set_tables(torch.full((11, 11), 30.0), torch.full((11, 11), 1.2), 0.5 / max(substeps, 1),
                              {(1, 6, 1): (5.0, -0.33), (6, 6, 8): (5.0, -0.33)})
    with torch.no_grad():
        net.delta_scale.fill_(0.01)  # an untrained network's full-size output would explode the frame
    model, corrections = net, st.corrections
    if shipped:
        model = PriorFallback(net, 500.0, 4.0, _long_rollout().prior_fallback_energy if energy is None else energy)
        corrections = [StepFluctuation(500.0, {1: 0.01, 6: 0.02, 8: 0.03}, 0.5, {6: 0.03, 8: 0.04}), *corrections]
    return Stepper(model, st.sde, st.sampler, st.start, corrections=corrections,
                   generator=torch.Generator().manual_seed(0), compile=compile)


def _compiled_stepper(seed=0):
    st = _stepper(seed)
    return Stepper(st.model, st.sde, st.sampler, st.start, corrections=st.corrections,
                   generator=torch.Generator().manual_seed(seed), compile=True)


def test_compiled_frames_equal_eager_ones_and_survive_a_stopped_molecule():
    """compile=True runs each frame as one torch.compile graph: the same frames as eager mode (float64,
    to rounding), also after a molecule stops (new shapes: a recompilation, not a wrong reuse); the
    compilation (uncached, so that inductor lowers the graph) prints none of torch's own warnings."""
    import warnings

    import torch._inductor.config as inductor_config

    torch._dynamo.reset()
    eager, compiled = _with_prior(_stepper(), False), _with_prior(_stepper(), True)
    eager.run(3)
    with warnings.catch_warnings(record=True) as caught, inductor_config.patch(force_disable_caches=True):
        warnings.simplefilter("always")
        compiled.run(3)
    assert not [w for w in caught if issubclass(w.category, FutureWarning)], [str(w.message) for w in caught]
    torch.testing.assert_close(compiled.positions, eager.positions, rtol=0, atol=1e-9)
    failed = torch.tensor([False, True, False])
    for st in (eager, compiled):
        st._stop(failed, st.frame.x.clone(), torch.zeros(st.frame.x.shape[0], dtype=torch.bool))
        st.run(2)
    assert compiled.num_active == 2 and torch.isnan(compiled.positions).any()
    torch.testing.assert_close(compiled.positions, eager.positions, rtol=0, atol=1e-9, equal_nan=True)


def test_a_compiler_failure_falls_back_to_eager_with_a_warning():
    from torch._dynamo.exc import TorchDynamoException

    def broken(*args):  # what torch.compile raises when inductor finds no C++ compiler
        raise TorchDynamoException("no C++ compiler")

    st, eager = _compiled_stepper(), _stepper()
    st._compiled = broken
    with pytest.warns(UserWarning, match="torch.compile failed"):
        st.run(2)
    eager.run(2)
    assert st._compiled is None and torch.equal(st.positions, eager.positions)


@pytest.mark.parametrize("shipped,substeps,energy", [(False, 0, None), (True, 0, None), (True, 2, None), (True, 0, True)])
def test_a_compiled_rollout_compiles_once_whatever_stops(shipped, substeps, energy):
    """A stopped molecule of a compiled rollout is frozen in place, not cut out: the frame's shapes stay
    static and the graph compiled for the first frames serves every later one (also with the shipped
    rollout physics: prior fallback and step fluctuation inside the graph, and for a phase-space model
    whose frames carry velocities, and with the fallback on each bond's oscillation amplitude)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    compiled, eager = _with_prior(_stepper(), True, shipped, substeps, energy), _with_prior(_stepper(), False, shipped, substeps, energy)
    compiled.run(3)
    eager.run(3)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 1
    for failed in (torch.tensor([False, True, False]), torch.tensor([True, False, False])):
        for st in (compiled, eager):
            mine = failed[: st.frame.num_graphs]  # the eager rollout has cut the first stopped molecule out
            flung = st.frame.x + 5.0 * mine[st.frame.batch].unsqueeze(-1)  # an exploded step: a stop report
            st._stop(mine, flung, torch.zeros(st.frame.x.shape[0], dtype=torch.bool))
            st.run(2)
        assert counters["stats"]["unique_graphs"] == graphs  # no recompilation
        torch.testing.assert_close(compiled.positions, eager.positions, rtol=0, atol=1e-9, equal_nan=True)
    assert compiled.num_active == eager.num_active == 1 and compiled.frame.num_graphs == 3
    if substeps:
        torch.testing.assert_close(compiled.frame.v[compiled.active[compiled.frame.batch]], eager.frame.v,
                                   rtol=0, atol=1e-9)
    resumed = _with_prior(_stepper(), True, shipped, substeps, energy)
    resumed.load_state_dict(compiled.state_dict())
    assert resumed.active.tolist() == [False, False, True]
    # resumed, its first frame comes from the compiled graph too (eager and compiled frames differ in rounding,
    # which a real model's chaotic trajectory amplifies): the same frames to the last bit
    graph_frames, inner = [], resumed._compiled
    resumed._compiled = lambda *args: graph_frames.append(1) or inner(*args)
    resumed.run(2)
    compiled.run(2)
    assert len(graph_frames) == 2
    torch.testing.assert_close(resumed.positions, compiled.positions, rtol=0, atol=0, equal_nan=True)
    assert counters["stats"]["unique_graphs"] == graphs


def test_a_phase_space_rollout_continues_exactly_from_its_state_dict_velocities_included():
    full = _with_prior(_stepper(), False, True, substeps=2)
    full.run(6)
    first = _with_prior(_stepper(), False, True, substeps=2)
    first.run(3)
    resumed = _with_prior(_stepper(seed=5), False, True, substeps=2)
    resumed.load_state_dict(first.state_dict())
    resumed.run(3)
    assert torch.equal(resumed.positions, full.positions) and torch.equal(resumed.frame.v, full.frame.v)
    assert not torch.equal(full.frame.v, full.start.v)


def test_a_run_switches_module_modes_once_not_every_frame(monkeypatch):
    """Putting a network in eval mode walks every submodule (~0.2 ms at batch 1, a third of a compiled
    frame): a run does it once around its frames and restores the mode, and a rollout wrapper starts
    in its network's mode, so that an eval network is never toggled at all."""
    from diffmd_fast.nn.score_net import AnchorScore

    net = make_net(replace(TINY, bond_prior=True)).eval()
    assert not PriorFallback(net, 500.0, 4.0).training and not AnchorScore(net).training
    st = _stepper()
    st.model.train()
    calls = []
    original = torch.nn.Module.train
    monkeypatch.setattr(torch.nn.Module, "train",
                        lambda self, mode=True: (self is st.model and calls.append(mode)) or original(self, mode))
    st.run(5)
    assert calls == [False, True] and st.model.training  # once each way over 5 frames, the mode restored
