"""The step friction measured after training (training/calibration.py) is the friction of the model's
step: a model whose frame is a Verlet step of the valence prior damped at a known rate γ, rolled out
with the fluctuation of that γ, makes "training data" from which the calibration recovers γ, and
rollouts with the recovered fluctuation hold the data's temperature."""
from importlib.resources import files

import numpy as np
import pytest
import torch

from diffmd_fast.config import Config
from diffmd_fast.data import Trajectory, bundled, load_trajectory, start_batch
from diffmd_fast.diffusion.samplers import make_sampler
from diffmd_fast.diffusion.sde import make_sde
from diffmd_fast.dynamics.fluctuation import StepFluctuation, hydrogen_partners
from diffmd_fast.dynamics.physics import MomentumProjection
from diffmd_fast.dynamics.stepper import Stepper
from diffmd_fast.nn.score_net import AnchorScore, ScoreNet
from diffmd_fast.training.calibration import (element_temperatures, friction_table, measure_step_friction,
                                             stretch_temperatures)
from diffmd_fast.valence import valence_statistics

STRIDE = 4
TRUE = {1: 0.03, 6: 0.015, 8: 0.015}  # 1/fs: the damped model's friction per element
T0 = 500.0  # K


class DampedAnchor(AnchorScore):
    """The prior's Verlet step with its velocity damped by c = exp(-γ Δt) per element: the score whose
    denoised frame is x(t) + c (x(t) - x(t-1)) + Δt² F / m."""

    def __init__(self, net: ScoreNet, friction: dict[int, float], frame_fs: float) -> None:
        super().__init__(net)
        self.keep = {z: float(np.exp(-g * frame_fs)) for z, g in friction.items()}

    def forward(self, batch, x_noisy, std, graph=None):
        c = torch.tensor([self.keep[int(z)] for z in batch.z], dtype=batch.x.dtype).unsqueeze(-1)  # (N, 1)
        target = self.net.anchor(batch, graph) - (1.0 - c) * (batch.x - batch.x_prev)
        return (target - x_noisy) / (std * std)


class DampedStretch(DampedAnchor):
    """DampedAnchor whose hydrogens' velocity along their X-H bond (at x(t)) is damped at γ_s[X] instead."""

    def __init__(self, net: ScoreNet, friction: dict[int, float], stretch: dict[int, float], frame_fs: float) -> None:
        super().__init__(net, friction, frame_fs)
        self.keep_s = {z: float(np.exp(-g * frame_fs)) for z, g in stretch.items()}

    def forward(self, batch, x_noisy, std, graph=None):
        c = torch.tensor([self.keep[int(z)] for z in batch.z], dtype=batch.x.dtype).unsqueeze(-1)  # (N, 1)
        partner = hydrogen_partners(batch)
        c_s = torch.tensor([self.keep_s.get(int(batch.z[p]), k) if p >= 0 else k
                            for p, k in zip(partner.tolist(), c.squeeze(-1).tolist())], dtype=batch.x.dtype).unsqueeze(-1)
        v = batch.x - batch.x_prev
        bond = torch.where((partner >= 0).unsqueeze(-1), batch.x - batch.x[partner.clamp_min(0)], 0.0)
        e = bond / bond.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        along = (v * e).sum(-1, keepdim=True) * e
        target = self.net.anchor(batch, graph) - v + c * (v - along) + c_s * along
        return (target - x_noisy) / (std * std)


def _ethanol_net(frame_fs: float) -> tuple[ScoreNet, Config]:
    cfg = Config.from_toml(files("diffmd_fast") / "configs" / "long.toml",
                           ["model.num_layers=1", "model.hidden=8", "model.heads=2", "model.ffn=16", "model.max_z=10",
                            "model.sigma_data=0.05"])
    net = ScoreNet(cfg.model).double()
    net.bond_prior.set_tables(frame_fs=frame_fs, **valence_statistics([load_trajectory(bundled("ethanol")).slice(0, 4000)], 10))
    return net, cfg


def _rolled_out_data(model, sde, sampler, fluctuation, frame_fs: float) -> list[Trajectory]:
    """Four equilibrated trajectories of ``model`` kicked by ``fluctuation``, one frame per model frame."""
    traj = load_trajectory(bundled("ethanol"))
    start = start_batch([traj] * 4, [1000, 2000, 3000, 4000], stride=STRIDE, dtype=torch.float64)
    stepper = Stepper(model, sde, sampler, start, corrections=[fluctuation, MomentumProjection()],
                      generator=torch.Generator().manual_seed(3))
    frames = []
    stepper.attach(lambda s: frames.append(s.positions.clone()))
    stepper.run(2500)
    x = torch.stack(frames[500:]).numpy()  # (T, N, 3) Å, equilibrated
    n = len(traj.numbers)
    return [Trajectory(x[:, i * n:(i + 1) * n], traj.numbers, frame_fs, name=f"damped{i}") for i in range(4)]


@pytest.fixture(scope="module")
def damped():
    frame_fs = STRIDE * load_trajectory(bundled("ethanol")).dt_fs
    net, cfg = _ethanol_net(frame_fs)
    model, sde, sampler = DampedAnchor(net, TRUE, frame_fs), make_sde(cfg.sde), make_sampler(cfg.sampler)
    # "training data": the damped step with the fluctuation of its own friction
    data = _rolled_out_data(model, sde, sampler, StepFluctuation(T0, TRUE, frame_fs), frame_fs)
    return model, sde, sampler, data, frame_fs


def test_calibration_recovers_the_friction_of_a_damped_step(damped):
    model, sde, sampler, data, frame_fs = damped
    cal = measure_step_friction(model, sde, sampler, data, stride=1, frame_fs=frame_fs, temperature_K=T0, frames=3200,
                                dtype=torch.float64, initial_per_fs=0.01)  # long.toml's frames, 16 starts
    for z, gamma in TRUE.items():
        assert cal.friction_per_fs[z] == pytest.approx(gamma, rel=0.3), (z, cal.friction_per_fs)
    assert cal.measured_K[0] == pytest.approx(cal.target_K[0], rel=0.15)
    assert friction_table(cal.record()) == cal.friction_per_fs  # what a checkpoint stores reads back


def test_calibration_recovers_the_stretch_friction_of_a_step_that_damps_its_c_h_stretches_more():
    """A step that damps the C-H stretch 4x more than the rest of a hydrogen's motion (the fast mode a
    conditional mean damps most): with ``stretches`` the calibration reads that stretch's friction
    apart from the element's, and both back to within 30 %."""
    frame_fs = STRIDE * load_trajectory(bundled("ethanol")).dt_fs
    net, cfg = _ethanol_net(frame_fs)
    stretch = {6: 0.12, 8: 0.03}
    model, sde, sampler = DampedStretch(net, TRUE, stretch, frame_fs), make_sde(cfg.sde), make_sampler(cfg.sampler)
    data = _rolled_out_data(model, sde, sampler, StepFluctuation(T0, TRUE, frame_fs, stretch), frame_fs)
    temps = stretch_temperatures(data, 1)
    assert set(temps) == {6, 8} and all(0.5 * T0 < t < 1.5 * T0 for t in temps.values())
    cal = measure_step_friction(model, sde, sampler, data, stride=1, frame_fs=frame_fs, temperature_K=T0, frames=3200,
                                dtype=torch.float64, initial_per_fs=0.01, stretches=True)
    assert cal.stretch_friction_per_fs[6] == pytest.approx(stretch[6], rel=0.3), cal.stretch_friction_per_fs
    assert cal.friction_per_fs[1] == pytest.approx(TRUE[1], rel=0.3), cal.friction_per_fs
    assert friction_table(cal.record(), "stretch_friction_per_fs") == cal.stretch_friction_per_fs


def test_element_temperatures_of_a_trajectory_are_its_kinetic_temperatures(damped):
    *_, data, frame_fs = damped
    temps = element_temperatures(data, 1)
    assert set(temps) == {0, 1, 6, 8}
    assert 0.5 * T0 < temps[0] < 1.2 * T0  # finite differences at 2 fs read below the instantaneous T
    assert all(np.isfinite(v) and v > 0 for v in temps.values())


def test_calibration_refuses_too_few_frames(damped):
    model, sde, sampler, data, frame_fs = damped
    with pytest.raises(ValueError, match="3 frames per round"):
        measure_step_friction(model, sde, sampler, data, stride=1, frame_fs=frame_fs, temperature_K=T0, frames=10)


def test_a_failed_calibration_leaves_a_usable_run_without_the_fluctuation(tmp_path, monkeypatch, capsys):
    """Training does not fail when the calibration rollouts all stop (a barely trained model): the
    checkpoint says why, and its rollouts run without the step's fluctuation."""
    import diffmd_fast.training.calibration as calibration
    from diffmd_fast.training.loop import train
    from diffmd_fast.training.run import load_run

    def stopped(*args, **kwargs):
        raise RuntimeError("every calibration rollout stopped")

    monkeypatch.setattr(calibration, "measure_step_friction", stopped)
    cfg = Config.from_toml(files("diffmd_fast") / "configs" / "long.toml",
                           ["model.num_layers=1", "model.hidden=8", "model.heads=2", "model.ffn=16", "train.epochs=1",
                            "train.max_steps=2", "train.val_rollout_frames=0", "train.calibration_frames=48"])
    traj = load_trajectory(bundled("ethanol"))
    train(cfg, traj.slice(0, 400), None, tmp_path / "run")
    assert "step friction was not measured" in capsys.readouterr().out
    run = load_run(tmp_path / "run")
    assert run.data["step_friction"] == {"not_measured": "every calibration rollout stopped"}
    kinds = [type(c).__name__ for c in run.corrections(run.frame_time())]
    assert kinds == ["LangevinThermostat", "MomentumProjection"]



def test_the_rounds_measure_their_sensitivity():
    """With a thermostat the rollout temperature is linear in the fluctuation's γ, T = a + b γ, not
    proportional to it: d ln T / d ln γ is below 1, and steps that assume 1 crawl. The rounds measure
    it (the first round, a transient, left out), within SENSITIVITY_RANGE."""
    from diffmd_fast.training.calibration import SENSITIVITY_RANGE, log_sensitivity

    gammas = [0.01 * 0.9**r for r in range(6)]
    rounds = [({6: g, 1: g, 8: g}, {6: 350.0 + 12000.0 * g, 1: 40000.0 * g, 8: 400.0 + 1.0 * g}) for g in gammas]
    rounds[0][1][6] = 600.0  # the first round's transient must not enter
    g, t = np.array(gammas[1:]), 350.0 + 12000.0 * np.array(gammas[1:])
    assert log_sensitivity(rounds, 6) == pytest.approx(np.polyfit(np.log(g), np.log(t), 1)[0], rel=1e-9)
    assert 0.2 < log_sensitivity(rounds, 6) < 0.3  # heavy atoms under a thermostat
    assert log_sensitivity(rounds, 1) == pytest.approx(1.0)  # proportional: no thermostat
    assert log_sensitivity(rounds, 8) == SENSITIVITY_RANGE[0]  # no response: the floor, never a division by ~0
    assert log_sensitivity(rounds[:2], 6) == 1.0  # one usable round tells nothing yet


def test_the_calibration_names_each_friction_and_reports_what_it_could_not_balance():
    from diffmd_fast.training.calibration import Calibration

    cal = Calibration({1: 0.0152, 6: 0.0001}, {0: 420.0, 1: 443.0, 6: 339.0}, {0: 300.0, 1: 434.0, 6: 168.0}, 3200, 16,
                      {6: 0.0095}, {6: 394.0}, {6: 384.0})
    assert cal.summary() == "H 0.0152 (443/434), C 0.0001 (339/168), C-H stretch 0.0095 (394/384)"
    assert cal.unbalanced() == ["C 168 K against the data's 339 K, friction 0.0001 /fs"]  # H and the stretch within 10 %


def test_a_calibration_whose_rollouts_all_stop_says_why(damped):
    """A step that pumps energy (velocities x2.7 a frame) stops every rollout: the error names the first stop."""
    model, sde, sampler, data, frame_fs = damped
    pumping = DampedAnchor(model.net, {1: -0.5, 6: -0.5, 8: -0.5}, frame_fs)
    with pytest.raises(RuntimeError, match=r"every calibration rollout stopped \(the first: molecule \d+ stopped at"):
        measure_step_friction(pumping, sde, sampler, data, stride=1, frame_fs=frame_fs, temperature_K=T0, frames=240,
                              dtype=torch.float64)
